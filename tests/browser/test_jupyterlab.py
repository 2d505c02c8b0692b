"""End to end: the monitor notebook run in JupyterLab, as a person sees it in Chromium.

Starts JupyterLab from this environment on 127.0.0.1 (no token, a free port, a temporary
root holding a copy of the notebook, and temporary Jupyter config and data folders whose
``python3`` kernelspec runs this interpreter, so no user-level setting or kernel can get in
the way), drives Debian's Chromium through Playwright (no
browser download), runs every cell, and checks the graph SVG, the live monitor's numbers
while the run goes on, and the final counts. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from playwright.sync_api import Page, expect, sync_playwright

pytestmark = pytest.mark.browser

HERE = Path(__file__).parent
NOTEBOOK = HERE / "monitor.ipynb"
ARTIFACTS = HERE.parents[1] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
]

# What the notebook's monitored run must end with (see its cells): 60 inputs; every
# multiple of 7 is rejected, the rest stored. fetch sleeps 0.2 s per item, two at a time,
# so the run lasts about 6 s: time for several samples of the live panel.
INPUTS = 60
REJECTED = len(range(0, INPUTS, 7))
STORED = INPUTS - REJECTED

# A code cell's prompt before it ran ("[ ]:") and after ("[3]:").
NOT_RUN = re.compile(r"^\[\s*\]:?$")
EXECUTED = re.compile(r"\[\d+\]:?")

# JupyterLab settings for a quiet, fully rendered notebook: no news or update toasts
# over the page, and no windowing, so every cell is in the DOM.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def write_kernelspec(data_dir: Path) -> None:
    """A kernelspec named ``python3`` in ``data_dir`` that runs this very interpreter."""
    spec = data_dir / "kernels" / "python3"
    spec.mkdir(parents=True)
    kernel = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "metadata": {"debugger": True},
    }
    (spec / "kernel.json").write_text(json.dumps(kernel, indent=1))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_answering(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    """Poll the server's status endpoint until it answers; fail early if it exits."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"jupyter lab exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    pytest.fail(f"jupyter lab did not answer within 60 s:\n{log.read_text()}")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server (it shuts its kernels down), then kill anything left behind."""
    try:
        family = psutil.Process(server.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
    _, alive = psutil.wait_procs(family, timeout=10)
    for proc in alive:
        proc.kill()
    psutil.wait_procs(alive, timeout=10)


@pytest.fixture
def lab_url(tmp_path: Path) -> Iterator[str]:
    """JupyterLab serving a temporary root that holds a copy of the monitor notebook."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    settings = tmp_path / "lab-settings"
    for name, values in LAB_SETTINGS.items():
        plugin, _, file_name = name.rpartition("/")
        (settings / plugin).mkdir(parents=True, exist_ok=True)
        (settings / plugin / file_name).write_text(json.dumps(values))
    data_dir = tmp_path / "data"
    write_kernelspec(data_dir)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(data_dir),
        # Search JUPYTER_DATA_DIR before the environment's share/jupyter (preferred by
        # default inside a venv), so the python3 kernelspec above is the one used.
        "JUPYTER_PREFER_ENV_PATH": "0",
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
    }
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.open_browser=False",
        f"--ServerApp.root_dir={root}",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = tmp_path / "jupyterlab.log"
    with log.open("wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_answering(url, server, log)
        check_kernelspec(url)
        yield url
    finally:
        stop_server(server)


def check_kernelspec(url: str) -> None:
    """The server's python3 kernel is the one written by write_kernelspec."""
    with urllib.request.urlopen(f"{url}/api/kernelspecs", timeout=5) as response:
        specs = json.load(response)
    argv = specs["kernelspecs"]["python3"]["spec"]["argv"]
    assert argv[0] == sys.executable, f"python3 kernel not isolated: {argv}"


def monitor_field(page: Page, field: str, node: str | None = None) -> str:
    """One number (or the state) the monitor panel shows now; empty until it is shown."""
    scope = f".async-dag-monitor tr[data-node='{node}']" if node else ".async-dag-monitor"
    cell = page.locator(f"{scope} [data-field='{field}']")
    return cell.first.inner_text().strip() if cell.count() else ""


def wait_for_kernel(url: str, notebook: str) -> None:
    """Wait until the server runs an idle kernel for the notebook's session."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/api/sessions", timeout=5) as response:
            sessions = json.load(response)
        for session in sessions:
            kernel = session.get("kernel") or {}
            if session.get("path") == notebook and kernel.get("execution_state") == "idle":
                return
        time.sleep(0.25)
    pytest.fail(f"no idle kernel for {notebook} within 60 s: {sessions}")


def run_all_cells(page: Page) -> None:
    """Run all cells from the menu; again if the kernel was not ready to take them."""
    first_prompt = page.locator(".jp-CodeCell .jp-InputPrompt").first
    kernel_dialog = page.locator(".jp-Dialog .jp-mod-accept")
    for _ in range(3):
        page.locator(".lm-MenuBar-item", has_text="Run").first.click()
        page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()
        if kernel_dialog.count():  # "Select Kernel": the session had no kernel yet
            kernel_dialog.first.click()
        try:
            expect(first_prompt).not_to_have_text(NOT_RUN, timeout=10_000)
            return
        except AssertionError:
            continue
    pytest.fail("JupyterLab did not start running the cells")


def test_monitor_notebook_in_jupyterlab(lab_url: str) -> None:
    """The graph shows as SVG, the monitor counts up live, and ends at the final counts."""
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page: Page | None = None
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{lab_url}/lab/tree/{NOTEBOOK.name}")
            page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
            page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(
                timeout=60_000
            )
            wait_for_kernel(lab_url, NOTEBOOK.name)
            page.locator(".jp-Notebook .jp-Cell").first.click()
            run_all_cells(page)

            # Sample what the panel shows while the cells run: the run lasts about 6 s.
            samples: list[str] = []
            last_prompt = page.locator(".jp-CodeCell .jp-InputPrompt").last
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if monitor_field(page, "state") == "running":
                    done = monitor_field(page, "done", node="fetch")
                    if done and (not samples or samples[-1] != done):
                        samples.append(done)
                        if len(samples) == 2:
                            page.screenshot(path=ARTIFACTS / "jupyterlab-monitor-running.png")
                if EXECUTED.fullmatch(last_prompt.inner_text().strip()):
                    break
                page.wait_for_timeout(100)
            else:
                pytest.fail("the notebook's cells did not all run within 60 s")
            page.screenshot(path=ARTIFACTS / "jupyterlab-monitor-final.png", full_page=True)

            errors = page.locator(".jp-OutputArea-output[data-mime-type*='error']")
            assert errors.count() == 0, errors.first.inner_text()

            # JupyterLab shows an SVG output as an <img> whose source is the SVG itself.
            graph = page.locator(".jp-OutputArea-output[data-mime-type='image/svg+xml'] img")
            assert graph.count() >= 1, "the pipeline's graph is not shown as SVG"
            assert graph.first.evaluate("img => img.complete && img.naturalWidth > 0")
            svg = urllib.parse.unquote(graph.first.get_attribute("src") or "")
            assert svg.startswith("data:image/svg+xml") and "<svg" in svg, svg[:200]
            assert ">fetch<" in svg and ">store<" in svg, svg

            # The numbers moved while the run went on, and stopped at the final counts.
            assert len(set(samples)) >= 2, f"the monitor never changed while running: {samples}"
            assert all(int(a) <= int(b) for a, b in itertools.pairwise(samples))
            assert monitor_field(page, "state") == "done"
            assert monitor_field(page, "inputs") == str(INPUTS)
            assert monitor_field(page, "outputs") == str(INPUTS)
            assert monitor_field(page, "errors") == "0"
            assert monitor_field(page, "done", node="fetch") == str(INPUTS)
            assert monitor_field(page, "emitted", node="store") == str(STORED)
            assert monitor_field(page, "emitted", node="reject") == str(REJECTED)
            last = page.locator(".jp-OutputArea-output").last.inner_text()
            assert f"stored={STORED} rejected={REJECTED}" in last, last
        finally:
            if page is not None:
                page.screenshot(path=ARTIFACTS / "jupyterlab-monitor-last.png", full_page=True)
            browser.close()

"""End to end: the monitor notebook run in JupyterLab, as a person sees it in Chromium.

Starts JupyterLab from this environment on 127.0.0.1 (no token, a free port, a temporary
root holding a copy of the notebook, and temporary Jupyter config and data folders whose
``python3`` kernelspec runs this interpreter, so no user-level setting or kernel can get in
the way), drives Debian's Chromium through Playwright (no
browser download) in a 1400 px window with the file browser open, runs every cell, and
checks: the graph SVG; the live monitor's bar, percent and ETA while the run goes on;
the final counts and badge; a 12-node graph with long and hostile ids that fits its
output (no element wider than the output area unless a scrolling box holds it, ids
escaped and shortened, whole on hover); the dark theme; and the saved notebook, re-opened,
showing the final state. A second notebook starts a background run (``pipeline.start``),
presses its panel's Stop button and checks in the kernel that the run was cancelled and
left no task. Assertions are on the DOM; screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

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
BACKGROUND = HERE / "background.ipynb"
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
    for notebook in (NOTEBOOK, BACKGROUND):
        shutil.copy(notebook, root / notebook.name)
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
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, to run commands
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


def monitor_field(page: Page, field: str, node: str | None = None, index: int = 0) -> str:
    """One number (or the state) the ``index``-th monitor panel shows now; empty until
    it is shown."""
    panel = page.locator(".jp-OutputArea-output div.async-dag-monitor").nth(index)
    if not panel.count():
        return ""
    scope = panel.locator(f"tr[data-node='{node}']") if node else panel
    cell = scope.locator(f"[data-field='{field}']")
    return cell.first.inner_text().strip() if cell.count() else ""


# For every output area holding a monitor: elements wider than the area (or sticking out
# of it) that no scrolling or clipping box inside the area contains.
OVERFLOWING_JS = """
() => {
  const bad = [];
  for (const area of document.querySelectorAll('.jp-OutputArea-output')) {
    if (!area.querySelector('.async-dag-monitor')) continue;
    const box = area.getBoundingClientRect();
    for (const el of area.querySelectorAll('*')) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if (r.width <= box.width + 1 && r.right <= box.right + 1 && r.left >= box.left - 1) continue;
      let held = false;
      for (let p = el.parentElement; p && p !== area; p = p.parentElement) {
        const o = getComputedStyle(p).overflowX;
        const pr = p.getBoundingClientRect();
        if (['auto', 'scroll', 'hidden'].includes(o) && pr.right <= box.right + 1
            && pr.width <= box.width + 1) { held = true; break; }
      }
      const name = el.className && el.className.baseVal !== undefined
        ? el.className.baseVal : el.className;
      if (!held) bad.push(`${el.tagName}.${name} ${Math.round(r.width)}px`);
    }
  }
  return bad;
}
"""


def run_command(page: Page, command: str, args: dict[str, object] | None = None) -> None:
    """Run a JupyterLab command through the app exposed in the browser."""
    page.evaluate(
        "([command, args]) => window.jupyterapp.commands.execute(command, args)",
        [command, args or {}],
    )


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


@pytest.mark.timeout(300)  # a loaded 2-core machine takes about a minute
def test_monitor_notebook_in_jupyterlab(lab_url: str) -> None:
    """Bar and ETA live, final counts and badge, a 12-node graph that fits, dark theme,
    and the saved notebook re-opened at its final state."""
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
            page.wait_for_function("() => window.jupyterapp !== undefined", timeout=30_000)
            run_command(page, "filebrowser:activate")  # the file browser open, as people have it
            page.locator(".jp-FileBrowser").first.wait_for(state="visible", timeout=10_000)
            page.locator(".jp-Notebook .jp-Cell").first.click()
            run_all_cells(page)

            # Sample what the panel shows while the cells run: the run lasts about 6 s.
            samples: list[str] = []
            etas: list[str] = []
            last_prompt = page.locator(".jp-CodeCell .jp-InputPrompt").last
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                if monitor_field(page, "state") == "running":
                    done = monitor_field(page, "progress")
                    eta = monitor_field(page, "eta")
                    if done and (not samples or samples[-1] != done):
                        samples.append(done)
                        percent = monitor_field(page, "percent")
                        assert re.fullmatch(r"\d+/60", done), done
                        assert re.fullmatch(r"\d+%", percent), percent
                    if eta and not etas:
                        assert re.fullmatch(r"ETA \d+:\d\d", eta), eta
                        panel = page.locator(".jp-OutputArea-output div.async-dag-monitor")
                        panel.first.scroll_into_view_if_needed()
                        page.screenshot(path=ARTIFACTS / "jupyterlab-monitor-running.png")
                    if eta:
                        etas.append(eta)
                if EXECUTED.fullmatch(last_prompt.inner_text().strip()):
                    break
                page.wait_for_timeout(100)
            else:
                pytest.fail("the notebook's cells did not all run within 90 s")
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
            assert 'fill="white"' not in svg  # no white box in a dark theme

            # The bar moved while the run went on, with an ETA, and stopped at the end.
            assert len(set(samples)) >= 2, f"the bar never moved while running: {samples}"
            counts = [int(sample.split("/")[0]) for sample in samples]
            assert counts == sorted(counts), samples
            assert etas, "no ETA was shown while the run went on"
            assert monitor_field(page, "state") == "done"
            assert monitor_field(page, "progress") == f"{INPUTS}/{INPUTS}"
            assert monitor_field(page, "percent") == "100%"
            assert monitor_field(page, "eta") == ""  # no ETA once it is over
            assert monitor_field(page, "inputs") == str(INPUTS)
            assert monitor_field(page, "outputs") == str(INPUTS)
            assert monitor_field(page, "errors") == "0"
            assert monitor_field(page, "done", node="fetch") == str(INPUTS)
            assert monitor_field(page, "emitted", node="store") == str(STORED)
            assert monitor_field(page, "emitted", node="reject") == str(REJECTED)
            live = page.locator(".jp-OutputArea-output svg.async-dag-live-graph")
            assert live.count() == 2, "the live graphs are not drawn"
            text = page.locator(".jp-OutputArea-output").nth(2).inner_text()
            assert f"stored={STORED} rejected={REJECTED}" in text, text

            # The 12-node monitor: fits its output, hostile ids shown as text.
            assert monitor_field(page, "state", index=1) == "done"
            assert monitor_field(page, "errors", index=1) == "4"
            twelve = page.locator(".jp-OutputArea-output div.async-dag-monitor").nth(1)
            twelve.scroll_into_view_if_needed()
            page.screenshot(path=ARTIFACTS / "jupyterlab-monitor-twelve-nodes.png")
            assert page.evaluate(OVERFLOWING_JS) == []
            assert page.locator(".jp-OutputArea-output script").count() == 0
            rows = twelve.locator("tbody tr[data-node]")
            assert rows.count() == 12
            names = [rows.nth(i).locator("[data-field='node']") for i in range(12)]
            assert names[1].get_attribute("title") == "<script>alert('x')</script>"
            assert names[1].inner_text().startswith("<script>alert(")  # as text
            assert names[2].get_attribute("title") == "quotes \"double\" & 'single'"
            long_name = names[3]
            assert long_name.get_attribute("title") == (
                "a-very-long-node-identifier-that-goes-on-for-52-chars"
            )
            assert "…" in long_name.inner_text() and len(long_name.inner_text()) <= 24
            assert names[5].get_attribute("title") == "bell\\x07and-escape\\x1b[2J"
            assert names[5].inner_text().startswith("bell\\x07")  # escapes shown as text
            graph_box = twelve.locator("svg.async-dag-live-graph").bounding_box()
            table_box = twelve.locator(".async-dag-monitor-table").bounding_box()
            area_box = page.locator(".jp-OutputArea-output").nth(4).bounding_box()
            assert graph_box and table_box and area_box
            assert graph_box["height"] > graph_box["width"]  # a long chain: top to bottom
            assert table_box["x"] + table_box["width"] <= area_box["x"] + area_box["width"] + 1
            svg_text = twelve.locator("svg.async-dag-live-graph").inner_html()
            assert "&lt;script&gt;" in svg_text and "<script" not in svg_text

            # The dark theme: the panel's text turns light, nodes and badge keep contrast.
            run_command(page, "apputils:change-theme", {"theme": "JupyterLab Dark"})
            page.wait_for_function(
                "() => document.body.dataset.jpThemeName === 'JupyterLab Dark'", timeout=30_000
            )
            page.wait_for_timeout(500)
            twelve.scroll_into_view_if_needed()
            page.screenshot(path=ARTIFACTS / "jupyterlab-monitor-dark.png")
            colour = twelve.evaluate("el => getComputedStyle(el).color")
            assert colour.startswith("rgba(255, 255, 255"), colour
            idle_fill = twelve.locator(
                "svg.async-dag-live-graph g.node path, svg.async-dag-live-graph g.node polygon"
            ).first
            assert idle_fill.evaluate("el => getComputedStyle(el).fill") != "rgb(255, 255, 255)"
            badge = twelve.locator("[data-field='state']").first
            assert badge.evaluate("el => getComputedStyle(el).color") == "rgb(0, 0, 0)"
            run_command(page, "apputils:change-theme", {"theme": "JupyterLab Light"})
            page.wait_for_function(
                "() => document.body.dataset.jpThemeName === 'JupyterLab Light'", timeout=30_000
            )

            # Saved and re-opened: the monitors' outputs show how the runs ended.
            run_command(page, "docmanager:save")
            page.wait_for_timeout(1000)
            with urllib.request.urlopen(
                f"{lab_url}/api/contents/{NOTEBOOK.name}?content=1", timeout=10
            ) as response:
                saved = json.load(response)["content"]
            monitor_outputs = [
                output
                for cell in saved["cells"]
                for output in cell.get("outputs", [])
                if "PipelineMonitor" in "".join(output.get("data", {}).get("text/plain", ""))
            ]
            assert len(monitor_outputs) == 2
            for output in monitor_outputs:
                plain = "".join(output["data"]["text/plain"])
                assert " done: " in plain and "running" not in plain, plain
            page.reload()
            page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
            page.locator(".jp-OutputArea-output div.async-dag-monitor").nth(1).wait_for(
                timeout=30_000
            )
            page.wait_for_timeout(500)
            reopened = page.locator(".jp-OutputArea-output div.async-dag-monitor")
            reopened.first.scroll_into_view_if_needed()
            page.screenshot(path=ARTIFACTS / "jupyterlab-monitor-reopened.png")
            assert monitor_field(page, "state") == "done"
            assert monitor_field(page, "progress") == f"{INPUTS}/{INPUTS}"
            assert monitor_field(page, "emitted", node="store") == str(STORED)
            assert monitor_field(page, "state", index=1) == "done"
            assert page.evaluate(OVERFLOWING_JS) == []
        finally:
            if page is not None:
                page.screenshot(path=ARTIFACTS / "jupyterlab-monitor-last.png", full_page=True)
            browser.close()


def open_notebook(page: Page, url: str, name: str) -> None:
    """Open a notebook of the lab's root and wait until its kernel is idle."""
    page.goto(f"{url}/lab/tree/{name}")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=60_000)
    wait_for_kernel(url, name)
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=30_000)


def run_cell(page: Page, index: int) -> None:
    """Select the ``index``-th code cell and run it (it shows ``[*]`` at once)."""
    cell = page.locator(".jp-Notebook .jp-CodeCell").nth(index)
    cell.locator(".jp-InputPrompt").click()
    kernel_dialog = page.locator(".jp-Dialog .jp-mod-accept")
    run_command(page, "notebook:run-cell")
    if kernel_dialog.count():  # "Select Kernel": the session had no kernel yet
        kernel_dialog.first.click()
    expect(cell.locator(".jp-InputPrompt")).not_to_have_text(NOT_RUN, timeout=30_000)


@pytest.mark.timeout(300)
def test_stop_button_of_a_background_run(lab_url: str) -> None:
    """A run started with pipeline.start() and left last in its cell shows one live panel;
    its Stop button cancels it; the kernel then reports it done and cancelled, with no
    task of it left, and answers the next cell."""
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page: Page | None = None
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            open_notebook(page, lab_url, BACKGROUND.name)
            start_cell = page.locator(".jp-Notebook .jp-CodeCell").first
            run_cell(page, 0)
            expect(start_cell.locator(".jp-InputPrompt")).to_have_text(
                EXECUTED, timeout=30_000
            )  # the cell is over at once, while the run goes on

            # The live panel shows progress, with the Stop button.
            deadline = time.monotonic() + 60
            progress = ""
            while time.monotonic() < deadline:
                progress = monitor_field(page, "progress")
                if monitor_field(page, "state") == "running" and re.fullmatch(
                    r"([1-9]\d*)/1,000", progress
                ):
                    break
                page.wait_for_timeout(100)
            else:
                pytest.fail(f"the background run's panel showed no progress: {progress!r}")
            outputs = start_cell.locator(".jp-OutputArea-output")
            texts = [outputs.nth(i).inner_text()[:300] for i in range(outputs.count())]
            assert len(texts) == 1, f"one output, the run's panel: {texts}"
            panels = start_cell.locator(".jp-OutputArea-output div.async-dag-monitor")
            stop = start_cell.locator("button.async-dag-stop")
            expect(stop).to_be_visible(timeout=10_000)
            stop.click()
            deadline = time.monotonic() + 30
            while monitor_field(page, "state") != "cancelled":
                if time.monotonic() > deadline:
                    pytest.fail(f"not cancelled: {monitor_field(page, 'state')!r}")
                page.wait_for_timeout(100)
            expect(stop).to_be_hidden(timeout=10_000)
            panels.first.scroll_into_view_if_needed()
            page.screenshot(path=ARTIFACTS / "jupyterlab-background-stopped.png")
            done = int(monitor_field(page, "progress").split("/")[0].replace(",", ""))
            assert 0 < done < 1000, done

            # In the kernel: done, cancelled, nothing of the run left; the kernel answers.
            check_cell = page.locator(".jp-Notebook .jp-CodeCell").nth(1)
            run_cell(page, 1)
            expect(check_cell.locator(".jp-InputPrompt")).to_have_text(EXECUTED, timeout=30_000)
            output = check_cell.locator(".jp-OutputArea-output")
            expect(output).to_have_text(
                "done=True state=cancelled left=[] kept=True", timeout=10_000
            )
            errors = page.locator(".jp-OutputArea-output[data-mime-type*='error']")
            assert errors.count() == 0, errors.first.inner_text()
        finally:
            if page is not None:
                page.screenshot(path=ARTIFACTS / "jupyterlab-background-last.png", full_page=True)
            browser.close()

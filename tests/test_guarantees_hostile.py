"""Hostile strings wherever a user's string is shown: nothing is injected.

Task ids, the pipeline name, predicate names, data_ids and exception messages full of
markup, quotes, newlines and terminal escapes go through a real run and every view of
it: the widget monitor's panel (its live drawing included), the RunResult's HTML, DOT
and the SVG drawn from it, mermaid, the terminal monitor, the log formatter and the
command line's check, error and summary output. No HTML or SVG may carry a live tag;
no text for a terminal or a log may carry a raw control character or a forged line.
(The escaping functions themselves are tested in test_dot.py, test_mermaid.py,
test_widget_monitor.py and test_terminal_monitor.py.)
"""

from __future__ import annotations

import io
import itertools
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from async_dag import PipelineBuilder, log_with_context, setup_logging

SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'
ESC = "\x1b[2J\x1b]0;owned\x07"
QUOTES = 'q"]; evil [label="pwned'
IDS = [SCRIPT, IMG, f"esc{ESC}id", QUOTES, "two\nlines"]
LIVE = re.compile(r"<(script|img|iframe|svg\s+onload)", re.IGNORECASE)


def is_hostile(ctx, value) -> bool:
    return True


is_hostile.__name__ = is_hostile.__qualname__ = f"pred{IMG}{ESC}"


async def step(ctx, value):
    return value


async def explode(ctx, value):
    raise ValueError(f"bad {SCRIPT} {ESC} \n forged line")


def hostile_pipeline():
    b = PipelineBuilder(f"name{SCRIPT}{ESC}")
    for i, tid in enumerate(IDS):
        b.add_task(tid, explode if i == len(IDS) - 1 else step)
    for a, c in itertools.pairwise(IDS):
        b.add_edge(a, c, when=is_hostile)
    return b.build()


def no_live_markup(html: str) -> None:
    assert not LIVE.search(html), LIVE.search(html)
    assert 'label="pwned' not in html


async def test_the_widget_panel_and_its_drawing_escape_everything():
    """A run with hostile ids, predicate names, data_ids and error messages: the widget's
    panel (drawing, counts, last errors) holds no live tag and no control character."""
    pytest.importorskip("ipywidgets")
    from async_dag.notebook import PipelineMonitor

    monitor = PipelineMonitor()
    result = await hostile_pipeline().run_stream(
        [1, 2], monitor=monitor, on_error="collect", key=lambda x: f"{IMG}{x}{ESC}"
    )
    assert len(result.errors) == 2
    html = monitor.panel_html
    assert "&lt;script&gt;" in html or "&lt;img" in html  # the text is shown, escaped
    no_live_markup(html)
    assert "\x1b" not in html and "\x07" not in html
    bundle = monitor._repr_mimebundle_()
    assert "\x1b" not in bundle["text/plain"]


async def test_the_result_html_escapes_ids_and_messages():
    """RunResult's HTML summary shows hostile node ids and messages as text."""
    result = await hostile_pipeline().run_stream([1], on_error="collect", key=lambda x: IMG)
    html = result._repr_html_()
    assert "&lt;" in html
    no_live_markup(html)


def test_dot_svg_and_mermaid_escape_ids_and_predicate_names():
    """DOT, the SVG graphviz draws from it, and mermaid inject nothing."""
    pipeline = hostile_pipeline()
    dot = pipeline.to_dot()
    assert "\x1b" not in dot and "\n" not in "".join(re.findall(r'"(?:[^"\\]|\\.)*"', dot))
    assert dot.count("->") == len(IDS) - 1
    mermaid = pipeline.to_mermaid()
    assert "\x1b" not in mermaid and not LIVE.search(mermaid)
    assert mermaid.count("-->") + mermaid.count("-.->") + mermaid.count("==>") >= len(IDS) - 1
    import shutil

    if shutil.which("dot") is None:
        pytest.skip("graphviz's dot program is not installed")
    svg = subprocess.run(
        ["dot", "-Tsvg"], input=dot, capture_output=True, text=True, check=True, timeout=20
    ).stdout
    assert not re.search(r"<(script|img|iframe)", svg)
    assert svg.count('class="node"') == len(IDS)


async def test_the_terminal_monitor_prints_no_raw_control_character():
    """The terminal monitor's lines show escapes as text (\\x1b), never raw."""
    from async_dag.observe.terminal import TerminalMonitor

    out = io.StringIO()
    monitor = TerminalMonitor(stream=out)
    await hostile_pipeline().run_stream([1], monitor=monitor, on_error="collect")
    written = out.getvalue()
    assert "\x1b]0" not in written and "\x07" not in written
    assert "\x1b[2J" not in written


def test_logs_of_hostile_contexts_stay_one_line():
    """A data_id and node path with newlines and escapes cannot forge a log line."""
    from async_dag.core.context import input_context

    stream = io.StringIO()
    logger = setup_logging(logging.INFO, stream=stream)
    try:
        ctx = input_context("run\n2", f"id\nFORGED{ESC}", "two\nlines", {})
        log_with_context(logger, ctx, logging.INFO, "hello %s", "world")
    finally:
        setup_logging(logging.WARNING, stream=sys.stderr)
    text = stream.getvalue()
    assert text.count("\n") == 1, text
    assert "\x1b" not in text


JOB = f"""
from async_dag import PipelineBuilder

async def step(ctx, value):
    return value

async def explode(ctx, value):
    raise ValueError({f"bad {SCRIPT} {ESC} forged" + chr(10) + "line"!r})

IDS = {IDS!r}
b = PipelineBuilder({"n" + ESC!r})
for i, tid in enumerate(IDS):
    b.add_task(tid, explode if i == len(IDS) - 1 else step)
for a, c in zip(IDS, IDS[1:]):
    b.add_edge(a, c)
pipeline = b.build()
"""


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "hostile_job.py").write_text(JOB)
    return subprocess.run(
        [sys.executable, "-m", "async_dag", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        input="1\n2\n",
        timeout=60,
    )


def test_cli_check_shows_hostile_ids_without_control_characters(tmp_path: Path):
    """`async-dag check` lists hostile ids with their escapes as text, one line each."""
    out = cli(tmp_path, "check", "hostile_job.py:pipeline")
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout
    assert "esc\\x1b[2J\\x1b]0;owned\\x07id" in out.stdout
    assert "two\\nlines" in out.stdout


def test_cli_errors_and_summary_show_no_raw_control_characters(tmp_path: Path):
    """A run whose error messages carry terminal escapes and newlines prints them as
    text: the errors file is valid JSON Lines and stderr holds no raw escape."""
    errors = tmp_path / "errors.jsonl"
    out = cli(
        tmp_path,
        "run",
        "hostile_job.py:pipeline",
        "--on-error",
        "collect",
        "--errors",
        str(errors),
        "--no-monitor",
    )
    assert out.returncode == 1, out.stderr
    assert "\x1b" not in out.stderr and "\x07" not in out.stderr
    import json

    records = [json.loads(line) for line in errors.read_text().splitlines()]
    assert len(records) == 2 and all(SCRIPT in r["error"] for r in records)
    raised = cli(tmp_path, "run", "hostile_job.py:pipeline", "--no-monitor")
    assert raised.returncode == 1
    assert "\x1b" not in raised.stderr and "\x07" not in raised.stderr

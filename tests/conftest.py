"""Shared fixtures and suite-wide checks.

Every test loop runs in asyncio's debug mode (``asyncio_debug`` in pyproject.toml). A test
whose loop logs an error (a task exception never retrieved, a task destroyed while still
pending, a callback that raised) fails; callbacks that blocked the loop longer than its
``slow_callback_duration`` are listed at the end of the run. Tests marked ``slow`` or
``browser`` get SLOW_TIMEOUT seconds instead of the 30 s default, unless they carry a
``timeout`` marker of their own.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from _util import settle

SLOW_TIMEOUT = 120  # seconds, for tests marked slow or browser without their own timeout

# (test id, message) of every slow callback asyncio's debug mode reported
SLOW_CALLBACKS: list[tuple[str, str]] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give long tests their longer hang guard."""
    for item in items:
        if item.get_closest_marker("timeout") is not None:
            continue
        if item.get_closest_marker("slow") or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def loop_complaints(request: pytest.FixtureRequest):
    """Fail the test if asyncio logged an error during it; keep its slow-callback reports."""
    collect = _Collect()
    logger = logging.getLogger("asyncio")
    logger.addHandler(collect)
    try:
        yield
    finally:
        logger.removeHandler(collect)
    errors = [r for r in collect.records if r.levelno >= logging.ERROR]
    SLOW_CALLBACKS.extend(
        (request.node.nodeid, r.getMessage()) for r in collect.records if r.levelno < logging.ERROR
    )
    if errors:
        text = "\n".join(logging.Formatter().format(r) for r in errors)
        pytest.fail(f"the event loop reported {len(errors)} error(s):\n{text}", pytrace=False)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """List what debug mode saw blocking the loop (informational, never a failure)."""
    if not SLOW_CALLBACKS:
        return
    terminalreporter.section("asyncio debug mode: slow callbacks")
    for nodeid, message in SLOW_CALLBACKS[:30]:
        terminalreporter.write_line(f"{nodeid}: {message[:300]}")
    if len(SLOW_CALLBACKS) > 30:
        terminalreporter.write_line(f"... and {len(SLOW_CALLBACKS) - 30} more")


@pytest.fixture
async def no_leftover_tasks():
    """Fail the test if any async_dag task is still alive shortly after it ends."""
    yield
    await settle()
    leftover = [
        t for t in asyncio.all_tasks() if not t.done() and t.get_name().startswith("async_dag")
    ]
    assert leftover == []

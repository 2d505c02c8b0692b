"""Shared fixtures for the test suite."""

from __future__ import annotations

import asyncio

import pytest
from _util import settle


@pytest.fixture
async def no_leftover_tasks():
    """Fail the test if any async_dag task is still alive shortly after it ends."""
    yield
    await settle()
    leftover = [
        t for t in asyncio.all_tasks() if not t.done() and t.get_name().startswith("async_dag")
    ]
    assert leftover == []

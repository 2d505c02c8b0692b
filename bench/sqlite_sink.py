"""Workload ``sqlite``: a batch sink writing 200,000 rows into SQLite (issue 11).

The same rows, ``(id, name, price)``, go into a fresh WAL-mode file, one transaction
per write:

- hand-written: a loop over chunks of 500 rows, ``executemany`` and ``commit`` each;
- async_dag: a one-task DAG whose task has ``batch_size=500`` and does the same
  ``executemany`` and ``commit`` per call, as a plain ``def`` in two forms:
  ``inline=True``, writing on the loop's thread as the hand-written loop writes on its
  only thread (the target is judged on this one), and the default, a worker thread per
  call (a thread hop per batch, and the writer and the loop share the GIL);
- async_dag one row per call: the same task without ``batch_size``, one ``execute``
  and ``commit`` per row (run on a hundredth of the rows: it is that much slower).

Each run counts the rows in the table afterwards: that is its output count.
"""

from __future__ import annotations

import itertools
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from async_dag import PipelineBuilder, PipelineContext

from .harness import Impl, Row, Target, compare

BATCH = 500
TARGET = Target("time", 1.15)
HAND = "hand-written executemany, chunks of 500"


def rows(n: int) -> Iterator[tuple[int, str, float]]:
    """The rows to write, generated lazily."""
    return ((i, f"item-{i}", i * 0.25) for i in range(n))


class Table:
    """A fresh SQLite file with one table, for one run."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="async-dag-sqlite-")
        self.path = Path(self._dir.name) / "rows.db"
        self.db = sqlite3.connect(self.path, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
        self.db.commit()

    def write(self, batch: list[Any]) -> None:
        """One transaction: insert ``batch``."""
        self.db.executemany("INSERT INTO items VALUES (?, ?, ?)", batch)
        self.db.commit()

    def count(self) -> int:
        """Close the file and return how many rows it holds."""
        (n,) = self.db.execute("SELECT COUNT(*) FROM items").fetchone()
        self.db.close()
        self._dir.cleanup()
        return int(n)


def hand(n: int) -> int:
    """The loop a user would write without a pipeline."""
    table = Table()
    source = rows(n)
    while chunk := list(itertools.islice(source, BATCH)):
        table.write(chunk)
    return table.count()


def _pipeline(table: Table, batch: bool, inline: bool = False) -> Any:
    if batch:

        def store(ctx: PipelineContext, batch: list[Any]) -> None:
            table.write(batch)

        return (
            PipelineBuilder("sqlite")
            .add_task("store", store, batch_size=BATCH, inline=inline)
            .build()
        )

    def store_one(ctx: PipelineContext, row: Any) -> None:
        table.db.execute("INSERT INTO items VALUES (?, ?, ?)", row)
        table.db.commit()

    return PipelineBuilder("sqlite").add_task("store", store_one).build()


async def batched(n: int) -> int:
    """async_dag: a batch sink of 500, its handler in a worker thread."""
    table = Table()
    await _pipeline(table, True).run_stream(rows(n))
    return table.count()


async def batched_inline(n: int) -> int:
    """async_dag: a batch sink of 500, its handler on the loop's thread."""
    table = Table()
    await _pipeline(table, True, inline=True).run_stream(rows(n))
    return table.count()


async def one_by_one(n: int) -> int:
    """async_dag: one row, one transaction per call."""
    table = Table()
    await _pipeline(table, False).run_stream(rows(n))
    return table.count()


def workload_sqlite(scale: float, rounds: int) -> list[Row]:
    """200,000 rows into SQLite: batch sink vs one per call vs the hand-written loop."""
    items = max(1000, int(200_000 * scale))
    impls = [
        Impl(HAND, hand, note="reference; one transaction per chunk"),
        Impl(
            "async_dag batch_size=500 sink, def inline=True",
            batched_inline,
            target=TARGET,
            note="writes on the loop's thread, as the reference writes on its one thread",
        ),
        Impl(
            "async_dag batch_size=500 sink, def (thread)",
            batched,
            note="a worker thread per call: a hop per batch, GIL shared with the loop",
        ),
        Impl(
            "async_dag one row per call",
            one_by_one,
            items=max(100, items // 100),
            note="a transaction per row",
        ),
    ]
    return compare("sqlite sink", impls, items=items, rounds=rounds, reference=HAND)

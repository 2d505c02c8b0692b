"""A checkpointed run SIGKILLed at random points and resumed: no input lost, none twice.

The child (``python tests/test_guarantees_checkpoint.py OUT CKPT N``) runs a pipeline
that processes N inputs (some failing once and retried) and writes them, in batches of
25, into an SQLite table keyed by input id, counting each write. It is killed with
SIGKILL at random moments, restarted with the same checkpoint, and finally left to end.
The table must then hold every input exactly once; the write counts show how much work
a kill made the rerun redo (at least once, and at most what the last second finished).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ITEMS = 6000
REDONE: list[int] = []  # rows written more than once, per scenario (GUARANTEES.md)


def child(out: str, ckpt: str, items: int) -> None:
    from async_dag import Checkpoint, PipelineBuilder

    with contextlib.closing(sqlite3.connect(out)) as db, db:
        db.execute("CREATE TABLE IF NOT EXISTS done (id INTEGER PRIMARY KEY, writes INTEGER)")

    async def work(ctx, x):
        await asyncio.sleep(0.001)
        if x % 50 == 7 and ctx.attempt == 0:
            raise ConnectionError("transient")
        return x

    def store(ctx, rows):
        with contextlib.closing(sqlite3.connect(out, timeout=30)) as db, db:
            db.executemany(
                "INSERT INTO done (id, writes) VALUES (?, 1) "
                "ON CONFLICT (id) DO UPDATE SET writes = writes + 1",
                [(r,) for r in rows],
            )

    pipeline = (
        PipelineBuilder("resumable")
        .add_task("work", work, concurrency=4, retries=2)
        .add_task("store", store, batch_size=25)
        .add_edge("work", "store")
        .build()
    )
    result = asyncio.run(
        pipeline.run_stream(range(items), key=lambda x: x, checkpoint=Checkpoint(ckpt))
    )
    print(f"skipped={result.stats.skipped}")


def start(out: Path, ckpt: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, str(out), str(ckpt), str(ITEMS)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def rows(out: Path) -> list[tuple[int, int]]:
    if not out.exists():
        return []
    with contextlib.closing(sqlite3.connect(out)) as db, db:
        try:
            return db.execute("SELECT id, writes FROM done ORDER BY id").fetchall()
        except sqlite3.OperationalError:  # killed before the table existed
            return []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_killed_checkpointed_run_resumes_without_loss(tmp_path: Path, seed: int):
    """SIGKILL at two random moments, then a rerun to the end: every input is in the
    output table exactly once and the checkpoint lists every input."""
    rng = random.Random(seed)
    out, ckpt = tmp_path / "out.db", tmp_path / "ckpt.db"
    kills = 0
    for _ in range(2):
        proc = start(out, ckpt)
        time.sleep(rng.uniform(0.4, 1.8))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=30)
    final = start(out, ckpt)
    stdout, stderr = final.communicate(timeout=90)
    assert final.returncode == 0, stderr
    got = rows(out)
    assert [i for i, _ in got] == list(range(ITEMS))
    REDONE.append(sum(1 for _, writes in got if writes > 1))
    from async_dag import Checkpoint

    assert len(Checkpoint(ckpt)) == ITEMS
    print(f"\nseed {seed}: {kills} kills, {REDONE[-1]} rows redone, final run {stdout.strip()}")


if __name__ == "__main__":
    child(sys.argv[1], sys.argv[2], int(sys.argv[3]))

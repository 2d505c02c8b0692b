"""The checkpoint store: real SQLite files, real threads, real (spawned) processes."""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import pickle
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from async_dag.core.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointSession,
    as_checkpoint,
    json_array,
)

SPAWN = multiprocessing.get_context("spawn")


def rows(path: Path) -> set[tuple[str, str]]:
    """Every (name, data_id) in the file, read with a connection of its own."""
    conn = sqlite3.connect(path)
    try:
        return set(conn.execute("SELECT name, data_id FROM async_dag_checkpoint"))
    finally:
        conn.close()


async def opened(path: Path, name: str = "job", **options: float) -> CheckpointSession:
    """An open session on ``path`` under ``name``."""
    session = CheckpointSession(path, name, **options)
    await session.open()
    return session


async def wait_for(
    condition: Callable[[], object], seconds: float = 10.0, every: float = 0.02
) -> float:
    """Poll ``condition`` (run in a thread) every ``every`` seconds until it holds; the
    seconds it took."""
    start = time.monotonic()
    while not await asyncio.to_thread(condition):
        assert time.monotonic() - start < seconds, "condition not met in time"
        await asyncio.sleep(every)
    return time.monotonic() - start


# --- processes (module level, so a spawned child can import them) ----------------------


def write_many(path: str, name: str, ids: list[str]) -> None:
    """In a child: record ids with a very eager flusher, then close."""

    async def main() -> None:
        session = await opened(Path(path), name, flush_every=0.002)
        flusher = asyncio.create_task(session.run_flusher())
        for i, data_id in enumerate(ids):
            session.record(data_id)
            if i % 50 == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
        await session.close()

    asyncio.run(main())


def write_via(checkpoint: Checkpoint, ids: list[str]) -> None:
    """In a child: record ids through a session of a Checkpoint received pickled."""

    async def main() -> None:
        session = checkpoint.session("pipeline")
        await session.open()
        for data_id in ids:
            session.record(data_id)
        await session.close()

    asyncio.run(main())


def record_then_hang(path: str, ready: threading.Event) -> None:
    """In a child: record a batch, see the flusher commit it, record more, then hang."""

    async def main() -> None:
        session = await opened(Path(path), "job")
        flusher = asyncio.create_task(session.run_flusher())
        for i in range(500):
            session.record(f"early-{i}")
        while ("job", "early-499") not in await asyncio.to_thread(rows, Path(path)):
            await asyncio.sleep(0.05)
        for i in range(500):
            session.record(f"late-{i}")
        ready.set()
        await asyncio.sleep(60)  # killed before this ends
        flusher.cancel()

    asyncio.run(main())


# --- the Checkpoint object -------------------------------------------------------------


def test_a_checkpoint_keeps_its_path_and_name(tmp_path: Path) -> None:
    """A str or PathLike path becomes a Path; the name is kept as given."""
    assert Checkpoint(str(tmp_path / "a.db")).path == tmp_path / "a.db"
    done = Checkpoint(tmp_path / "a.db", name="refresh")
    assert done.path == tmp_path / "a.db" and done.name == "refresh"
    assert Checkpoint("~/x.db").path == Path.home() / "x.db"


@pytest.mark.parametrize("path", [3, None, b"bytes.db", ["a.db"]])
def test_a_path_of_the_wrong_type_is_a_type_error(path: object) -> None:
    """Only str and os.PathLike paths are accepted."""
    with pytest.raises(TypeError, match="checkpoint path must be a str"):
        Checkpoint(path)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["", ":memory:"])
def test_a_path_naming_no_file_is_a_value_error(path: str) -> None:
    """An empty path, or SQLite's in-memory name, is refused: it would keep nothing."""
    with pytest.raises(ValueError, match="checkpoint path must name a file"):
        Checkpoint(path)


def test_a_bad_name_is_refused(tmp_path: Path) -> None:
    """An empty name is a ValueError, a name that is not a str a TypeError."""
    with pytest.raises(ValueError, match="name must not be empty"):
        Checkpoint(tmp_path / "a.db", name="")
    with pytest.raises(TypeError, match="name must be a str or None"):
        Checkpoint(tmp_path / "a.db", name=3)  # type: ignore[arg-type]


def test_as_checkpoint_accepts_paths_checkpoints_and_none(tmp_path: Path) -> None:
    """The run option takes a path, a Checkpoint (kept as is) or None."""
    assert as_checkpoint(None) is None
    done = Checkpoint(tmp_path / "a.db", name="x")
    assert as_checkpoint(done) is done
    assert as_checkpoint(str(tmp_path / "a.db")) == Checkpoint(tmp_path / "a.db")
    assert as_checkpoint(tmp_path / "a.db") == Checkpoint(tmp_path / "a.db")


@pytest.mark.parametrize("spec", [3, True, b"a.db", object()])
def test_as_checkpoint_refuses_anything_else_naming_the_option(spec: object) -> None:
    """Anything else is a TypeError naming checkpoint."""
    with pytest.raises(TypeError, match=r"^checkpoint must be a path"):
        as_checkpoint(spec)


def test_repr_shows_path_and_name(tmp_path: Path) -> None:
    """The repr names the file and, when given, the name."""
    assert repr(Checkpoint("runs.db")) == "<Checkpoint 'runs.db'>"
    assert repr(Checkpoint("runs.db", name="r")) == "<Checkpoint 'runs.db' name='r'>"


def test_a_checkpoint_pickles_as_path_and_name(tmp_path: Path) -> None:
    """A pickled copy is equal: same path, same name."""
    done = Checkpoint(tmp_path / "a.db", name="refresh")
    copy = pickle.loads(pickle.dumps(done))
    assert copy == done and copy is not done and hash(copy) == hash(done)
    assert copy != Checkpoint(tmp_path / "a.db")


def test_session_uses_the_checkpoint_name_else_the_default(tmp_path: Path) -> None:
    """A run's entries go under the Checkpoint's name, else under the pipeline's."""
    assert Checkpoint(tmp_path / "a.db").session("pipeline").name == "pipeline"
    assert Checkpoint(tmp_path / "a.db", name="mine").session("pipeline").name == "mine"


def test_len_and_clear_on_a_missing_file_create_nothing(tmp_path: Path) -> None:
    """A file that does not exist holds no entries; asking does not create it."""
    done = Checkpoint(tmp_path / "missing.db", name="x")
    assert len(done) == 0 and "a" not in done
    done.clear()
    Checkpoint(tmp_path / "missing.db").clear()
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.parametrize(
    "batch",
    [
        ["0", "1", "22"],
        ["only"],
        [""],
        ["", ""],
        ['say "hi"'],
        ["back\\slash", "x"],
        ["tab\tin", "new\nline", "bell\x07", "nul\x00"],
        ["é✓😀", "\u2028", "\x7f"],
        ['","', '"', "[", "]"],
    ],
)
def test_json_array_gives_exactly_the_batch(batch: list[str]) -> None:
    """Whichever way it is built, the JSON array reads back as the batch itself."""
    assert json.loads(json_array(batch)) == batch


# --- sessions -----------------------------------------------------------------------


async def test_records_are_visible_to_a_new_session_after_close(tmp_path: Path) -> None:
    """What one session records, the next session on the file finds done."""
    path = tmp_path / "c.db"
    first = await opened(path)
    assert not first.is_done("a")
    first.record("a")
    first.record("b")
    assert first.is_done("a") and first.recorded == 2
    await first.close()
    second = await opened(path)
    assert second.is_done("a") and second.is_done("b") and not second.is_done("c")
    assert second.loaded == 2 and second.recorded == 0
    await second.close()
    assert rows(path) == {("job", "a"), ("job", "b")}


@pytest.mark.parametrize("json_functions", [True, False])
async def test_a_session_loads_every_page_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, json_functions: bool
) -> None:
    """Recorded data_ids load exactly, page after page (the empty one, NULs, quotes and
    non-ASCII included), with SQLite's JSON functions and, without them, row by row."""
    import async_dag.core.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "PAGE", 3)
    if not json_functions:
        monkeypatch.setattr(checkpoint, "HAS_JSON", "SELECT no_such_function()")
    path = tmp_path / "c.db"
    ids = ["", "a\x00b", '"q"', "back\\slash", "é✓😀", *map(str, range(10))]
    first = await opened(path)
    for data_id in ids:
        first.record(data_id)
    await first.close()
    other = await opened(path, "other")
    other.record("7")
    await other.close()
    second = await opened(path)
    assert second.done == set(ids) and second.loaded == len(ids)
    assert second._json is json_functions
    await second.close()


async def test_the_file_is_created_when_missing(tmp_path: Path) -> None:
    """Opening a session on a new path creates the database."""
    path = tmp_path / "new.db"
    session = await opened(path)
    await session.close()
    assert path.is_file() and rows(path) == set()


async def test_recording_twice_counts_once(tmp_path: Path) -> None:
    """A data_id recorded again, or loaded as done, is not queued again."""
    path = tmp_path / "c.db"
    first = await opened(path)
    first.record("a")
    await first.close()
    second = await opened(path)
    second.record("a")
    second.record("b")
    second.record("b")
    assert second.recorded == 1
    await second.close()
    assert len(Checkpoint(path)) == 2


async def test_entries_are_kept_per_name(tmp_path: Path) -> None:
    """Two names in one file do not see each other's entries."""
    path = tmp_path / "c.db"
    for name, ids in (("a", ["1", "2"]), ("b", ["2", "3", "4"])):
        session = await opened(path, name)
        for data_id in ids:
            session.record(data_id)
        await session.close()
    a = await opened(path, "a")
    assert a.is_done("1") and not a.is_done("3")
    await a.close()
    assert len(Checkpoint(path, name="a")) == 2
    assert len(Checkpoint(path, name="b")) == 3
    assert len(Checkpoint(path, name="c")) == 0
    assert len(Checkpoint(path)) == 5
    assert "1" in Checkpoint(path, name="a") and "1" not in Checkpoint(path, name="b")
    assert "4" in Checkpoint(path) and "5" not in Checkpoint(path)


async def test_clear_with_a_name_forgets_only_that_name(tmp_path: Path) -> None:
    """Checkpoint(path, name).clear() empties that name; the others stay."""
    path = tmp_path / "c.db"
    for name in ("a", "b"):
        session = await opened(path, name)
        session.record("x")
        await session.close()
    Checkpoint(path, name="a").clear()
    assert len(Checkpoint(path, name="a")) == 0 and len(Checkpoint(path, name="b")) == 1
    rerun = await opened(path, "a")
    assert not rerun.is_done("x")
    await rerun.close()


async def test_clear_without_a_name_forgets_everything(tmp_path: Path) -> None:
    """Checkpoint(path).clear() empties the whole file."""
    path = tmp_path / "c.db"
    for name in ("a", "b"):
        session = await opened(path, name)
        session.record("x")
        await session.close()
    Checkpoint(path).clear()
    assert len(Checkpoint(path)) == 0 and rows(path) == set()


async def test_the_file_is_in_wal_mode(tmp_path: Path) -> None:
    """The session switches the file to WAL, so readers and a writer do not block."""
    path = tmp_path / "c.db"
    session = await opened(path)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    await session.close()


async def test_a_new_file_has_large_pages_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    """A file the session creates has 16 KiB pages (cheaper inserts); a file made with
    SQLite's default 4 KiB pages, records in it, is used as it is and loses nothing."""
    new, old = tmp_path / "new.db", tmp_path / "old.db"
    conn = sqlite3.connect(old)
    conn.execute(
        "CREATE TABLE async_dag_checkpoint (name TEXT NOT NULL, data_id TEXT NOT NULL, "
        "done_at REAL NOT NULL, PRIMARY KEY (name, data_id)) WITHOUT ROWID"
    )
    conn.execute("INSERT INTO async_dag_checkpoint VALUES ('job', 'a', 0)")
    conn.commit()
    conn.close()
    for path in (new, old):
        session = await opened(path)
        session.record("b")
        await session.close()
    sizes = {}
    for path in (new, old):
        conn = sqlite3.connect(path)
        try:
            sizes[path.name] = conn.execute("PRAGMA page_size").fetchone()[0]
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()
    assert sizes == {"new.db": 16384, "old.db": 4096}
    assert rows(new) == {("job", "b")}
    assert rows(old) == {("job", "a"), ("job", "b")}


async def test_the_sessions_connection_caches_16_mib_of_pages(tmp_path: Path) -> None:
    """Commits of keys in no order touch the whole table: the session caches it."""
    session = await opened(tmp_path / "c.db")
    assert session._conn is not None
    conn = session._conn
    try:
        size = await session._submit(lambda: conn.execute("PRAGMA cache_size").fetchone()[0])
        assert size == -16384
    finally:
        await session.close()


async def test_the_flusher_commits_within_a_second(tmp_path: Path) -> None:
    """With the flusher running, a record reaches the file in about a second at most."""
    path = tmp_path / "c.db"
    session = await opened(path)
    flusher = asyncio.create_task(session.run_flusher())
    try:
        session.record("a")
        took = await wait_for(lambda: ("job", "a") in rows(path))
        assert took < 3.0  # 0.5 s by design; generous for a busy machine
        session.record("b")
        await wait_for(lambda: ("job", "b") in rows(path))
    finally:
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
        await session.close()


async def test_close_commits_what_is_still_queued(tmp_path: Path) -> None:
    """Records made after the flusher stopped are committed by close()."""
    path = tmp_path / "c.db"
    session = await opened(path, flush_every=3600)
    flusher = asyncio.create_task(session.run_flusher())
    session.record("first")
    await wait_for(lambda: rows(path) == {("job", "first")})
    flusher.cancel()
    await asyncio.gather(flusher, return_exceptions=True)
    assert session._last_job is not None
    await asyncio.wait([session._last_job])  # the flusher's thread loop has ended
    for i in range(1000):
        session.record(str(i))
    await asyncio.sleep(0.05)
    assert rows(path) == {("job", "first")}
    await session.close()
    assert len(rows(path)) == 1001


async def test_close_completes_under_repeated_cancellation(tmp_path: Path) -> None:
    """Cancelling the task in close() again and again still commits everything."""
    path = tmp_path / "c.db"
    session = await opened(path, flush_every=3600)
    for i in range(5000):
        session.record(f"id-{i}")
    original = session._close_sync
    in_thread = threading.Event()

    def slow_close(batch: list[tuple[str, str, float]]) -> None:
        in_thread.set()
        time.sleep(0.3)
        original(batch)

    session._close_sync = slow_close  # type: ignore[method-assign]
    closer = asyncio.create_task(session.close())
    await wait_for(in_thread.is_set)
    for _ in range(5):
        closer.cancel()
        await asyncio.sleep(0.02)
    with pytest.raises(asyncio.CancelledError):
        await closer
    assert len(rows(path)) == 5000
    assert session._conn is None
    await session.close()  # closing again is a no-op


async def test_close_cancelled_before_its_thread_starts_still_commits(tmp_path: Path) -> None:
    """A close() cancelled at its very first step still commits and closes."""
    path = tmp_path / "c.db"
    session = await opened(path)
    session.record("a")
    closer = asyncio.create_task(session.close())
    await asyncio.sleep(0)
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closer
    assert rows(path) == {("job", "a")}


async def test_close_waits_for_a_commit_in_flight(tmp_path: Path) -> None:
    """close() called while the flusher commits waits for it and loses nothing."""
    path = tmp_path / "c.db"
    session = await opened(path, flush_every=0.01)
    original = session._commit_sync

    def slow_commit(batch: list[str], *ids: str | None) -> None:
        time.sleep(0.2)
        original(batch, *ids)

    session._commit_sync = slow_commit  # type: ignore[method-assign]
    flusher = asyncio.create_task(session.run_flusher())
    session.record("first")
    await asyncio.sleep(0.05)  # the flush of "first" is in its thread now
    session.record("second")
    flusher.cancel()
    await asyncio.gather(flusher, return_exceptions=True)
    await session.close()
    assert rows(path) == {("job", "first"), ("job", "second")}


async def test_close_after_a_cancelled_open_closes_the_file(tmp_path: Path) -> None:
    """An open() cancelled while its thread connects is cleaned up by close()."""
    session = CheckpointSession(tmp_path / "c.db", "job")
    original = session._open_sync
    started = threading.Event()

    def slow_open() -> list[str]:
        started.set()
        time.sleep(0.2)
        return original()

    session._open_sync = slow_open  # type: ignore[method-assign]
    opener = asyncio.create_task(session.open())
    await wait_for(started.is_set)
    opener.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opener
    await session.close()
    assert session._conn is None


async def test_a_turn_handed_to_the_thread_takes_what_is_queued(tmp_path: Path) -> None:
    """The flusher's turns keep the file up to date (the thread takes no batch on its own
    before ``flush_every``), and a turn that the thread took has taken the queue."""
    path = tmp_path / "c.db"
    session = await opened(path, flush_every=3600)
    flusher = asyncio.create_task(session.run_flusher())
    try:
        for i in range(1000):
            session.record(str(i))
        await wait_for(lambda: len(rows(path)) == 1000)
        session.record("more")
        for _ in range(1000):
            if session._hand_over():
                break
            await asyncio.sleep(0.01)  # the thread was still busy in SQLite: again
        else:
            pytest.fail("the thread took no turn in 10 s")
        assert session.pending == []
        await wait_for(lambda: ("job", "more") in rows(path))
    finally:
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
        await session.close()
    assert len(rows(path)) == 1001


CPU_CLOCKS = hasattr(time, "pthread_getcpuclockid")


@pytest.mark.skipif(not CPU_CLOCKS, reason="no per-thread CPU clock to watch")
async def test_the_loop_tells_a_thread_in_sqlite_from_one_that_waits(tmp_path: Path) -> None:
    """The thread's CPU clock: stalled while it waits (for a turn, or the GIL), running
    while it works without the GIL (here hashing, as SQLite would insert)."""
    import hashlib

    path = tmp_path / "c.db"
    session = await opened(path, flush_every=3600)
    blob = bytes(1 << 20)
    working, enough = threading.Event(), threading.Event()

    def busy(batch: list[str], *ids: str | None) -> None:
        working.set()
        end = time.monotonic() + 30
        while not enough.is_set() and time.monotonic() < end:
            hashlib.sha256(blob)  # lets the GIL go for each MiB

    session._commit_sync = busy  # type: ignore[method-assign]
    flusher = asyncio.create_task(session.run_flusher())
    try:
        await wait_for(lambda: session._cpu is not None)
        session._stalled()
        await asyncio.sleep(0.02)
        assert session._stalled()  # waiting for its turn on its lock
        session.record("a")
        await wait_for(working.is_set)
        cpu, start = time.clock_gettime(session._cpu), time.perf_counter()
        await asyncio.sleep(0.1)  # (the flusher reads the clock too: read it here)
        ran = time.clock_gettime(session._cpu) - cpu
        assert ran > (time.perf_counter() - start) / 10  # well above a waiting thread's
    finally:
        enough.set()
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
        await session.close()


@pytest.mark.skipif(not CPU_CLOCKS, reason="no per-thread CPU clock to watch")
async def test_a_busy_loop_leaves_the_thread_waiting_for_no_turn(tmp_path: Path) -> None:
    """A loop that never waits, with nothing new to hand the thread: its commit ends
    and the thread is back waiting for a turn well before ``flush_every``."""
    path = tmp_path / "c.db"
    session = await opened(path, flush_every=3600)
    flusher = asyncio.create_task(session.run_flusher())
    try:
        for i in range(20_000):
            session.record(str(i))
        await wait_for(lambda: session._committing, every=0.001)  # a commit has started
        deadline = time.monotonic() + 10
        while session._committing:  # busy: Python work between turns, no waiting
            assert time.monotonic() < deadline, "the thread was left waiting for the GIL"
            sum(range(2000))
            await asyncio.sleep(0)
        assert len(rows(path)) == 20_000
    finally:
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
        await session.close()


async def test_a_commit_waiting_on_the_disk_does_not_hold_up_the_loop(tmp_path: Path) -> None:
    """A commit that uses no CPU for a long time (a slow sync to the disk, here a sleep)
    looks like a thread waiting for the GIL: the loop's tries to let it go on block it
    for a millisecond each, fewer and fewer, never for long in all."""
    path = tmp_path / "c.db"
    session = await opened(path, flush_every=0.5)
    original = session._commit_sync

    def slow(batch: list[str], *ids: str | None) -> None:
        time.sleep(0.5)
        original(batch, *ids)

    session._commit_sync = slow  # type: ignore[method-assign]
    flusher = asyncio.create_task(session.run_flusher())
    try:
        session.record("a")
        await wait_for(lambda: session._committing, every=0.001)  # a commit has started
        deadline = time.monotonic() + 10
        blocked, start = 0.0, time.perf_counter()
        while session._committing:  # ticks of 1 ms: the time beyond them was blocked
            tick = time.perf_counter()
            await asyncio.sleep(0.001)
            blocked += max(time.perf_counter() - tick - 0.0015, 0.0)
            assert time.monotonic() < deadline, "the commit never ended"
        assert time.perf_counter() - start > 0.3
        # blocking through the commit would make this ~0.5 s (a try per tick, or one
        # long wait); the bound leaves room for a loaded machine's late ticks
        assert blocked < 0.15
    finally:
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
        await session.close()
    assert rows(path) == {("job", "a")}


async def test_the_thread_commits_while_the_loop_is_held_up(tmp_path: Path) -> None:
    """A long synchronous call holding the event loop hands the thread no turn: the
    thread commits on its own after ``flush_every`` all the same."""
    path = tmp_path / "c.db"
    session = await opened(path, flush_every=0.05)
    original = session._commit_sync
    committed = threading.Event()

    def commit(batch: list[str], *ids: str | None) -> None:
        original(batch, *ids)
        committed.set()

    session._commit_sync = commit  # type: ignore[method-assign]
    flusher = asyncio.create_task(session.run_flusher())
    await asyncio.sleep(0)  # the flusher has started its thread
    session.record("a")
    try:
        assert committed.wait(10)  # blocks the loop: its flusher cannot run meanwhile
        assert rows(path) == {("job", "a")}
    finally:
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
        await session.close()


async def test_the_flusher_stops_by_itself_once_closed(tmp_path: Path) -> None:
    """A flusher still running when the session closes ends after its next tick."""
    session = await opened(tmp_path / "c.db", flush_every=0.01)
    flusher = asyncio.create_task(session.run_flusher())
    session.record("a")
    await session.close()
    await asyncio.wait_for(flusher, 5)
    assert rows(tmp_path / "c.db") == {("job", "a")}


async def test_a_failed_commit_keeps_its_records_queued(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A commit that fails is logged and retried after ``flush_every``; nothing is lost."""
    path = tmp_path / "c.db"
    session = await opened(path, flush_every=0.05)
    original = session._commit_sync
    calls: list[list[str]] = []
    failed = threading.Event()

    def flaky(batch: list[str], *ids: str | None) -> None:
        calls.append(list(batch))
        if len(calls) == 1:
            failed.set()
            raise CheckpointError("disk on fire")
        original(batch, *ids)

    session._commit_sync = flaky  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="async_dag"):
        flusher = asyncio.create_task(session.run_flusher())
        session.record("a")
        await wait_for(failed.is_set)
        session.record("b")
        assert session.recorded == 2
        await wait_for(lambda: rows(path) == {("job", "a"), ("job", "b")})
    flusher.cancel()
    await asyncio.gather(flusher, return_exceptions=True)
    assert "disk on fire" in caplog.text
    assert calls[:2] == [["a"], ["a"]] or calls[:2] == [["a"], ["a", "b"]]
    assert session.pending == []
    await session.close()
    assert session.recorded == 2


async def test_record_refuses_a_session_that_is_not_open(tmp_path: Path) -> None:
    """Recording before open() or after close() is a RuntimeError, not a silent loss."""
    session = CheckpointSession(tmp_path / "c.db", "job")
    with pytest.raises(RuntimeError, match="not open"):
        session.record("a")
    await session.open()
    with pytest.raises(RuntimeError, match="already opened"):
        await session.open()
    await session.close()
    with pytest.raises(RuntimeError, match="not open"):
        session.record("a")


async def test_closing_ends_the_sessions_thread(tmp_path: Path) -> None:
    """After close() no checkpoint thread stays behind."""
    session = await opened(tmp_path / "c.db")
    session.record("a")
    await session.close()

    def gone() -> bool:
        return not any(t.name.startswith("async_dag-checkpoint") for t in threading.enumerate())

    await wait_for(gone)


async def test_a_session_repr_shows_its_state(tmp_path: Path) -> None:
    """The repr gives file, name, state and counts."""
    session = CheckpointSession(tmp_path / "c.db", "job")
    assert "new" in repr(session)
    await session.open()
    session.record("a")
    assert "open, 0 loaded, 1 recorded, 1 queued" in repr(session)
    await session.close()
    assert "closed" in repr(session)


# --- bad files --------------------------------------------------------------------------


async def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    """A path in a directory that does not exist names the path and the directory."""
    path = tmp_path / "nope" / "c.db"
    session = CheckpointSession(path, "job")
    with pytest.raises(CheckpointError, match="does not exist") as info:
        await session.open()
    assert str(path) in str(info.value) and isinstance(info.value, OSError)
    with pytest.raises(RuntimeError, match="not open"):
        session.record("a")
    await session.close()


async def test_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    """A path that is a directory is refused, naming it."""
    session = CheckpointSession(tmp_path, "job")
    with pytest.raises(CheckpointError, match="is a directory") as info:
        await session.open()
    assert str(tmp_path) in str(info.value)
    with pytest.raises(CheckpointError, match="is a directory"):
        len(Checkpoint(tmp_path))


async def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    """A text file in the way is refused with an error naming it."""
    path = tmp_path / "notes.txt"
    path.write_text("not a database, just some text that is long enough " * 50)
    with pytest.raises(CheckpointError, match="not usable") as info:
        await opened(path)
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        Checkpoint(path).clear()


# --- processes --------------------------------------------------------------------------


@pytest.mark.slow
def test_two_processes_write_one_file_at_once(tmp_path: Path) -> None:
    """Two spawned processes committing into one file concurrently both succeed."""
    path = tmp_path / "shared.db"
    Checkpoint(path).clear()  # the file does not exist yet: nothing happens
    ids_a = [f"a-{i}" for i in range(3000)] + [f"both-{i}" for i in range(500)]
    ids_b = [f"b-{i}" for i in range(3000)] + [f"both-{i}" for i in range(500)]
    procs = [
        SPAWN.Process(target=write_many, args=(str(path), "job", ids_a)),
        SPAWN.Process(target=write_many, args=(str(path), "job", ids_b)),
        SPAWN.Process(target=write_many, args=(str(path), "other", ids_b[:1000])),
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0]
    assert len(Checkpoint(path, name="job")) == 6500
    assert len(Checkpoint(path, name="other")) == 1000


@pytest.mark.slow
def test_a_killed_process_keeps_what_the_flusher_committed(tmp_path: Path) -> None:
    """SIGKILL after a flush loses nothing that was committed; the file still opens."""
    path = tmp_path / "killed.db"
    ready = SPAWN.Event()
    proc = SPAWN.Process(target=record_then_hang, args=(str(path), ready))
    proc.start()
    try:
        assert ready.wait(60), "the child did not get its records committed"
        proc.kill()
        proc.join(30)
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(30)
    assert proc.exitcode == -9

    async def reopen() -> CheckpointSession:
        session = await opened(path)
        await session.close()
        return session

    session = asyncio.run(reopen())
    assert all(session.is_done(f"early-{i}") for i in range(500))
    assert session.loaded >= 500  # the late ones may or may not have made it
    assert len(Checkpoint(path)) == session.loaded


@pytest.mark.slow
def test_a_checkpoint_travels_to_a_worker_process(tmp_path: Path) -> None:
    """A Checkpoint pickled to a spawned process writes into the same file, same name."""
    path = tmp_path / "c.db"
    done = Checkpoint(path, name="sent")
    proc = SPAWN.Process(target=write_via, args=(done, ["x", "y"]))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert rows(path) == {("sent", "x"), ("sent", "y")}
    assert len(done) == 2

"""The record of finished inputs that lets a rerun skip them: :class:`Checkpoint`.

One SQLite table holds ``(name, data_id, done_at)`` rows. A run opens a
:class:`CheckpointSession` on it: the recorded data_ids of its name are loaded into a set
(``is_done`` is a set lookup), new records are queued (``record``) and committed in
batches, all the SQLite work in a thread of the session's own, so the event loop never
waits on the disk. While the run lasts, that thread commits what is queued every few
milliseconds while records keep coming (so what is left for ``close`` to commit at the end
is small), backing off to ``flush_every`` when they stop. WAL mode and a busy timeout let
several processes share one file.

The thread needs the GIL for a moment before and after each commit, and a busy event loop
all but starves it of it: the loop lets the GIL go at every turn (its ``select``) but takes
it back before the waiting thread wakes, and a waiter forces a switch only after a switch
interval (5 ms) in which it was not woken, which the loop's many turns never allow. Left to
itself, the thread committed little during a run (the records then waited for ``close``,
and the loop with them). So the loop hands the thread its turns (``run_flusher``): it
blocks for the moment the thread needs (ending the commit under way, taking the next
batch), then the thread works in SQLite without the GIL until its next turn.

A thread waiting for the GIL costs the loop too: every turn of the loop, letting the GIL
go, wakes it for nothing (a futex call, about 13,000 in a 200,000-input chain when the
thread waited from the end of each commit to its next turn). So where a thread's CPU
time can be read (``time.pthread_getcpuclockid``: Linux, most Unixes), the loop looks
every millisecond while a commit is under way whether the thread's CPU clock has stopped;
once it has, the thread is out of SQLite, and the loop blocks for the moment it takes the
thread to go back to waiting for its turn on a lock (``_wait_parked``), or hands it the
next batch if one is due. A clock stopped by a slow sync to the disk looks the same: a
try that finds the thread still busy makes the next one wait twice as long.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from pathlib import Path
from typing import Any, TypeVar

from .errors import CheckpointError as CheckpointError

logger = logging.getLogger("async_dag")

T = TypeVar("T")

BUILD_TABLE = """
    CREATE TABLE IF NOT EXISTS async_dag_checkpoint (
        name TEXT NOT NULL,
        data_id TEXT NOT NULL,
        done_at REAL NOT NULL,
        PRIMARY KEY (name, data_id)
    ) WITHOUT ROWID
"""
LOAD_IDS = "SELECT data_id FROM async_dag_checkpoint WHERE name = ?"
# the same a page at a time, each page one JSON array made by SQLite in one step (a row at
# a time, the thread takes the GIL back for every row); pages keep each string well
# below SQLite's length limit. The first page starts at '' (a data_id may be empty).
LOAD_PAGE = (
    "SELECT json_group_array(data_id), max(data_id), count(*) FROM ("
    "SELECT data_id FROM async_dag_checkpoint WHERE name = ? AND data_id {} ? "
    "ORDER BY data_id LIMIT ?)"
)
FIRST_PAGE, NEXT_PAGE = LOAD_PAGE.format(">="), LOAD_PAGE.format(">")
PAGE = 100_000  # data_ids per page
STORE_ID = "INSERT OR IGNORE INTO async_dag_checkpoint (name, data_id, done_at) VALUES (?, ?, ?)"
# a whole batch in one statement, its data_ids as one JSON array: SQLite inserts them all
# in one step, during which the thread does not hold the GIL (executemany takes it back
# for every row, and waits for it while the event loop runs Python). Run on its own, the
# statement is its own transaction, which takes the write lock as it starts (so the busy
# timeout applies), as BEGIN IMMEDIATE would, with no BEGIN and COMMIT to wait on.
STORE_IDS = (
    "INSERT OR IGNORE INTO async_dag_checkpoint (name, data_id, done_at) "
    "SELECT ?, value, ? FROM json_each(?)"
)
HAS_JSON = "SELECT 1 FROM json_each('[]')"
HAS_ID = "SELECT 1 FROM async_dag_checkpoint WHERE name = ? AND data_id = ?"
HAS_ID_ANY_NAME = "SELECT 1 FROM async_dag_checkpoint WHERE data_id = ? LIMIT 1"
COUNT = "SELECT COUNT(*) FROM async_dag_checkpoint WHERE name = ?"
COUNT_ALL = "SELECT COUNT(*) FROM async_dag_checkpoint"
CLEAR = "DELETE FROM async_dag_checkpoint WHERE name = ?"
CLEAR_ALL = "DELETE FROM async_dag_checkpoint"

BUSY_TIMEOUT = 30.0  # seconds a writer waits for another process's transaction
FLUSH_EVERY = 0.5  # the longest pause between commits (so: at least once a second)
FLUSH_BRISKLY = 0.01  # the pause while records keep coming
# the longest the event loop blocks handing the thread its turn (the thread, still in
# SQLite, is not ready for it: it takes the next turn)
HAND_OVER = 0.001
# how often the loop looks whether a commit under way has ended (see run_flusher), and
# the longest it blocks letting the thread go back to waiting for its turn (it takes some
# 50-80 us; a thread not ready for it is still busy: in a sync to the disk)
WATCH_EVERY = 0.001
PARK = 0.0003
PAGE_SIZE = 16384  # bytes per page of a new file (SQLite's default 4096 costs more per row)
# the session's page cache, in KiB (SQLite's default is 2,000): records with keys in no
# order (URLs, hashes) touch pages all over the table, and with the table's pages cached
# a commit costs about 40% less CPU than with them read back from the file every time
CACHE_KIB = 16384
WAL_PAGES = 100  # pages in the write-ahead log that make a commit copy it into the file
# what a data_id must not contain to be put between quotes as it is in a JSON array
NOT_PLAIN = ("\\", *map(chr, range(32)))


def json_array(batch: list[str]) -> str:
    """``batch`` as a JSON array of strings: the ids joined between quotes when none
    needs escaping (each check a fast scan, several times cheaper than ``json.dumps``,
    and the thread holds the GIL meanwhile), else ``json.dumps``."""
    body = '","'.join(batch)
    if body.count('"') == 2 * len(batch) - 2 and not any(c in body for c in NOT_PLAIN):
        return f'["{body}"]'
    return json.dumps(batch, ensure_ascii=False)


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating when missing) the checkpoint file, in WAL mode, with its table."""
    if path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} is a directory, not a file")
    if not path.parent.is_dir():
        raise CheckpointError(
            f"checkpoint {str(path)!r}: directory {str(path.parent)!r} does not exist"
        )
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
    except sqlite3.Error as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be opened: {exc}") from exc
    try:
        with contextlib.suppress(sqlite3.Error):  # an optimisation: some file systems refuse
            if PAGE_SIZE:
                conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # a new file's, else no effect
            conn.execute("PRAGMA journal_mode = wal")
            conn.execute("PRAGMA synchronous = normal")  # safe against a crash in WAL mode
            # copy the log into the file every 100 pages (not 1,000): the commits in the
            # session's thread do it alongside the run, and the last connection's close,
            # which copies what is left while the run waits, is quick
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")
        conn.execute(BUILD_TABLE)
    except sqlite3.Error as exc:
        conn.close()
        raise CheckpointError(f"checkpoint {str(path)!r} is not usable: {exc}") from exc
    return conn


@contextlib.contextmanager
def _database(path: Path) -> Iterator[sqlite3.Connection]:
    """A short-lived connection for one user call; sqlite errors become CheckpointError."""
    conn = _connect(path)
    try:
        yield conn
    except sqlite3.Error as exc:
        raise CheckpointError(f"checkpoint {str(path)!r}: {exc}") from exc
    finally:
        conn.close()


class Checkpoint:
    """A file that remembers which inputs of a pipeline finished, so a rerun skips them.

    Pass it (or just the path) as ``checkpoint=`` to a run. Entries are kept per name
    and data_id; a run uses this ``name`` when given, else the pipeline's name, so
    pipelines sharing one file need distinct names. Example::

        done = Checkpoint("refresh.sqlite", name="refresh")
        await pipeline.run_stream(pages(), key=lambda page: page["url"], checkpoint=done)
        len(done)     # inputs recorded as finished
        done.clear()  # start over next time

    ``clear()``, ``len()`` and ``in`` apply to this name's entries, or to the whole file
    when there is no name. The file is created when missing. A ``Checkpoint`` pickles as
    its path and name, so it can travel to worker processes, which share the file.
    """

    __slots__ = ("name", "path")

    def __init__(self, path: str | os.PathLike[str], name: str | None = None) -> None:
        if not isinstance(path, str | os.PathLike):
            raise TypeError(
                f"checkpoint path must be a str or os.PathLike, got {type(path).__name__}"
            )
        raw = os.fspath(path)
        if not isinstance(raw, str):
            raise TypeError(f"checkpoint path must be a str path, got {raw!r}")
        if not raw or raw == ":memory:":
            raise ValueError(f"checkpoint path must name a file, got {raw!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"checkpoint name must be a str or None, got {type(name).__name__}")
        if name == "":
            raise ValueError("checkpoint name must not be empty (None means the pipeline's)")
        self.path: Path = Path(raw).expanduser()
        self.name: str | None = name

    def __repr__(self) -> str:
        named = f" name={self.name!r}" if self.name is not None else ""
        return f"<Checkpoint {str(self.path)!r}{named}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Checkpoint):
            return NotImplemented
        return (self.path, self.name) == (other.path, other.name)

    def __hash__(self) -> int:
        return hash((self.path, self.name))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self.path), self.name))

    def __len__(self) -> int:
        """How many entries this name (or, without a name, the whole file) holds."""
        if not self.path.exists():
            return 0
        with _database(self.path) as conn:
            if self.name is None:
                row = conn.execute(COUNT_ALL).fetchone()
            else:
                row = conn.execute(COUNT, (self.name,)).fetchone()
        return int(row[0])

    def __contains__(self, data_id: object) -> bool:
        """Whether ``data_id`` is recorded under this name (any name, without one)."""
        if not isinstance(data_id, str) or not self.path.exists():
            return False
        with _database(self.path) as conn:
            if self.name is None:
                row = conn.execute(HAS_ID_ANY_NAME, (data_id,)).fetchone()
            else:
                row = conn.execute(HAS_ID, (self.name, data_id)).fetchone()
        return row is not None

    def clear(self) -> None:
        """Forget this name's entries (or, without a name, every entry in the file)."""
        if not self.path.exists():
            return
        with _database(self.path) as conn:
            if self.name is None:
                conn.execute(CLEAR_ALL)
            else:
                conn.execute(CLEAR, (self.name,))

    def session(self, default_name: str) -> CheckpointSession:
        """A session for one run, under this checkpoint's name or else ``default_name``."""
        return CheckpointSession(self.path, self.name if self.name is not None else default_name)


def as_checkpoint(spec: object) -> Checkpoint | None:
    """The run option ``checkpoint=``: a path, a ``Checkpoint`` or None, checked."""
    if spec is None or isinstance(spec, Checkpoint):
        return spec
    if isinstance(spec, str | os.PathLike):
        return Checkpoint(spec)
    raise TypeError(
        "checkpoint must be a path (str or os.PathLike), a Checkpoint or None, "
        f"got {type(spec).__name__} {spec!r}"
    )


class CheckpointSession:
    """One run's use of a checkpoint: load what is done, queue new records, commit them.

    Used from the event loop: ``await open()``, then ``is_done``/``record`` (plain, O(1)
    calls), a task running ``run_flusher()`` for the length of the run, and
    ``await close()`` at the end, which commits everything queued and completes even if
    the calling task is cancelled, however often.

    ``record(d)`` of a new data_id is ``done.add(d); pending.append(d)``: a caller that
    records once per input on the hot path (:class:`~async_dag.core.tracking.Counts`)
    does just that itself, on these two objects, which the session keeps for its life;
    one whose data_ids cannot come twice (positions) only appends to ``pending``. The
    loop only ever appends to ``pending`` while the flusher runs: the session's thread
    takes records from its front, in the turns the flusher hands it.
    """

    def __init__(self, path: Path, name: str, *, flush_every: float = FLUSH_EVERY) -> None:
        self.path = path
        self.name = name
        self.flush_every = flush_every
        self.loaded = 0  # data_ids found recorded when the session opened
        self.done: set[str] = set()  # loaded or recorded since (by ``record``)
        self.pending: list[str] = []  # recorded, not yet committed
        self.taken = 0  # records taken from ``pending`` by commits (done or under way)
        self._conn: sqlite3.Connection | None = None  # used only in the session's thread
        self._json = False  # whether the SQLite library has json_each (3.38+, or JSON1)
        self._executor: ThreadPoolExecutor | None = None
        self._last_job: asyncio.Future[Any] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._closed = False
        self._stop = threading.Event()  # set: the flusher's thread loop ends
        # the hand-over of turns (see run_flusher): the loop releases ``_go`` (and sets
        # ``_asked`` until the thread takes it); the thread releases ``_taken`` when it
        # has taken its batch, for the loop blocked on it to go on
        self._go = threading.Lock()
        self._go.acquire()
        self._asked = False
        self._taken = threading.Lock()
        self._taken.acquire()
        # a commit's end (see run_flusher): ``_committing`` while the thread commits a
        # batch; ``_cpu``, the clock of the thread's CPU time where there is one (Linux),
        # read at ``_seen`` (its value, and the loop's time then); the loop releases
        # ``_parked`` (and sets ``_park``) for the thread out of SQLite to take the GIL,
        # which releases it back as it goes to wait for its next turn
        self._committing = False
        self._cpu: int | None = None
        self._seen = (0.0, 0.0)
        self._park = False
        self._parked = threading.Lock()
        self._parked.acquire()

    @property
    def recorded(self) -> int:
        """Records committed or queued by this session."""
        return self.taken + len(self.pending)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._executor else "new"
        return (
            f"<CheckpointSession {str(self.path)!r} name={self.name!r} {state}, "
            f"{self.loaded} loaded, {self.recorded} recorded, {len(self.pending)} queued>"
        )

    async def open(self) -> None:
        """Connect in the session's thread and load the data_ids recorded under the name."""
        if self._executor is not None or self._closed:
            raise RuntimeError(f"{self!r} was already opened")
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="async_dag-checkpoint")
        job = self._submit(self._open_sync)
        try:
            self.done.update(await job)  # one set built on the loop: ~50 ns per data_id
        except CheckpointError:
            self._closed = True
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        self.loaded = len(self.done)

    def is_done(self, data_id: str) -> bool:
        """Whether ``data_id`` was recorded before this run, or since into ``done``."""
        return data_id in self.done

    def record(self, data_id: str) -> None:
        """Mark ``data_id`` finished; it is committed by the next flush or by ``close``."""
        if self._closed or self._executor is None:
            raise RuntimeError(f"{self!r} takes no records: it is not open")
        if data_id not in self.done:
            self.done.add(data_id)
            self.pending.append(data_id)

    async def run_flusher(self) -> None:
        """Have the session's thread commit the queued records (see :meth:`_pump_sync`),
        handing it a turn every few milliseconds while records keep coming, after pauses
        doubling up to ``flush_every`` while none come (or the thread is slow to take
        its turns), until this is cancelled or the session closes; a commit under way
        then completes, and ``close`` waits for it."""
        if self._closed or self._executor is None:
            return
        self._stop.clear()
        job = self._submit(self._pump_sync)
        loop = asyncio.get_running_loop()
        brisk = pause = min(FLUSH_BRISKLY, self.flush_every)
        due = loop.time() + pause
        watch = WATCH_EVERY
        try:
            while not job.done():
                if self._committing and self._cpu is not None:
                    # the thread, out of SQLite, waits for the GIL, and while it waits
                    # every turn of the loop wakes it (a futex call each): so the loop
                    # looks every millisecond whether its CPU clock has stopped, and then
                    # hands it the next batch if one is due, else the GIL to wait with
                    # (less often while that finds it still busy: in a sync to the disk)
                    await asyncio.sleep(watch)
                    if not (self._committing and self._stalled()):
                        continue
                    # (a commit that ended in the second half of a pause takes its next
                    # batch then: the thread is awake, quicker to wake than from its lock)
                    if loop.time() < due - pause / 2 or not self.pending:
                        parked = self._wait_parked()
                        watch = WATCH_EVERY if parked else min(2 * watch, self.flush_every)
                        continue
                else:
                    await asyncio.sleep(max(due - loop.time(), 0))
                if self.pending and self._hand_over():
                    pause = brisk
                else:  # nothing queued, or the thread still busy in SQLite
                    pause = min(2 * pause, self.flush_every)
                due = loop.time() + pause
            job.result()
        finally:
            self._stop.set()
            self._wake()

    def _wake(self) -> None:
        """Let the thread take a turn (once it is out of SQLite)."""
        if not self._asked:
            self._asked = True
            self._go.release()

    def _hand_over(self) -> bool:
        """Give the thread its turn: block (so not holding the GIL) until it has taken
        the queued records, or ``HAND_OVER`` if it is still busy in SQLite (False)."""
        self._taken.acquire(False)  # a late answer to a turn that gave up waiting
        self._wake()
        taken = self._taken.acquire(True, HAND_OVER)
        if self._cpu is not None:
            self._stalled()  # the CPU clock from here on is the commit's
        return taken

    def _stalled(self) -> bool:
        """Whether the thread's CPU clock ran less than a quarter of the time since it
        was last read (so the thread, committing, is out of SQLite, or in a sync)."""
        assert self._cpu is not None
        try:
            cpu = time.clock_gettime(self._cpu)
        except OSError:  # the thread has ended
            return False
        now = time.perf_counter()
        then, ran = self._seen
        self._seen = (now, cpu)
        return cpu - ran < (now - then) / 4

    def _wait_parked(self) -> bool:
        """Let the thread, done with SQLite, take the GIL and go back to waiting for its
        turn on a lock (no wake-ups then): block until it has, or ``PARK`` (False)."""
        self._parked.acquire(False)  # a late answer
        self._park = True
        return self._parked.acquire(True, PARK)

    async def close(self) -> None:
        """Commit everything queued, then close the file; safe to call again.

        It completes even if the calling task is cancelled meanwhile, any number of
        times; the cancellation is raised once it is done. A failed final commit raises
        ``CheckpointError`` (those inputs are simply redone by the next run).
        """
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(
                self._close(), name="async_dag-checkpoint-close"
            )
        closing = self._closing
        interrupted = False
        while not closing.done():
            try:
                await asyncio.shield(closing)
            except asyncio.CancelledError:
                interrupted = True  # keep waiting: the records must reach the file
        if interrupted:
            if not closing.cancelled() and closing.exception() is not None:
                logger.error("checkpoint close failed: %s", closing.exception())
            raise asyncio.CancelledError
        closing.result()

    async def _close(self) -> None:
        self._closed = True
        self._stop.set()
        self._wake()
        if self._executor is None:
            return
        try:
            if self._last_job is not None:  # an open or a flusher's commit still running
                await asyncio.wait([self._last_job])
            batch = self.pending.copy()
            self.pending.clear()
            self.taken += len(batch)
            await self._submit(self._close_sync, batch)
        finally:
            self._executor.shutdown(wait=False)

    def _submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` in the session's thread (jobs run one at a time, in order)."""
        job = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        self._last_job = job
        return job

    # --- in the session's thread -------------------------------------------------------

    def _pump_sync(self) -> None:
        """Commit what is queued at each turn the flusher hands over, or every
        ``flush_every`` without one (a loop held up by a long handler), until ``_stop``.

        The loop only appends to ``pending``, so a copy of the list then the deletion of
        as many records from its front (each one step under the GIL) lose nothing. A
        failed commit puts its records back and is retried after ``flush_every`` (a
        lasting failure is raised by ``close``)."""
        pending, go, taken = self.pending, self._go, self._taken
        if self._cpu is None:
            with contextlib.suppress(AttributeError, OSError):  # none on macOS, Windows
                self._cpu = time.pthread_getcpuclockid(threading.get_ident())
        while True:
            if go.acquire(True, self.flush_every):
                self._asked = False
            if self._stop.is_set():
                break
            batch = pending[:]
            del pending[: len(batch)]
            self.taken += len(batch)
            # the statement's argument too, while the loop waits: it has let the GIL go,
            # and woken now, it would only wait again for this thread to let it go
            try:
                ids: str | None = self._array(batch)
            except Exception:  # raised again by the commit below, which handles it
                ids = None
            self._committing = bool(batch)
            if taken.locked():
                taken.release()  # the loop goes on as the commit starts
            if not batch:
                continue
            failure: Exception | None = None
            try:
                self._commit_sync(batch, ids)
            except Exception as exc:
                pending[:0] = batch
                self.taken -= len(batch)
                failure = exc
            self._committing = False
            if self._park:
                self._park = False
                self._parked.release()  # the loop goes on as this waits for a turn
            if failure is not None:
                logger.warning("checkpoint commit failed, will retry: %s", failure)
                self._stop.wait(self.flush_every)

    def _open_sync(self) -> list[str]:
        conn = _connect(self.path)
        with contextlib.suppress(sqlite3.Error):
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")  # negative: KiB, not pages
        try:
            conn.execute(HAS_JSON)
            self._json = True
        except sqlite3.Error:
            self._json = False
        try:
            done = self._load_sync(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise CheckpointError(f"checkpoint {str(self.path)!r} cannot be read: {exc}") from exc
        self._conn = conn
        return done

    def _load_sync(self, conn: sqlite3.Connection) -> list[str]:
        """The data_ids recorded under the name, a page (one JSON array) at a time."""
        if not self._json:
            return [row[0] for row in conn.execute(LOAD_IDS, (self.name,))]
        done: list[str] = []
        query, after = FIRST_PAGE, ""
        while True:
            ids, last, count = conn.execute(query, (self.name, after, PAGE)).fetchone()
            done.extend(json.loads(ids))
            if count < PAGE:
                return done
            query, after = NEXT_PAGE, last

    def _array(self, batch: list[str]) -> str:
        """``batch`` as the JSON array the one-statement commit takes ('' when it is
        empty or SQLite has no json_each: the commit then inserts row by row)."""
        return json_array(batch) if batch and self._json else ""

    def _commit_sync(self, batch: list[str], ids: str | None = None) -> None:
        """Insert ``batch`` (``ids``: its :meth:`_array`, when already made)."""
        conn = self._conn
        if conn is None:
            raise CheckpointError(f"checkpoint {str(self.path)!r} is not open")
        try:
            now = time.time()
            if ids is None:
                ids = self._array(batch)
            if ids and "\\u0000" not in ids:  # json_each would cut a NUL short
                conn.execute(STORE_IDS, (self.name, now, ids))
                return
            conn.execute("BEGIN IMMEDIATE")  # take the write lock now: the busy timeout applies
            try:
                conn.executemany(STORE_ID, zip(repeat(self.name), batch, repeat(now)))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise CheckpointError(
                f"checkpoint {str(self.path)!r}: {len(batch)} records not saved: {exc}"
            ) from exc

    def _close_sync(self, batch: list[str]) -> None:
        try:
            if batch and self._conn is not None:
                self._commit_sync(batch)
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

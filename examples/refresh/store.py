"""The demo job's SQLite tables: ``products`` (upserted in batches) and ``dead_letters``.

Each batch is one transaction: the rows are upserted (a row is rewritten only when its
content changed, and its ``version`` counts the rewrites), and their products leave
``dead_letters`` if an earlier run had put them there. WAL mode and a busy timeout let
other processes read the file while the job writes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    price        REAL NOT NULL,
    currency     TEXT NOT NULL,
    price_eur    REAL NOT NULL,
    category     TEXT NOT NULL,
    stock        INTEGER NOT NULL,
    updated_at   TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    version      INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id         TEXT PRIMARY KEY,
    data_id    TEXT NOT NULL,
    node       TEXT NOT NULL,
    error_type TEXT NOT NULL,
    error      TEXT NOT NULL,
    payload    TEXT NOT NULL,
    failed_at  REAL NOT NULL
);
"""

UPSERT = """
INSERT INTO products (id, name, price, currency, price_eur, category, stock, updated_at,
                      content_hash)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(id) DO UPDATE SET
    name = excluded.name, price = excluded.price, currency = excluded.currency,
    price_eur = excluded.price_eur, category = excluded.category, stock = excluded.stock,
    updated_at = excluded.updated_at, content_hash = excluded.content_hash,
    version = products.version + 1
WHERE products.content_hash <> excluded.content_hash
"""

DEAD_LETTER = """
INSERT OR REPLACE INTO dead_letters (id, data_id, node, error_type, error, payload, failed_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""


class Row(NamedTuple):
    """One products row, without its hash and version."""

    id: str
    name: str
    price: float
    currency: str
    price_eur: float
    category: str
    stock: int
    updated_at: str

    def digest(self) -> str:
        """A hash of everything but the id: equal hashes, nothing to rewrite."""
        return hashlib.sha256(json.dumps(self[1:]).encode()).hexdigest()


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection in autocommit mode that waits for other writers instead of failing."""
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def init_database(path: str | Path) -> Path:
    """Create the file, its folder and the tables if needed, in WAL mode."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(target)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SCHEMA)
    finally:
        conn.close()
    return target


def clear_tables(path: str | Path) -> None:
    """Empty both tables (``--fresh``)."""
    conn = connect(path)
    try:
        conn.executescript("BEGIN; DELETE FROM products; DELETE FROM dead_letters; COMMIT;")
    finally:
        conn.close()


def count_rows(path: str | Path) -> tuple[int, int]:
    """How many rows ``products`` and ``dead_letters`` hold."""
    conn = connect(path)
    try:
        products = conn.execute("SELECT count(*) FROM products").fetchone()[0]
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    finally:
        conn.close()
    return int(products), int(dead)


class Store:
    """Writes batches through one connection, opened on first use, closed by ``close``.

    Its methods are plain ``def``: the engine calls them in a worker thread, so SQLite
    never blocks the event loop. ``statuses`` counts inserted, updated and unchanged rows;
    ``batches`` their transactions; ``dead`` the dead letters by exception type, and
    ``dead_batches`` their transactions.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.statuses: Counter[str] = Counter()
        self.batches = 0
        self.dead: Counter[str] = Counter()  # dead letters by exception type
        self.dead_batches = 0
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _transaction(self, work: Any) -> None:
        with self._lock:
            if self._conn is None:
                self._conn = connect(self.path)
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                work(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def upsert(self, rows: Sequence[Row]) -> None:
        """Upsert ``rows`` in one transaction and take them out of ``dead_letters``."""
        digests = [row.digest() for row in rows]

        def work(conn: sqlite3.Connection) -> None:
            marks = ",".join("?" * len(rows))
            ids = [row.id for row in rows]
            old = dict(
                conn.execute(f"SELECT id, content_hash FROM products WHERE id IN ({marks})", ids)
            )
            conn.executemany(UPSERT, [(*row, d) for row, d in zip(rows, digests, strict=True)])
            conn.execute(f"DELETE FROM dead_letters WHERE id IN ({marks})", ids)
            for row, digest in zip(rows, digests, strict=True):
                known = old.get(row.id)
                self.statuses[
                    "inserted" if known is None else "unchanged" if known == digest else "updated"
                ] += 1
                old[row.id] = digest  # the same id twice in one batch: the second compares

        self._transaction(work)
        self.batches += 1

    def dead_letters(self, letters: Sequence[tuple[str, str, str, BaseException, Any]]) -> None:
        """Record ``(id, data_id, node, exception, payload)`` failures in one transaction."""
        now = time.time()
        values = [
            (
                pid,
                data_id,
                node,
                type(exc).__name__,
                str(exc),
                json.dumps(payload, default=str),
                now,
            )
            for pid, data_id, node, exc, payload in letters
        ]
        self._transaction(lambda conn: conn.executemany(DEAD_LETTER, values))
        self.dead.update(value[3] for value in values)
        self.dead_batches += 1

    def close(self) -> None:
        """Close the connection (it reopens if the store is used again)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

"""The parts of the demo refresh job (``main.py``): rows, the service, the store, the DAG.

A product feed (JSON Lines) is streamed line by line through four tasks::

    parse --is_valid---> enrich --is_enriched--> store     (SQLite upsert, one writer)
      |                  ^    |
      |                  +----+  is_transient: call again, max_loops=MAX_RETRIES
      +---is_rejected--> rejects

``enrich`` calls a simulated remote service (latency with jitter, transient failures).
Its randomness is seeded per row and per try, so which calls fail never depends on
scheduling, on the concurrency or on how the input is split over processes: every way
of running the job writes the same database.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import sqlite3
import textwrap
import threading
import weakref
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from async_dag import (
    DagPipeline,
    LoopLimitExceeded,
    PipelineBuilder,
    PipelineContext,
    RunResult,
    log_with_context,
    setup_logging,
)

log = logging.getLogger("async_dag.refresh_job")

#: how many times a row goes back to the service after a transient failure
MAX_RETRIES = 3
CURRENCIES = {"EUR": 1.0, "USD": 0.94, "GBP": 1.17, "CHF": 1.06}  # to EUR
CATEGORIES = ("lighting", "seating", "storage", "decor", "textiles", "tables")
FIELDS = ("id", "name", "price", "currency", "stock", "updated_at")


# -- input ---------------------------------------------------------------------------


class Line(NamedTuple):
    """One raw input line and its 1-based line number (the row's ``data_id``)."""

    line_no: int
    text: str


def line_no_of(line: Line) -> int:
    """The run's ``key=``: a row is traced by its line number in the input file."""
    return line.line_no


@dataclass(frozen=True, slots=True)
class LineBatch:
    """Lines ``index``, ``index + count``, ... of a file, read lazily when iterated.

    Picklable and small: a worker process gets the recipe, not the rows, and streams
    its share of the file itself. ``count=1`` is the whole file.
    """

    path: str
    index: int = 0
    count: int = 1
    limit: int | None = None

    def __iter__(self) -> Iterator[Line]:
        with open(self.path, encoding="utf-8", errors="replace") as lines:
            for line_no, text in enumerate(lines, start=1):
                if self.limit is not None and line_no > self.limit:
                    return
                if (line_no - 1) % self.count == self.index:
                    yield Line(line_no, text)


# -- parse and validate ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Product:
    """A valid row of the feed."""

    id: str
    name: str
    price: float
    currency: str
    stock: int
    updated_at: str


@dataclass(frozen=True, slots=True)
class Reject:
    """A row that failed validation: where, why (a short reason) and the details."""

    line_no: int
    reason: str
    detail: str


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate(data: object) -> Product:
    """Check one decoded row; raise ``ValueError("reason: detail")`` when it is invalid."""
    if not isinstance(data, dict):
        raise ValueError(f"not an object: got {type(data).__name__}")
    missing = [name for name in FIELDS if name not in data]
    if missing:
        raise ValueError(f"missing field: {', '.join(missing)}")
    if not isinstance(data["id"], str) or not data["id"]:
        raise ValueError(f"wrong type: id {data['id']!r}")
    if not isinstance(data["name"], str) or not data["name"]:
        raise ValueError(f"wrong type: name {data['name']!r}")
    if not _is_number(data["price"]):
        raise ValueError(f"wrong type: price {data['price']!r}")
    if not isinstance(data["stock"], int) or isinstance(data["stock"], bool):
        raise ValueError(f"wrong type: stock {data['stock']!r}")
    if data["price"] < 0 or data["stock"] < 0:
        raise ValueError(f"out of range: price {data['price']!r}, stock {data['stock']!r}")
    if data["currency"] not in CURRENCIES:
        raise ValueError(f"unknown currency: {data['currency']!r}")
    try:
        datetime.fromisoformat(str(data["updated_at"]))
    except ValueError:
        raise ValueError(f"bad date: updated_at {data['updated_at']!r}") from None
    return Product(
        data["id"],
        data["name"],
        float(data["price"]),
        data["currency"],
        data["stock"],
        data["updated_at"],
    )


def parse_line(ctx: PipelineContext, line: Line) -> Product | Reject:
    """Decode and validate one line: a Product, or a Reject saying what is wrong."""
    try:
        data = json.loads(line.text)
    except json.JSONDecodeError as exc:
        return Reject(line.line_no, "bad json", str(exc))
    try:
        return validate(data)
    except ValueError as exc:
        reason, _, detail = str(exc).partition(": ")
        return Reject(line.line_no, reason, detail)


def is_valid(ctx: PipelineContext, value: object) -> bool:
    """Edge predicate: the row parsed and validated."""
    return isinstance(value, Product)


def is_rejected(ctx: PipelineContext, value: object) -> bool:
    """Edge predicate: the row is malformed."""
    return isinstance(value, Reject)


def keep_reject(ctx: PipelineContext, reject: Reject) -> Reject:
    """The rejects sink: log the row's problem with its context and pass it on."""
    log_with_context(log, ctx, logging.DEBUG, "rejected (%s): %s", reject.reason, reject.detail)
    return reject


# -- the simulated remote service -----------------------------------------------------------


class TransientServiceError(Exception):
    """The simulated service failed this call; trying again may work."""


class ServiceUnavailable(RuntimeError):
    """The service failed every try a row was allowed (plain form of the job)."""


@dataclass(frozen=True, slots=True)
class Pending:
    """A row whose last service call failed: it goes back to ``enrich`` for another try."""

    product: Product
    tries: int  # failed calls so far
    error: str


@dataclass(frozen=True, slots=True)
class Enriched:
    """A row with what the service added: its price in EUR and its category."""

    product: Product
    price_eur: float
    category: str
    tries: int  # failed calls before the one that worked


@dataclass(frozen=True, slots=True)
class SimulatedService:
    """A remote lookup with latency (mean ``latency`` seconds, ±75%) and seeded failures.

    The answer depends only on the product; latency and failure depend on ``seed``, the
    product id and the try number, so a re-run fails the same calls.
    """

    seed: int = 7
    fail_rate: float = 0.15
    latency: float = 0.02

    async def lookup(self, product: Product, tries: int) -> tuple[float, str]:
        """Price in EUR and category of ``product``; may raise TransientServiceError."""
        rng = random.Random(f"{self.seed}:{product.id}:{tries}")
        await asyncio.sleep(self.latency * rng.uniform(0.25, 1.75))
        if rng.random() < self.fail_rate:
            raise TransientServiceError(f"503 from catalogue service (try {tries + 1})")
        category = CATEGORIES[zlib.crc32(product.name.encode()) % len(CATEGORIES)]
        return round(product.price * CURRENCIES[product.currency], 2), category

    async def enrich(self, ctx: PipelineContext, item: Product | Pending) -> Enriched | Pending:
        """The enrich task: one service call; a failure comes back as Pending."""
        product, tries = (item.product, item.tries) if isinstance(item, Pending) else (item, 0)
        try:
            price_eur, category = await self.lookup(product, tries)
        except TransientServiceError as exc:
            log_with_context(log, ctx, logging.DEBUG, "%s; will retry", exc)
            return Pending(product, tries + 1, str(exc))
        return Enriched(product, price_eur, category, tries)


def is_transient(ctx: PipelineContext, value: object) -> bool:
    """Edge predicate: the service call failed, loop back for another try."""
    return isinstance(value, Pending)


def is_enriched(ctx: PipelineContext, value: object) -> bool:
    """Edge predicate: the service answered."""
    return isinstance(value, Enriched)


# -- the database ----------------------------------------------------------------------------

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
)
"""

# Insert a new row; rewrite an existing one only when its content changed.
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


class Stored(NamedTuple):
    """The store sink's output: which row, what happened to it, after how many failed calls."""

    id: str
    status: str  # "inserted", "updated" or "unchanged"
    tries: int


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection that waits for other writers (processes too) instead of failing."""
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def init_database(path: str | Path) -> Path:
    """Create the database file, its folder and table if needed, in WAL mode."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(target)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(SCHEMA)
    finally:
        conn.close()
    return target


def count_products(path: str | Path) -> int:
    """How many rows the products table holds."""
    conn = connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM products").fetchone()[0])
    finally:
        conn.close()


class Store:
    """Upserts enriched rows into SQLite through one connection, opened on first use.

    ``upsert`` is a plain ``def``: the engine runs it in a worker thread, so the blocking
    SQLite calls never stall the event loop. Calls are serialised by a lock (the DAG
    also gives the task ``concurrency=1``); other processes may write the same file at
    the same time (WAL mode, busy timeout, one short transaction per row).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect(self.path)
            # Closed with the store, or at exit when a worker process never says so.
            weakref.finalize(self, self._conn.close)
        return self._conn

    def upsert(self, ctx: PipelineContext, row: Enriched) -> Stored:
        """The store task: write ``row`` unless the database already has the same content."""
        p = row.product
        content = (p.name, p.price, p.currency, row.price_eur, row.category, p.stock, p.updated_at)
        digest = hashlib.sha256(json.dumps(content).encode()).hexdigest()
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                old = conn.execute(
                    "SELECT content_hash FROM products WHERE id = ?", (p.id,)
                ).fetchone()
                conn.execute(UPSERT, (p.id, *content, digest))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        status = "inserted" if old is None else "unchanged" if old[0] == digest else "updated"
        log_with_context(log, ctx, logging.DEBUG, "%s %s", status, p.id)
        return Stored(p.id, status, row.tries)

    def close(self) -> None:
        """Close the connection (it reopens if the store is used again)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


# -- the job, as a DAG and as one async function --------------------------------------------


@dataclass(frozen=True, slots=True)
class JobConfig:
    """Everything a worker needs to build the job: picklable, no open resources."""

    db: str
    seed: int = 7
    fail_rate: float = 0.15
    latency: float = 0.02
    concurrency: int = 32
    log_level: int | None = None

    @property
    def service(self) -> SimulatedService:
        """The simulated service these settings describe."""
        return SimulatedService(self.seed, self.fail_rate, self.latency)


def make_pipeline(config: JobConfig, store: Store) -> DagPipeline:
    """The refresh job as a DAG writing through ``store``."""
    return (
        PipelineBuilder("refresh")
        .add_task("parse", parse_line, inline=True)
        .add_task("rejects", keep_reject, inline=True)
        .add_task("enrich", config.service.enrich, concurrency=config.concurrency)
        .add_task("store", store.upsert)
        .add_edge("parse", "enrich", when=is_valid)
        .add_edge("parse", "rejects", when=is_rejected)
        .add_edge("enrich", "enrich", when=is_transient, max_loops=MAX_RETRIES)
        .add_edge("enrich", "store", when=is_enriched)
        .build()
    )


def build_pipeline(config: JobConfig) -> DagPipeline:
    """The factory a worker process calls: logging as configured, its own store."""
    if config.log_level is not None:
        setup_logging(config.log_level)
    return make_pipeline(config, Store(config.db))


def make_plain_job(
    config: JobConfig, store: Store
) -> Callable[[PipelineContext, Line], Awaitable[Stored | Reject]]:
    """The same job as one async function, for ``run_function_pipeline``.

    Retries are a plain loop; a row still failing after MAX_RETRIES retries raises
    ServiceUnavailable, which ``on_error="collect"`` records like the DAG's loop limit.
    """
    service = config.service
    write_lock = asyncio.Lock()

    async def refresh_row(ctx: PipelineContext, line: Line) -> Stored | Reject:
        parsed = parse_line(ctx, line)
        if isinstance(parsed, Reject):
            return keep_reject(ctx, parsed)
        outcome = await service.enrich(ctx, parsed)
        while isinstance(outcome, Pending):
            if outcome.tries > MAX_RETRIES:
                raise ServiceUnavailable(f"{outcome.product.id}: {outcome.error}")
            outcome = await service.enrich(ctx, outcome)
        async with write_lock:
            return await asyncio.to_thread(store.upsert, ctx, outcome)

    return refresh_row


# -- the summary ----------------------------------------------------------------------------


@dataclass
class Tally:
    """What the job did, counted from the sinks' outputs and the collected errors."""

    read: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    rejects: Counter[str] = field(default_factory=Counter)
    retried: int = 0
    failed: dict[int, str] = field(default_factory=dict)  # line number -> why
    elapsed: float = 0.0

    def add(self, ctx: PipelineContext, value: object) -> None:
        """Count one sink output (usable as a run's ``result_handler``)."""
        if isinstance(value, Stored):
            self.statuses[value.status] += 1
            self.retried += value.tries
        elif isinstance(value, Reject):
            self.rejects[value.reason] += 1

    def add_run(self, result: RunResult) -> None:
        """Count a finished run: its inputs, kept records and errors."""
        self.read += result.stats.inputs
        for record in result.records:
            self.add(record.ctx, record.value)
        for error in result.errors:
            exc = error.exception
            if isinstance(exc, LoopLimitExceeded | ServiceUnavailable):
                why = f"service still failing after {MAX_RETRIES + 1} tries"
                self.retried += MAX_RETRIES  # tried again that often before giving up
            else:
                why = f"{type(exc).__name__} at {error.node}: {exc}"
            self.failed[int(error.ctx.data_id)] = why

    @property
    def stored(self) -> int:
        """Valid rows that reached the database (inserted, updated or unchanged)."""
        return sum(self.statuses.values())

    @property
    def rejected(self) -> int:
        """Malformed rows."""
        return sum(self.rejects.values())

    def render(self, database: Path, products: int) -> str:
        """The summary printed at the end of the job."""
        rate = self.read / self.elapsed if self.elapsed > 0 else 0.0
        s = self.statuses
        lines = [
            f"  read      {self.read:>7} rows",
            f"  written   {s['inserted'] + s['updated']:>7} rows   inserted {s['inserted']}, "
            f"updated {s['updated']}",
            f"  unchanged {s['unchanged']:>7} rows   already up to date",
            f"  rejected  {self.rejected:>7} rows",
            f"  retried   {self.retried:>7} service calls",
            f"  failed    {len(self.failed):>7} rows",
            f"  elapsed   {self.elapsed:>7.2f} s      {rate:,.0f} rows/s",
            f"  database  {database} ({products} products)",
        ]
        indent = " " * 27
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.rejects.items()))
        if reasons:
            wrapped = textwrap.wrap(reasons, 96 - len(indent))
            lines[3] += "   " + "\n".join([wrapped[0], *(indent + w for w in wrapped[1:])])
        by_reason: dict[str, list[int]] = {}
        for line_no, why in sorted(self.failed.items()):
            by_reason.setdefault(why, []).append(line_no)
        notes = []
        for why, line_nos in by_reason.items():
            shown = ", ".join(map(str, line_nos[:8]))
            more = f" and {len(line_nos) - 8} more" if len(line_nos) > 8 else ""
            notes.append(f"{why}: line {shown}{more}")
        if notes:
            lines[5] += "   " + ("\n" + indent).join(notes)
        return "\n".join(lines)

"""The demo refresh job (``main.py``): a product feed into SQLite through a rate-limited API.

Every row of a JSON Lines feed goes through four tasks::

    parse --is_valid----> enrich ----------------> store          (batches, one transaction each)
      |                     |
      +--is_rejected--> rejects   +--on_error--> dead_letters     (batches, a table)

``enrich`` calls the simulated catalogue API (:mod:`.service`) under a shared
``RateLimit``, retries 503s and timeouts with exponential back-off and jitter, waits out
the server's ``Retry-After`` on a 429, and gives up at once on a 404. What still fails
goes down the error edge into the ``dead_letters`` table, where the summary finds it;
the next run tries those rows again. The run's input key is ``id@updated_at``: with a
checkpoint, a rerun skips the rows already done, and a row whose ``updated_at`` moved
on is refreshed again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import textwrap
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from async_dag import (
    DagPipeline,
    ItemError,
    PipelineBuilder,
    PipelineContext,
    RateLimit,
    RunStats,
    log_with_context,
)
from async_dag.cli.inputs import BadLine
from async_dag.cli.outputs import Writer

from .service import CURRENCIES, CatalogueAPI, CatalogueClient, ServiceUnavailable
from .store import Row, Store

log = logging.getLogger("async_dag.refresh")

FIELDS = ("id", "name", "price", "currency", "stock", "updated_at")


@dataclass(frozen=True, slots=True)
class Settings:
    """How the job calls the service and writes the database."""

    rate: float = 1000.0  # service calls per second, at most
    concurrency: int = 32  # service calls in flight
    retries: int = 4
    retry_delay: float = 0.05  # before the first retry; doubled for each further one
    retry_max_delay: float = 1.0
    retry_jitter: float = 0.5
    timeout: float = 2.0  # per service call
    batch_size: int = 100  # rows per transaction
    batch_timeout: float = 0.5  # seconds a batch waits to fill up

    def describe(self) -> str:
        """A few lines: how the service is called and how rows are written."""
        return (
            f"  service: at most {self.rate:g} calls/s, {self.concurrency} in flight, "
            f"{self.retries} retries backing off\n    from {self.retry_delay:g} s (x2, jitter "
            f"{self.retry_jitter:.0%}, cap {self.retry_max_delay:g} s), 429s waited out\n"
            f"  store: upserts in batches of {self.batch_size}, one transaction each; "
            "failures after retries -> dead_letters"
        )


# -- input and parsing ---------------------------------------------------------------------


def row_key(item: object) -> str:
    """The run's ``key=``: ``id@updated_at``, so a row that changed is refreshed again.

    Rows without both fields are rejected anyway: a line that is not JSON is known by its
    line number, anything else by a hash of its content.
    """
    if isinstance(item, dict) and isinstance(item.get("id"), str) and "updated_at" in item:
        return f"{item['id']}@{item['updated_at']}"
    if isinstance(item, BadLine):
        return f"line {item.line_no}"
    text = json.dumps(item, sort_keys=True, default=str)
    return "row " + hashlib.sha256(text.encode()).hexdigest()[:16]


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
    """A row that failed validation: a short reason and the details."""

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
    for name in ("id", "name"):
        if not isinstance(data[name], str) or not data[name]:
            raise ValueError(f"wrong type: {name} {data[name]!r}")
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


def parse(ctx: PipelineContext, item: object) -> Product | Reject:
    """A decoded line (or a line that is not JSON): a Product, or a Reject saying why."""
    if isinstance(item, BadLine):
        return Reject("bad json", item.reason)
    try:
        return validate(item)
    except ValueError as exc:
        reason, _, detail = str(exc).partition(": ")
        return Reject(reason, detail)


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


# -- the job ---------------------------------------------------------------------------------


def make_pipeline(settings: Settings, client: CatalogueClient, store: Store) -> DagPipeline:
    """The refresh job as a DAG calling the API through ``client``, writing through ``store``."""

    async def enrich(ctx: PipelineContext, product: Product) -> Row:
        """One service call per row; the task's options retry, back off and wait out 429s."""
        body = await client.lookup(
            ctx, product.id, price=product.price, currency=product.currency, name=product.name
        )
        return Row(
            product.id,
            product.name,
            product.price,
            product.currency,
            body["price_eur"],
            body["category"],
            product.stock,
            product.updated_at,
        )

    def store_rows(ctx: PipelineContext, rows: list[Row]) -> None:
        """Upsert a batch in one transaction; None: every row is done, with no output."""
        store.upsert(rows)
        log_with_context(log, ctx, logging.DEBUG, "stored %d rows", len(rows))

    def dead_letters(ctx: PipelineContext, failures: list[ItemError]) -> None:
        """Keep the rows the service failed for good, with why, in their table."""
        store.dead_letters(
            [
                (f.payload.id, f.ctx.data_id, f.node, f.exception, dataclasses.asdict(f.payload))
                for f in failures
            ]
        )
        for f in failures:
            log_with_context(log, f.ctx, logging.DEBUG, "dead letter: %r", f.exception)

    s = settings
    return (
        PipelineBuilder("refresh")
        .add_task("parse", parse, inline=True)
        .add_task("rejects", keep_reject, inline=True)
        .add_task(
            "enrich",
            enrich,
            concurrency=s.concurrency,
            rate_limit=client.limit,
            timeout=s.timeout,
            retries=s.retries,
            retry_delay=s.retry_delay,
            retry_backoff=2.0,
            retry_max_delay=s.retry_max_delay,
            retry_jitter=s.retry_jitter,
            retry_on=(ServiceUnavailable, TimeoutError),  # a 404 is final; 429s always wait
        )
        .add_task("store", store_rows, batch_size=s.batch_size, batch_timeout=s.batch_timeout)
        .add_task("dead_letters", dead_letters, batch_size=50, batch_timeout=s.batch_timeout)
        .add_edge("parse", "enrich", when=is_valid)
        .add_edge("parse", "rejects", when=is_rejected)
        .add_edge("enrich", "store")
        .add_edge("enrich", "dead_letters", on_error=True)
        .build()
    )


def make_client(settings: Settings, api: CatalogueAPI) -> CatalogueClient:
    """A client of ``api`` with its own budget of ``settings.rate`` calls per second."""
    return CatalogueClient(api, RateLimit(settings.rate))


# -- the summary -----------------------------------------------------------------------------


class Rejects(Writer):
    """The run's ``result_handler``: counts the rejects sink's outputs by reason."""

    timely = False

    def __init__(self) -> None:
        self.reasons: Counter[str] = Counter()

    def __call__(self, ctx: Any, value: Any) -> None:
        if isinstance(value, Reject):
            self.reasons[value.reason] += 1


@dataclass
class Summary:
    """What one run did, from its stats, the store, the service and the tables."""

    stats: RunStats
    store: Store
    api: CatalogueAPI
    rejects: Counter[str]
    tables: tuple[int, int]  # rows in products, dead_letters

    def render(self, database: str, checkpoint: str) -> str:
        """The lines printed at the end of the job."""
        st, nodes = self.store.statuses, self.stats.nodes
        enrich = nodes["enrich"]
        rate = self.stats.inputs / self.stats.elapsed if self.stats.elapsed > 0 else 0.0
        answers = ", ".join(f"{code} x{n}" for code, n in sorted(self.api.statuses.items()))
        indent = "\n" + " " * 27
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.rejects.items()))
        dead = ", ".join(f"{t} {n}" for t, n in sorted(self.store.dead.items()))
        lines = [
            f"  read      {self.stats.inputs:>7} rows",
            f"  skipped   {self.stats.skipped:>7} rows   done before, says {checkpoint} "
            "(--fresh: start over)",
            f"  written   {st['inserted'] + st['updated']:>7} rows   inserted {st['inserted']}, "
            f"updated {st['updated']}, in {self.store.batches} transactions",
            f"  unchanged {st['unchanged']:>7} rows   already up to date",
            f"  rejected  {sum(self.rejects.values()):>7} rows   "
            + indent.join(textwrap.wrap(reasons, 70)),
            f"  calls     {sum(self.api.statuses.values()):>7}        {answers}",
            f"  retried   {enrich.retried:>7} calls  workers waited {enrich.throttled:.1f} s "
            "in all for the rate limit and Retry-After",
            f"  dead      {enrich.failed:>7} rows   {dead or 'none'}"
            + (f" -> dead_letters, {self.store.dead_batches} transactions" if dead else ""),
            f"  elapsed   {self.stats.elapsed:>7.2f} s      {rate:,.0f} rows/s",
            f"  database  {database}: {self.tables[0]} products, {self.tables[1]} in dead_letters",
        ]
        return "\n".join(line.rstrip() for line in lines)

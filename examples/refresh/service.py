"""A simulated remote catalogue API, in process, and the client the demo job calls it with.

The API answers like an HTTP service would: ``200`` with a body, ``503`` now and then
(and always for a few products whose backend is down), ``404`` for products it does not
know, and ``429`` with a ``Retry-After`` when it wants the caller to slow down. What it
answers depends only on ``seed``, the product id and how many times that product was
asked for, never on timing or concurrency: every run with the same seed fails the same
rows in the same way.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from async_dag import PipelineContext, RateLimit, RetryAfter

CURRENCIES = {"EUR": 1.0, "USD": 0.94, "GBP": 1.17, "CHF": 1.06}  # to EUR
CATEGORIES = ("lighting", "seating", "storage", "decor", "textiles", "tables")


@dataclass(frozen=True, slots=True)
class Response:
    """What one call returned: an HTTP-like status, headers and a JSON-like body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


class ServiceUnavailable(Exception):
    """A 503: the service failed this call; trying again later may work."""


class ProductNotFound(Exception):
    """A 404: the service does not know the product; trying again will not help."""


@dataclass
class CatalogueAPI:
    """The simulated service: ``await api.get(product_id, price, currency, name)``.

    ``fail_rate`` is the chance that a call gets a 503, ``throttle_rate`` a 429 (with
    ``Retry-After: 0.05``); about 1 product in 200 is unknown (404) and 1 in 500 sits on
    a backend that is down (503 every time). ``latency`` is the mean seconds per call
    (±75%). ``statuses`` counts the answers given.
    """

    seed: int = 7
    fail_rate: float = 0.1
    throttle_rate: float = 0.01
    latency: float = 0.02
    statuses: Counter[int] = field(default_factory=Counter)
    _asked: Counter[str] = field(default_factory=Counter)

    async def get(self, product_id: str, price: float, currency: str, name: str) -> Response:
        """Look one product up: its price in EUR and its category."""
        tries = self._asked[product_id]
        self._asked[product_id] += 1
        rng = random.Random(f"{self.seed}:{product_id}:{tries}")
        fate = random.Random(f"{self.seed}:{product_id}").random()
        await asyncio.sleep(self.latency * rng.uniform(0.25, 1.75))
        draw = rng.random()
        if fate < 0.005:
            response = Response(404, body={"error": f"no product {product_id}"})
        elif fate < 0.007 or draw < self.fail_rate:
            response = Response(503, body={"error": "catalogue backend unavailable"})
        elif draw < self.fail_rate + self.throttle_rate:
            response = Response(429, headers={"Retry-After": "0.05"})
        else:
            category = CATEGORIES[zlib.crc32(name.encode()) % len(CATEGORIES)]
            eur = round(price * CURRENCIES[currency], 2)
            response = Response(200, body={"price_eur": eur, "category": category})
        self.statuses[response.status] += 1
        return response


@dataclass
class CatalogueClient:
    """Calls the API and turns its answers into values or the exceptions the task's
    retry options act on: 429 -> ``RetryAfter`` (retried after the server's delay, the
    shared ``limit`` paused meanwhile), 503 -> ``ServiceUnavailable`` (retried with
    back-off), 404 -> ``ProductNotFound`` (final at once)."""

    api: CatalogueAPI
    limit: RateLimit  # one budget for every task that calls this API

    async def lookup(self, ctx: PipelineContext, product_id: str, **fields: Any) -> dict[str, Any]:
        """One call; the body of a 200, else the exception for its status."""
        response = await self.api.get(product_id, **fields)
        if response.status == 200:
            return response.body
        if response.status == 429:
            raise RetryAfter(float(response.headers["Retry-After"]), "429 Too Many Requests")
        if response.status == 404:
            raise ProductNotFound(f"404 {response.body['error']}")
        raise ServiceUnavailable(
            f"{response.status} {response.body['error']} (try {ctx.attempt + 1})"
        )

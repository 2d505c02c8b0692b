"""Job files for tests/test_cli.py: one target of every kind the command line takes."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import time
from dataclasses import dataclass
from typing import NamedTuple

from async_dag import PipelineBuilder

number = 42


async def double(ctx, item):
    """One output per input."""
    return {"id": ctx.data_id, "n": item["n"] * 2}


async def explode(ctx, item):
    """Zero or more outputs per input."""
    for i in range(item["n"]):
        yield {"n": item["n"], "i": i}


async def echo(ctx, item):
    """The input, its data_id and the metadata."""
    return {"data_id": ctx.data_id, "item": item, "metadata": dict(ctx.metadata)}


async def fails_on_3(ctx, item):
    """Fails for n == 3."""
    if item["n"] == 3:
        raise ValueError("three is not allowed")
    return item


async def slow(ctx, item):
    """A little work per item, so that a run lasts until it is interrupted."""
    await asyncio.sleep(0.002)
    return {"n": item["n"], "text": "x" * 50}


def plain(ctx, item):
    """A plain def: a DAG task, not a function pipeline."""
    return item


class Point(NamedTuple):
    x: int
    y: int


@dataclass
class Reading:
    sensor: str
    value: decimal.Decimal
    day: datetime.date


async def rich(ctx, item):
    """Values JSON cannot write by itself."""
    return {
        "when": datetime.datetime(2026, 12, 1, 8, 30, tzinfo=datetime.UTC),
        "price": decimal.Decimal("19.99"),
        "point": Point(1, 2),
        "reading": Reading("a", decimal.Decimal("3"), datetime.date(2026, 12, 1)),
    }


async def point(ctx, item):
    """A named tuple per input."""
    return Point(item["n"], -item["n"])


def is_even(ctx, value):
    return value["n"] % 2 == 0


def is_odd(ctx, value):
    return value["n"] % 2 == 1


async def tag_even(ctx, value):
    return {**value, "parity": "even"}


def tag_odd(ctx, value):
    return {**value, "parity": "odd"}


builder = (
    PipelineBuilder("parity")
    .add_task("double", double, concurrency=2)
    .add_task("even", tag_even)
    .add_task("odd", tag_odd)
    .add_edge("double", "even", when=is_even)
    .add_edge("double", "odd", when=is_odd)
)
pipeline = builder.build()


def make_pipeline():
    """A factory: a zero-argument function returning a pipeline."""
    return builder.build()


def make_nothing():
    """A factory that returns something else."""
    return [1, 2, 3]


def nap(ctx, item):
    """Blocks its worker thread for a long time."""
    time.sleep(30)
    return item


blocking = (
    PipelineBuilder("blocking")
    .add_task("slow", slow)
    .add_task("nap", nap, concurrency=2)
    .add_edge("slow", "nap", when=lambda ctx, v: v["n"] % 50 == 49)
    .add_task("out", tag_odd)
    .add_edge("slow", "out")
    .build()
)

broken_builder = PipelineBuilder("broken").add_task("a", double).add_edge("a", "nowhere")


async def hog(ctx, item):
    """Works a little per item, then from item 150 on blocks the event loop itself."""
    if item["n"] >= 150:
        time.sleep(30)
    await asyncio.sleep(0.01)
    return {"n": item["n"], "text": "x" * 50}

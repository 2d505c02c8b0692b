"""Logging with context: setup_logging, log_with_context and the engine's debug logs."""

from __future__ import annotations

import io
import logging

import pytest

from async_dag import PipelineBuilder, PipelineContext, log_with_context, setup_logging


@pytest.fixture
def logger():
    log = logging.getLogger("async_dag")
    saved = (log.level, list(log.handlers))
    yield log
    log.setLevel(saved[0])
    log.handlers[:] = saved[1]


def test_setup_logging_configures_one_handler_and_reconfigures_it(logger):
    """Calling setup_logging twice keeps one handler, with the new level and stream."""
    first, second = io.StringIO(), io.StringIO()
    log = setup_logging(logging.INFO, stream=first)
    assert log is logger
    setup_logging(logging.DEBUG, stream=second)
    ours = [h for h in logger.handlers if h.get_name() == "async_dag.setup_logging"]
    assert len(ours) == 1 and logger.level == logging.DEBUG
    logger.debug("hello")
    assert first.getvalue() == "" and "hello" in second.getvalue()


def test_records_without_context_show_a_placeholder(logger):
    """A plain record logs fine, with '-' where the context would be."""
    buf = io.StringIO()
    setup_logging(stream=buf)
    logging.getLogger("async_dag.sub").info("plain message")
    assert "[run=- data=- path=-] plain message" in buf.getvalue()


def test_log_with_context_attaches_the_context(logger):
    """log_with_context puts run_id, data_id, node and node_path on the record."""
    buf = io.StringIO()
    setup_logging(stream=buf)
    ctx = PipelineContext("run1", "17", ("fetch", "parse"))
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    log_with_context(logger, ctx, logging.INFO, "stored %d rows", 4)
    assert "[run=run1 data=17 path=fetch>parse] stored 4 rows" in buf.getvalue()
    rec = records[0]
    assert (rec.run_id, rec.data_id, rec.node, rec.node_path) == (
        "run1",
        "17",
        "parse",
        "fetch>parse",
    )


async def test_engine_logs_branches_and_loop_backs_at_debug(logger):
    """Routing along conditional edges and loop-backs is logged at debug with the context."""
    buf = io.StringIO()
    setup_logging(logging.DEBUG, stream=buf)

    async def ident(ctx, x):
        return x

    def again(ctx, x):
        return x == 0

    def done(ctx, x):
        return x == 1

    p = (
        PipelineBuilder()
        .add_task("a", ident)
        .add_task("b", ident)
        .add_task("out", ident)
        .add_edge("a", "b")
        .add_edge("b", "a", when=again, max_loops=1)
        .add_edge("b", "out", when=done)
        .build()
    )
    await p.run_stream([0, 1, 2], run_id="dbg", on_error="collect")
    text = buf.getvalue()
    assert "[run=dbg data=0 path=a>b>a] loop back along b -> a (when=again" in text
    assert "[run=dbg data=1 path=a>b>out] routed along b -> out (when=done)" in text
    assert "[run=dbg data=2 path=a>b] unrouted output of b" in text


async def test_engine_logs_unconditional_fan_out_at_debug(logger):
    """Each route of an output that goes down several plain edges is logged at debug."""
    buf = io.StringIO()
    setup_logging(logging.DEBUG, stream=buf)

    async def ident(ctx, x):
        return x

    p = (
        PipelineBuilder()
        .add_task("a", ident)
        .add_task("b", ident)
        .add_task("c", ident)
        .add_edge("a", "b")
        .add_edge("a", "c")
        .build()
    )
    result = await p.run_stream([7], run_id="fan")
    assert sorted(result) == [7, 7]
    text = buf.getvalue()
    assert "[run=fan data=0 path=a>b] routed along a -> b" in text
    assert "[run=fan data=0 path=a>c] routed along a -> c" in text

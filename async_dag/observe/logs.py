"""Logging with the payload's context: run id, data id and node path on every record.

Example::

    log = setup_logging(logging.DEBUG)
    log_with_context(log, ctx, logging.INFO, "stored %d rows", n)
    # 12:00:01 INFO async_dag [run=3f2a9c data=17 path=fetch>parse] stored 4 rows
"""

from __future__ import annotations

import logging
from typing import IO, Any

from ..core.context import PipelineContext

LOGGER_NAME = "async_dag"
_HANDLER_NAME = "async_dag.setup_logging"
_PLACEHOLDER = "-"

FORMAT = (
    "%(asctime)s %(levelname)s %(name)s "
    "[run=%(run_id)s data=%(data_id)s path=%(node_path)s] %(message)s"
)


class ContextFormatter(logging.Formatter):
    """Formats records with their context; records logged without one show ``-``."""

    def __init__(self, fmt: str = FORMAT, datefmt: str | None = "%H:%M:%S") -> None:
        super().__init__(fmt, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        for name in ("run_id", "data_id", "node", "node_path"):
            value = getattr(record, name, _PLACEHOLDER)
            if isinstance(value, str) and not value.isprintable():
                value = _printable(value)  # a data_id with a newline forges no log line
            setattr(record, name, value)
        return super().format(record)


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def setup_logging(
    level: int | str = logging.INFO, *, stream: IO[str] | None = None
) -> logging.Logger:
    """Configure the ``async_dag`` logger with one handler that shows each record's context.

    Calling it again changes the level (and the stream, when given) of that same handler
    instead of adding a second one. Returns the logger.
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    handler = next((h for h in logger.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = logging.StreamHandler(stream)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(ContextFormatter())
        logger.addHandler(handler)
    elif stream is not None and isinstance(handler, logging.StreamHandler):
        handler.setStream(stream)
    handler.setLevel(level)
    return logger


def context_fields(ctx: PipelineContext) -> dict[str, Any]:
    """The fields a log record carries for ``ctx``."""
    return {
        "run_id": ctx.run_id,
        "data_id": ctx.data_id,
        "node": ctx.path[-1] if ctx.path else _PLACEHOLDER,
        "node_path": ">".join(ctx.path) or _PLACEHOLDER,
    }


def log_with_context(
    logger: logging.Logger,
    ctx: PipelineContext,
    level: int,
    msg: str,
    *args: Any,
    **kwargs: Any,
) -> None:
    """Log ``msg % args`` through ``logger`` with ``ctx``'s run id, data id, node and path.

    Extra ``kwargs`` go to ``logger.log`` (``exc_info=True``, ``extra={...}``, ...).
    """
    if not logger.isEnabledFor(level):
        return
    extra = dict(kwargs.pop("extra", None) or {})
    extra.update(context_fields(ctx))
    kwargs.setdefault("stacklevel", 2)
    logger.log(level, msg, *args, extra=extra, **kwargs)

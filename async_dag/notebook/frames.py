"""Turn a RunResult into pandas DataFrames: one row per output, or per collected error.

The ``path`` column holds each context's path as a tuple of node ids, exactly
``ctx.path``: lossless (a node id may itself contain ``>``), comparable with the
contexts, and usable in ``groupby``. For the ``"fetch>parse"`` spelling of the logs use
``df["path"].map(">".join)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas

    from ..core.results import RunResult

#: the columns every records frame starts with
META_COLUMNS = ("run_id", "data_id", "node", "path")
#: the columns of an errors frame
ERROR_COLUMNS = (*META_COLUMNS, "error", "message", "attempt")


def value_fields(value: Any) -> Mapping[Any, Any] | None:
    """The fields of a structured value (dict, dataclass instance, named tuple), else None.

    Fields are taken one level deep: nested values stay as they are in their cell.
    """
    if isinstance(value, Mapping):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return dict(zip(value._fields, value, strict=True))
    return None


def _column(name: Any) -> Any:
    # a field named like a context column keeps its value under value_<name>
    return f"value_{name}" if name in META_COLUMNS else name


def records_frame(result: RunResult) -> pandas.DataFrame:
    """One row per record: ``run_id``, ``data_id``, ``node``, ``path``, then the value.

    A dict, dataclass or named-tuple value spreads into one column per field (a field
    named like a context column becomes ``value_<name>``); any other value goes to a
    ``value`` column. Records of different shapes give the union of their columns, with
    missing cells left empty. An empty result gives an empty frame with the context
    columns and ``value``.
    """
    import pandas

    rows: list[dict[Any, Any]] = []
    columns: dict[Any, None] = dict.fromkeys(META_COLUMNS)  # ordered set, first seen first
    for record in result.records:
        ctx = record.ctx
        row: dict[Any, Any] = {
            "run_id": ctx.run_id,
            "data_id": ctx.data_id,
            "node": record.node,
            "path": ctx.path,
        }
        fields = value_fields(record.value)
        if fields is None:
            row["value"] = record.value
        else:
            for name, field_value in fields.items():
                row[_column(name)] = field_value
        columns.update(dict.fromkeys(row))
        rows.append(row)
    if not rows:
        columns["value"] = None
    return pandas.DataFrame.from_records(rows, columns=list(columns))


def errors_frame(result: RunResult) -> pandas.DataFrame:
    """One row per collected error: where it happened and what was raised.

    Columns: ``run_id``, ``data_id``, ``node``, ``path``, ``error`` (the exception's type
    name), ``message`` (``str`` of the exception) and ``attempt`` (the failing call's
    ``ctx.attempt``).
    """
    import pandas

    rows = [
        {
            "run_id": err.ctx.run_id,
            "data_id": err.ctx.data_id,
            "node": err.node,
            "path": err.ctx.path,
            "error": type(err.exception).__name__,
            "message": str(err.exception),
            "attempt": err.ctx.attempt,
        }
        for err in result.errors
    ]
    return pandas.DataFrame.from_records(rows, columns=list(ERROR_COLUMNS))

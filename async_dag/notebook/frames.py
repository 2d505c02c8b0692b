"""Turn a RunResult into tables: one row per output (pandas, pyarrow or polars), or per
collected error (pandas).

Every form has the same columns. Each library is imported on first use; a missing one
raises ImportError naming the extra that installs it (``pip install 'async-dag[arrow]'``).
The ``path`` column holds each context's path as a tuple of node ids, exactly
``ctx.path``: lossless (a node id may itself contain ``>``), comparable with the
contexts, and usable in ``groupby``. For the ``"fetch>parse"`` spelling of the logs use
``df["path"].map(">".join)``.
"""

from __future__ import annotations

import dataclasses
import html
import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas
    import polars
    import pyarrow

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


#: the optional dependency that brings each table library, for the ImportError's hint
EXTRAS = {"pandas": "notebook", "pyarrow": "arrow", "polars": "polars"}


def load(module: str) -> Any:
    """Import a table library, or raise ImportError saying which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = EXTRAS[module]
        raise ImportError(
            f"{module} is not installed: pip install 'async-dag[{extra}]' (or pip install {module})"
        ) from exc


def record_rows(result: RunResult) -> tuple[list[Any], list[dict[Any, Any]]]:
    """The records as ``(columns, rows)``: the column names in first-seen order, and one
    dict per record (a record lacks the fields its value does not have).

    A dict, dataclass or named-tuple value spreads into one column per field (a field
    named like a context column becomes ``value_<name>``); any other value goes to a
    ``value`` column. An empty result has the context columns and ``value``.
    """
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
    return list(columns), rows


def records_frame(result: RunResult) -> pandas.DataFrame:
    """One row per record: ``run_id``, ``data_id``, ``node``, ``path``, then the value.

    Columns as :func:`record_rows` says: structured values spread into one column per
    field; records of different shapes give the union of their columns, with missing
    cells left empty. Needs pandas.
    """
    pd = load("pandas")
    columns, rows = record_rows(result)
    frame: pandas.DataFrame = pd.DataFrame.from_records(rows, columns=columns)
    return frame


def _cells(rows: list[dict[Any, Any]], column: Any) -> list[Any]:
    return [row.get(column) for row in rows]


def _mixed(library: str, column: Any, exc: Exception) -> TypeError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]  # polars adds hints
    return TypeError(
        f"column {column!r} cannot become a {library} column ({reason}); give it values of "
        "one type, or use to_pandas(), which keeps any Python object"
    )


def records_arrow(result: RunResult) -> pyarrow.Table:
    """The records as a ``pyarrow.Table``, with the columns of :func:`records_frame`.

    The context columns are strings (``path`` a list of strings); other columns take
    the type Arrow infers, null where a record lacks the field. Column names are
    ``str(name)``. A column mixing types Arrow cannot unite raises TypeError.
    """
    pa = load("pyarrow")
    columns, rows = record_rows(result)
    known = {"run_id": pa.string(), "data_id": pa.string(), "node": pa.string()}
    known["path"] = pa.list_(pa.string())
    arrays = []
    for column in columns:
        try:
            arrays.append(pa.array(_cells(rows, column), type=known.get(column)))
        except pa.ArrowException as exc:
            raise _mixed("pyarrow", column, exc) from exc
    table: pyarrow.Table = pa.Table.from_arrays(arrays, names=[str(c) for c in columns])
    return table


def records_polars(result: RunResult) -> polars.DataFrame:
    """The records as a ``polars.DataFrame``, with the columns of :func:`records_frame`.

    The context columns are strings (``path`` a list of strings); other columns take
    the type polars infers (``Object`` for other Python objects), null where a record
    lacks the field. Column names are ``str(name)``. A column mixing types raises
    TypeError.
    """
    pl = load("polars")
    columns, rows = record_rows(result)
    known = {"run_id": pl.String, "data_id": pl.String, "node": pl.String}
    known["path"] = pl.List(pl.String)
    series = []
    for column in columns:
        try:
            series.append(pl.Series(str(column), _cells(rows, column), dtype=known.get(column)))
        except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            raise _mixed("polars", column, exc) from exc
    frame: polars.DataFrame = pl.DataFrame(series)
    return frame


def errors_frame(result: RunResult) -> pandas.DataFrame:
    """One row per collected error: where it happened and what was raised.

    Columns: ``run_id``, ``data_id``, ``node``, ``path``, ``error`` (the exception's type
    name), ``message`` (``str`` of the exception) and ``attempt`` (the failing call's
    ``ctx.attempt``).
    """
    pd = load("pandas")
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
    frame: pandas.DataFrame = pd.DataFrame.from_records(rows, columns=list(ERROR_COLUMNS))
    return frame


#: the per-node counters of the HTML summary: (NodeStats field, column heading)
SUMMARY_COUNTERS = (
    ("received", "received"),
    ("emitted", "emitted"),
    ("failed", "failed"),
    ("retried", "retried"),
    ("unrouted", "unrouted"),
    ("filtered", "filtered"),
    ("max_queue_depth", "max queue"),
)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _describe(exc: BaseException, limit: int = 200) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:  # a broken __str__ must not break the summary
        text = type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def result_html(result: RunResult, max_errors: int = 5) -> str:
    """A short HTML summary of a run (standard library only, every user string escaped).

    A line with the outputs, errors, inputs and elapsed time; a table with one row per
    node (the counters of SUMMARY_COUNTERS); the first ``max_errors`` collected errors.
    """
    esc = html.escape
    stats = result.stats
    state = "" if stats.state in ("done", "running") else f" ({esc(stats.state)})"
    out = [
        '<div class="async-dag-result">',
        f"<p><b>RunResult</b> {esc(str(stats.name))} <code>{esc(result.run_id)}</code>: "
        f"{_plural(len(result), 'output')}, {_plural(len(result.errors), 'error')}, "
        f"{_plural(stats.inputs, 'input')}, {stats.elapsed:.2f} s{state}</p>",
        "<table>",
        "<thead><tr><th>node</th>"
        + "".join(f"<th>{head}</th>" for _, head in SUMMARY_COUNTERS)
        + "</tr></thead>",
        "<tbody>",
    ]
    for node_id, node in stats.nodes.items():
        cells = "".join(
            f'<td style="text-align: right">{int(getattr(node, name, 0))}</td>'
            for name, _ in SUMMARY_COUNTERS
        )
        out.append(f'<tr><td style="text-align: left">{esc(str(node_id))}</td>{cells}</tr>')
    out += ["</tbody>", "</table>"]
    if result.errors:
        shown = result.errors[:max_errors]
        hidden = len(result.errors) - len(shown)
        out.append(
            f"<p>First {len(shown)} of {len(result.errors)} errors:</p>"
            if hidden
            else "<p>Errors:</p>"
        )
        out.append("<ul>")
        for err in shown:
            out.append(
                f"<li><code>{esc(str(err.node))}</code> data_id "
                f"<code>{esc(str(err.ctx.data_id))}</code>: {esc(_describe(err.exception))}</li>"
            )
        out.append("</ul>")
        if hidden:
            out.append(f"<p>… and {hidden} more: <code>result.errors_to_pandas()</code></p>")
    out.append("</div>")
    return "\n".join(out)

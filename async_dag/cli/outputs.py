"""Write sink values as they come: JSON Lines (stdout or ``.jsonl``), CSV or Parquet.

Writers are ``result_handler``s: they keep no value longer than one chunk. Text is
written in chunks of whole lines, so a file cut short by Ctrl-C or a crash still ends
at a line's end; Parquet is written in row groups and closed with its footer.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import decimal
import importlib
import io
import json
import sys
from pathlib import Path
from typing import Any, BinaryIO

from .targets import UsageError

CHUNK = 1 << 16  # bytes of text per write
ROW_GROUP = 10_000  # Parquet rows per row group
_SCALARS = (str, int, float, bool, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)``: dates as ISO strings, decimals as numbers, dataclasses
    and named tuples as objects, sets as lists; anything else as its ``str``."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _plain(value: Any) -> Any:
    """Named tuples as dicts, also inside dicts and lists (JSON would make them arrays)."""
    kind = type(value)
    if kind in _SCALAR_TYPES:
        return value
    if kind is dict:
        for item in value.values():
            if type(item) not in _SCALAR_TYPES:
                return {k: _plain(v) for k, v in value.items()}
        return value
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if kind is list or kind is tuple:
        return [_plain(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """One JSON text for one value (``ensure_ascii=False``: UTF-8 stays readable)."""
    return json.dumps(_plain(value), default=json_default, ensure_ascii=False)


def as_row(value: Any) -> dict[str, Any]:
    """The columns of one value: a dict, dataclass or named tuple's fields, else ``value``."""
    if isinstance(value, dict):
        return value
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return dict(value._asdict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return {"value": value}


class OutputError(Exception):
    """Writing failed for good, through no fault of the value at hand."""


class Writer:
    """Base of the writers: ``writer(ctx, value)`` takes one sink output.

    ``timely``: worth flushing now and then while a run goes on (text, for ``| jq``).
    """

    timely = True

    def __call__(self, ctx: Any, value: Any) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Write out what is buffered (whole lines or rows only)."""

    def close(self) -> None:
        """Flush and close; the file is complete and valid afterwards."""


class _TextChunks(Writer):
    """Buffers whole lines and writes them in chunks to a binary stream."""

    def __init__(self, stream: BinaryIO, *, owned: bool) -> None:
        self._stream = stream
        self._owned = owned
        self._parts: list[str] = []
        self._size = 0
        # stdout: what a handler print()ed goes out first, never into one of our lines
        self._before = sys.stdout.flush if stream is sys.stdout.buffer else None

    def _add(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._size >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self._parts:
            return
        data = "".join(self._parts).encode("utf-8", "surrogateescape")
        self._parts.clear()
        self._size = 0
        if self._before is not None:
            self._before()
        self._stream.write(data)
        self._stream.flush()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._owned:
                self._stream.close()


class JsonLinesWriter(_TextChunks):
    """One JSON text per line."""

    def __call__(self, ctx: Any, value: Any) -> None:
        self._add(dumps(value) + "\n")


def _cell(value: Any) -> Any:
    if isinstance(value, _SCALARS):
        return "" if value is None else value
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return dumps(value)  # lists, dicts, dataclasses: their JSON text


class CsvWriter(_TextChunks):
    """One row per value; the header is the first row's fields."""

    def __init__(self, stream: BinaryIO, *, owned: bool) -> None:
        super().__init__(stream, owned=owned)
        self._fields: list[str] | None = None
        self._known: set[str] = set()
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\n")

    def _line(self, cells: list[Any]) -> str:
        self._csv.writerow(cells)
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text

    def __call__(self, ctx: Any, value: Any) -> None:
        row = as_row(value)
        if self._fields is None:
            self._fields = [str(k) for k in row]
            self._known = set(self._fields)
            self._add(self._line(self._fields))
        extra = [k for k in row if k not in self._known]
        if extra:
            raise ValueError(
                f"CSV output: fields {extra} are not in the header {self._fields} "
                "(taken from the first row); write .jsonl to keep them"
            )
        self._add(self._line([_cell(row.get(k)) for k in self._fields]))


class ParquetWriter(Writer):
    """Rows collected into row groups of ``ROW_GROUP``; the schema is the first group's."""

    timely = False

    def __init__(self, path: Path) -> None:
        self._pa = importlib.import_module("pyarrow")
        self._pq = importlib.import_module("pyarrow.parquet")
        self._path = path
        self._rows: list[dict[str, Any]] = []
        self._writer: Any = None
        self._schema: Any = None

    def __call__(self, ctx: Any, value: Any) -> None:
        self._rows.append(as_row(value))
        if len(self._rows) >= ROW_GROUP:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        try:
            table = self._pa.Table.from_pylist(rows, schema=self._schema)
            if self._writer is None:
                self._schema = table.schema
                self._writer = self._pq.ParquetWriter(str(self._path), self._schema)
            self._writer.write_table(table)
        except (self._pa.ArrowException, ValueError, TypeError) as exc:
            raise OutputError(
                f"cannot write these rows to {self._path} with the columns of the first "
                f"row group ({self._schema}): {exc}"
            ) from exc

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._writer is None:  # no rows at all: still a valid (empty) file
                schema = self._pa.schema([])
                self._writer = self._pq.ParquetWriter(str(self._path), schema)
            self._writer.close()


OUTPUT_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".parquet")


def check_writable(path: str, inputs: list[str]) -> None:
    """Refuse a file to write whose folder is missing, or that is one of the inputs."""
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise UsageError(f"cannot write {path}: no such folder {folder}")
    if any(i != "-" and Path(i).resolve() == Path(path).resolve() for i in inputs):
        raise UsageError(f"{path} is also an input: writing it would lose the input")


def check_output(output: str | None, inputs: list[str]) -> str | None:
    """Refuse an OUTPUT that cannot be written, before anything runs."""
    if output is None or output == "-":
        return None
    check_writable(output, inputs)
    suffix = Path(output).suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise UsageError(
            f"cannot tell the output format of {output}: use a name ending in "
            f"{', '.join(OUTPUT_SUFFIXES)} (or no -o for JSON Lines on stdout)"
        )
    if suffix == ".parquet":
        try:
            importlib.import_module("pyarrow.parquet")
        except ImportError:
            raise UsageError(
                f"writing {output} needs pyarrow: pip install 'async-dag[arrow]'"
            ) from None
    return output


def open_writer(output: str | None) -> Writer:
    """The writer for OUTPUT (checked by :func:`check_output`); None is stdout."""
    if output is None:
        return JsonLinesWriter(sys.stdout.buffer, owned=False)
    path = Path(output)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return ParquetWriter(path)
    stream = open(path, "wb", buffering=0)  # noqa: SIM115 - closed by the writer
    if suffix == ".csv":
        return CsvWriter(stream, owned=True)
    return JsonLinesWriter(stream, owned=True)


def write_errors(path: str, errors: list[Any]) -> None:
    """``--errors FILE``: one JSON object per failed item."""
    with open(path, "w", encoding="utf-8") as out:
        for err in errors:
            record = {
                "node": err.node,
                "data_id": err.ctx.data_id,
                "error_type": type(err.exception).__name__,
                "error": str(err.exception),
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")

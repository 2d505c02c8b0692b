"""The demo refresh job (``make demo``): a product feed into SQLite, resumable.

The job itself lives in ``examples/refresh/``; this is its command line::

    python main.py                    # the shipped feed into var/refresh.db
    python main.py                    # again: skips the rows done, retries dead letters
    python main.py --fresh            # forget the checkpoint, empty the tables, start over
    python main.py feed.jsonl --db /tmp/shop.db --rate 200
    python main.py -v                 # debug logs with run id, data id and node path

Exit status: 0 when the job ran to the end (rows that failed for good are in the
``dead_letters`` table and the summary, and are tried again by the next run); 1 when the
job itself broke; 2 for bad arguments; 130 when interrupted (143 for SIGTERM). A job
killed outright resumes where its checkpoint says.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from async_dag import Checkpoint, setup_logging
from async_dag.cli.inputs import read_inputs
from async_dag.cli.session import Session, Tap
from async_dag.observe.terminal import TerminalMonitor
from examples.refresh.job import Rejects, Settings, Summary, make_client, make_pipeline, row_key
from examples.refresh.service import CatalogueAPI
from examples.refresh.store import Store, clear_tables, count_rows, init_database

ROOT = Path(__file__).resolve().parent
DEFAULT_INPUT = ROOT / "examples" / "refresh" / "products.jsonl"
DEFAULT_DB = ROOT / "var" / "refresh.db"  # var/ is git-ignored


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def number(
    kind: type[int] | type[float], low: float, high: float = float("inf")
) -> Callable[[str], int | float]:
    """argparse type: an int or float in ``[low, high]``."""

    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not low <= value <= high:
            bounds = f"between {low:g} and {high:g}" if high < float("inf") else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value

    return convert


def shown(path: Path) -> str:
    """``path`` as printed: relative to the current folder when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read and check the arguments; a bad one ends the program with a one-line error."""
    p = Parser(prog="main.py", description="Refresh a SQLite product table from a feed.")
    add = p.add_argument
    add("input", nargs="?", type=Path, default=DEFAULT_INPUT, help="JSON Lines feed")
    add("--db", type=Path, default=DEFAULT_DB, help="SQLite file (default: var/refresh.db)")
    add("--checkpoint", type=Path, help="checkpoint file (default: the db's, .checkpoint)")
    add("--fresh", action="store_true", help="clear the checkpoint and the tables first")
    add("--rate", type=number(float, 0.1), default=1000.0, help="service calls/s at most")
    add("--concurrency", type=number(int, 1), default=32, help="service calls in flight")
    add("--batch-size", type=number(int, 1), default=100, help="rows per transaction")
    add("--seed", type=int, default=7, help="seed of the simulated service (default: 7)")
    add("--fail-rate", type=number(float, 0, 1), default=0.1, help="chance of a 503 per call")
    add("--latency", type=number(float, 0), default=20.0, help="mean service latency, ms")
    add("--limit", type=number(int, 1), help="read only the first N lines")
    add("--no-progress", action="store_true", help="no live progress display")
    add("-v", "--verbose", action="store_true", help="debug logs with each row's context")
    args = p.parse_args(argv)
    if not args.input.is_file():
        p.error(f"input file not found: {args.input}")
    try:
        args.db = init_database(args.db).resolve()
    except (sqlite3.Error, OSError) as exc:
        p.error(f"cannot use database {args.db}: {exc}")
    if args.checkpoint is None:
        args.checkpoint = args.db.with_suffix(".checkpoint")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the job from the command line; return the exit status."""
    args = parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.WARNING)
    checkpoint = Checkpoint(args.checkpoint)
    if args.fresh:
        checkpoint.clear()
        clear_tables(args.db)
    settings = Settings(rate=args.rate, concurrency=args.concurrency, batch_size=args.batch_size)
    api = CatalogueAPI(seed=args.seed, fail_rate=args.fail_rate, latency=args.latency / 1000)
    store = Store(args.db)
    pipeline = make_pipeline(settings, make_client(settings, api), store)
    # the progress display redraws in place: only on a terminal, and not over debug logs
    show = not args.no_progress and not args.verbose and sys.stderr.isatty()
    rejects = Rejects()
    session = Session(rejects, Tap(TerminalMonitor(stream=sys.stderr) if show else None))
    print(f"refresh {shown(args.input)} -> {shown(args.db)}\n{settings.describe()}", flush=True)
    rows = read_inputs([str(args.input)], "jsonl", keep_bad=True, limit=args.limit)
    try:
        outcome = session.run(
            lambda: pipeline.run_stream(
                rows,
                key=row_key,
                checkpoint=checkpoint,
                result_handler=session.deliver,
                monitor=session.tap,
            )
        )
    finally:
        store.close()
    if outcome.interrupted:
        session.disarm()
        print("main.py: interrupted; the rows stored so far are kept", file=sys.stderr)
        return outcome.status
    if outcome.error is not None:
        print(f"main.py: {type(outcome.error).__name__}: {outcome.error}", file=sys.stderr)
        return 1
    summary = Summary(outcome.result.stats, store, api, rejects.reasons, count_rows(args.db))
    print(summary.render(shown(args.db), shown(args.checkpoint)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

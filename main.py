"""The demo refresh job: stream a product feed into SQLite through an async_dag pipeline.

Each line of the feed is parsed and validated (malformed rows go to a rejects sink),
enriched by a simulated remote service (32 calls in flight, transient failures looped
back at most 3 times) and upserted into SQLite, where a row is rewritten only when its
content changed. A live progress display runs meanwhile, then a summary is printed::

    python main.py                    # the shipped feed into var/refresh.db
    python main.py feed.jsonl --db /tmp/shop.db --concurrency 64
    python main.py --processes 2      # the feed split over 2 processes, one database
    python main.py --plain            # the same job written as one async function
    python main.py -v                 # debug logs with run id, line number and node path

Exit status: 0 when the job ran to the end, rows that failed included (a row the service
keeps failing is counted and listed in the summary, not fatal; it is tried again on the
next run, with the same outcome for the same --seed);
1 when the job itself broke; 2 for bad arguments; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import sqlite3
import sys
import time
from pathlib import Path
from typing import NoReturn

from async_dag import run_function_pipeline, run_pipeline_in_subprocess, setup_logging
from refresh_job import (
    MAX_RETRIES,
    JobConfig,
    LineBatch,
    Store,
    Tally,
    build_pipeline,
    count_products,
    init_database,
    line_no_of,
    make_pipeline,
    make_plain_job,
)

ROOT = Path(__file__).resolve().parent
DEFAULT_INPUT = ROOT / "data" / "products.jsonl"
DEFAULT_DB = ROOT / "var" / "refresh.db"  # var/ is git-ignored


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    """argparse type: an int of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def probability(text: str) -> float:
    """argparse type: a number between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def milliseconds(text: str) -> float:
    """argparse type: a non-negative number of milliseconds, returned in seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value / 1000


def make_parser() -> Parser:
    """The command line of the job."""
    parser = Parser(
        prog="main.py",
        description="Refresh a SQLite product table from a JSON Lines feed, streaming.",
        epilog="Exit status: 0 when the job ran to the end (failed rows are listed in the "
        "summary), 1 when it broke, 2 for bad arguments.",
    )
    parser.add_argument(
        "input", nargs="?", type=Path, default=DEFAULT_INPUT,
        help="JSON Lines feed (default: the shipped data/products.jsonl)",
    )  # fmt: skip
    parser.add_argument(
        "--db", type=Path, default=DEFAULT_DB, help="SQLite file (default: var/refresh.db)"
    )
    parser.add_argument(
        "--concurrency", type=positive_int, default=32, metavar="N",
        help="service calls in flight at once (default: 32)",
    )  # fmt: skip
    parser.add_argument(
        "--processes", type=positive_int, default=None, metavar="N",
        help="split the feed into N batches run in N worker processes",
    )  # fmt: skip
    parser.add_argument(
        "--plain", action="store_true",
        help="run the job written as one async function (run_function_pipeline)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=7, help="seed of the simulated service (default: 7)"
    )
    parser.add_argument(
        "--fail-rate", type=probability, default=0.15, metavar="P",
        help="chance that one service call fails (default: 0.15)",
    )  # fmt: skip
    parser.add_argument(
        "--latency", type=milliseconds, default=0.02, metavar="MS",
        help="mean service latency in milliseconds, ±75%% jitter (default: 20)",
    )  # fmt: skip
    parser.add_argument(
        "--limit", type=positive_int, default=None, metavar="N",
        help="read only the first N lines",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no live progress display")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug logs with each row's context (instead of the progress display)",
    )
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read and check the arguments; a bad one ends the program with a one-line error."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if not args.input.is_file():
        parser.error(f"input file not found: {args.input}")
    if args.plain and args.processes:
        parser.error("--plain runs in this process; it cannot be combined with --processes")
    try:
        args.db = init_database(args.db).resolve()
    except (sqlite3.Error, OSError) as exc:
        parser.error(f"cannot use database {args.db}: {exc}")
    return args


async def run_dag(config: JobConfig, source: LineBatch, monitor: bool) -> Tally:
    """Run the DAG in this process, counting outputs as they arrive."""
    tally = Tally()
    store = Store(config.db)
    try:
        result = await make_pipeline(config, store).run_stream(
            source, result_handler=tally.add, key=line_no_of, on_error="collect", monitor=monitor
        )
    finally:
        store.close()
    tally.add_run(result)
    return tally


async def run_plain(config: JobConfig, source: LineBatch, monitor: bool) -> Tally:
    """Run the one-function form of the job in this process."""
    tally = Tally()
    store = Store(config.db)
    try:
        result = await run_function_pipeline(
            source,
            make_plain_job(config, store),
            concurrency=config.concurrency,
            ordered=False,
            key=line_no_of,
            on_error="collect",
            result_handler=tally.add,
            monitor=monitor,
        )
    finally:
        store.close()
    tally.add_run(result)
    return tally


def run_processes(config: JobConfig, args: argparse.Namespace) -> Tally:
    """Run one batch of the feed per worker process, all writing the same database."""
    n = args.processes
    batches = [LineBatch(str(args.input), i, n, args.limit) for i in range(n)]
    results = run_pipeline_in_subprocess(
        functools.partial(build_pipeline, config),
        batches,
        processes=n,
        key=line_no_of,
        on_error="collect",
        monitor=not args.no_progress and not args.verbose,  # batch-level: as batches finish
    )
    tally = Tally()
    for result in results:
        tally.add_run(result)
    return tally


def describe(args: argparse.Namespace) -> str:
    """The two header lines: what runs, and how."""
    if args.processes:
        mode = f"DAG in {args.processes} processes"
    elif args.plain:
        mode = "one async function"
    else:
        mode = "DAG parse > enrich > store"
    return (
        f"refresh {args.input} -> {args.db}\n"
        f"  {mode}, {args.concurrency} service calls in flight, "
        f"up to {MAX_RETRIES} retries, seed {args.seed}"
    )


def run(args: argparse.Namespace, config: JobConfig) -> Tally:
    """Run the job the way the arguments ask; return what it did."""
    if args.processes:
        return run_processes(config, args)
    source = LineBatch(str(args.input), limit=args.limit)
    # the progress display redraws in place: with debug logs flowing it would scramble them
    monitor = not args.no_progress and not args.verbose
    if args.plain:
        return asyncio.run(run_plain(config, source, monitor))
    return asyncio.run(run_dag(config, source, monitor))


def main(argv: list[str] | None = None) -> int:
    """Run the job from the command line; return the exit status."""
    args = parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING
    setup_logging(level)
    config = JobConfig(
        db=str(args.db),
        seed=args.seed,
        fail_rate=args.fail_rate,
        latency=args.latency,
        concurrency=args.concurrency,
        log_level=level,
    )
    started = time.perf_counter()
    try:
        print(describe(args), flush=True)
        tally = run(args, config)
    except KeyboardInterrupt:
        print("main.py: interrupted; the rows stored so far are kept", file=sys.stderr)
        return 130
    tally.elapsed = time.perf_counter() - started
    print(tally.render(args.db, count_products(args.db)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

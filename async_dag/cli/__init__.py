"""The ``async-dag`` command line: run, draw and check a pipeline from a shell.

Example::

    async-dag run job.py:pipeline products.jsonl -o prices.csv --on-error collect
    cat ids.txt | async-dag run job.py:pipeline --format lines | jq .
    async-dag graph job.py:pipeline -o job.svg
    async-dag check job.py:pipeline

A thin shell over the library: one function per command, each returning its exit
status, chosen here only: 0 every item succeeded, 1 some failed or the run raised,
2 bad usage (said in one line), 130 interrupted (Ctrl-C; 143 for SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, NoReturn

from .. import __version__, run_function_pipeline
from ..observe.terminal import printable
from .describe import check_graph_output, describe, write_graph
from .inputs import FORMATS, check_inputs, field_key, guard, guard_sources, read_inputs
from .outputs import check_output, check_writable, open_writer, write_errors
from .session import INTERRUPTED, Outcome, Session, Tap
from .targets import Target, UsageError, load_target

OK, FAILED, USAGE = 0, 1, 2
PROG = "async-dag"

RUN_EXAMPLES = """\
examples:
  async-dag run job.py:pipeline products.jsonl -o prices.csv --key sku
  async-dag run jobs.refresh:enrich urls.txt --concurrency 16 -o pages.parquet
  cat ids.txt | async-dag run job.py:pipeline --format lines | jq .

TARGET is module:attr or path/to/file.py:attr: a DagPipeline, a PipelineBuilder, an
async function or async generator function (run as a function pipeline), or a
zero-argument function returning one of those. Inputs ending in .jsonl are JSON Lines,
.csv rows become dicts, anything else is one string per line; no INPUT (or -) reads
JSON Lines from stdin. The output format comes from OUTPUT's suffix.

exit status: 0 all items succeeded, 1 some failed or the run raised, 2 bad usage,
130 interrupted by Ctrl-C, 143 by SIGTERM (the output written so far is complete and
valid)"""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{PROG}: error: {message} (see {self.prog} --help)\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def make_parser() -> Parser:
    """The parser of every command."""
    parser = Parser(prog=PROG, description="Run, draw and check async_dag pipelines.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    run = commands.add_parser(
        "run", help="run a pipeline over inputs", epilog=RUN_EXAMPLES, formatter_class=raw
    )
    run.set_defaults(command=cmd_run)
    run.add_argument("target", metavar="TARGET", help="module:attr or path/to/file.py:attr")
    run.add_argument("inputs", metavar="INPUT", nargs="*", help="input files (default: stdin)")
    run.add_argument(
        "-o",
        "--output",
        metavar="OUTPUT",
        help=".jsonl, .csv or .parquet (default: JSON Lines on stdout)",
    )
    run.add_argument("--format", choices=FORMATS, help="read every input as this format")
    run.add_argument("--key", metavar="FIELD", help="data_id from this field of dict inputs")
    run.add_argument(
        "--concurrency", type=_positive, metavar="N", help="inputs at once (function pipelines)"
    )
    run.add_argument(
        "--on-error",
        choices=("raise", "collect"),
        default="raise",
        help="stop at the first failure (default), or collect failures and go on",
    )
    run.add_argument(
        "--errors", metavar="FILE", help="items that failed (--on-error collect), JSON Lines"
    )
    run.add_argument("--checkpoint", metavar="FILE", help="SQLite file: skip inputs done before")
    run.add_argument("--limit", type=_positive, metavar="N", help="read at most N inputs")
    run.add_argument(
        "--set",
        type=_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="ctx.metadata[NAME] = VALUE (repeatable)",
    )
    run.add_argument("--no-monitor", action="store_true", help="no progress display")
    run.add_argument("--traceback", action="store_true", help="show the traceback of an error")

    graph = commands.add_parser(
        "graph",
        help="draw a pipeline",
        epilog="examples:\n  async-dag graph job.py:pipeline -o job.svg\n"
        "  async-dag graph job.py:pipeline | dot -Tpng > job.png",
        formatter_class=raw,
    )
    graph.set_defaults(command=cmd_graph)
    graph.add_argument("target", metavar="TARGET")
    graph.add_argument(
        "-o", "--output", metavar="FILE", help=".svg .png .pdf (need dot), .dot, .mmd"
    )

    check = commands.add_parser(
        "check",
        help="load and validate a pipeline, list its tasks and edges",
        epilog="example:\n  async-dag check job.py:pipeline",
        formatter_class=raw,
    )
    check.set_defaults(command=cmd_check)
    check.add_argument("target", metavar="TARGET")
    return parser


# -- the commands ------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    """``check``: load and validate TARGET, print its tasks and edges."""
    sys.stdout.write(describe(load_target(args.target)))
    return OK


def cmd_graph(args: argparse.Namespace) -> int:
    """``graph``: DOT on stdout, or a file by suffix."""
    check_graph_output(args.output)
    dot = write_graph(load_target(args.target), args.output)
    if dot is not None:
        sys.stdout.write(dot)
    return OK


def _run_call(args: argparse.Namespace, target: Target, session: Session) -> Any:
    """The library call that runs TARGET, as a zero-argument coroutine function."""
    if args.key and args.format == "lines":
        raise UsageError("--key needs dict inputs; --format lines gives one string per line")
    collect = args.on_error == "collect"
    options: dict[str, Any] = {
        "result_handler": session.deliver,
        "on_error": args.on_error,
        "monitor": session.tap,
    }
    if args.key:
        options["key"] = field_key(args.key)
    if args.set:
        options["metadata"] = dict(args.set)
    run: Any
    if target.pipeline is not None:
        if args.concurrency is not None:
            raise UsageError(
                "--concurrency applies to function pipelines; the tasks of a DAG set their "
                "own (add_task(..., concurrency=N))"
            )
        pipeline = guard_sources(target.pipeline) if collect else target.pipeline
        run = pipeline.run_stream
    else:
        function = guard(target.function) if collect else target.function
        if args.concurrency is not None:
            options["concurrency"] = args.concurrency

        def run(inputs: Any, **kw: Any) -> Any:
            return run_function_pipeline(inputs, function, **kw)

    if args.checkpoint:
        options["checkpoint"] = args.checkpoint
        if not args.key:
            print(
                f"{PROG}: note: --checkpoint without --key: inputs are known by their "
                "position, so resume only over the same input in the same order",
                file=sys.stderr,
            )
    inputs = read_inputs(args.inputs, args.format, keep_bad=collect, limit=args.limit)
    return lambda: run(inputs, **options)


def _say_error(exc: BaseException, show_traceback: bool) -> None:
    if show_traceback:
        traceback.print_exception(exc, file=sys.stderr)
    lines = [f"{PROG}: {type(exc).__name__}: {exc}"]
    lines += [f"  {note}" for note in getattr(exc, "__notes__", ())]
    # a message's own line breaks stay; other control characters (escapes) are shown as text
    text = "\n".join(printable(line) for line in "\n".join(lines).split("\n"))
    print(text, file=sys.stderr)


def _summary(outcome: Outcome, session: Session) -> str | None:
    stats = outcome.result.stats if outcome.result is not None else session.tap.stats
    if stats is None:  # the run call refused its arguments: nothing ran
        return None
    skipped = getattr(stats, "skipped", 0)
    return (
        f"{PROG}: {stats.inputs} inputs, {stats.outputs} outputs, {stats.errors} errors, "
        f"{skipped} skipped in {stats.elapsed:.1f} s"
    )


def cmd_run(args: argparse.Namespace) -> int:
    """``run``: stream the inputs through TARGET into OUTPUT; summary on stderr."""
    args.inputs = check_inputs(args.inputs)
    output = check_output(args.output, args.inputs)
    if args.errors is not None:
        check_writable(args.errors, args.inputs)
        if output is not None and Path(args.errors).resolve() == Path(output).resolve():
            raise UsageError(f"--errors {args.errors} is also the output")
    target = load_target(args.target)
    display = None
    if not args.no_monitor and sys.stderr.isatty():
        from ..observe.terminal import TerminalMonitor

        display = TerminalMonitor(stream=sys.stderr)
    session = Session(open_writer(output), Tap(display))
    try:
        start = _run_call(args, target, session)
    except BaseException:
        session.writer.close()
        raise
    outcome = session.run(start)
    if args.errors and outcome.result is not None:
        write_errors(args.errors, outcome.result.errors)
    if outcome.error is not None:
        if isinstance(outcome.error, BrokenPipeError):
            # `async-dag run ... | head`: say so once; nothing more can reach stdout
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            print(f"{PROG}: output closed early (broken pipe)", file=sys.stderr)
        else:
            _say_error(outcome.error, args.traceback)
    line = _summary(outcome, session)
    if line is not None:
        print(line, file=sys.stderr)
    if outcome.interrupted:
        print(f"{PROG}: interrupted; the outputs written so far are kept", file=sys.stderr)
        session.disarm()
    return exit_status(outcome)


def exit_status(outcome: Outcome) -> int:
    """The exit status of a run: 130 interrupted (143 SIGTERM), 1 it raised or items
    failed, else 0."""
    if outcome.interrupted:
        return outcome.status
    if outcome.error is not None:
        return FAILED
    failed = outcome.result.stats.errors or outcome.result.errors
    return FAILED if failed else OK


# -- the entry point ---------------------------------------------------------------------


def _lingering() -> bool:
    """Whether threads other than this one would keep the process alive at exit."""
    me = threading.current_thread()
    return any(t is not me and not t.daemon and t.is_alive() for t in threading.enumerate())


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (``sys.exit(main())``)."""
    parser = make_parser()
    args, extra = parser.parse_known_args(argv)
    if (
        extra
        and getattr(args, "command", None) is cmd_run
        and not any(e.startswith("-") and e != "-" for e in extra)
    ):
        args.inputs += extra  # INPUTs after options: `run job.py:f --limit 5 a.jsonl`
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        status: int = args.command(args)
    except UsageError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the exception said
        print(f"{PROG}: error: {message}", file=sys.stderr)
        status = USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        status = INTERRUPTED
    if argv is None and _lingering():
        # a blocking `def` handler still running in a worker thread: the job is over,
        # and waiting for the thread would keep the process (and cron) hanging
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status

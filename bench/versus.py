"""The engine against an earlier revision of itself: ``python -m bench.versus REV``.

What a refactoring must show ("the chain rows within 5% of before"): the chain rows run
by the engine at ``REV`` (exported with ``git archive`` into a temporary directory) and
by the working tree, alternately, each run in a fresh interpreter, so both see the same
machine load. Prints, per row, the median of the paired speed ratios (now / then).

On a shared machine single runs swing by a third; pairing them, and the median over
rounds, is what makes the ratio trustworthy to a few percent. ``--instructions`` also
counts CPU instructions per item under valgrind (the difference between two run sizes,
so start-up cancels out): slow, but exact to about half a percent, and what the engine's
hot path should be judged by when the wall clock is too noisy.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from .versus_child import WORKLOADS

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "versus_child.py"


def export(rev: str, into: Path) -> Path:
    """Write ``async_dag/`` as of ``rev`` into ``into``; returns ``into``."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "async_dag"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def speed(engine: Path, workload: str, items: int, repeats: int) -> float:
    """Best items per second of ``workload`` over ``repeats`` runs in a fresh process."""
    out = subprocess.run(
        [sys.executable, str(CHILD), str(engine), workload, str(items), str(repeats)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def instructions(engine: Path, workload: str, items: int) -> float:
    """CPU instructions per item under valgrind: the difference of two run sizes."""

    def count(n: int) -> int:
        valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        err = subprocess.run(
            [*valgrind, sys.executable, str(CHILD), str(engine), workload, str(n), "1"],
            check=True,
            capture_output=True,
            text=True,
        ).stderr
        found = re.search(r"Collected : (\d+)", err)
        assert found, err[-500:]
        return int(found.group(1))

    small = max(items // 10, 100)
    return (count(small + items) - count(small)) / items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.versus", description=__doc__)
    parser.add_argument("rev", help="the earlier revision, e.g. a commit or tag")
    parser.add_argument("--rounds", type=int, default=8, help="paired rounds per row (8)")
    parser.add_argument("--items", type=int, default=50_000, help="inputs per run (50,000)")
    parser.add_argument("--instructions", action="store_true", help="also count under valgrind")
    parser.add_argument("--only", action="append", choices=sorted(WORKLOADS), metavar="ROW")
    args = parser.parse_args(argv)
    if args.instructions and shutil.which("valgrind") is None:
        parser.error("--instructions needs valgrind (apt-get install valgrind)")
    rows = args.only or list(WORKLOADS)
    print(f"{'row':<36} {'then':>9} {'now':>9} {'now/then':>9}  (median of {args.rounds} pairs)")
    with tempfile.TemporaryDirectory(prefix="async_dag-versus-") as tmp:
        then, now = export(args.rev, Path(tmp)), ROOT
        for row in rows:
            pairs, olds, news = [], [], []
            for i in range(args.rounds):
                order = [(then, olds), (now, news)] if i % 2 == 0 else [(now, news), (then, olds)]
                for engine, into in order:
                    into.append(speed(engine, row, args.items, 3))
                pairs.append(news[-1] / olds[-1])
            line = (
                f"{row:<36} {statistics.median(olds) / 1e3:>7.0f}k/s "
                f"{statistics.median(news) / 1e3:>7.0f}k/s {statistics.median(pairs):>8.3f}x"
            )
            if args.instructions:
                i_then = instructions(then, row, 10_000)
                i_now = instructions(now, row, 10_000)
                line += f"  instructions/item {i_then:,.0f} -> {i_now:,.0f} ({i_now / i_then:.3f}x)"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

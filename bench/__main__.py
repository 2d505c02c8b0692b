"""Run the benchmark suite: ``python -m bench [--quick] [--only NAME ...]``.

Prints one table per workload as it finishes, then all of them together, and writes
every row with its raw timings to ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from . import WORKLOADS, machine_info
from .harness import Row, render_markdown, render_table

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the chosen workloads, print tables, write JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes, 3 rounds")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(WORKLOADS),
        metavar="NAME",
        help=f"run only this workload (repeatable): {', '.join(WORKLOADS)}",
    )
    parser.add_argument("--rounds", type=int, help="rounds per workload (default 5, quick 3)")
    parser.add_argument("--scale", type=float, help="multiply every size (default 1, quick 0.1)")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"default {RESULTS}")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables too")
    args = parser.parse_args(argv)

    scale = args.scale if args.scale is not None else (0.1 if args.quick else 1.0)
    rounds = args.rounds if args.rounds is not None else (3 if args.quick else 5)
    names = args.only or list(WORKLOADS)
    info = machine_info()
    print(
        f"async_dag benchmarks: {info['cpu']} x{info['cores']}, Python {info['python']}, "
        f"scale {scale:g}, {rounds} rounds",
        flush=True,
    )
    all_rows: list[Row] = []
    loads: dict[str, list[float]] = {}
    broken: dict[str, str] = {}
    started = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        load_before = os.getloadavg()[0]
        try:
            rows = WORKLOADS[name](scale, rounds)
        except Exception:  # report it and go on with the other workloads
            broken[name] = traceback.format_exc()
            print(f"\n== {name} FAILED\n{broken[name]}", file=sys.stderr, flush=True)
            continue
        loads[name] = [load_before, os.getloadavg()[0]]
        all_rows.extend(rows)
        print(
            f"\n== {name} ({time.perf_counter() - t0:.0f} s, load average "
            f"{load_before:.2f} -> {loads[name][1]:.2f} on {info['cores']} cores)",
            flush=True,
        )
        print(render_table(rows), flush=True)
    print(f"\n== all ({time.perf_counter() - started:.0f} s)")
    print(render_table(all_rows))
    if args.markdown:
        print()
        print(render_markdown(all_rows))
    failed = [r for r in all_rows if r.verdict == "FAIL"]
    print(f"\n{sum(r.verdict == 'PASS' for r in all_rows)} targets met, {len(failed)} missed")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": info,
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "scale": scale,
        "rounds": rounds,
        "load_average": loads,
        "failed_workloads": broken,
        "rows": [r.as_dict() for r in all_rows],
    }
    args.json.write_text(json.dumps(payload, indent=2))
    print(f"results written to {args.json}")
    if broken:
        print(f"workloads that failed to run: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

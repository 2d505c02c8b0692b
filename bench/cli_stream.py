"""Workload ``cli``: ``async-dag run`` streams a JSON Lines file in flat memory.

A file of 100,000 and one of 1,000,000 lines go through a function pipeline into a
``.jsonl`` file, each in a fresh ``python -m async_dag`` process (the command line as a
user runs it). Its peak RSS (``VmHWM``, read from ``/proc`` until the process ends) must
not grow with the file: at 1M lines within 10% of 100k.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .harness import Row

GROWTH_LIMIT = 1.10
ROOT = Path(__file__).resolve().parent.parent
IMPL = "async-dag run: function pipeline, .jsonl to .jsonl"
JOB = """\
async def enrich(ctx, item):
    return {"id": item["id"], "name": item["name"].upper(), "total": item["price"] * item["qty"]}
"""
SUMMARY = re.compile(r"async-dag: (\d+) inputs, (\d+) outputs, (\d+) errors")


def write_input(path: Path, lines: int) -> None:
    """``lines`` small JSON objects, one per line."""
    with open(path, "w", encoding="utf-8") as out:
        for i in range(lines):
            record = {"id": i, "name": f"item-{i}", "price": (i % 100) * 0.25, "qty": i % 7}
            out.write(json.dumps(record) + "\n")


def _hwm_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def measure(folder: Path, lines: int) -> dict[str, float | int]:
    """Run the command line over ``lines`` lines; its peak RSS, time and counts."""
    source = folder / f"in-{lines}.jsonl"
    output = folder / f"out-{lines}.jsonl"
    write_input(source, lines)
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    command = [sys.executable, "-m", "async_dag", "run", f"{folder / 'job.py'}:enrich"]
    start = time.perf_counter()
    proc = subprocess.Popen(
        [*command, str(source), "-o", str(output), "--no-monitor"],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, _hwm_mb(proc.pid) or 0.0)
        time.sleep(0.01)
    seconds = time.perf_counter() - start
    stderr = proc.stderr.read() if proc.stderr is not None else ""
    if proc.stderr is not None:
        proc.stderr.close()
    match = SUMMARY.search(stderr)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"async-dag run over {lines} lines failed:\n{stderr}")
    source.unlink()
    output.unlink()
    return {
        "lines": lines,
        "inputs": int(match[1]),
        "outputs": int(match[2]),
        "seconds": seconds,
        "peak_rss_mb": peak,
    }


def workload_cli(scale: float, rounds: int) -> list[Row]:
    """Peak RSS of ``async-dag run`` at 100,000 and 1,000,000 lines (times ``scale``)."""
    small = max(1_000, int(100_000 * scale))
    large = small * 10
    with tempfile.TemporaryDirectory(prefix="async-dag-bench-") as tmp:
        folder = Path(tmp)
        (folder / "job.py").write_text(JOB)
        low = measure(folder, small)
        high = measure(folder, large)
    growth = float(high["peak_rss_mb"]) / float(low["peak_rss_mb"])
    rate = int(high["lines"]) / float(high["seconds"])
    return [
        Row(
            workload="cli stream",
            impl=IMPL,
            items=large,
            outputs=int(high["outputs"]),
            expected=large,
            value=f"{float(high['peak_rss_mb']):.1f} MB",
            seconds=[float(high["seconds"])],
            items_per_s=rate,
            target=f"<= {GROWTH_LIMIT:g}x",
            verdict="PASS" if growth <= GROWTH_LIMIT else "FAIL",
            extra={
                "ratio_text": f"{growth:.3f}x RSS",
                "small": low,
                "large": high,
                "growth": growth,
                "note_rss": (
                    f"peak {float(low['peak_rss_mb']):.1f} MB at {small:,} lines, "
                    f"{float(high['peak_rss_mb']):.1f} MB at {large:,} "
                    f"({rate:,.0f} lines/s, process start included)"
                ),
            },
        )
    ]

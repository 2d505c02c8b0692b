"""The benchmark suite keeps working: every workload once at a tiny size.

These tests check what each implementation produced (item counts) and the harness's
arithmetic, never speed: timings belong to ``make bench``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import WORKLOADS  # noqa: E402
from bench.__main__ import main as bench_main  # noqa: E402
from bench.harness import CountMismatch, Impl, Target, compare, render_table  # noqa: E402

TINY = 0.001


@pytest.mark.parametrize("name", sorted(set(WORKLOADS) - {"memory"}))
def test_workload_runs_and_counts_every_item(name: str) -> None:
    """Each workload runs once at a tiny size and every implementation delivers all items."""
    rows = WORKLOADS[name](TINY, 1)
    assert rows
    for row in rows:
        if row.extra.get("missing"):  # a peer that is not installed: reported, not run
            assert row.value == "n/a" and row.extra["missing"] in row.note
            continue
        assert row.expected > 0, row.impl
        assert row.outputs == row.expected, (row.impl, row.outputs, row.expected)
        assert row.seconds and all(s > 0 for s in row.seconds), row.impl
        if row.time_ratio is not None:
            assert row.time_ratio > 0
    references = {row.reference for row in rows if row.reference}
    assert references <= {row.impl for row in rows}


def test_memory_rows_report_both_sizes() -> None:
    """The memory workload measures each implementation at two sizes in child processes."""
    rows = WORKLOADS["memory"](TINY, 1)
    assert {row.impl for row in rows} == {
        "hand-written asyncio",
        "async_dag DAG",
        "async_dag function pipeline",
        "control: async_dag DAG, RunResult kept",
    }
    for row in rows:
        small, large = row.extra["small"], row.extra["large"]
        assert large["items"] == 10 * small["items"]
        assert small["outputs"] == small["items"] and large["outputs"] == large["items"]
        assert small["peak_rss_mb"] > 1 and large["peak_rss_mb"] > 1
        assert row.verdict in ({""} if row.impl.startswith("control") else {"PASS", "FAIL"})


def test_missing_peer_gets_a_row_and_versus_judges_against_its_row() -> None:
    """A peer that cannot run is reported as such; ``versus`` moves the target's base."""

    def fast(n: int) -> int:
        return n

    async def slow(n: int) -> int:
        for _ in range(n):
            await asyncio.sleep(0.001)
        return n

    impls = [
        Impl("ref", fast),
        Impl("slow", slow, items=5),
        Impl("also slow", slow, items=5, target=Target("time", 1.5), versus="slow"),
        Impl("peer", fast, missing="not installed"),
    ]
    rows = {row.impl: row for row in compare("w", impls, items=100, rounds=2, reference="ref")}
    assert rows["also slow"].verdict == "PASS"  # slow against slow, not against ref
    assert rows["also slow"].time_ratio is not None and rows["also slow"].time_ratio > 2
    assert rows["peer"].value == "n/a" and "not installed" in rows["peer"].note
    assert "n/a" in render_table(list(rows.values()))


def test_compare_rejects_a_wrong_count() -> None:
    """An implementation that loses items stops the measurement with CountMismatch."""

    async def good(n: int) -> int:
        return n

    async def lossy(n: int) -> int:
        return n - 1

    impls = [Impl("good", good), Impl("lossy", lossy)]
    with pytest.raises(CountMismatch, match="lossy"):
        compare("w", impls, items=10, rounds=1, reference="good")


def test_compare_pairs_rounds_and_normalises_per_item() -> None:
    """Ratios are per item, so a slower implementation run on fewer items still compares."""

    def fast(n: int) -> int:
        return n

    async def slow(n: int) -> int:
        for _ in range(n):
            await asyncio.sleep(0.002)
        return n

    impls = [
        Impl("fast", fast),
        Impl("slow", slow, items=5, target=Target("speed", 0.5)),
        Impl("also fast", fast, target=Target("time", 1e6)),
    ]
    rows = compare("w", impls, items=1000, rounds=3, reference="fast")
    by_name = {row.impl: row for row in rows}
    assert by_name["fast"].time_ratio == 1.0
    assert by_name["slow"].items == 5 and len(by_name["slow"].seconds) == 3
    assert by_name["slow"].time_ratio is not None and by_name["slow"].time_ratio > 2
    assert by_name["slow"].verdict == "FAIL"
    assert by_name["also fast"].verdict == "PASS"
    table = render_table(rows)
    assert "slow" in table and "FAIL" in table and "speed >= 0.5x" in table


def test_target_semantics() -> None:
    """A speed target bounds throughput from below, a time target bounds time from above."""
    assert Target("speed", 0.5).met(1.9) and not Target("speed", 0.5).met(2.1)
    assert Target("time", 1.05).met(1.04) and not Target("time", 1.05).met(1.06)


def test_cli_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m bench --only chain`` prints a table and writes every row to JSON."""
    out = tmp_path / "latest.json"
    code = bench_main(
        ["--only", "chain", "--scale", str(TINY), "--rounds", "1", "--json", str(out)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "hand-written asyncio" in printed and "async_dag function pipeline" in printed
    data = json.loads(out.read_text())
    assert data["machine"]["cores"] >= 1
    assert data["rounds"] == 1
    impls = {row["impl"] for row in data["rows"]}
    assert {"hand-written asyncio", "async_dag DAG, default queues"} <= impls
    assert all(row["outputs"] == row["expected"] for row in data["rows"])


def test_cli_reports_a_broken_workload_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A workload that raises is reported, the others still run, and the exit code is 1."""

    def broken(scale: float, rounds: int) -> list[object]:
        raise RuntimeError("workload exploded")

    monkeypatch.setitem(WORKLOADS, "broken", broken)
    out = tmp_path / "latest.json"
    argv = ["--only", "broken", "--only", "ordered", "--scale", str(TINY), "--rounds", "1"]
    code = bench_main([*argv, "--json", str(out)])
    assert code == 1
    captured = capsys.readouterr()
    assert "workload exploded" in captured.err
    data = json.loads(out.read_text())
    assert "broken" in data["failed_workloads"]
    assert {row["workload"] for row in data["rows"]} == {"6 ordered"}


def test_versus_runs_an_exported_revision_next_to_the_working_tree(tmp_path, capsys) -> None:
    """``bench.versus`` exports the engine at a revision and runs a row on both engines."""
    from bench import versus

    engine = versus.export("HEAD", tmp_path)
    assert (engine / "async_dag" / "__init__.py").is_file()
    assert versus.speed(engine, "chain, queue_size=100", 200, 1) > 0
    assert (
        versus.main(["HEAD", "--rounds", "1", "--items", "200", "--only", "function pipeline"]) == 0
    )
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("function pipeline") and line.endswith("x")

"""The demo refresh job (main.py), end to end at small size, plus its parts in process."""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil
import pytest
from _util import default_sigint, kill_session

from async_dag import LoopLimitExceeded, PipelineContext

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "main.py"


def _load(name: str, path: Path) -> ModuleType:
    """Import a module that lives next to main.py rather than in the package."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


job = _load("refresh_job", ROOT / "refresh_job.py")

# -- helpers ----------------------------------------------------------------------------

GOOD = 40
BROKEN = [
    '{"id":"SKU-90001","name":"Oak stool"',  # truncated JSON
    '{"id":"SKU-90002","price":3.5,"currency":"EUR","stock":1,"updated_at":"2026-11-01T00:00:00Z"}',
    '{"id":"SKU-90003","name":"Rug","price":"cheap","currency":"EUR","stock":1,'
    '"updated_at":"2026-11-01T00:00:00Z"}',
    '{"id":"SKU-90004","name":"Rug","price":-2,"currency":"EUR","stock":1,'
    '"updated_at":"2026-11-01T00:00:00Z"}',
    '{"id":"SKU-90005","name":"Rug","price":2,"currency":"XXX","stock":1,'
    '"updated_at":"2026-11-01T00:00:00Z"}',
    '{"id":"SKU-90006","name":"Rug","price":2,"currency":"EUR","stock":1,"updated_at":"someday"}',
    '["SKU-90007","Rug",2,"EUR",1,"2026-11-01T00:00:00Z"]',
]
CURRENCIES = ["EUR", "USD", "GBP", "CHF"]


def good_row(i: int, price: float | None = None) -> dict[str, Any]:
    return {
        "id": f"SKU-{i:05d}",
        "name": f"Lamp number {i}",
        "price": price if price is not None else round(10 + i * 1.25, 2),
        "currency": CURRENCIES[i % 4],
        "stock": i % 7,
        "updated_at": f"2026-11-{1 + i % 28:02d}T10:00:00Z",
    }


def write_feed(path: Path, prices: dict[int, float] | None = None) -> Path:
    """GOOD valid rows with the BROKEN lines spread among them."""
    prices = prices or {}
    lines = [json.dumps(good_row(i, prices.get(i))) for i in range(1, GOOD + 1)]
    for n, bad in enumerate(BROKEN):
        lines.insert(n * 6 + 2, bad)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_main(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run main.py with this interpreter (the project's venv) and a fast service."""
    proc = subprocess.run(
        [sys.executable, str(MAIN), "--latency", "1", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
    return proc


def summary(out: str) -> dict[str, int]:
    """The counts of the printed summary."""
    counts = {}
    for name in ("read", "written", "unchanged", "rejected", "retried", "failed"):
        match = re.search(rf"^\s+{name}\s+(\d+)", out, re.M)
        assert match, f"no {name!r} line in:\n{out}"
        counts[name] = int(match.group(1))
    for name in ("inserted", "updated"):
        match = re.search(rf"\b{name} (\d+)", out)
        assert match, f"no {name!r} count in:\n{out}"
        counts[name] = int(match.group(1))
    assert counts["written"] == counts["inserted"] + counts["updated"]
    counts["stored"] = counts["written"] + counts["unchanged"]
    return counts


def table(db: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT * FROM products ORDER BY id").fetchall()
    finally:
        conn.close()


def failed_lines(out: str) -> set[int]:
    match = re.search(r"service still failing after \d+ tries: line ([\d, ]+)", out)
    return {int(n) for n in re.findall(r"\d+", match.group(1))} if match else set()


# -- end to end ----------------------------------------------------------------------------


def test_database_holds_the_input_minus_rejects(tmp_path: Path) -> None:
    """Every valid row lands in SQLite once, enriched; malformed rows are only counted."""
    feed = write_feed(tmp_path / "feed.jsonl")
    db = tmp_path / "shop.db"
    out = run_main(feed, "--db", db, "--fail-rate", "0").stdout
    counts = summary(out)
    assert counts["read"] == GOOD + len(BROKEN)
    assert counts["rejected"] == len(BROKEN)
    assert counts["stored"] == counts["inserted"] == GOOD
    assert counts["failed"] == counts["retried"] == 0
    rows = table(db)
    assert [r[0] for r in rows] == [f"SKU-{i:05d}" for i in range(1, GOOD + 1)]
    first = rows[0]  # SKU-00001 is priced in USD
    assert first[1:4] == ("Lamp number 1", 11.25, "USD")
    assert first[4] == round(11.25 * job.CURRENCIES["USD"], 2)
    assert first[5] in job.CATEGORIES
    assert str(db.resolve()) in out


def test_second_run_changes_only_edited_rows(tmp_path: Path) -> None:
    """Re-running updates the rows whose content changed and leaves every other row alone."""
    feed = write_feed(tmp_path / "feed.jsonl")
    db = tmp_path / "shop.db"
    run_main(feed, "--db", db, "--fail-rate", "0")
    before = {r[0]: r for r in table(db)}
    edited = {3: 999.0, 17: 1.5, 40: 42.0}
    write_feed(feed, prices=edited)
    counts = summary(run_main(feed, "--db", db, "--fail-rate", "0").stdout)
    assert (counts["inserted"], counts["updated"]) == (0, len(edited))
    assert counts["unchanged"] == GOOD - len(edited)
    after = {r[0]: r for r in table(db)}
    assert after.keys() == before.keys()
    for key, row in after.items():
        if int(key[4:]) in edited:
            assert row[2] == edited[int(key[4:])]
            assert row[-1] == before[key][-1] + 1  # version
        else:
            assert row == before[key]


def test_two_processes_write_the_same_database(tmp_path: Path) -> None:
    """--processes 2 gives the same table and the same counts as one process."""
    feed = write_feed(tmp_path / "feed.jsonl")
    single, split = tmp_path / "single.db", tmp_path / "split.db"
    options = ("--fail-rate", "0.7", "--seed", "3")
    one = summary(run_main(feed, "--db", single, *options).stdout)
    two = summary(run_main(feed, "--db", split, "--processes", "2", *options).stdout)
    assert table(split) == table(single)
    assert one == two
    assert one["read"] == GOOD + len(BROKEN)


def test_plain_function_form_writes_the_same_database(tmp_path: Path) -> None:
    """--plain (one async function) stores, rejects, retries and fails the same rows."""
    feed = write_feed(tmp_path / "feed.jsonl")
    dag_db, plain_db = tmp_path / "dag.db", tmp_path / "plain.db"
    options = ("--fail-rate", "0.7", "--seed", "3")
    dag_out = run_main(feed, "--db", dag_db, *options).stdout
    plain_out = run_main(feed, "--db", plain_db, "--plain", *options).stdout
    assert table(plain_db) == table(dag_db)
    assert summary(plain_out) == summary(dag_out)
    assert failed_lines(plain_out) == failed_lines(dag_out)


def test_failures_beyond_the_retry_bound_are_counted(tmp_path: Path) -> None:
    """Rows the service keeps failing end in the failure count and summary, not a crash."""
    feed = write_feed(tmp_path / "feed.jsonl")
    db = tmp_path / "shop.db"
    proc = run_main(feed, "--db", db, "--fail-rate", "1")
    counts = summary(proc.stdout)
    assert counts["failed"] == GOOD
    assert counts["stored"] == 0
    assert counts["retried"] == GOOD * job.MAX_RETRIES
    assert len(failed_lines(proc.stdout)) == min(GOOD, 8)  # the summary lists a few
    assert table(db) == []


def test_partial_failures_account_for_every_row(tmp_path: Path) -> None:
    """read = stored + rejected + failed, and exactly the failed rows are missing."""
    feed = write_feed(tmp_path / "feed.jsonl")
    db = tmp_path / "shop.db"
    out = run_main(feed, "--db", db, "--fail-rate", "0.7", "--seed", "3").stdout
    counts = summary(out)
    assert counts["read"] == counts["stored"] + counts["rejected"] + counts["failed"]
    assert 0 < counts["failed"] < GOOD
    assert counts["retried"] >= counts["failed"] * job.MAX_RETRIES
    lines = feed.read_text().splitlines()
    missing = {json.loads(lines[n - 1])["id"] for n in failed_lines(out)}
    stored = {r[0] for r in table(db)}
    assert len(missing) == counts["failed"]
    assert not missing & stored
    assert len(stored) == counts["stored"]


def test_verbose_logs_carry_the_row_context(tmp_path: Path) -> None:
    """-v prints debug logs that name the run, the line number and the node path."""
    feed = write_feed(tmp_path / "feed.jsonl")
    proc = run_main(feed, "--db", tmp_path / "shop.db", "--fail-rate", "0", "-v")
    # The first broken line is line 3 of the feed, a truncated JSON object.
    assert re.search(r"data=3 path=parse>rejects\] rejected \(bad json\)", proc.stderr)
    assert re.search(r"data=1 path=parse>enrich>store\] inserted SKU-00001", proc.stderr)


def test_shipped_feed_runs_out_of_the_box(tmp_path: Path) -> None:
    """The default input (the shipped feed) runs from any folder and balances."""
    db = tmp_path / "demo.db"
    proc = subprocess.run(
        [sys.executable, str(MAIN), "--db", str(db), "--latency", "2"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    counts = summary(proc.stdout)
    assert counts["read"] == len((ROOT / "data" / "products.jsonl").read_bytes().splitlines())
    assert counts["read"] == counts["stored"] + counts["rejected"] + counts["failed"]
    assert counts["rejected"] > 0
    assert len(table(db)) == counts["stored"]


@pytest.mark.parametrize("extra", [[], ["--processes", "2"]], ids=["in-process", "processes"])
def test_ctrl_c_stops_the_job_and_keeps_stored_rows(tmp_path: Path, extra: list[str]) -> None:
    """SIGINT mid-run: exit status 130, a one-line notice, committed rows kept, no worker left."""
    db = tmp_path / "shop.db"
    cmd = [sys.executable, str(MAIN), "--db", str(db), "--latency", "200", *extra]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
        start_new_session=True,  # its own process group: the finally kills all of it
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("refresh ")  # the database is ready
        deadline = time.monotonic() + 20
        while not table(db):  # wait until rows are being stored
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no row stored within 20 s"
            time.sleep(0.05)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        *summary, notice = err.splitlines()
        assert notice == "main.py: interrupted; the rows stored so far are kept"
        # besides it, at most the terminal monitor's one line about the cancelled run
        assert len(summary) <= 1 and all(" cancelled: " in line for line in summary), err
        assert not re.search(r"^\s+read\s", out, re.M)  # no summary of an unfinished run
        assert 0 < len(table(db)) < 2911
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == []
    finally:
        kill_session(proc)  # nothing survives, even when an assertion above failed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no/such/feed.jsonl"], "input file not found"),
        (["--concurrency", "0"], "--concurrency: must be at least 1"),
        (["--concurrency", "many"], "--concurrency: expected a positive integer"),
        (["--processes", "0"], "--processes: must be at least 1"),
        (["--fail-rate", "1.5"], "--fail-rate: must be between 0 and 1"),
        (["--plain", "--processes", "2"], "cannot be combined"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_arguments_give_a_one_line_error(tmp_path: Path, args: list[str], message: str) -> None:
    """A bad argument: one line on stderr, exit status 2, nothing run, no traceback."""
    db = tmp_path / "never.db"
    proc = run_main(*args, "--db", db, check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("main.py: error:")
    assert message in lines[0]
    assert not db.exists()


def test_unusable_database_path_is_an_argument_error(tmp_path: Path) -> None:
    """--db pointing at a directory: a one-line error, exit status 2."""
    proc = run_main("--db", tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("main.py: error: cannot use database")
    assert len(proc.stderr.splitlines()) == 1


# -- the parts, in process --------------------------------------------------------------------


def ctx(data_id: str = "1") -> PipelineContext:
    return PipelineContext("test", data_id, ("parse",))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (BROKEN[0], "bad json"),
        (BROKEN[1], "missing field"),
        (BROKEN[2], "wrong type"),
        (BROKEN[3], "out of range"),
        (BROKEN[4], "unknown currency"),
        (BROKEN[5], "bad date"),
        (BROKEN[6], "not an object"),
        ('{"id":"A","name":"B","price":1,"currency":"EUR","stock":true,'
         '"updated_at":"2026-11-01T00:00:00Z"}', "wrong type"),
    ],
)  # fmt: skip
def test_parse_rejects_malformed_lines(line: str, reason: str) -> None:
    """Each kind of malformed line becomes a Reject with its reason and line number."""
    result = job.parse_line(ctx(), job.Line(9, line))
    assert isinstance(result, job.Reject)
    assert (result.line_no, result.reason) == (9, reason)


def test_parse_accepts_a_valid_line() -> None:
    """A valid line becomes a Product with an int price turned into a float."""
    row = good_row(5, price=12)
    result = job.parse_line(ctx(), job.Line(1, json.dumps(row)))
    assert result == job.Product("SKU-00005", "Lamp number 5", 12.0, "USD", 5, row["updated_at"])
    assert isinstance(result.price, float)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_batches_split_the_file_without_overlap(tmp_path: Path, count: int) -> None:
    """The N batches of a file hold every line exactly once, each read lazily."""
    feed = write_feed(tmp_path / "feed.jsonl")
    batches = [job.LineBatch(str(feed), i, count) for i in range(count)]
    seen = sorted(line for batch in batches for line in batch)
    texts = feed.read_text(encoding="utf-8").splitlines(keepends=True)
    assert seen == [job.Line(n, t) for n, t in enumerate(texts, start=1)]
    limited = job.LineBatch(str(feed), 1, count, limit=10)
    assert all(line.line_no <= 10 for line in limited)


def test_store_inserts_then_skips_then_updates(tmp_path: Path) -> None:
    """The upsert reports inserted, unchanged and updated, and bumps the version."""
    db = job.init_database(tmp_path / "var" / "x.db")
    store = job.Store(db)
    product = job.Product("SKU-1", "Lamp", 10.0, "EUR", 3, "2026-11-01T00:00:00Z")
    changed = job.Product("SKU-1", "Lamp", 11.0, "EUR", 3, "2026-11-02T00:00:00Z")
    try:
        first = store.upsert(ctx(), job.Enriched(product, 10.0, "decor", 0))
        again = store.upsert(ctx(), job.Enriched(product, 10.0, "decor", 1))
        third = store.upsert(ctx(), job.Enriched(changed, 11.0, "decor", 0))
    finally:
        store.close()
    assert [first.status, again.status, third.status] == ["inserted", "unchanged", "updated"]
    assert again.tries == 1
    (row,) = table(db)
    assert (row[2], row[-1]) == (11.0, 2)


async def test_dag_loops_transient_failures_back_to_enrich(tmp_path: Path) -> None:
    """In the DAG, retries go round the enrich loop edge; the bound ends in LoopLimitExceeded."""
    feed = write_feed(tmp_path / "feed.jsonl")
    db = job.init_database(tmp_path / "shop.db")
    config = job.JobConfig(str(db), seed=3, fail_rate=0.7, latency=0.0, concurrency=8)
    store = job.Store(db)
    tally = job.Tally()
    try:
        result = await job.make_pipeline(config, store).run_stream(
            job.LineBatch(str(feed)), key=job.line_no_of, on_error="collect"
        )
    finally:
        store.close()
    tally.add_run(result)
    nodes = result.stats.nodes
    assert result.errors
    assert all(isinstance(e.exception, LoopLimitExceeded) for e in result.errors)
    assert {e.node for e in result.errors} == {"enrich"}
    assert tally.rejected == len(BROKEN) == nodes["rejects"].received
    assert tally.stored + len(result.errors) == GOOD
    assert nodes["enrich"].received == GOOD + tally.retried
    assert tally.read == result.stats.inputs == GOOD + len(BROKEN)


def test_data_script_rebuilds_the_shipped_feed(tmp_path: Path) -> None:
    """The shipped feed is small, has a few thousand rows, and its script rebuilds it exactly."""
    shipped = ROOT / "data" / "products.jsonl"
    assert shipped.stat().st_size < 500_000
    maker = _load("make_products", ROOT / "data" / "make_products.py")
    rebuilt = maker.main(3000, tmp_path / "products.jsonl")
    assert rebuilt.read_bytes() == shipped.read_bytes()

"""The demo refresh job (main.py, examples/refresh/), end to end at small size, and its parts."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _util import default_sigint, kill_session

from async_dag import PipelineContext, RateLimit, RetryAfter

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "main.py"
sys.path.insert(0, str(ROOT))  # the demo's library is examples/ next to main.py

from examples.refresh import job, service, store  # noqa: E402

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


def good_row(i: int, price: float | None = None, day: int | None = None) -> dict[str, Any]:
    return {
        "id": f"SKU-{i:05d}",
        "name": f"Lamp number {i}",
        "price": price if price is not None else round(10 + i * 1.25, 2),
        "currency": CURRENCIES[i % 4],
        "stock": i % 7,
        "updated_at": f"2026-11-{day or 1 + i % 28:02d}T10:00:00Z",
    }


def write_feed(path: Path, good: int = GOOD, edits: dict[int, float] | None = None) -> Path:
    """``good`` valid rows with the BROKEN lines spread among them; ``edits`` reprices rows
    and moves their updated_at on, as a changed upstream row would."""
    edits = edits or {}
    lines = [
        json.dumps(good_row(i, edits.get(i), 30 if i in edits else None))
        for i in range(1, good + 1)
    ]
    for n, bad in enumerate(BROKEN):
        lines.insert(n * 6 + 2, bad)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def valid_ids(good: int = GOOD) -> set[str]:
    return {f"SKU-{i:05d}" for i in range(1, good + 1)}


def run_main(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run main.py with this interpreter (the project's venv) and a fast service."""
    proc = subprocess.run(
        [sys.executable, str(MAIN), "--latency", "1", "--rate", "5000", *map(str, args)],
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
    for name in ("read", "skipped", "written", "unchanged", "rejected", "calls", "retried", "dead"):
        match = re.search(rf"^\s+{name}\s+(\d+)", out, re.M)
        assert match, f"no {name!r} line in:\n{out}"
        counts[name] = int(match.group(1))
    for name in ("inserted", "updated"):
        match = re.search(rf"\b{name} (\d+)", out)
        assert match, f"no {name!r} count in:\n{out}"
        counts[name] = int(match.group(1))
    assert counts["written"] == counts["inserted"] + counts["updated"]
    return counts


def table(db: Path, name: str = "products") -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT * FROM {name} ORDER BY id").fetchall()
    finally:
        conn.close()


def stored_count(db: Path) -> int:
    """Rows committed to products so far (0 while the file or table is not there yet)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return 0
    try:
        return int(conn.execute("SELECT count(*) FROM products").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


# -- end to end ----------------------------------------------------------------------------


def test_every_valid_row_ends_stored_or_dead_lettered(tmp_path: Path) -> None:
    """Valid rows land once in products or in dead_letters; malformed rows are only counted."""
    feed = write_feed(tmp_path / "feed.jsonl")
    db = tmp_path / "shop.db"
    counts = summary(run_main(feed, "--db", db, "--fail-rate", "0").stdout)
    assert counts["read"] == GOOD + len(BROKEN)
    assert counts["rejected"] == len(BROKEN)
    assert counts["skipped"] == 0
    products = {r[0]: r for r in table(db)}
    dead = {r[0] for r in table(db, "dead_letters")}
    assert products.keys() | dead == valid_ids() and not products.keys() & dead
    assert counts["inserted"] == len(products) and counts["dead"] == len(dead)
    first = products["SKU-00001"]  # priced in USD
    assert first[1:4] == ("Lamp number 1", 11.25, "USD")
    assert first[4] == round(11.25 * service.CURRENCIES["USD"], 2)
    assert first[5] in service.CATEGORIES


def test_failures_after_retries_go_to_the_dead_letter_table(tmp_path: Path) -> None:
    """A service that always fails: every row retried with back-off, then a dead letter."""
    feed = write_feed(tmp_path / "feed.jsonl")
    db = tmp_path / "shop.db"
    counts = summary(run_main(feed, "--db", db, "--fail-rate", "1").stdout)
    letters = table(db, "dead_letters")
    assert table(db) == [] and counts["written"] == 0
    assert {r[0] for r in letters} == valid_ids() and counts["dead"] == GOOD
    kinds = {r[3] for r in letters}
    assert kinds <= {"ServiceUnavailable", "ProductNotFound"}
    not_found = sum(r[3] == "ProductNotFound" for r in letters)  # final at once
    assert counts["retried"] == (GOOD - not_found) * job.Settings().retries
    assert all(r[2] == "enrich" and json.loads(r[5])["id"] == r[0] for r in letters)


def test_second_run_skips_what_is_done_and_retries_dead_letters(tmp_path: Path) -> None:
    """Run twice: the rerun skips every row done, calls the service only for dead letters."""
    feed = write_feed(tmp_path / "feed.jsonl")
    db = tmp_path / "shop.db"
    first = summary(run_main(feed, "--db", db).stdout)
    before = table(db)
    second = summary(run_main(feed, "--db", db).stdout)
    assert second["read"] == first["read"]
    assert second["skipped"] == first["read"] - first["dead"]
    assert second["written"] == second["unchanged"] == second["rejected"] == 0
    assert second["dead"] == first["dead"]  # the same seed fails the same rows again
    assert second["calls"] < first["calls"]
    assert table(db) == before


def test_changed_rows_are_refreshed_on_the_next_run(tmp_path: Path) -> None:
    """A row whose updated_at moved on has a new key: it is refreshed, the rest skipped."""
    feed = write_feed(tmp_path / "feed.jsonl")
    db = tmp_path / "shop.db"
    run_main(feed, "--db", db, "--fail-rate", "0")
    before = {r[0]: r for r in table(db)}
    edits = {i: 900.0 + i for i in (3, 17, 40) if f"SKU-{i:05d}" in before}
    write_feed(feed, edits=edits)
    counts = summary(run_main(feed, "--db", db, "--fail-rate", "0").stdout)
    assert (counts["inserted"], counts["updated"]) == (0, len(edits))
    assert counts["skipped"] == GOOD + len(BROKEN) - len(edits) - counts["dead"]
    after = {r[0]: r for r in table(db)}
    assert after.keys() == before.keys()
    for key, row in after.items():
        i = int(key[4:])
        assert (row[2], row[-1]) == ((edits[i], 2) if i in edits else (before[key][2], 1))


def test_fresh_clears_the_checkpoint_and_the_tables(tmp_path: Path) -> None:
    """--fresh forgets what was done: everything is read, called and inserted again."""
    feed = write_feed(tmp_path / "feed.jsonl")
    db = tmp_path / "shop.db"
    first = summary(run_main(feed, "--db", db).stdout)
    again = summary(run_main(feed, "--db", db, "--fresh").stdout)
    assert again["skipped"] == 0
    assert again["inserted"] == first["inserted"] and again["calls"] == first["calls"]
    assert all(row[-1] == 1 for row in table(db))


def test_killed_midway_the_rerun_finishes_every_row_exactly_once(tmp_path: Path) -> None:
    """SIGKILL halfway, rerun: the rows committed before the kill are skipped, the rest done,
    and the table ends as an uninterrupted run leaves it, each row written once."""
    good = 300
    feed = write_feed(tmp_path / "feed.jsonl", good=good)
    db = tmp_path / "shop.db"
    slow = ["--latency", "1", "--rate", "40", "--batch-size", "10", "--no-progress"]
    proc = subprocess.Popen(
        [sys.executable, str(MAIN), str(feed), "--db", str(db), *slow],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, killed as a whole
    )
    try:
        deadline = time.monotonic() + 30
        while stored_count(db) < 30:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no rows stored within 30 s"
            time.sleep(0.05)
        committed = stored_count(db)
        time.sleep(2.5)  # the checkpoint commits at least once a second
        assert proc.poll() is None, "the job finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        kill_session(proc)
    at_kill = stored_count(db)
    assert 0 < at_kill < good
    counts = summary(run_main(feed, "--db", db).stdout)
    assert counts["skipped"] >= committed
    assert counts["unchanged"] <= at_kill - committed  # redone: only the last rows stored
    assert counts["read"] == good + len(BROKEN)
    reference = tmp_path / "reference.db"
    run_main(feed, "--db", reference)
    rows, dead = table(db), table(db, "dead_letters")
    assert rows == table(reference)
    assert [r[:5] for r in dead] == [r[:5] for r in table(reference, "dead_letters")]
    assert {r[0] for r in rows} | {r[0] for r in dead} == valid_ids(good)
    assert counts["inserted"] == len(rows) - at_kill
    assert all(row[-1] == 1 for row in rows)  # written once: a redone row was unchanged


def test_verbose_logs_carry_the_row_context(tmp_path: Path) -> None:
    """-v prints debug logs that name the data id (the row's key) and the node path."""
    feed = write_feed(tmp_path / "feed.jsonl")
    proc = run_main(feed, "--db", tmp_path / "shop.db", "--fail-rate", "0", "-v")
    # The first broken line is line 3 of the feed, a truncated JSON object.
    assert re.search(r"data=line 3 path=parse>rejects\] rejected \(bad json\)", proc.stderr)
    assert re.search(r"path=parse>enrich>store\] stored \d+ rows", proc.stderr)


def test_shipped_feed_runs_out_of_the_box(tmp_path: Path) -> None:
    """The default input (the shipped feed) runs from any folder and accounts for every row."""
    db = tmp_path / "demo.db"
    proc = subprocess.run(
        [sys.executable, str(MAIN), "--db", str(db), "--latency", "1", "--rate", "5000"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    counts = summary(proc.stdout)
    shipped = ROOT / "examples" / "refresh" / "products.jsonl"
    assert counts["read"] == len(shipped.read_bytes().splitlines())
    assert counts["read"] == counts["inserted"] + counts["rejected"] + counts["dead"]
    assert counts["rejected"] > 0 and counts["dead"] > 0
    assert len(table(db)) == counts["inserted"]
    assert len(table(db, "dead_letters")) == counts["dead"]


def test_ctrl_c_stops_the_job_and_keeps_stored_rows(tmp_path: Path) -> None:
    """SIGINT mid-run: exit status 130, a one-line notice, stored rows kept and skipped next."""
    db = tmp_path / "shop.db"
    cmd = [sys.executable, str(MAIN), "--db", str(db), "--rate", "100", "--batch-size", "10"]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("refresh ")  # the database is ready
        deadline = time.monotonic() + 20
        while not stored_count(db):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no row stored within 20 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert err.splitlines()[-1] == "main.py: interrupted; the rows stored so far are kept"
        assert not re.search(r"^\s+read\s", out, re.M)  # no summary of an unfinished run
        stored = stored_count(db)
        assert 0 < stored < 2900
    finally:
        kill_session(proc)
    # the checkpoint was committed as the run stopped: every row stored is skipped
    assert summary(run_main("--db", db).stdout)["skipped"] >= stored


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no/such/feed.jsonl"], "input file not found"),
        (["--concurrency", "0"], "--concurrency: must be at least 1"),
        (["--concurrency", "many"], "--concurrency: expected a number"),
        (["--rate", "0"], "--rate: must be at least 0.1"),
        (["--fail-rate", "1.5"], "--fail-rate: must be between 0 and 1"),
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
def test_parse_rejects_malformed_rows(line: str, reason: str) -> None:
    """Each kind of malformed row becomes a Reject with its reason."""
    result = job.parse(ctx(), json.loads(line))
    assert isinstance(result, job.Reject) and result.reason == reason


def test_parse_accepts_a_valid_row() -> None:
    """A valid row becomes a Product with an int price turned into a float."""
    row = good_row(5, price=12)
    result = job.parse(ctx(), row)
    assert result == job.Product("SKU-00005", "Lamp number 5", 12.0, "USD", 5, row["updated_at"])
    assert isinstance(result.price, float)


def test_row_key_puts_the_version_into_the_key() -> None:
    """The key is id@updated_at for rows, a line number or content hash for the others."""
    from async_dag.cli.inputs import BadLine

    assert job.row_key(good_row(7)) == "SKU-00007@2026-11-08T10:00:00Z"
    assert job.row_key(BadLine("feed", 3, "Expecting value")) == "line 3"
    assert job.row_key([1, 2]) == job.row_key([1, 2]) != job.row_key([2, 1])


def test_store_counts_inserted_unchanged_updated_per_transaction(tmp_path: Path) -> None:
    """One batch is one transaction; the upsert tells new, same and changed rows apart."""
    db = store.init_database(tmp_path / "var" / "x.db")
    writer = store.Store(db)
    row = store.Row("SKU-1", "Lamp", 10.0, "EUR", 10.0, "decor", 3, "2026-11-01T00:00:00Z")
    try:
        writer.dead_letters([("SKU-1", "SKU-1@x", "enrich", ValueError("503"), {"id": "SKU-1"})])
        writer.upsert([row, store.Row("SKU-2", *row[1:])])
        writer.upsert([row, row._replace(price=11.0)])
    finally:
        writer.close()
    assert writer.statuses == {"inserted": 2, "unchanged": 1, "updated": 1}
    assert (writer.batches, writer.dead_batches) == (2, 1)
    assert table(db, "dead_letters") == []  # stored at last: no longer a dead letter
    assert [(r[0], r[2], r[-1]) for r in table(db)] == [("SKU-1", 11.0, 2), ("SKU-2", 10.0, 1)]


async def test_api_answers_depend_on_the_seed_only() -> None:
    """Two APIs with one seed answer the same calls the same way, whatever the order."""
    one, two = (service.CatalogueAPI(seed=3, fail_rate=0.5, latency=0) for _ in range(2))
    ids = [f"SKU-{i}" for i in range(30)]
    first = [(await one.get(i, 1.0, "EUR", "x")).status for i in ids for _ in range(3)]
    second = {i: [(await two.get(i, 1.0, "EUR", "x")).status for _ in range(3)] for i in ids[::-1]}
    assert first == [s for i in ids for s in second[i]]
    assert {200, 503} <= set(first)


async def test_client_turns_statuses_into_the_retry_options_exceptions() -> None:
    """429 is a RetryAfter with the server's delay, 503 retryable, 404 final."""

    class Canned(service.CatalogueAPI):
        async def get(self, product_id: str, price: float, currency: str, name: str) -> Any:
            return {
                "a": service.Response(429, {"Retry-After": "0.25"}),
                "b": service.Response(503, body={"error": "down"}),
                "c": service.Response(404, body={"error": "gone"}),
            }[product_id]

    client = service.CatalogueClient(Canned(), RateLimit(10))
    with pytest.raises(RetryAfter) as slow:
        await client.lookup(ctx(), "a", price=1.0, currency="EUR", name="x")
    assert slow.value.seconds == 0.25
    with pytest.raises(service.ServiceUnavailable):
        await client.lookup(ctx(), "b", price=1.0, currency="EUR", name="x")
    with pytest.raises(service.ProductNotFound):
        await client.lookup(ctx(), "c", price=1.0, currency="EUR", name="x")


def test_data_script_rebuilds_the_shipped_feed(tmp_path: Path) -> None:
    """The shipped feed is small, has a few thousand rows, and its script rebuilds it exactly."""
    from examples.refresh import make_products

    shipped = ROOT / "examples" / "refresh" / "products.jsonl"
    assert shipped.stat().st_size < 500_000
    rebuilt = make_products.main(3000, tmp_path / "products.jsonl")
    assert rebuilt.read_bytes() == shipped.read_bytes()

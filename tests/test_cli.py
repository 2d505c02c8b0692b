"""The ``async-dag`` command line, end to end: every command and error case in a subprocess."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from _util import default_sigint, kill_session

HERE = Path(__file__).resolve().parent
JOBS = HERE / "cli_jobs"
JOB = JOBS / "jobs.py"
README = HERE.parent / "README.md"
SCRIPT = Path(sys.executable).parent / "async-dag"
SUMMARY = re.compile(
    r"^async-dag: (\d+) inputs, (\d+) outputs, (\d+) errors, (\d+) skipped in \d+\.\d s$", re.M
)


def cli(*args: object, stdin: str | None = None, cwd: Path | None = None, script: bool = False):
    """Run the command line (``python -m async_dag``, or the console script) to its end."""
    command = [str(SCRIPT)] if script else [sys.executable, "-m", "async_dag"]
    return subprocess.run(
        [*command, *map(str, args)],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def summary(stderr: str) -> tuple[int, int, int, int]:
    """(inputs, outputs, errors, skipped) from the summary line."""
    match = SUMMARY.search(stderr)
    assert match, stderr
    inputs, outputs, errors, skipped = map(int, match.groups())
    return inputs, outputs, errors, skipped


def jsonl(path: Path) -> list[object]:
    """A JSON Lines file's values; every line must be whole."""
    text = path.read_text()
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def numbers(n: int) -> str:
    return "".join(json.dumps({"n": i}) + "\n" for i in range(n))


@pytest.fixture
def ten(tmp_path: Path) -> Path:
    path = tmp_path / "ten.jsonl"
    path.write_text(numbers(10))
    return path


# -- the commands --------------------------------------------------------------------------


@pytest.mark.parametrize("script", [True, False], ids=["console script", "python -m"])
def test_version(script: bool) -> None:
    """``--version`` prints the package version, from the script and from ``-m``."""
    out = cli("--version", script=script)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "async-dag 0.1.0"


@pytest.mark.parametrize("command", ["run", "graph", "check"])
def test_help_has_an_example(command: str) -> None:
    """Each command's ``--help`` shows an example command line."""
    out = cli(command, "--help")
    assert out.returncode == 0
    assert f"async-dag {command} job.py:pipeline" in out.stdout


def test_run_function_from_stdin_to_stdout() -> None:
    """An async function reads JSON Lines from stdin and writes JSON Lines to stdout."""
    out = cli("run", f"{JOB}:double", stdin=numbers(5), script=True)
    assert out.returncode == 0, out.stderr
    assert [json.loads(line) for line in out.stdout.splitlines()] == [
        {"id": str(i), "n": 2 * i} for i in range(5)
    ]
    assert summary(out.stderr) == (5, 5, 0, 0)
    assert out.stderr.count("\n") == 1  # the summary line and nothing else off a terminal


def test_run_dag_into_csv(tmp_path: Path, ten: Path) -> None:
    """A DagPipeline's sink values go to a CSV file, one row each, header from the fields."""
    out = cli("run", f"{JOB}:pipeline", ten, "-o", tmp_path / "out.csv")
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "out.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["n"]) for r in rows) == [2 * i for i in range(10)]
    assert {r["parity"] for r in rows} == {"even"}
    assert summary(out.stderr) == (10, 10, 0, 0)


def test_run_into_parquet_in_row_groups(tmp_path: Path) -> None:
    """Parquet output holds every row, written incrementally in several row groups."""
    pq = pytest.importorskip("pyarrow.parquet")
    source = tmp_path / "in.jsonl"
    source.write_text(numbers(25_000))
    out = cli("run", f"{JOB}:double", source, "-o", tmp_path / "out.parquet")
    assert out.returncode == 0, out.stderr
    parquet = pq.ParquetFile(tmp_path / "out.parquet")
    assert parquet.metadata.num_row_groups >= 3
    assert parquet.read().column("n").to_pylist() == [2 * i for i in range(25_000)]


def test_run_module_target_from_the_current_folder(ten: Path) -> None:
    """``module:attr`` imports from the current folder, as ``python -m`` would."""
    out = cli("run", "jobs:double", ten, cwd=JOBS, script=True)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 10


@pytest.mark.parametrize("attr", ["builder", "make_pipeline"])
def test_run_builder_and_factory(attr: str, ten: Path) -> None:
    """A PipelineBuilder is built and a zero-argument factory called, then run."""
    out = cli("run", f"{JOB}:{attr}", ten)
    assert out.returncode == 0, out.stderr
    assert summary(out.stderr) == (10, 10, 0, 0)


def test_run_async_generator_with_limit(ten: Path) -> None:
    """An async generator function yields several outputs per input; --limit reads 4."""
    out = cli("run", f"{JOB}:explode", ten, "--limit", "4")
    assert out.returncode == 0, out.stderr
    values = [json.loads(line) for line in out.stdout.splitlines()]
    assert values == [{"n": n, "i": i} for n in range(4) for i in range(n)]
    assert summary(out.stderr) == (4, 6, 0, 0)


def test_run_lines_and_csv_inputs(tmp_path: Path) -> None:
    """--format lines gives strings, a .csv input dicts; several inputs are read in order."""
    rows = tmp_path / "rows.csv"
    rows.write_text("sku,qty\nA1,3\nB2,5\n")
    out = cli("run", f"{JOB}:echo", rows, "-", stdin="X\nY\n")
    assert out.returncode == 1  # stdin is JSON Lines unless --format says otherwise
    out = cli("run", f"{JOB}:echo", "--format", "lines", stdin="X\nY\r\n\n")
    assert [json.loads(line)["item"] for line in out.stdout.splitlines()] == ["X", "Y", ""]
    out = cli("run", f"{JOB}:echo", rows, tmp_path / "notes.txt", stdin="")
    assert out.returncode == 2  # notes.txt does not exist
    (tmp_path / "notes.txt").write_text("hello\n")
    out = cli("run", f"{JOB}:echo", rows, tmp_path / "notes.txt")
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["item"] for line in out.stdout.splitlines()] == [
        {"sku": "A1", "qty": "3"},
        {"sku": "B2", "qty": "5"},
        "hello",
    ]


def test_run_key_and_set(ten: Path) -> None:
    """--key makes data_ids from a field; --set puts strings into ctx.metadata."""
    out = cli("run", f"{JOB}:echo", ten, "--key", "n", "--set", "env=prod", "--set", "q=a=b")
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout.splitlines()[3])
    assert first == {"data_id": "3", "item": {"n": 3}, "metadata": {"env": "prod", "q": "a=b"}}


def test_run_concurrency_keeps_input_order(tmp_path: Path) -> None:
    """--concurrency runs a function pipeline several at a time, output still in order."""
    source = tmp_path / "in.jsonl"
    source.write_text(numbers(200))
    out = cli("run", f"{JOB}:slow", source, "--concurrency", "8")
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["n"] for line in out.stdout.splitlines()] == list(range(200))


def test_run_writes_rich_values_as_json(ten: Path) -> None:
    """Datetimes, decimals, named tuples and dataclasses become ISO strings, numbers, objects."""
    out = cli("run", f"{JOB}:rich", ten, "--limit", "1")
    assert json.loads(out.stdout) == {
        "when": "2026-12-01T08:30:00+00:00",
        "price": 19.99,
        "point": {"x": 1, "y": 2},
        "reading": {"sensor": "a", "value": 3, "day": "2026-12-01"},
    }


def test_run_named_tuples_into_csv(tmp_path: Path, ten: Path) -> None:
    """Named tuple values become CSV rows with their fields as the header."""
    out = cli("run", f"{JOB}:point", ten, "--limit", "2", "-o", tmp_path / "p.csv")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "p.csv").read_text() == "x,y\n0,0\n1,-1\n"


def test_run_empty_input() -> None:
    """No input at all is a run of zero items that succeeds."""
    out = cli("run", f"{JOB}:double", stdin="")
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    assert summary(out.stderr) == (0, 0, 0, 0)


# -- failures ------------------------------------------------------------------------------


def test_collected_failures_go_to_the_errors_file(tmp_path: Path, ten: Path) -> None:
    """Under collect the other items go on, the failure is in --errors, the exit status is 1."""
    errors = tmp_path / "errors.jsonl"
    out = cli("run", f"{JOB}:fails_on_3", ten, "--on-error", "collect", "--errors", errors)
    assert out.returncode == 1
    assert [json.loads(line)["n"] for line in out.stdout.splitlines()] == [
        0, 1, 2, 4, 5, 6, 7, 8, 9
    ]  # fmt: skip
    assert jsonl(errors) == [
        {
            "node": "fails_on_3",
            "data_id": "3",
            "error_type": "ValueError",
            "error": "three is not allowed",
        }
    ]
    assert summary(out.stderr) == (10, 9, 1, 0)


@pytest.mark.parametrize("show", [False, True])
def test_a_run_that_raises_prints_one_paragraph(ten: Path, show: bool) -> None:
    """The run's error is one paragraph (type, message, notes); the traceback only on request."""
    out = cli("run", f"{JOB}:fails_on_3", ten, *(["--traceback"] if show else []))
    assert out.returncode == 1
    assert "async-dag: ValueError: three is not allowed\n  async_dag: in node 'fails_on_3'" in (
        out.stderr
    )
    assert ("Traceback (most recent call last)" in out.stderr) is show
    summary(out.stderr)


def test_malformed_json_line_stops_the_run(tmp_path: Path) -> None:
    """A line that is not JSON ends the run with its file and line number, exit status 1."""
    source = tmp_path / "bad.jsonl"
    source.write_text('{"n": 1}\n{"n": 2\n{"n": 3}\n')
    out = cli("run", f"{JOB}:double", source)
    assert out.returncode == 1
    assert f"MalformedLine: {source}, line 2: not JSON" in out.stderr
    # the run stops at once: line 1 may or may not have been handled, line 3 never is
    assert out.stdout.splitlines() in ([], ['{"id": "0", "n": 2}'])


@pytest.mark.parametrize("attr", ["double", "pipeline"])
def test_malformed_json_line_fails_one_item_under_collect(tmp_path: Path, attr: str) -> None:
    """Under collect a malformed line is that item's failure, in --errors; the rest goes on."""
    source = tmp_path / "bad.jsonl"
    source.write_text('{"n": 1}\n{"n": 2\n\n{"n": 3}\n')
    errors = tmp_path / "errors.jsonl"
    out = cli("run", f"{JOB}:{attr}", source, "--on-error", "collect", "--errors", errors)
    assert out.returncode == 1
    assert sorted(json.loads(line)["n"] for line in out.stdout.splitlines()) == [2, 6]
    (error,) = jsonl(errors)
    assert error["data_id"] == "1" and error["error_type"] == "MalformedLine"
    assert error["error"].startswith(f"{source}, line 2: not JSON")
    assert summary(out.stderr) == (3, 2, 1, 0)


def test_missing_key_field_stops_the_run(ten: Path) -> None:
    """--key naming a field an input lacks says so, exit status 1."""
    out = cli("run", f"{JOB}:double", ten, "--key", "id")
    assert out.returncode == 1
    assert "--key id: input has no field 'id'" in out.stderr


def test_missing_key_field_fails_one_item_under_collect(tmp_path: Path) -> None:
    """Under collect an input without the --key field fails alone; the others go on."""
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "n": 1}\n{"n": 2}\n{"id": "c", "n": 3}\n')
    errors = tmp_path / "errors.jsonl"
    out = cli("run", f"{JOB}:double", source, "--key", "id", "--on-error", "collect",
              "--errors", errors)  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert [json.loads(line)["id"] for line in out.stdout.splitlines()] == ["a", "c"]
    (error,) = jsonl(errors)
    assert "--key id: input has no field 'id'" in error["error"]


# -- bad usage -----------------------------------------------------------------------------

BAD_USAGE = [
    (["run", f"{JOB}:double", "--bogus"], "unrecognized arguments: --bogus"),
    (["run", f"{JOB}:double", "--concurrency", "0"], "--concurrency: must be at least 1"),
    (["run", f"{JOB}:double", "--on-error", "maybe"], "invalid choice: 'maybe'"),
    (["run", f"{JOB}:double", "--set", "novalue"], "expected NAME=VALUE"),
    (["run", str(JOB)], "TARGET must be module:attr or path/to/file.py:attr"),
    (["run", f"{JOBS}/broken_import.py:job"], "line 3): ZeroDivisionError: division by zero"),
    (["run", "no_such_module_here:job"], "No module named 'no_such_module_here'"),
    (["run", f"{JOB}:doubel"], "has no attribute 'doubel'; did you mean 'double'?"),
    (["run", f"{JOB}:number"], "jobs.py:number is an int, not a DagPipeline"),
    (["run", f"{JOB}:plain"], "a function pipeline must be `async def f(ctx, item)`"),
    (["run", f"{JOB}:make_nothing"], "make_nothing() returned a list, not a DagPipeline"),
    (["run", f"{JOB}:broken_builder"], "unknown target task 'nowhere'"),
    (["run", f"{JOB}:double", "missing.jsonl"], "no such input file: missing.jsonl"),
    (["run", f"{JOB}:double", "-o", "out.txt"], "cannot tell the output format of out.txt"),
    (["run", f"{JOB}:double", "-o", "no/such/o.csv"], "cannot write no/such/o.csv: no such folder"),
    (["run", f"{JOB}:pipeline", "--concurrency", "4"], "--concurrency applies to function"),
    (["run", f"{JOB}:double", "--format", "lines", "--key", "id"], "--key needs dict inputs"),
    (["graph", f"{JOB}:pipeline", "-o", "g.gif"], "cannot tell the graph format of g.gif"),
    (["check", f"{JOBS}/bad_definition.py:pipeline"], "closes a cycle with no max_loops"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize(("args", "message"), BAD_USAGE, ids=[m for _, m in BAD_USAGE])
def test_bad_usage_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    """Bad usage gets one line on stderr naming what is wrong, exit status 2, nothing run."""
    out = cli(*args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert out.stderr.startswith("async-dag: error: ") and out.stderr.count("\n") == 1
    assert out.stdout == ""


def test_output_that_is_an_input_is_refused(ten: Path) -> None:
    """-o or --errors naming an input file is refused before the input is lost."""
    before = ten.read_text()
    for option in ("-o", "--errors"):
        out = cli("run", f"{JOB}:double", ten, option, ten)
        assert out.returncode == 2
        assert (
            out.stderr
            == f"async-dag: error: {ten} is also an input: writing it would lose the input\n"
        )
    assert ten.read_text() == before


def test_missing_attribute_lists_what_the_module_has() -> None:
    """A missing attribute lists the pipelines and async functions the module does have."""
    out = cli("check", f"{JOB}:nothing_like_it")
    assert out.returncode == 2
    assert "(it has: blocking, broken_builder, builder, double, echo," in out.stderr


def test_parquet_without_pyarrow_exits_2_before_running(tmp_path: Path, ten: Path) -> None:
    """Parquet output without pyarrow: exit 2 naming the extra, the target never imported."""
    code = (
        "import sys; sys.modules['pyarrow'] = sys.modules['pyarrow.parquet'] = None; "
        "from async_dag.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "run", f"{JOBS}/broken_import.py:x", ten, "-o", "o.parquet"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr == (
        "async-dag: error: writing o.parquet needs pyarrow: pip install 'async-dag[arrow]'\n"
    )
    assert not (tmp_path / "o.parquet").exists()


def test_checkpoint_skips_what_a_previous_run_finished(tmp_path: Path, ten: Path) -> None:
    """--checkpoint FILE: a second run skips the inputs the first one finished."""
    db = tmp_path / "done.sqlite"
    first = cli("run", f"{JOB}:double", ten, "--key", "n", "--limit", "4", "--checkpoint", db)
    assert first.returncode == 0, first.stderr
    assert summary(first.stderr) == (4, 4, 0, 0)
    second = cli("run", f"{JOB}:double", ten, "--key", "n", "--checkpoint", db)
    assert second.returncode == 0, second.stderr
    inputs, outputs, errors, skipped = summary(second.stderr)
    assert (outputs, errors, skipped) == (6, 0, 4) and inputs in (6, 10)
    assert [json.loads(line)["id"] for line in second.stdout.splitlines()] == [
        str(i) for i in range(4, 10)
    ]


# -- graph and check -----------------------------------------------------------------------


def test_check_lists_tasks_and_edges() -> None:
    """``check`` validates the target and prints its tasks and edges."""
    out = cli("check", f"{JOB}:pipeline")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith("pipeline 'parity': 3 tasks, 2 edges")
    assert re.search(r"^  double +async +concurrency 2, queue 64  \(source\)$", out.stdout, re.M)
    assert re.search(r"^  odd +def +concurrency 1, queue 64  \(sink\)$", out.stdout, re.M)
    assert "  double -> even  when is_even" in out.stdout
    out = cli("check", f"{JOB}:explode")
    assert out.stdout.startswith("function pipeline 'explode' (async generator)")


def test_graph_formats(tmp_path: Path) -> None:
    """``graph``: DOT on stdout, or .dot, .mmd (and .svg when dot is installed) by suffix."""
    out = cli("graph", f"{JOB}:pipeline")
    assert out.returncode == 0 and out.stdout.startswith("digraph {")
    assert cli("graph", f"{JOB}:pipeline", "-o", tmp_path / "g.dot").returncode == 0
    assert (tmp_path / "g.dot").read_text() == out.stdout
    assert cli("graph", f"{JOB}:double", "-o", tmp_path / "g.mmd").returncode == 0
    assert "flowchart LR" in (tmp_path / "g.mmd").read_text()
    if shutil.which("dot") is None:
        pytest.skip("the dot program is not installed")
    assert cli("graph", f"{JOB}:pipeline", "-o", tmp_path / "g.svg").returncode == 0
    assert "<svg" in (tmp_path / "g.svg").read_text()


# -- Ctrl-C --------------------------------------------------------------------------------


def _interrupt(
    tmp_path: Path,
    target: str,
    output: str,
    *,
    settle: bool = False,
    signum: int = signal.SIGINT,
) -> tuple[int, float, str, Path]:
    """Start a long run, wait for output (and with ``settle`` until it stops growing), send
    SIGINT; return the exit status, the seconds it took to exit, stderr, the output."""
    source = tmp_path / "in.jsonl"
    source.write_text(numbers(100_000))
    out = tmp_path / output
    proc = subprocess.Popen(
        [str(SCRIPT), "run", target, str(source), "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out.exists() and out.stat().st_size > 0):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no output after 60 s"
            time.sleep(0.05)
        size = -1
        while settle and size != out.stat().st_size:  # the run is stuck: nothing comes
            size = out.stat().st_size
            assert time.monotonic() < deadline, "the output kept growing"
            time.sleep(1.0)
        children = psutil.Process(proc.pid).children(recursive=True)
        sent = time.monotonic()
        os.kill(proc.pid, signum)
        _, stderr = proc.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            kill_session(proc)
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == [] and not psutil.pid_exists(proc.pid)
    return proc.returncode, elapsed, stderr, out


@pytest.mark.parametrize(
    ("attr", "output"),
    [("slow", "out.jsonl"), ("blocking", "out.jsonl"), ("slow", "out.csv")],
    ids=["function to jsonl", "dag with blocked threads", "function to csv"],
)
def test_ctrl_c_exits_130_with_valid_output(tmp_path: Path, attr: str, output: str) -> None:
    """Ctrl-C: exit 130 within ~2 s (blocked threads too), output whole lines, nothing left."""
    status, elapsed, stderr, out = _interrupt(tmp_path, f"{JOB}:{attr}", output)
    assert status == 130, stderr
    assert elapsed < 2.0, stderr
    assert "async-dag: interrupted" in stderr
    inputs, outputs, _, _ = summary(stderr)
    assert 0 < outputs <= inputs < 100_000
    if output.endswith(".csv"):
        text = out.read_text()
        assert text.endswith("\n")
        rows = list(csv.DictReader(text.splitlines()))
        assert all(set(r) == {"n", "text"} and r["text"] == "x" * 50 for r in rows)
        assert len(rows) == outputs
    else:
        assert len(jsonl(out)) == outputs


def test_sigterm_stops_the_run_like_ctrl_c(tmp_path: Path) -> None:
    """SIGTERM (``timeout``, service managers) ends the run the same way, exit status 143."""
    status, elapsed, stderr, out = _interrupt(
        tmp_path, f"{JOB}:slow", "out.jsonl", signum=signal.SIGTERM
    )
    assert status == 143, stderr
    assert elapsed < 2.0, stderr
    _, outputs, _, _ = summary(stderr)
    assert len(jsonl(out)) == outputs > 0


@pytest.mark.slow
def test_ctrl_c_exits_when_a_handler_blocks_the_loop(tmp_path: Path) -> None:
    """Ctrl-C while a handler blocks the event loop: exit 130 within ~2 s anyway."""
    status, elapsed, stderr, out = _interrupt(tmp_path, f"{JOB}:hog", "out.jsonl", settle=True)
    assert status == 130, stderr
    assert elapsed < 2.0, stderr
    assert stderr.endswith("async-dag: interrupted\n")
    assert 0 < len(jsonl(out)) <= 150


# -- the README ----------------------------------------------------------------------------


@pytest.mark.slow
def test_readme_commands_run(tmp_path: Path) -> None:
    """The README's "From the notebook to cron" job file and commands run as shown."""
    section = README.read_text().split("## From the notebook to cron", 1)[1].split("\n## ", 1)[0]
    (job,) = re.findall(r"```python\n(.*?)```", section, re.S)
    (tmp_path / "job.py").write_text(job)
    (tmp_path / "products.jsonl").write_text(
        "".join(json.dumps({"sku": s}) + "\n" for s in ("A1", "B22", "C333"))
    )
    (tmp_path / "ids.txt").write_text("A1\nB22\n")
    env = dict(os.environ, PATH=f"{SCRIPT.parent}{os.pathsep}{os.environ['PATH']}")
    commands = [
        line.split("  #")[0]
        for block in re.findall(r"```sh\n(.*?)```", section, re.S)
        for line in block.splitlines()
        if line.strip()
    ]
    assert any("graph job.py:pipeline -o job.svg" in c for c in commands)
    for command in commands:
        if "job.svg" in command and shutil.which("dot") is None:
            continue
        done = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {command}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (command, done.stderr)
    with open(tmp_path / "prices.csv", newline="") as f:
        assert sorted(r["sku"] for r in csv.DictReader(f)) == ["A1", "B22", "C333"]
    if shutil.which("dot") is not None:
        assert "<svg" in (tmp_path / "job.svg").read_text()
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(tmp_path / "prices.parquet")
    assert sorted(table.column("price").to_pylist()) == [9.72, 14.58, 19.44]


def test_closed_stdout_ends_the_run(tmp_path: Path) -> None:
    """``async-dag run ... | head -2``: the run stops, says so in one line, exit status 1."""
    source = tmp_path / "in.jsonl"
    source.write_text(numbers(100_000))
    done = subprocess.run(
        ["bash", "-c", f"set -o pipefail; '{SCRIPT}' run '{JOB}:double' '{source}' | head -2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout.splitlines() == ['{"id": "0", "n": 0}', '{"id": "1", "n": 2}']
    assert "async-dag: output closed early (broken pipe)" in done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    inputs, _, _, _ = summary(done.stderr)
    assert inputs < 100_000


@pytest.mark.parametrize("monitor", [True, False])
def test_progress_display_on_a_terminal(tmp_path: Path, ten: Path, monitor: bool) -> None:
    """On a terminal stderr shows the progress display, unless --no-monitor; then the summary."""
    master, slave = os.openpty()
    try:
        done = subprocess.run(
            [str(SCRIPT), "run", f"{JOB}:double", str(ten), "-o", str(tmp_path / "o.jsonl")]
            + ([] if monitor else ["--no-monitor"]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=slave,
            timeout=120,
        )
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    text = b"".join(chunks).decode()
    assert done.returncode == 0, text
    assert ("\x1b[" in text) is monitor
    assert ("double" in text.replace("'double'", "")) is monitor  # the per-node line
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r\n", "\n")
    assert summary(plain) == (10, 10, 0, 0)

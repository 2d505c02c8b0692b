"""TerminalMonitor: silent off a terminal, redrawn in place on a real pty."""

from __future__ import annotations

import fcntl
import io
import os
import re
import struct
import termios
import threading

import pytest

from async_dag import NodeStats, PipelineBuilder, RunStats, run_function_pipeline
from async_dag.observe.monitor import resolve_monitor
from async_dag.observe.terminal import TerminalMonitor, printable

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


async def inc(ctx, x):
    return x + 1


class Pty:
    """A real pseudo-terminal: the monitor writes to the slave, a thread drains the master."""

    def __init__(self, columns: int = 200) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
        self.stream = open(slave, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # the slave side is closed
                return
            if not data:
                return
            self.chunks.append(data)

    def close(self) -> str:
        self.stream.close()
        self.reader.join(timeout=10)
        os.close(self.master)
        return b"".join(self.chunks).decode("utf-8")


@pytest.fixture
def pty(request):
    """A Pty closed after the test, even a failed one; its width is 200 columns unless the
    test asks otherwise with ``@pytest.mark.parametrize("pty", [columns], indirect=True)``."""
    terminal = Pty(columns=getattr(request, "param", 200))
    yield terminal
    if not terminal.stream.closed:
        terminal.close()


def stats(done: int, *, node: str = "work", elapsed: float = 1.0) -> RunStats:
    return RunStats(
        run_id="r1",
        name="demo",
        elapsed=elapsed,
        inputs=done,
        outputs=done,
        errors=0,
        nodes={
            node: NodeStats(node=node, concurrency=1, queue_size=2, received=done, emitted=done)
        },
    )


def snapshot_at(elapsed: float, done: int, *, total: int | None = None) -> RunStats:
    """A one-node snapshot at ``elapsed`` seconds with ``done`` inputs finished."""
    base = stats(done, elapsed=elapsed)
    return RunStats(
        run_id=base.run_id,
        name=base.name,
        elapsed=elapsed,
        inputs=done,
        outputs=done,
        errors=0,
        nodes=base.nodes,
        total=total,
    )


async def test_a_pipe_gets_only_a_summary_line_for_a_short_run():
    """Off a terminal a short run writes no drawing, just one summary line at the end."""
    read_end, write_end = os.pipe()
    with open(write_end, "w") as stream:
        monitor = TerminalMonitor(stream=stream, min_redraw=0)
        result = await run_function_pipeline(range(200), inc, monitor=monitor, run_id="p1")
    with open(read_end, "rb") as pipe:
        written = pipe.read().decode()
    assert "\x1b" not in written
    assert re.fullmatch(
        r"async-dag: inc run p1 done: 200 inputs, 200 outputs, 0 errors, 0 skipped in "
        r"\d+\.\d s\n",
        written,
    ), written
    assert monitor.state == "done"
    assert monitor.stats == result.stats
    assert monitor.lines[2].startswith("  in 200  out 200")


def test_off_a_terminal_a_progress_line_every_ten_seconds():
    """Off a terminal: a progress line at most every 10 s of the run, then the summary."""
    stream = io.StringIO()
    monitor = TerminalMonitor(stream=stream)
    monitor.start(snapshot_at(0.0, 0, total=4000))
    for tenth in range(1, 351):  # 35 s of updates, ten a second
        monitor.update(snapshot_at(tenth / 10, tenth * 10, total=4000))
    monitor.finish(snapshot_at(35.0, 3500, total=4000), None)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4, lines
    assert [line.split(", ")[-1] for line in lines[:3]] == ["10.0 s", "20.0 s", "30.0 s"]
    assert "1,000/4,000 25% · 100 inputs/s · ETA 0:30" in lines[0]
    assert lines[3].startswith("async-dag: demo run r1 done: 3500 inputs")


def test_log_interval_none_is_silent_off_a_terminal():
    """log_interval=None writes nothing at all when the stream is not a terminal."""
    stream = io.StringIO()
    monitor = TerminalMonitor(stream=stream, log_interval=None)
    monitor.start(snapshot_at(0.0, 0))
    monitor.update(snapshot_at(30.0, 10))
    monitor.finish(snapshot_at(31.0, 10), None)
    assert stream.getvalue() == ""


async def test_monitor_true_writes_to_stderr(capsys):
    """monitor=True outside a kernel is a TerminalMonitor on stderr; stdout stays clean."""
    assert isinstance(resolve_monitor(True), TerminalMonitor)
    assert list(await run_function_pipeline(range(50), inc, monitor=True)) == list(range(1, 51))
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("async-dag: inc run ") and captured.err.count("\n") == 1


async def test_draws_on_a_pty(pty):
    """On a terminal it draws header, bar, totals and node lines, ending with the final numbers."""
    p = (
        PipelineBuilder("twostep")
        .add_task("first", inc, concurrency=2)
        .add_task("second", inc)
        .add_edge("first", "second")
        .build()
    )
    monitor = TerminalMonitor(stream=pty.stream, min_redraw=0)
    result = await p.run_stream(range(300), monitor=monitor, run_id="pty-run")
    text = pty.close()
    plain = ANSI.sub("", text)
    assert "twostep  run pty-run  running" in plain
    final = [line.strip() for line in plain.split("\r\n")[-6:]]
    assert final[0].startswith("twostep  run pty-run  done")
    assert final[1].startswith("[####################] 300/300  100%")
    assert final[2] == "in 300  out 300  errors 0"
    assert final[3].startswith("first ") and "done       300" in final[3]
    assert final[4].startswith("second") and "out       300" in final[4]  # 200 columns: wide
    assert final[5] == ""
    assert "\x1b[5A" in text  # later blocks move back up over the 5 lines drawn
    assert result.stats == monitor.stats


async def test_final_state_after_failure(pty):
    """A failed run leaves 'failed: ExcType' showing."""

    async def boom(ctx, x):
        raise KeyError(x)

    monitor = TerminalMonitor(stream=pty.stream)
    with pytest.raises(KeyError):
        await run_function_pipeline([1], boom, monitor=monitor)
    assert "failed: KeyError" in ANSI.sub("", pty.close())


def test_redraws_are_rate_limited(pty):
    """Updates closer than min_redraw are not drawn; start and finish always are."""
    monitor = TerminalMonitor(stream=pty.stream, min_redraw=60)
    monitor.start(stats(0))
    for i in range(1, 50):
        monitor.update(stats(i))
    monitor.finish(stats(50), None)
    plain = ANSI.sub("", pty.close())
    assert plain.count("demo  run r1") == 2
    assert "out 50" in plain and "out 49" not in plain


@pytest.mark.parametrize("pty", [80], indirect=True)
def test_nothing_is_cut_off_at_80_columns(pty):
    """At 80 columns every line fits whole: long ids are shortened, numbers and rates kept."""
    long_id = "a-very-long-node-identifier-that-goes-on-and-on-for-ever-52"
    nodes = {
        long_id: NodeStats(
            node=long_id,
            concurrency=64,
            queue_size=100,
            received=1_234_567,
            in_flight=64,
            queue_depth=100,
            failed=12_345,
            emitted=1_222_158,
        ),
        "short": NodeStats(node="short", concurrency=1, queue_size=8, received=9),
    }
    big = RunStats(
        run_id="0123456789abcdef0123",
        name="a pipeline with a rather long name indeed",
        elapsed=1234.5,
        inputs=1_234_567,
        outputs=1_222_158,
        errors=12_345,
        nodes=nodes,
        total=10_000_000,
    )
    monitor = TerminalMonitor(stream=pty.stream)
    monitor.start(big)
    monitor.finish(big, KeyError("x"))
    lines = [ANSI.sub("", line).strip("\r") for line in pty.close().split("\r\n")]
    assert max(len(line) for line in lines) <= 79
    final = lines[-6:-1]
    assert final[0].endswith("failed: KeyError  1234.5 s")
    assert (
        "1,234,403/10,000,000" in final[1]
    )  # 164 still inside when it failed and final[1].endswith("inputs/s")
    assert final[2] == "  in 1,234,567  out 1,222,158  errors 12,345"
    assert "queue 100/100" in final[3] and "failed 12,345" in final[3] and final[3].endswith("/s")
    assert "…" in final[3] and final[4].startswith("  short ")


@pytest.mark.parametrize("pty", [30], indirect=True)
def test_lines_fit_the_terminal(pty):
    """Lines are cut to the terminal's width so the cursor moves stay right."""
    monitor = TerminalMonitor(stream=pty.stream)
    monitor.start(stats(5))
    monitor.finish(stats(5), None)
    lines = [ANSI.sub("", line).strip("\r") for line in pty.close().split("\r\n")]
    assert max(len(line) for line in lines) == 29  # long lines were cut, none wrapped


def test_eta_on_the_terminal():
    """With a total the bar line shows count/total, percent, rate and, in time, the ETA."""
    monitor = TerminalMonitor(stream=io.StringIO(), min_redraw=0)
    monitor.start(snapshot_at(0.0, 0, total=1000))
    assert "ETA" not in monitor.lines[1]
    monitor.update(snapshot_at(4.0, 400, total=1000))
    assert monitor.lines[1] == "  [########............] 400/1,000   40%  100 inputs/s  ETA 0:06"


def test_control_characters_are_escaped():
    """A node id with an escape sequence is printed as text, not sent to the terminal."""
    stream = io.StringIO()
    monitor = TerminalMonitor(stream=stream, log_interval=None)
    monitor.start(stats(1, node="evil\x1b[2Jid"))
    assert "evil\\x1b[2Jid" in monitor.lines[3]
    assert printable("a\nb\x07") == "a\\nb\\x07"
    assert stream.getvalue() == ""  # StringIO is not a terminal


def test_progress_counts_skipped_inputs_once():
    """Inputs a checkpoint skipped are among ``inputs`` and are done at once, not twice."""
    from async_dag.observe.rates import Progress

    def stats(queued: int) -> RunStats:
        node = NodeStats("a", 1, 64, queue_depth=queued)
        return RunStats("r", "p", 1.0, 10, 0, 0, {"a": node}, total=10, skipped=4)

    progress = Progress()
    progress.sample(stats(queued=2))
    assert progress.done == 8
    progress.sample(stats(queued=0), state="done")
    assert progress.done == 10


def test_throttled_time_shows_where_it_fits():
    """A node that waited for its rate limit says for how long, within the width."""
    from async_dag.observe.terminal import TerminalMonitor

    node = NodeStats("api", 4, 64, received=10, emitted=10, throttled=2.5)
    stats = RunStats("r", "p", 3.0, 10, 10, 0, {"api": node}, total=10)
    monitor = TerminalMonitor(stream=io.StringIO())
    for columns in (80, 120):
        lines = monitor.render(stats, columns=columns)
        assert all(len(line) <= columns for line in lines)
        assert any("throttled 2.5 s" in line for line in lines)

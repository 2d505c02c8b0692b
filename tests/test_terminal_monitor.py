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


async def test_quiet_on_a_pipe():
    """On a pipe the monitor writes nothing at all, yet keeps the last block."""
    read_end, write_end = os.pipe()
    with open(write_end, "w") as stream:
        monitor = TerminalMonitor(stream=stream, min_redraw=0)
        result = await run_function_pipeline(range(200), inc, monitor=monitor)
    with open(read_end, "rb") as pipe:
        assert pipe.read() == b""
    assert monitor.state == "done"
    assert monitor.stats == result.stats
    assert "out 200" in monitor.lines[0]


async def test_monitor_true_is_silent_when_stdout_is_captured(capsys):
    """monitor=True outside a kernel is a TerminalMonitor; captured stdout stays empty."""
    assert isinstance(resolve_monitor(True), TerminalMonitor)
    assert list(await run_function_pipeline(range(50), inc, monitor=True)) == list(range(1, 51))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


async def test_draws_on_a_pty(pty):
    """On a terminal it draws the header and node lines, ending with the final numbers."""
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
    final = [line.strip() for line in plain.split("\r\n")[-4:]]
    assert final[0].startswith("twostep  run pty-run  done")
    assert "in 300  out 300  errors 0" in final[0]
    assert final[1].startswith("first ") and "done      300" in final[1]
    assert final[2].startswith("second") and "out      300" in final[2]
    assert final[3] == ""
    assert "\x1b[3A" in text  # later blocks move back up over the 3 lines drawn
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


@pytest.mark.parametrize("pty", [30], indirect=True)
def test_lines_fit_the_terminal(pty):
    """Lines are cut to the terminal's width so the cursor moves stay right."""
    monitor = TerminalMonitor(stream=pty.stream)
    monitor.start(stats(5))
    monitor.finish(stats(5), None)
    lines = [ANSI.sub("", line).strip("\r") for line in pty.close().split("\r\n")]
    assert max(len(line) for line in lines) == 29  # long lines were cut, none wrapped


def test_control_characters_are_escaped():
    """A node id with an escape sequence is printed as text, not sent to the terminal."""
    stream = io.StringIO()
    monitor = TerminalMonitor(stream=stream)
    monitor.start(stats(1, node="evil\x1b[2Jid"))
    assert "evil\\x1b[2Jid" in monitor.lines[1]
    assert printable("a\nb\x07") == "a\\nb\\x07"
    assert stream.getvalue() == ""  # StringIO is not a terminal

"""The README's examples run, and print exactly what the README says they print."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
# a python block immediately followed by the text block of its output (never one that
# spans a fence: a snippet with no output must not swallow the next example)
PAIR = re.compile(r"```python\n((?:(?!```).)*?)```\s*```text\n(.*?)```", re.DOTALL)


def examples() -> list[tuple[str, str]]:
    return PAIR.findall(README.read_text())


def test_readme_has_runnable_examples():
    """The quick start and the graph example are there."""
    assert len(examples()) >= 2


@pytest.mark.parametrize("index", range(len(examples())))
def test_readme_example_prints_what_it_shows(index):
    """Each example, run as a script, prints its documented output exactly."""
    code, expected = examples()[index]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == expected


def test_every_python_block_compiles():
    """Snippets that are not whole scripts still parse (top-level await allowed)."""
    import ast

    for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL):
        ast.parse("async def _():\n" + "".join(f"    {line}\n" for line in block.splitlines()))

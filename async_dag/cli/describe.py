"""What ``check`` prints (tasks and edges) and what ``graph`` writes (DOT, mermaid, images)."""

from __future__ import annotations

import inspect
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .. import DagPipeline
from ..observe.terminal import printable
from .targets import Target, UsageError

IMAGE_SUFFIXES = (".svg", ".png", ".pdf")
GRAPH_SUFFIXES = (*IMAGE_SUFFIXES, ".dot", ".gv", ".mmd")


def _kind(handler: Any) -> str:
    target = handler
    while hasattr(target, "func") and not inspect.isfunction(target):
        target = target.func  # functools.partial
    if inspect.isasyncgenfunction(target):
        return "async generator"
    if inspect.iscoroutinefunction(target):
        return "async"
    if inspect.isgeneratorfunction(target):
        return "generator"
    return "def"


def _task_line(pipeline: DagPipeline, task_id: str, width: int) -> str:
    task = pipeline.tasks[task_id]
    options = [f"concurrency {task.concurrency}", f"queue {pipeline.queue_sizes[task_id]}"]
    for name in ("retries", "timeout", "batch_size", "rate_limit"):
        value = getattr(task, name, None)
        if value:
            options.append(f"{name.replace('_', ' ')} {value}")
    for flag in ("inline", "join"):
        if getattr(task, flag, False):
            options.append(flag)
    roles = [
        r for r, ids in (("source", pipeline.sources), ("sink", pipeline.sinks)) if task_id in ids
    ]
    role = f"  ({', '.join(roles)})" if roles else ""
    return f"  {printable(task_id):<{width}}  {_kind(task.handler):<15}  {', '.join(options)}{role}"


def _edge_line(edge: Any) -> str:
    parts = []
    if edge.when is not None:
        name = getattr(edge.when, "__name__", type(edge.when).__name__)
        parts.append(f"when {printable(str(name))}")
    if edge.max_loops is not None:
        parts.append(f"max_loops {edge.max_loops}")
    if getattr(edge, "on_error", False):
        parts.append("on error")
    return f"  {printable(edge.source)} -> {printable(edge.target)}" + (
        f"  {', '.join(parts)}" if parts else ""
    )


def describe(target: Target) -> str:
    """The text ``check`` prints: the pipeline, its tasks, its edges."""
    graph = target.as_graph()
    if target.pipeline is None:
        head = f"function pipeline {target.name!r} ({_kind(target.function)}), from {target.spec}"
        return head + "\n"
    lines = [
        f"pipeline {graph.name!r}: {len(graph.tasks)} tasks, {len(graph.transitions)} edges, "
        f"from {target.spec}",
        "tasks:",
    ]
    width = max(len(printable(t)) for t in graph.tasks)
    lines += [_task_line(graph, task_id, width) for task_id in graph.tasks]
    if graph.transitions:
        lines.append("edges:")
        lines += [_edge_line(edge) for edge in graph.transitions]
    return "\n".join(lines) + "\n"


def check_graph_output(output: str | None) -> None:
    """Refuse a ``graph -o`` file that cannot be made, before loading anything."""
    if output is None:
        return
    suffix = Path(output).suffix.lower()
    if suffix not in GRAPH_SUFFIXES:
        raise UsageError(
            f"cannot tell the graph format of {output}: use a name ending in "
            f"{', '.join(GRAPH_SUFFIXES)} (or no -o for DOT text on stdout)"
        )
    if suffix in IMAGE_SUFFIXES and shutil.which("dot") is None:
        raise UsageError(
            f"drawing {output} needs the dot program of Graphviz: apt-get install graphviz "
            "(or brew install graphviz); .dot and .mmd files need nothing"
        )


def mermaid(graph: DagPipeline) -> str:
    """The graph as mermaid text (``DagPipeline.to_mermaid`` where the engine has it)."""
    to_mermaid = getattr(graph, "to_mermaid", None)
    if to_mermaid is not None:
        return str(to_mermaid())
    from ..notebook import to_mermaid as notebook_mermaid

    return notebook_mermaid(graph)


def write_graph(target: Target, output: str | None) -> str | None:
    """Write the graph to ``output`` by its suffix; return the DOT text when there is none."""
    graph = target.as_graph()
    if output is None:
        return graph.to_dot()
    suffix = Path(output).suffix.lower()
    if suffix == ".mmd":
        Path(output).write_text(mermaid(graph), encoding="utf-8")
    elif suffix in IMAGE_SUFFIXES:
        done = subprocess.run(
            ["dot", f"-T{suffix[1:]}", "-o", output],
            input=graph.to_dot(),
            text=True,
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"dot failed ({done.returncode}): {done.stderr.strip()}")
    else:
        Path(output).write_text(graph.to_dot(), encoding="utf-8")
    return None

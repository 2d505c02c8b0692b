"""A job file that builds an invalid pipeline when it is imported."""

from async_dag import PipelineBuilder


async def step(ctx, item):
    return item


pipeline = PipelineBuilder("loop").add_task("a", step).add_edge("a", "a").build()

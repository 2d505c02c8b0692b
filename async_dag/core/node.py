"""One task's life inside one run: its queue, its counters, and calling its handler.

Everything here is decided once, when the run starts: how the handler is called
(awaited, inline, in a thread, driven as a generator), with which retry policy, timeout
and rate limit, and where its outputs go (``emit``, from :mod:`.routing`). The worker
loop (:mod:`.worker`) then only takes payloads and hands them over. Counters are plain
ints on this object; observers read them from the sampler, never from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from .context import PipelineContext, log_extra, with_attempt
from .errors import RetryAfter
from .handlers import HandlerKind, callable_name
from .queue import BatchQueue, NodeQueue
from .threads import Lanes

if TYPE_CHECKING:
    from .definition import DagTask
    from .ratelimit import RateLimit
    from .retry import RetryPolicy
    from .routing import Hop
    from .run import Run

log = logging.getLogger("async_dag")

Emit = Callable[[PipelineContext, Any], "Awaitable[None] | None"]
_END: Any = object()  # what ``next(gen, _END)`` returns when a sync generator is done


class NodeRuntime:
    """A task's per-run state: queue, counters, and how to call it."""

    # slots: the worker loop updates three counters per payload, a quarter cheaper so
    __slots__ = (
        "awaits",
        "batches",
        "concurrency",
        "direct",
        "emit",
        "emitted",
        "error_target",
        "failed",
        "filtered",
        "handler",
        "hop",
        "id",
        "in_flight",
        "index",
        "invoke",
        "join_index",
        "joins_below",
        "kind",
        "lanes",
        "limit",
        "on_failure",
        "policy",
        "queue",
        "received",
        "relay",
        "resume_at",
        "retried",
        "run",
        "task",
        "threaded",
        "throttled",
        "timeout",
        "unrouted",
    )

    def __init__(self, task: DagTask, run: Run, index: int) -> None:
        self.id = task.id
        self.task = task
        self.index = index
        self.run = run
        self.handler = task.handler
        self.kind = task.kind
        self.concurrency = task.concurrency
        self.policy: RetryPolicy = task.retry_policy
        self.timeout = task.timeout
        self.threaded = self.kind in (HandlerKind.SYNC, HandlerKind.SYNC_GEN) and not task.inline
        self.awaits = self.kind is HandlerKind.ASYNC
        self.limit: RateLimit | None = None
        self.resume_at = 0.0  # a RetryAfter without a shared RateLimit pauses this task
        size = run.pipeline.queue_sizes[task.id]
        self.queue = BatchQueue(size) if task.batch_size else NodeQueue(size)
        self.lanes = Lanes(f"async_dag:{task.id}") if self.threaded else None
        self.emit: Emit = _unset_emit
        # a direct worker's single edge: the output takes its payload's place in the count
        self.hop: Hop | None = None
        # what a direct worker hands its output to when that output takes the payload's
        # place in the count: a plain fan-out's first output, or an ordered run's reorder
        self.relay: Emit | None = None
        # what a direct worker tells when its handler failed (an ordered run's reorder)
        self.on_failure: Callable[[PipelineContext], Awaitable[None] | None] | None = None
        self.error_target: NodeRuntime | None = None
        self.joins_below: tuple[int, ...] = ()  # joins this node can still reach
        self.join_index: int | None = None
        # the worker loop calls the handler itself ("direct") or hands over to ``invoke``
        self.direct = False
        self.invoke: Callable[[Any, Any], Awaitable[None]] = self.invoke_one
        self.received = self.emitted = self.failed = self.retried = 0
        self.unrouted = self.filtered = self.in_flight = self.batches = 0
        self.throttled = 0.0

    @property
    def abandoned(self) -> int:
        """Threaded calls given up on (timed out, or still running when the run ended)."""
        return self.lanes.abandoned if self.lanes is not None else 0

    def choose_path(self) -> None:
        """Decide once whether the worker loop may call the handler itself."""
        task = self.task
        self.direct = (
            (self.awaits or (self.kind is HandlerKind.SYNC and not self.threaded))
            and self.policy.retries == 0
            and self.timeout is None
            and self.limit is None
            and task.batch_size is None
            and not task.join
        )

    # -- the general path ------------------------------------------------------------

    async def invoke_one(self, ctx: PipelineContext, payload: Any) -> None:
        """Handle one payload completely, then end its share of the run's work."""
        self.received += 1
        self.in_flight += 1
        await self.handle(ctx, payload, self.emit)
        self.in_flight -= 1
        self.run.finish(ctx, self)

    async def handle(self, ctx: PipelineContext, payload: Any, emit: Emit) -> None:
        """Call the handler on ``payload`` (retries included), send its outputs to
        ``emit``, or record its failure."""
        if self.kind is HandlerKind.ASYNC_GEN or self.kind is HandlerKind.SYNC_GEN:
            await self.handle_generator(ctx, payload, emit)
            return
        ok, ctx, value = await self.call(ctx, payload)
        if not ok:
            self.run.fail(self, ctx, value, payload)
            return
        self.emitted += 1
        pending = emit(ctx, value)
        if pending is not None:
            await pending

    async def call(self, ctx: PipelineContext, payload: Any) -> tuple[bool, PipelineContext, Any]:
        """Call a one-value handler with retries, timeout and rate limit.

        Returns ``(True, ctx, value)`` with the context of the attempt that succeeded,
        or ``(False, ctx, exception)`` once the payload has failed for good.
        """
        attempt = 0
        while True:
            if self.limit is not None or self.resume_at:
                await self.wait_turn()
            error: BaseException | None = None
            value: Any = None
            scope: asyncio.Timeout | None = None
            try:
                if self.threaded:
                    assert self.lanes is not None
                    done, value = await self.lanes.call(self.timeout, self.handler, ctx, payload)
                    if not done:
                        error, value = value, None
                    elif type(value) is CoroutineType:
                        error, value = self.returned_coroutine(value), None
                elif self.timeout is None:
                    value = self.handler(ctx, payload)
                    if self.awaits:
                        value = await value
                    elif type(value) is CoroutineType:
                        error, value = self.returned_coroutine(value), None
                else:
                    scope = asyncio.timeout(self.timeout)
                    async with scope:
                        value = await self.handler(ctx, payload)
                    if scope.expired():  # it swallowed the cancellation and returned anyway
                        error = self.timed_out()
            except TimeoutError as exc:
                # ours when the thread's clock or this scope ran out; else the handler's own
                ours = self.threaded or (scope is not None and scope.expired())
                error = self.timed_out() if ours else exc
            except Exception as exc:
                error = exc
            if error is None:
                return True, ctx, value
            retry = await self.judge(error, attempt, ctx)
            if retry is not True:
                return False, ctx, retry if retry is not False else error
            attempt += 1
            ctx = with_attempt(ctx, attempt)

    async def judge(
        self, error: BaseException, attempt: int, ctx: PipelineContext
    ) -> bool | BaseException:
        """After a failed call: True (wait and retry), False (final), or the exception a
        ``retry_on`` predicate raised (final, that is the failure)."""
        policy = self.policy
        if attempt >= policy.retries:
            if isinstance(error, RetryAfter):
                self.pause(error.seconds)
            return False
        try:
            if not policy.matches(error):
                return False
        except Exception as exc:
            exc.add_note(f"raised by retry_on of task {self.id!r} judging {error!r}")
            return exc
        self.retried += 1
        delay = policy.wait_before(attempt + 1, error)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "retry %d of %d for %s in %s s after %s: %s",
                attempt + 1,
                policy.retries,
                self.id,
                f"{delay:.3g}",
                type(error).__name__,
                error,
                extra=log_extra(ctx),
            )
        if isinstance(error, RetryAfter):
            self.pause(delay)  # the retry waits at the gate, like every other call
        elif delay > 0:
            await asyncio.sleep(delay)
        return True

    def pause(self, seconds: float) -> None:
        """No call of this task (or of the tasks sharing its RateLimit) starts for a while."""
        if self.limit is not None:
            self.limit.pause(seconds)
        else:
            self.resume_at = max(self.resume_at, asyncio.get_running_loop().time() + seconds)

    async def wait_turn(self) -> None:
        """Wait for a RetryAfter pause to end and for the rate limit's next slot."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.resume_at > now:
            await asyncio.sleep(self.resume_at - now)
            self.throttled += loop.time() - now
        if self.limit is not None:
            self.throttled += await self.limit.acquire()

    def timed_out(self) -> TimeoutError:
        """The failure of a call that ran past ``timeout``."""
        return TimeoutError(
            f"a call of task {self.id!r} took longer than timeout={self.timeout:g} s"
        )

    def returned_coroutine(self, value: Any) -> TypeError:
        """The failure of a plain ``def`` that returned a coroutine (closed unawaited)."""
        value.close()
        return TypeError(
            f"handler {callable_name(self.handler)!r} of task {self.id!r} is a plain def that "
            "returned a coroutine; declare it with async def"
        )

    # -- generators ------------------------------------------------------------------

    async def handle_generator(self, ctx: PipelineContext, payload: Any, emit: Emit) -> None:
        """Drive a generator handler, sending each output on as it comes.

        A failure before the first output is retried; one after it is final (its
        outputs have already gone on).
        """
        attempt = 0
        while True:
            if self.limit is not None or self.resume_at:
                await self.wait_turn()
            produced = 0
            error: BaseException | None = None
            try:
                if self.kind is HandlerKind.ASYNC_GEN:
                    produced = await self._drive_async(ctx, payload, emit)
                else:
                    produced = await self._drive_sync(ctx, payload, emit)
            except _Failed as failed:
                if failed.after_output:
                    self.run.fail(self, ctx, failed.error, payload)
                    return
                error = failed.error
            if error is None:
                if produced == 0:
                    self.filtered += 1
                return
            retry = await self.judge(error, attempt, ctx)
            if retry is not True:
                self.run.fail(self, ctx, retry if retry is not False else error, payload)
                return
            attempt += 1
            ctx = with_attempt(ctx, attempt)

    async def _drive_async(self, ctx: PipelineContext, payload: Any, emit: Emit) -> int:
        agen = self.handler(ctx, payload)
        produced = 0
        timeout = self.timeout
        try:
            while True:
                scope: asyncio.Timeout | None = None
                try:
                    if timeout is None:
                        value = await agen.__anext__()
                    else:
                        scope = asyncio.timeout(timeout)
                        async with scope:
                            value = await agen.__anext__()
                        if scope.expired():
                            raise self.timed_out()
                except StopAsyncIteration:
                    return produced
                except TimeoutError as exc:
                    ours = scope is not None and scope.expired()
                    raise _Failed(self.timed_out() if ours else exc, produced > 0) from None
                except Exception as exc:
                    raise _Failed(exc, produced > 0) from None
                produced += 1
                self.emitted += 1
                pending = emit(ctx, value)
                if pending is not None:
                    await pending
        finally:
            with contextlib.suppress(Exception):
                await agen.aclose()

    async def _drive_sync(self, ctx: PipelineContext, payload: Any, emit: Emit) -> int:
        gen = self.handler(ctx, payload)  # creating a generator runs none of its code
        produced = 0
        lanes = self.lanes
        try:
            while True:
                try:
                    if lanes is None:
                        value = next(gen, _END)
                    else:
                        done, value = await lanes.call(self.timeout, next, gen, _END)
                        if not done:
                            raise _Failed(value, produced > 0)
                except _Failed:
                    raise
                except TimeoutError as exc:  # from the lane's clock, or the handler's own
                    error = self.timed_out() if lanes is not None else exc
                    raise _Failed(error, produced > 0) from None
                except Exception as exc:
                    raise _Failed(exc, produced > 0) from None
                if value is _END:
                    return produced
                produced += 1
                self.emitted += 1
                pending = emit(ctx, value)
                if pending is not None:
                    await pending
        finally:
            with contextlib.suppress(Exception):  # a generator still running in its thread
                gen.close()

    def close(self) -> None:
        """End this node's idle threads (the run is over)."""
        if self.lanes is not None:
            self.lanes.close()


def _unset_emit(ctx: PipelineContext, value: Any) -> None:
    raise RuntimeError("internal error: a node's outputs have nowhere to go")


class _Failed(Exception):
    """A generator step failed; after an output it is final (not retried)."""

    def __init__(self, error: BaseException, after_output: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.after_output = after_output

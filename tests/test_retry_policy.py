"""RetryPolicy: option checks, which failures match, and the waits between retries."""

from __future__ import annotations

import asyncio
import math
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_dag.core.errors import PipelineDefinitionError, RetryAfter
from async_dag.core.retry import RetryPolicy

WHERE = "task 'fetch'"


def check(definition: bool = True, **options: object) -> RetryPolicy:
    """RetryPolicy.check at WHERE with these options."""
    return RetryPolicy.check(WHERE, definition=definition, **options)  # type: ignore[arg-type]


def test_defaults_mean_no_retry() -> None:
    """With no options the policy retries nothing and is trivial."""
    policy = check()
    assert policy == RetryPolicy()
    assert policy.is_trivial
    assert not check(retries=1).is_trivial


def test_valid_options_are_kept_as_floats() -> None:
    """Numbers are stored as floats, retry_on as given."""
    policy = check(
        retries=3,
        retry_delay=1,
        retry_backoff=2,
        retry_max_delay=10,
        retry_jitter=0.5,
        retry_on=(OSError, TimeoutError),
    )
    assert policy == RetryPolicy(3, 1.0, 2.0, 10.0, 0.5, (OSError, TimeoutError))
    assert isinstance(policy.delay, float) and isinstance(policy.max_delay, float)
    assert check(retry_jitter=0).jitter == 0.0 and check(retry_jitter=1).jitter == 1.0
    assert check(retry_max_delay=0).max_delay == 0.0


BAD_VALUES = [
    ("retries", -1, "retries must be an int >= 0, got -1"),
    ("retry_delay", -0.1, "retry_delay must be a finite number >= 0, got -0.1"),
    ("retry_delay", math.nan, "retry_delay must be a finite number >= 0, got nan"),
    ("retry_delay", math.inf, "retry_delay must be a finite number >= 0, got inf"),
    ("retry_backoff", 0.5, "retry_backoff must be a number >= 1, got 0.5"),
    ("retry_backoff", math.nan, "retry_backoff must be a number >= 1, got nan"),
    ("retry_backoff", math.inf, "retry_backoff must be a number >= 1, got inf"),
    ("retry_max_delay", -1, "retry_max_delay must be None or a finite number >= 0, got -1"),
    ("retry_max_delay", math.nan, "retry_max_delay must be None or a finite number >= 0"),
    ("retry_max_delay", math.inf, "retry_max_delay must be None or a finite number >= 0"),
    ("retry_jitter", -0.01, "retry_jitter must be a number between 0 and 1, got -0.01"),
    ("retry_jitter", 1.5, "retry_jitter must be a number between 0 and 1, got 1.5"),
    ("retry_jitter", math.nan, "retry_jitter must be a number between 0 and 1, got nan"),
    ("retry_on", (), "retry_on must be an exception class, a tuple of exception classes"),
]

BAD_TYPES = [
    ("retries", True, "retries must be an int >= 0, got True"),
    ("retries", 2.0, "retries must be an int >= 0, got 2.0"),
    ("retries", "3", "retries must be an int >= 0, got '3'"),
    ("retries", None, "retries must be an int >= 0, got None"),
    ("retry_delay", "1", "retry_delay must be a finite number >= 0, got '1'"),
    ("retry_delay", False, "retry_delay must be a finite number >= 0, got False"),
    ("retry_backoff", None, "retry_backoff must be a number >= 1, got None"),
    ("retry_max_delay", "10", "retry_max_delay must be None or a finite number >= 0"),
    ("retry_jitter", True, "retry_jitter must be a number between 0 and 1, got True"),
    ("retry_on", int, "retry_on must be an exception class, a tuple of exception classes"),
    ("retry_on", (OSError, int), "retry_on must be an exception class, a tuple of exception"),
    ("retry_on", (OSError, "x"), "retry_on must be an exception class, a tuple of exception"),
    ("retry_on", OSError(), "retry_on must be an exception class, a tuple of exception"),
    ("retry_on", "OSError", "retry_on must be an exception class, a tuple of exception"),
    ("retry_on", [OSError], "retry_on must be an exception class, a tuple of exception"),
]


@pytest.mark.parametrize(("option", "value", "message"), BAD_VALUES + BAD_TYPES)
def test_a_task_option_error_is_a_definition_error(
    option: str, value: object, message: str
) -> None:
    """For a task every bad option is a PipelineDefinitionError naming the task and option."""
    with pytest.raises(PipelineDefinitionError) as info:
        check(definition=True, **{option: value})
    assert str(info.value).startswith(f"{WHERE}: {message}")


@pytest.mark.parametrize(("option", "value", "message"), BAD_VALUES)
def test_a_bad_function_pipeline_value_is_a_value_error(
    option: str, value: object, message: str
) -> None:
    """For a function pipeline a bad value is a plain ValueError with the same message."""
    with pytest.raises(ValueError) as info:
        check(definition=False, **{option: value})
    assert type(info.value) is ValueError
    assert str(info.value).startswith(f"{WHERE}: {message}")


@pytest.mark.parametrize(("option", "value", "message"), BAD_TYPES)
def test_a_bad_function_pipeline_type_is_a_type_error(
    option: str, value: object, message: str
) -> None:
    """For a function pipeline a value of the wrong type is a TypeError with the message."""
    with pytest.raises(TypeError) as info:
        check(definition=False, **{option: value})
    assert str(info.value).startswith(f"{WHERE}: {message}")


def test_the_message_names_where() -> None:
    """The message starts with the `where` it was given."""
    with pytest.raises(ValueError, match=r"^run_function_pipeline: retry_backoff must be"):
        RetryPolicy.check(
            "run_function_pipeline",
            retries=1,
            retry_delay=0,
            retry_backoff=0,
            retry_max_delay=None,
            retry_jitter=0,
            retry_on=Exception,
            definition=False,
        )


def test_retry_on_a_class_matches_its_subclasses() -> None:
    """retry_on=OSError retries OSError and its subclasses, nothing else."""
    policy = check(retries=1, retry_on=OSError)
    assert policy.matches(OSError())
    assert policy.matches(ConnectionResetError())
    assert not policy.matches(ValueError())


def test_retry_on_a_tuple_matches_any_of_its_classes() -> None:
    """retry_on=(A, B) retries either."""
    policy = check(retries=1, retry_on=(KeyError, TimeoutError))
    assert policy.matches(KeyError("k")) and policy.matches(TimeoutError())
    assert not policy.matches(ValueError())


def test_retry_on_a_predicate_is_asked() -> None:
    """A predicate decides, and what it returns is taken for its truth."""
    policy = check(retries=1, retry_on=lambda exc: "flaky" in str(exc))
    assert policy.matches(ValueError("flaky db"))
    assert not policy.matches(ValueError("bad input"))
    counting = check(retries=1, retry_on=lambda exc: len(str(exc)))
    assert counting.matches(ValueError("x")) is True
    assert counting.matches(ValueError("")) is False


def test_a_raising_predicate_raises() -> None:
    """A predicate that raises lets its exception through to the caller."""

    def broken(exc: BaseException) -> bool:
        raise ZeroDivisionError("predicate bug")

    policy = check(retries=1, retry_on=broken)
    with pytest.raises(ZeroDivisionError, match="predicate bug"):
        policy.matches(ValueError())


def test_the_default_retries_any_exception_but_not_base_exceptions() -> None:
    """By default every Exception (TimeoutError included) matches; cancellation never does."""
    policy = check(retries=1)
    assert policy.matches(TimeoutError()) and policy.matches(RuntimeError())
    assert not policy.matches(asyncio.CancelledError())
    assert not policy.matches(KeyboardInterrupt())


def test_cancellation_never_matches_even_a_catch_all() -> None:
    """retry_on=BaseException or an always-true predicate still never retries cancellation."""
    for retry_on in (BaseException, lambda exc: True):
        policy = check(retries=1, retry_on=retry_on)
        for exc in (asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(1)):
            assert not policy.matches(exc)
        assert policy.matches(ValueError())


def test_retry_after_always_matches() -> None:
    """A RetryAfter is retried whatever retry_on says."""
    assert check(retries=1, retry_on=KeyError).matches(RetryAfter(1))
    assert check(retries=1, retry_on=lambda exc: False).matches(RetryAfter(1))


def test_constant_delays_by_default() -> None:
    """With backoff 1 every retry waits retry_delay."""
    policy = check(retries=5, retry_delay=0.25)
    assert [policy.wait_before(k, ValueError()) for k in range(1, 6)] == [0.25] * 5


def test_delays_grow_by_the_backoff_factor() -> None:
    """The k-th retry waits delay * backoff ** (k - 1)."""
    policy = check(retries=5, retry_delay=0.5, retry_backoff=2)
    assert [policy.wait_before(k, OSError()) for k in range(1, 6)] == [0.5, 1, 2, 4, 8]


def test_the_cap_bounds_the_growth() -> None:
    """retry_max_delay caps each wait."""
    policy = check(retries=6, retry_delay=1, retry_backoff=3, retry_max_delay=10)
    assert [policy.wait_before(k, OSError()) for k in range(1, 6)] == [1, 3, 9, 10, 10]


def test_no_delay_means_no_wait() -> None:
    """retry_delay 0 waits nothing, whatever the backoff and jitter."""
    policy = check(retries=3, retry_delay=0, retry_backoff=10, retry_jitter=1)
    assert [policy.wait_before(k, OSError()) for k in (1, 2, 500)] == [0, 0, 0]


def test_retry_after_replaces_the_back_off_uncapped() -> None:
    """A RetryAfter's seconds are the wait, even beyond retry_max_delay."""
    policy = check(retries=3, retry_delay=1, retry_backoff=2, retry_max_delay=5, retry_jitter=1)
    assert policy.wait_before(1, RetryAfter(30)) == 30
    assert policy.wait_before(3, RetryAfter(0)) == 0


def test_a_huge_backoff_neither_overflows_nor_goes_infinite() -> None:
    """backoff ** k beyond float range gives the cap, or a large finite wait without one."""
    capped = check(retries=5000, retry_delay=1, retry_backoff=1e10, retry_max_delay=60)
    assert capped.wait_before(4000, OSError()) == 60
    uncapped = check(retries=5000, retry_delay=1, retry_backoff=1e10, retry_jitter=1)
    for k in (40, 4000):
        wait = uncapped.wait_before(k, OSError())
        assert math.isfinite(wait) and wait >= 0
    assert check(retry_delay=1e300, retry_backoff=1e10).wait_before(3, OSError()) == (
        sys.float_info.max
    )


def test_retry_numbers_start_at_one() -> None:
    """Asking for retry 0 is a programming error."""
    with pytest.raises(ValueError, match="start at 1"):
        check(retries=1, retry_delay=1).wait_before(0, OSError())


def test_the_policy_is_frozen() -> None:
    """A policy cannot be changed once built."""
    policy = check(retries=1)
    with pytest.raises(AttributeError):
        policy.retries = 2  # type: ignore[misc]


@given(
    delay=st.floats(0, 1e6),
    backoff=st.floats(1, 1e3),
    jitter=st.floats(0, 1),
    retry=st.integers(1, 200),
    cap=st.none() | st.floats(0, 1e7),
)
def test_jitter_stays_within_its_bounds(
    delay: float, backoff: float, jitter: float, retry: int, cap: float | None
) -> None:
    """Every wait lies in [1-j, 1+j] times the back-off delay, then within the cap."""
    policy = RetryPolicy(retries=retry, delay=delay, backoff=backoff, max_delay=cap, jitter=jitter)
    wait = policy.wait_before(retry, OSError())
    assert wait >= 0 and math.isfinite(wait)
    if cap is not None:
        assert wait <= cap
    try:
        base = delay * backoff ** (retry - 1)
    except OverflowError:
        base = math.inf
    if not math.isfinite(base):
        return
    low, high = base * (1 - jitter), base * (1 + jitter)
    if cap is not None:
        low, high = min(low, cap), min(high, cap)
    assert low * (1 - 1e-12) <= wait <= high * (1 + 1e-12)


def test_jitter_spreads_the_waits() -> None:
    """With jitter the waits differ from one call to the next and fill the range."""
    policy = check(retries=1, retry_delay=10, retry_jitter=0.5)
    waits = [policy.wait_before(1, OSError()) for _ in range(2000)]
    assert min(waits) >= 5 and max(waits) <= 15
    assert min(waits) < 6 and max(waits) > 14
    assert len(set(waits)) > 1000


def test_the_cap_applies_after_the_jitter() -> None:
    """A jittered wait above the cap is cut to the cap: no wait ever exceeds it."""
    policy = check(retries=1, retry_delay=10, retry_jitter=0.5, retry_max_delay=11)
    waits = [policy.wait_before(1, OSError()) for _ in range(2000)]
    assert max(waits) == 11
    assert min(waits) < 6

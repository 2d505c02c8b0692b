"""Bytes for the trip to a worker and back: cloudpickle when installed, else pickle.

cloudpickle ships functions by value, so lambdas, closures and functions defined in
``__main__`` or a notebook cell reach a worker that could never import them. Without it
the standard pickle is used, which ships functions by reference (importable ones only).
Both handle the read-only ``MappingProxyType`` that a context's ``metadata`` is.
"""

from __future__ import annotations

import copyreg
import io
import pickle
from types import MappingProxyType
from typing import Any, ClassVar

from ..core.errors import ShippingError as ShippingError

INSTALL_HINT = "pip install 'async-dag[processes]'"


def read_only(mapping: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    """A ``MappingProxyType`` over ``mapping``: how the standard pickle rebuilds one."""
    return MappingProxyType(mapping)


def _reduce_mappingproxy(proxy: MappingProxyType[Any, Any]) -> tuple[Any, ...]:
    return read_only, (dict(proxy),)


class _Pickler(pickle.Pickler):
    """The standard pickler, taught to pickle ``MappingProxyType``."""

    dispatch_table: ClassVar[dict[Any, Any]] = {  # type: ignore[misc]
        **copyreg.dispatch_table,
        MappingProxyType: _reduce_mappingproxy,
    }


def have_cloudpickle() -> bool:
    """Whether cloudpickle is importable (functions then travel by value)."""
    try:
        import cloudpickle  # noqa: F401
    except ImportError:
        return False
    return True


def dumps(obj: Any) -> bytes:
    """Serialise ``obj`` for another process: cloudpickle if available, else pickle."""
    try:
        import cloudpickle
    except ImportError:
        buffer = io.BytesIO()
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
        return buffer.getvalue()
    data: bytes = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return data


def loads(data: bytes) -> Any:
    """The object that :func:`dumps` serialised (cloudpickle's output loads with pickle)."""
    return pickle.loads(data)


def describe_failure(what: str, exc: BaseException) -> str:
    """A message saying that ``what`` cannot be pickled, why, and what to do about it."""
    message = f"{what} cannot be pickled for another process: {type(exc).__name__}: {exc}"
    if not have_cloudpickle():
        message += (
            f" (cloudpickle is not installed, so functions travel by reference and must be "
            f"importable by the workers; {INSTALL_HINT} ships lambdas, closures and "
            f"functions defined in __main__ or a notebook by value)"
        )
    return message

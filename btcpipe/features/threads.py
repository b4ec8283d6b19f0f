"""Independent numpy work side by side on an optional executor.

The feature build's large steps (decimal conversions, binary searches, bincounts, Parquet writes)
release the GIL, so two threads overlap them; without an executor the same calls run one after the
other and give the same results.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

_T = TypeVar("_T")


def run_beside(executor: Executor | None, fn: Callable[..., _T], *args: object) -> Callable[[], _T]:
    """Start ``fn(*args)`` on ``executor`` (or run it now without one); the returned call gives its result."""
    if executor is None:
        result = fn(*args)
        return lambda: result
    return executor.submit(fn, *args).result

"""The reference runner: every task in turn, in the calling thread."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class SerialRunner:
    """Runs the tasks one after another; the other runners are checked against it."""

    name = "serial"

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        return [fn(task) for task in tasks]

    def close(self) -> None:
        return None

"""The partition runner port: map a module-level function over picklable tasks, results in task order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")

EngineName = Literal["serial", "threads", "ray"]
ENGINES: tuple[EngineName, ...] = ("serial", "threads", "ray")


class PartitionRunner(Protocol):
    """Runs ``fn`` once per task and returns the results in the order of ``tasks``.

    ``fn`` must be a module-level function and the tasks plain picklable values (a runner may ship both
    to another process or machine); a task must be safe to run twice (a runner may retry it after a
    worker died), which the lake's content-named parts and atomic manifests make true for the tasks here.
    The first task that raises makes ``map`` raise (the others may or may not have run).
    """

    name: str

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]: ...

    def close(self) -> None: ...

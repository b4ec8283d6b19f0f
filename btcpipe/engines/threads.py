"""Tasks on a thread pool in this process.

A day's build spends most of its time in numpy, Arrow and hashing, which release the GIL, so a few days
at once fill a few cores without the start-up cost of processes."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from btcpipe.domain.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")


class ThreadRunner:
    """Runs up to ``jobs`` tasks at once on threads (default: one per core)."""

    name = "threads"

    def __init__(self, jobs: int | None = None) -> None:
        jobs = jobs if jobs is not None else (os.cpu_count() or 1)
        if jobs < 1:
            raise ConfigError(f"jobs must be at least 1, got {jobs}")
        self.jobs = jobs
        self._pool = ThreadPoolExecutor(jobs, thread_name_prefix="btcpipe-task")

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        return list(self._pool.map(fn, tasks))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

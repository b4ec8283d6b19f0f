"""Tasks on Ray: a local Ray started for this run, or an existing cluster (``ray start`` / KubeRay).

Each task is one ``@ray.remote`` call of the same module-level function the other runners call. Tasks
are spread over the nodes (``SPREAD``: Ray's default packs them onto the head while it has free CPUs) and
retried when their worker process dies (``max_retries``); a task that raises is not retried, its error
is the run's error. The driver only ships small task descriptions and gets small summaries back: the
bronze reads and the part writes happen on the workers, against the lake they all reach by URI.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from btcpipe.domain.errors import BtcpipeError, ConfigError, EngineError

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

DEFAULT_MAX_RETRIES = 3


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # the optional extra
        raise ConfigError("the ray engine needs Ray: pip install 'btcpipe[ray]'") from exc
    return ray


class RayRunner:
    """Runs each task as a Ray task. ``address``: ``host:port`` of a running cluster's head (GCS); ``None``
    starts a private local Ray with ``num_cpus`` CPUs for this runner, shut down by ``close``."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        cpus_per_task: float = 1.0,
        max_retries: int = DEFAULT_MAX_RETRIES,
        spread: bool = True,
    ) -> None:
        if max_retries < 0:
            raise ConfigError(f"max_retries must be at least 0, got {max_retries}")
        self._ray = ray = _ray()
        self.address = address
        self.max_retries = max_retries
        self.cpus_per_task = cpus_per_task
        self.spread = spread
        self._owned = False
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
                else:
                    # "local": a fresh instance even when a cluster runs on this machine.
                    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                             logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise EngineError(f"cannot start or reach Ray at {address or 'a new local instance'}: {exc}") from exc
            self._owned = True

    def nodes(self) -> list[str]:
        """The node IP addresses of the live nodes."""
        return sorted(n["NodeManagerAddress"] for n in self._ray.nodes() if n.get("Alive"))

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        if not tasks:
            return []
        ray = self._ray
        remote = ray.remote(fn).options(
            num_cpus=self.cpus_per_task,
            max_retries=self.max_retries,
            scheduling_strategy="SPREAD" if self.spread else "DEFAULT",
        )
        refs = [remote.remote(task) for task in tasks]
        try:
            results: list[R] = ray.get(refs)
        except ray.exceptions.RayTaskError as exc:
            for ref in refs:
                ray.cancel(ref)
            cause = exc.cause
            if isinstance(cause, BtcpipeError):
                raise cause from None
            raise EngineError(f"a {getattr(fn, '__name__', 'task')} task failed: {cause!r}") from exc
        except ray.exceptions.RayError as exc:
            raise EngineError(f"Ray lost a {getattr(fn, '__name__', 'task')} task: {exc}") from exc
        return results

    def close(self) -> None:
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()
        self._owned = False

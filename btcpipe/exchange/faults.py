"""Faults a test switches on at runtime: latency, 5xx answers, truncated bodies, dropped connections,
and broken bulk dumps.

``Faults`` is shared between the test's thread and the server's event loop, so every read and write
goes through one lock. Randomness is seeded, so a failing run can be repeated. Besides rates, a test
can ``script`` exact faults for the next requests (``faults.script("5xx", "truncate")``) to hit a
precise code path without relying on luck.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from btcpipe.domain.errors import ConfigError

FaultKind = Literal["5xx", "truncate", "drop"]
DumpFault = Literal["wrong_checksum", "corrupt_zip"]
FAULT_KINDS: tuple[FaultKind, ...] = ("5xx", "truncate", "drop")


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What to do to one request: wait ``delay_s``, then answer normally (``kind`` None) or fail."""

    delay_s: float = 0.0
    kind: FaultKind | None = None
    status: int = 0  # for 5xx
    cut_fraction: float = 0.5  # for truncate: keep this share of the body (at least 1 byte, never all)


@dataclass(slots=True)
class FaultStats:
    """How many faults the local exchange has injected, by kind and path."""

    delayed: int = 0
    errors_5xx: int = 0
    truncated: int = 0
    dropped: int = 0
    dumps_wrong_checksum: int = 0
    dumps_corrupt: int = 0
    by_path: dict[str, int] = field(default_factory=dict)


class Faults:
    """Runtime-switchable fault injection. All rates are probabilities per request (0 = off)."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._latency_s = 0.0
        self._jitter_s = 0.0
        self._rates: dict[FaultKind, float] = dict.fromkeys(FAULT_KINDS, 0.0)
        self._statuses: tuple[int, ...] = (500, 502, 503, 504)
        self._prefixes: tuple[str, ...] = ("/api/", "/data/")
        self._script: deque[FaultKind] = deque()
        self._dump_fault: DumpFault | None = None
        self._stats = FaultStats()

    # --- switching ---------------------------------------------------------------------------------
    def set(
        self,
        *,
        latency_s: float | None = None,
        jitter_s: float | None = None,
        error_rate: float | None = None,
        truncate_rate: float | None = None,
        drop_rate: float | None = None,
        error_statuses: tuple[int, ...] | None = None,
        path_prefixes: tuple[str, ...] | None = None,
        seed: int | None = None,
    ) -> None:
        """Change some settings; the others stay. Rates must lie in [0, 1] and sum to at most 1."""
        with self._lock:
            rates = dict(self._rates)
            for kind, value in (("5xx", error_rate), ("truncate", truncate_rate), ("drop", drop_rate)):
                if value is not None:
                    if not 0.0 <= value <= 1.0:
                        raise ConfigError(f"{kind} rate must be within [0, 1], got {value}")
                    rates[kind] = value  # type: ignore[index]
            if sum(rates.values()) > 1.0 + 1e-9:
                raise ConfigError(f"fault rates sum to more than 1: {rates}")
            if (latency_s is not None and latency_s < 0) or (jitter_s is not None and jitter_s < 0):
                raise ConfigError("latency and jitter must not be negative")
            if error_statuses is not None and not all(500 <= s <= 599 for s in error_statuses):
                raise ConfigError(f"error statuses must be 5xx, got {error_statuses}")
            self._rates = rates
            self._latency_s = self._latency_s if latency_s is None else latency_s
            self._jitter_s = self._jitter_s if jitter_s is None else jitter_s
            self._statuses = error_statuses or self._statuses
            self._prefixes = path_prefixes if path_prefixes is not None else self._prefixes
            if seed is not None:
                self._rng.seed(seed)

    def script(self, *kinds: FaultKind) -> None:
        """Fail the next ``len(kinds)`` matching requests with exactly these faults, in order."""
        bad = [k for k in kinds if k not in FAULT_KINDS]
        if bad:
            raise ConfigError(f"unknown fault kinds {bad}; known: {FAULT_KINDS}")
        with self._lock:
            self._script.extend(kinds)

    def set_dump_fault(self, fault: DumpFault | None) -> None:
        """Serve every dump with a wrong ``.CHECKSUM`` or as a corrupt zip (whose CHECKSUM matches it,
        so only reading the archive finds out); ``None`` serves them intact."""
        if fault not in (None, "wrong_checksum", "corrupt_zip"):
            raise ConfigError(f"unknown dump fault {fault!r}")
        with self._lock:
            self._dump_fault = fault

    def clear(self) -> None:
        """Everything off (counters stay)."""
        with self._lock:
            self._latency_s = self._jitter_s = 0.0
            self._rates = dict.fromkeys(FAULT_KINDS, 0.0)
            self._script.clear()
            self._dump_fault = None

    # --- the server's side ---------------------------------------------------------------------------
    def plan(self, path: str) -> FaultPlan:
        """Decide the fate of one request to ``path``."""
        with self._lock:
            if not path.startswith(self._prefixes):
                return FaultPlan()
            delay = self._latency_s + (self._rng.uniform(0.0, self._jitter_s) if self._jitter_s else 0.0)
            kind: FaultKind | None = self._script.popleft() if self._script else None
            if kind is None:
                draw = self._rng.random()
                for candidate in FAULT_KINDS:
                    rate = self._rates[candidate]
                    if draw < rate:
                        kind = candidate
                        break
                    draw -= rate
            stats = self._stats
            if delay > 0:
                stats.delayed += 1
            if kind is None:
                return FaultPlan(delay_s=delay)
            if kind == "5xx":
                stats.errors_5xx += 1
            elif kind == "truncate":
                stats.truncated += 1
            else:
                stats.dropped += 1
            stats.by_path[path] = stats.by_path.get(path, 0) + 1
            return FaultPlan(
                delay_s=delay,
                kind=kind,
                status=self._rng.choice(self._statuses),
                cut_fraction=self._rng.uniform(0.05, 0.95),
            )

    def dump_fault(self) -> DumpFault | None:
        with self._lock:
            fault = self._dump_fault
            if fault == "wrong_checksum":
                self._stats.dumps_wrong_checksum += 1
            elif fault == "corrupt_zip":
                self._stats.dumps_corrupt += 1
            return fault

    def stats(self) -> FaultStats:
        with self._lock:
            s = self._stats
            return FaultStats(
                s.delayed, s.errors_5xx, s.truncated, s.dropped, s.dumps_wrong_checksum, s.dumps_corrupt,
                dict(s.by_path),
            )

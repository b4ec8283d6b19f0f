"""How long to wait before retrying: capped exponential backoff with *equal* jitter. Pure.

Attempt n (1 for the first retry) has the ceiling ``min(cap_s, base_s · 2^(n−1))``; the delay is drawn
uniformly from ``[ceiling / 2, ceiling]``. Equal jitter rather than full jitter (``[0, ceiling]``): the
jitter still spreads clients that failed together, while every retry keeps at least half its ceiling —
a server that just answered 5xx or dropped the connection gets a real pause, never a near-zero one.

The random source is passed in (``random.Random`` fits) so callers and tests choose the seed; nothing
here sleeps or reads a clock.
"""

from __future__ import annotations

from typing import Protocol

from btcpipe.domain.errors import ConfigError

# 2.0 ** 1024 overflows a float; past this many doublings every positive base is beyond any cap anyway.
_MAX_DOUBLINGS = 1023


class UniformSource(Protocol):
    """A source of floats uniform in [0, 1), such as ``random.Random``."""

    def random(self) -> float: ...


def backoff_ceiling(attempt: int, base_s: float, cap_s: float) -> float:
    """``min(cap_s, base_s · 2^(attempt−1))``: the longest wait of retry ``attempt`` (1-based)."""
    if attempt < 1:
        raise ConfigError(f"attempt counts retries from 1, got {attempt}")
    if base_s < 0 or cap_s < 0:
        raise ConfigError(f"backoff base and cap must not be negative, got base {base_s} and cap {cap_s}")
    return min(cap_s, base_s * 2.0 ** min(attempt - 1, _MAX_DOUBLINGS))


def backoff_delay(attempt: int, base_s: float, cap_s: float, rng: UniformSource) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): uniform in ``[ceiling / 2, ceiling]``."""
    ceiling = backoff_ceiling(attempt, base_s, cap_s)
    return ceiling * (0.5 + 0.5 * rng.random())

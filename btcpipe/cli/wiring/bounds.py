"""Bounded numbers on the command line: every numeric flag has a range, and floats are finite.

click's own ``FloatRange`` lets ``nan`` through (every comparison with NaN is false) and ``inf`` through
any range without a maximum, so a flag such as ``--weight-window nan`` would reach the code that divides by
it. ``Finite`` refuses both before anything runs, with click's usual "Invalid value for '--flag'" line.
"""

from __future__ import annotations

import math
from typing import Any

import click

from btcpipe.infra.redis_connection import redis_url_problem

# Seeds feed numpy's generators, which take 0 ≤ seed < 2³².
SEED = click.IntRange(0, 2**32 - 1)
# A TCP port, where 0 asks for a free one (servers) or turns the endpoint off (metrics).
PORT_OR_ZERO = click.IntRange(0, 65535)
# The longest --duration of a long-running service (a year): a deadline in µs stays far inside int64.
MAX_RUN_S = 366 * 86_400


class Finite(click.FloatRange):
    """A ``FloatRange`` that also refuses NaN and ±inf."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number} is not a finite number.", param, ctx)
        return number


def finite(min: float | None = None, max: float | None = None, *, min_open: bool = False,
           max_open: bool = False) -> Finite:
    """A finite float in ``[min, max]`` (``min_open``/``max_open`` exclude the ends)."""
    return Finite(min=min, max=max, min_open=min_open, max_open=max_open)


def positive(max: float) -> Finite:
    """A finite float in ``(0, max]``: durations, intervals, speeds."""
    return Finite(min=0, max=max, min_open=True)


def redis_url_flag(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """click callback: a Redis URL flag is checked (scheme, host, port 1–65535) before anything connects."""
    if value is None:
        return None
    problem = redis_url_problem(value)
    if problem:
        raise click.BadParameter(problem, ctx=ctx, param=param)
    return value


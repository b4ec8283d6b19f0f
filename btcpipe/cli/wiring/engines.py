"""The partition runner an ``--engine`` option names."""

from __future__ import annotations

import click

from btcpipe.domain.errors import ConfigError
from btcpipe.engines.port import ENGINES, PartitionRunner


def open_runner(engine: str, *, jobs: int | None = None, ray_address: str | None = None) -> PartitionRunner:
    """``serial``, ``threads`` (``jobs`` at once) or ``ray`` (a cluster at ``ray_address``, else a local
    Ray with ``jobs`` CPUs). The caller closes it."""
    if ray_address and engine != "ray":
        raise ConfigError(f"--ray-address is for --engine ray, not {engine}")
    if engine == "serial":
        from btcpipe.engines.serial import SerialRunner

        return SerialRunner()
    if engine == "threads":
        from btcpipe.engines.threads import ThreadRunner

        return ThreadRunner(jobs)
    if engine == "ray":
        from btcpipe.engines.ray_runner import RayRunner

        return RayRunner(ray_address or None, num_cpus=jobs)
    raise ConfigError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")


def engine_options(fn: click.decorators.FC) -> click.decorators.FC:
    """``--engine``, ``--jobs`` and ``--ray-address`` for a command that runs partitions."""
    fn = click.option("--ray-address", envvar="BTCPIPE_RAY_ADDRESS", default=None, show_envvar=True,
                      help="--engine ray: the cluster head's host:port (e.g. from `btcpipe cluster up`); "
                           "default: a local Ray started for this run.")(fn)
    fn = click.option("--jobs", type=click.IntRange(min=1), default=None,
                      help="--engine threads: tasks at once; --engine ray without an address: the local "
                           "Ray's CPUs. Default: the machine's cores.")(fn)
    return click.option("--engine", type=click.Choice(ENGINES), default="serial", show_default=True,
                        help="Where the (symbol, day) tasks run: in turn, on threads, or on Ray.")(fn)


def split_symbols(symbol: str, symbols: str | None) -> list[str]:
    """``--symbols A,B,…`` when given, else ``--symbol``."""
    if symbols is None:
        return [symbol]
    names = [s.strip() for s in symbols.split(",") if s.strip()]
    if not names:
        raise click.BadParameter("no symbol in --symbols", param_hint="--symbols")
    return names

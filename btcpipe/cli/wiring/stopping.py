"""How the long-running commands stop: the ``--grace`` option, the process's ``Shutdown`` and the REST client
that spends the endpoint's shared weight budget and gives up when the shutdown is requested."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Any

import click

from btcpipe.cli.wiring.config import Config
from btcpipe.infra.shutdown import Shutdown

if TYPE_CHECKING:
    from btcpipe.binance.rest import BinanceRestClient
    from btcpipe.binance.weights import Priority


def grace_option(f: Any) -> Any:
    """``--grace SECONDS``: how long the command may take to stop (default: config [shutdown] grace_s)."""
    return click.option(
        "--grace", "grace_s", type=click.FloatRange(min=0, min_open=True), default=None,
        help="Exit at most this many seconds after SIGTERM/SIGINT or the end of --duration, flushing what is "
             "held first (default: config [shutdown] grace_s, 5).",
    )(f)


def start_shutdown(config: Config, grace_s: float | None, *, loop: asyncio.AbstractEventLoop | None = None,
                   signals: bool = True) -> Shutdown:
    """The command's ``Shutdown``: SIGTERM/SIGINT request it (``signals``), a watchdog enforces the bound."""
    shutdown = Shutdown(grace_s if grace_s is not None else config.shutdown.grace_s)
    if signals:
        shutdown.install_signal_handlers(loop)
    shutdown.start_watchdog()
    return shutdown


def exit_status(shutdown: Shutdown) -> int:
    """128 + the signal number when a signal stopped the command (the shell's convention), else 0."""
    reason = shutdown.reason or ""
    try:
        return 128 + int(signal.Signals[reason]) if reason.startswith("SIG") else 0
    except KeyError:
        return 0


def rest_client(config: Config, url: str, *, priority: Priority, shutdown: Shutdown | None,
                **settings: Any) -> BinanceRestClient:
    """A REST client for ``url`` spending the process's one budget for it, at ``priority``."""
    from btcpipe.binance.rest import BinanceRestClient

    cfg = config.exchange
    budget: dict[str, Any] = {"weight_limit": cfg.weight_limit, "weight_budget_share": cfg.weight_budget_share,
                              "live_reserve_share": cfg.live_reserve_share}
    for key in ("weight_limit", "weight_budget_share", "live_reserve_share", "weight_window_s"):
        if key in settings:
            budget[key] = settings.pop(key)
    return BinanceRestClient.shared(url, priority=priority, stop=shutdown, **budget, **settings)

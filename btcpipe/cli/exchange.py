"""``btcpipe exchange``: serve the local Binance-compatible exchange on loopback."""

from __future__ import annotations

import threading
from pathlib import Path

import click

from btcpipe.cli.wiring.bounds import PORT_OR_ZERO, SEED, finite, positive
from btcpipe.domain.errors import BtcpipeError
from btcpipe.domain.tape import MarketTape
from btcpipe.domain.time import US_PER_SEC, iso, parse_time
from btcpipe.market.config import MAX_SIM_S


def _load_tape(
    sim_seed: int | None, sim_hours: float, sim_start: str | None, recordings: tuple[Path, ...]
) -> MarketTape:
    if recordings:
        if sim_seed is not None:
            raise click.UsageError("give either --recording or --sim-seed, not both")
        from btcpipe.binance.recording import load_recording

        return load_recording(recordings).to_tape()
    from btcpipe.market.config import DEFAULT_START_US
    from btcpipe.market.simulator import SimConfig, simulate

    if sim_hours <= 0:
        raise click.BadParameter("must be positive", param_hint="--sim-hours")
    start_us = DEFAULT_START_US if sim_start is None else parse_time(sim_start)
    return simulate(
        SimConfig(seed=sim_seed or 0, start_us=start_us - start_us % US_PER_SEC, duration_s=round(sim_hours * 3600))
    )


@click.group()
def cli() -> None:
    """The local Binance-compatible exchange (REST, weights, faults, bulk dumps) on 127.0.0.1."""


@cli.command(short_help="serve a simulated market or a recording until Ctrl-C")
@click.option("--sim-seed", type=SEED, default=None, help="Serve a simulated market with this seed (default 0).")
@click.option("--sim-hours", type=positive(MAX_SIM_S / 3600), default=1.0, show_default=True,
              help="Length of the simulated market.")
@click.option("--sim-start", default=None, help="Start of the simulated market (ISO time or epoch ms/µs); "
              "default: the simulator's.")
@click.option("--recording", "recordings", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Serve a recording of Binance's combined JSON streams instead (repeat for several files, in order).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to listen on.")
@click.option("--port", type=PORT_OR_ZERO, default=0, show_default=True, help="Port (0 picks a free one).")
@click.option("--weight-limit", type=click.IntRange(1, 1_000_000), default=6000, show_default=True,
              help="REQUEST_WEIGHT per minute per IP.")
@click.option("--replay-speed", type=positive(1e6), default=None,
              help="Replay the tape 'live' from its start at this speed (1 = real time) instead of serving it all "
              "as history. The WebSocket streams follow this clock (without it they stay quiet).")
@click.option("--replay-start", type=finite(0, MAX_SIM_S), default=0.0, show_default=True,
              help="With --replay-speed: begin this many seconds into the tape.")
@click.option("--api-key", "api_keys", multiple=True, envvar="BTCPIPE_EXCHANGE_API_KEYS",
              help="An API key the SBE streams accept in X-MBX-APIKEY (repeat; env BTCPIPE_EXCHANGE_API_KEYS, "
              "space separated). Without one, only the JSON streams under /json/ are usable.")
@click.option("--ping-interval", type=positive(3600), default=20.0, show_default=True,
              help="Seconds between stream pings.")
@click.option("--pong-timeout", type=positive(3600), default=60.0, show_default=True,
              help="Seconds a client has to answer a ping before it is disconnected.")
@click.option("--max-connection-age", type=positive(7 * 86_400), default=86_400.0, show_default=True,
              help="Seconds after which the server closes a stream connection.")
@click.option("--connection-attempts", type=click.IntRange(1, 1_000_000), default=300, show_default=True,
              help="Stream connection attempts allowed per IP per 5 minutes (429 beyond).")
def serve(  # noqa: PLR0917 - one parameter per click option
    sim_seed: int | None,
    sim_hours: float,
    sim_start: str | None,
    recordings: tuple[Path, ...],
    host: str,
    port: int,
    weight_limit: int,
    replay_speed: float | None,
    replay_start: float,
    api_keys: tuple[str, ...],
    ping_interval: float,
    pong_timeout: float,
    max_connection_age: float,
    connection_attempts: int,
) -> None:
    """Serve /api/v3/{ping,time,exchangeInfo,aggTrades,historicalTrades,trades,klines,depth}, daily dumps
    under /data/spot/daily/ and the WebSocket streams (SBE /ws/<stream>, /stream?streams=...; JSON under
    /json/, see btcpipe.exchange.streams.routes) until Ctrl-C. Prints the base URL first."""
    from btcpipe.exchange.server import LocalExchange
    from btcpipe.exchange.streams.routes import StreamConfig, replay_clock

    try:
        tape = _load_tape(sim_seed, sim_hours, sim_start, recordings)
        clock = (
            None if replay_speed is None else replay_clock(tape, speed=replay_speed, start_offset_s=replay_start)
        )
        streams = StreamConfig(
            api_keys=frozenset(k for key in api_keys for k in key.split()),
            ping_interval_s=ping_interval,
            pong_timeout_s=pong_timeout,
            max_connection_age_s=max_connection_age,
            attempt_limit=connection_attempts,
        )
        exchange = LocalExchange(
            tape, host=host, port=port, clock=clock, weight_limit=weight_limit, streams=streams
        ).start()
    except (BtcpipeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(exchange.base_url, nl=True)
    click.echo(
        f"serving {tape.symbol}: {len(tape.trades)} trades {iso(tape.start_us)} → {iso(tape.end_us)}; Ctrl-C stops",
        err=True,
    )
    click.echo(
        f"streams: SBE {exchange.ws_url}/ws/<stream> ({len(streams.api_keys)} API key(s)), "
        f"JSON {exchange.ws_url}/json/ws/<stream>",
        err=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        exchange.stop()

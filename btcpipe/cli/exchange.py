"""``btcpipe exchange``: serve the local Binance-compatible exchange on loopback."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import click

from btcpipe.cli.sim import preset_option
from btcpipe.cli.wiring.bounds import PORT_OR_ZERO, SEED, finite, positive
from btcpipe.cli.wiring.stopping import grace_option
from btcpipe.domain.errors import BtcpipeError
from btcpipe.domain.tape import MarketTape
from btcpipe.domain.time import US_PER_SEC, iso, parse_time
from btcpipe.exchange.streams.random_faults import STREAM_FAULT_KINDS, StreamFaultKind
from btcpipe.market.config import MAX_SIM_S


def _load_tape(
    sim_seed: int | None, sim_hours: float, sim_start: str | None, recordings: tuple[Path, ...],
    preset: str = "realistic",
) -> MarketTape:
    if recordings:
        if sim_seed is not None:
            raise click.UsageError("give either --recording or --sim-seed, not both")
        from btcpipe.binance.recording import load_recording

        return load_recording(recordings).to_tape()
    from btcpipe.market.config import DEFAULT_START_US
    from btcpipe.market.presets import preset_config
    from btcpipe.market.simulator import simulate

    if sim_hours <= 0:
        raise click.BadParameter("must be positive", param_hint="--sim-hours")
    start_us = DEFAULT_START_US if sim_start is None else parse_time(sim_start)
    return simulate(preset_config(
        preset, seed=sim_seed or 0, start_us=start_us - start_us % US_PER_SEC, duration_s=round(sim_hours * 3600)
    ))


# ``--fault KIND=VALUE``: REST faults are rates per request (latency: seconds added to each); stream faults are
# rates per replayed event (btcpipe.exchange.streams.random_faults says what each does).
REST_FAULTS = {"5xx": "error_rate", "truncate": "truncate_rate", "drop": "drop_rate", "latency": "latency_s"}
STREAM_FAULTS = STREAM_FAULT_KINDS


def parse_faults(specs: Sequence[str]) -> tuple[dict[str, float], dict[StreamFaultKind, float]]:
    """``["poison=0.02", "5xx=0.1"]`` → (keywords for ``Faults.set``, stream fault rates); ``click.BadParameter``
    naming the bad spec otherwise."""
    rest: dict[str, float] = {}
    streams: dict[StreamFaultKind, float] = {}
    for spec in specs:
        kind, sep, text = spec.partition("=")
        kind = kind.strip()
        known = [*REST_FAULTS, *STREAM_FAULTS]
        if not sep or kind not in known:
            raise click.BadParameter(f"{spec!r}: expected KIND=RATE with KIND one of {', '.join(known)}",
                                     param_hint="--fault")
        try:
            value = float(text)
        except ValueError:
            raise click.BadParameter(f"{spec!r}: {text!r} is not a number", param_hint="--fault") from None
        limit = 60.0 if kind == "latency" else 1.0
        if not (math.isfinite(value) and 0.0 <= value <= limit):
            bound = "0..60 s" if kind == "latency" else "0..1"
            raise click.BadParameter(f"{spec!r}: {kind} must be within {bound}", param_hint="--fault")
        if kind in REST_FAULTS:
            rest[REST_FAULTS[kind]] = value
        else:
            streams[cast("StreamFaultKind", kind)] = value
    if sum(v for k, v in rest.items() if k != "latency_s") > 1.0:
        raise click.BadParameter("the 5xx, truncate and drop rates sum to more than 1", param_hint="--fault")
    return rest, streams


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
@preset_option
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
@click.option("--fault", "faults", multiple=True, metavar="KIND=RATE",
              help="Inject faults (repeatable). REST, per request: 5xx, truncate, drop (rates 0..1), latency "
              "(seconds added). Streams, per event: garbage (undecodable frame), poison (well-framed message with "
              "out-of-range exponents, oversized integers or wrong types), skip-trade, skip-depth, stall (1 s).")
@click.option("--fault-seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed of the fault draws.")
@click.option("--partial-dump-days/--whole-dump-days", default=False, show_default=True,
              help="Serve daily dumps for days the tape covers only in part (Binance's files hold whole days).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="BTCPIPE_CONFIG", show_envvar=True, help="TOML config file (for [shutdown] grace_s).")
@grace_option
def serve(  # noqa: PLR0917 - one parameter per click option
    sim_seed: int | None,
    sim_hours: float,
    sim_start: str | None,
    preset: str,
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
    faults: tuple[str, ...],
    fault_seed: int,
    partial_dump_days: bool,
    config_path: Path | None,
    grace_s: float | None,
) -> None:
    """Serve /api/v3/{ping,time,exchangeInfo,aggTrades,historicalTrades,trades,klines,uiKlines,depth,avgPrice,
    ticker,ticker/24hr,ticker/price,ticker/bookTicker}, daily dumps
    under /data/spot/daily/ and the WebSocket streams (SBE /ws/<stream>, /stream?streams=...; JSON under
    /json/, see btcpipe.exchange.streams.routes) until Ctrl-C or SIGTERM, then stops within --grace seconds
    (requests in flight and stream connections get a second to finish). Prints the base URL first."""
    from btcpipe.cli.wiring.config import load_config
    from btcpipe.cli.wiring.stopping import start_shutdown
    from btcpipe.exchange.server import LocalExchange
    from btcpipe.exchange.streams.routes import StreamConfig, replay_clock

    rest_faults, stream_faults = parse_faults(faults)
    try:
        config = load_config(config_path)
        tape = _load_tape(sim_seed, sim_hours, sim_start, recordings, preset)
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
            tape, host=host, port=port, clock=clock, weight_limit=weight_limit, streams=streams,
            partial_dump_days=partial_dump_days,
        ).start()
        if rest_faults:
            exchange.faults.set(
                error_rate=rest_faults.get("error_rate"), truncate_rate=rest_faults.get("truncate_rate"),
                drop_rate=rest_faults.get("drop_rate"), latency_s=rest_faults.get("latency_s"), seed=fault_seed,
            )
        if stream_faults:
            exchange.streams.set_fault_rates(stream_faults, seed=fault_seed)
    except (BtcpipeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(exchange.base_url, nl=True)
    if faults:
        click.echo(f"faults: {', '.join(faults)} (seed {fault_seed})", err=True)
    click.echo(
        f"serving {tape.symbol}: {len(tape.trades)} trades {iso(tape.start_us)} → {iso(tape.end_us)}; Ctrl-C stops",
        err=True,
    )
    click.echo(
        f"streams: SBE {exchange.ws_url}/ws/<stream> ({len(streams.api_keys)} API key(s)), "
        f"JSON {exchange.ws_url}/json/ws/<stream>",
        err=True,
    )
    shutdown = start_shutdown(config, grace_s)
    try:
        shutdown.wait()
    finally:
        exchange.stop()
        shutdown.finished()

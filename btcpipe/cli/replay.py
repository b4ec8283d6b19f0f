"""``btcpipe replay``: publish a recording or a bronze span onto the bus, as the ingestor would."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import click

from btcpipe.cli.wiring.bounds import positive
from btcpipe.cli.wiring.live import bus_choice, bus_options, open_bus
from btcpipe.cli.wiring.stopping import exit_status, grace_option, start_shutdown
from btcpipe.domain.errors import BtcpipeError
from btcpipe.domain.time import iso, parse_time

EXIT_FAILED = 1


@click.command("replay")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="BTCPIPE_CONFIG", show_envvar=True, help="TOML config file.")
@click.option("--recording", "recordings", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A recording of Binance JSON streams (repeat for contiguous files, in order).")
@click.option("--lake", "lake_uri", default=None, help="Replay bronze from this lake instead (with --start/--end).")
@click.option("--symbol", default="BTCUSDT", show_default=True, help="Symbol to replay from the lake.")
@click.option("--start", default=None, help="Start of the bronze span (ISO time or epoch ms/µs).")
@click.option("--end", default=None, help="End of the bronze span, exclusive.")
@bus_options
@click.option("--speed", type=positive(1e6), default=None,
              help="Pace at SPEED × real time (1 = as recorded); default: as fast as the bus takes it.")
@click.option("--kinds", default="trade,bestbidask,depth", show_default=True,
              help="Which streams to publish: any of trade, bestbidask, depth.")
@grace_option
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def cli(  # noqa: PLR0917 - click passes every option
    config_path: Path | None, recordings: tuple[Path, ...], lake_uri: str | None, symbol: str, start: str | None,
    end: str | None, bus_kind: str | None, bus_url: str | None, bus_shards: int, bus_prefix: str | None,
    kinesis_endpoint: str | None, speed: float | None, kinds: str, grace_s: float | None, as_json: bool,
) -> None:
    """Publish recorded (--recording) or bronze (--lake --start --end) market events onto the bus in exchange
    time: trades as MarketTradeColumns, best bid/ask as BestBidAsk, depth diffs as DepthDelta — the messages
    the ingestor publishes — keyed by symbol, so a processor cannot tell a replay from live data.

    SIGTERM/SIGINT stop it within --grace seconds: what was read is published, the counts say how far it got,
    and the exit status is 128 + the signal number.
    """
    from btcpipe.cli.wiring.config import load_config
    from btcpipe.services.replay import replay, tape_from_lake, tape_from_recording

    if bool(recordings) == bool(lake_uri):
        raise click.UsageError("give either --recording FILE... or --lake URI --start --end")
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()]
    try:
        config = load_config(config_path)
        choice = bus_choice(config, kind=bus_kind, url=bus_url, shards=bus_shards, prefix=bus_prefix,
                            kinesis_endpoint=kinesis_endpoint)
        if choice.kind == "memory":
            raise click.BadParameter("replaying onto an in-process bus reaches nobody: use --bus redis or kinesis")
        if recordings:
            tape = tape_from_recording(list(recordings))
        else:
            if not (start and end):
                raise click.UsageError("--lake needs --start and --end")
            from btcpipe.lake.lake import Lake

            try:
                start_us, end_us = parse_time(start), parse_time(end)
            except ValueError as exc:
                raise click.BadParameter(f"not a time: {exc}") from exc
            tape = tape_from_lake(Lake.open(lake_uri or ""), symbol.upper(), start_us, end_us)
        bus = open_bus(choice)
        shutdown = start_shutdown(config, grace_s)
        result = replay(tape, bus, kinds=kind_list, speed=speed, should_stop=shutdown.is_set, sleep=shutdown.wait)
        bus.close()
    except BtcpipeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    report = shutdown.finished()
    if report.reason is not None:
        report.unfinished.append(f"replay stopped at {iso(result.last_us) if result.last_us else 'the start'}")
    summary = asdict(result) | {"symbol": tape.symbol, "messages": result.messages, "shutdown": report.to_dict()}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        span = f"{iso(result.first_us)} → {iso(result.last_us)}" if result.first_us and result.last_us else "empty"
        click.echo(f"replayed {tape.symbol} {span}: {result.trades:,} trades in {result.trade_messages:,} batches, "
                   f"{result.best_bid_ask:,} best bid/ask, {result.depth:,} depth diffs in {result.wall_s:.1f}s")
    if report.reason is not None:
        sys.exit(exit_status(shutdown))

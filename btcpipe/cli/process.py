"""``btcpipe process``: the live processor — bus market events to 1-second feature rows."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from btcpipe.cli.wiring.bounds import MAX_RUN_S, PORT_OR_ZERO, positive, redis_url_flag
from btcpipe.cli.wiring.live import bus_choice, bus_options, load_params, open_bus, open_positions, open_store
from btcpipe.cli.wiring.stopping import grace_option, start_shutdown
from btcpipe.domain.errors import BtcpipeError

EXIT_FAILED = 1


@click.command("process")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="BTCPIPE_CONFIG", show_envvar=True, help="TOML config file.")
@click.option("--symbols", default=None, help="Comma-separated symbols (default: config symbols).")
@click.option("--partition", default="0/1", show_default=True,
              help="i/n: this process owns the symbols whose crc32 hash mod n is i (run n processes).")
@bus_options
@click.option("--store", "store_kind", type=click.Choice(["memory", "redis"]), default=None,
              help="Online store (default: config [store] kind).")
@click.option("--store-url", default=None, callback=redis_url_flag,
              help="Redis URL of the online store (default: config [store] redis_url).")
@click.option("--positions-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep consumer positions as JSON files here (default: in the Redis bus's server).")
@click.option("--params", "params_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Feature params: a model's schema_v1.json or a params JSON (default: the registered model's).")
@click.option("--lake", "lake_uri", envvar="BTCPIPE_LAKE", default=None, show_envvar=True,
              help="Lake for the live silver rows (silver/features_1s_live) and the model registry.")
@click.option("--no-silver", is_flag=True, help="Do not append rows to the lake's live silver.")
@click.option("--model", default=None, help="Registered model whose params to use (default: config [model]).")
@click.option("--lateness-ms", type=click.IntRange(0, 60_000), default=None,
              help="Allowed lateness: second t closes at t + this (default: config [processor], 200).")
@click.option("--clock", "clock_kind", type=click.Choice(["wall", "event"]), default="wall", show_default=True,
              help="wall: the clock also closes seconds of a silent market (live); event: only event time "
                   "closes seconds (processing a replay of past data).")
@click.option("--ttl", "ttl_s", type=click.IntRange(1, 86_400 * 7), default=None,
              help="Online-store TTL of a row in seconds (default: config [store] ttl_s, 300).")
@click.option("--start", type=click.Choice(["earliest", "latest"]), default="earliest", show_default=True,
              help="Where to start reading when this processor has no stored positions.")
@click.option("--name", default=None, help="Consumer name for stored positions (default: processor-I-of-N).")
@click.option("--duration", type=positive(MAX_RUN_S), default=None,
              help="Stop after this many seconds (default: run until SIGINT/SIGTERM).")
@click.option("--idle-exit", type=positive(MAX_RUN_S), default=None,
              help="Stop after this many seconds without a new event.")
@grace_option
@click.option("--metrics-port", type=PORT_OR_ZERO, default=None,
              help="Serve Prometheus /metrics and /healthz on 127.0.0.1:PORT (default: config [metrics]).")
@click.option("--json", "as_json", is_flag=True, help="Print the final statistics as JSON.")
def cli(  # noqa: PLR0917 - click passes every option
    config_path: Path | None, symbols: str | None, partition: str, bus_kind: str | None, bus_url: str | None,
    bus_shards: int, bus_prefix: str | None, kinesis_endpoint: str | None, store_kind: str | None,
    store_url: str | None, positions_dir: Path | None, params_file: Path | None, lake_uri: str | None,
    no_silver: bool, model: str | None, lateness_ms: int | None, clock_kind: str, ttl_s: int | None, start: str,
    name: str | None, duration: float | None, idle_exit: float | None, grace_s: float | None,
    metrics_port: int | None, as_json: bool,
) -> None:
    """Consume trades (and best bid/ask when the schema has 'spread') from the bus and write one feature row
    per symbol per second to the online store, the features-1s stream and the lake's live silver.

    Second t closes when an event at or after t + lateness arrives or, with --clock wall, when the clock
    passes t + lateness. Late events are counted, not applied; repeated trade ids are ignored. A restarted
    processor re-reads the trailing window from its stored positions and continues with no hole.
    With BTCPIPE_EMF=1 the key metrics also go to stdout as CloudWatch EMF lines (Service=processor).
    SIGTERM/SIGINT (or --duration, --idle-exit) stop it within --grace seconds: the rows of closed seconds are
    written, live silver flushed and the positions committed.
    """
    from btcpipe.cli.wiring.config import load_config
    from btcpipe.infra.clocks import SystemClock
    from btcpipe.infra.emf import start_emf_reporter
    from btcpipe.infra.metrics import Metrics, readiness, serve_metrics
    from btcpipe.infra.tracing import open_tracing
    from btcpipe.services.process.processor import Processor, ProcessorSettings, parse_partition, partition_symbols
    from btcpipe.services.process.ride import ProcessorRide

    try:
        config = load_config(config_path)
        index, count = parse_partition(partition)
        wanted = [s.strip().upper() for s in symbols.split(",") if s.strip()] if symbols else list(config.symbols)
        owned = partition_symbols(wanted, index, count)
        if not owned:
            raise click.BadParameter(f"partition {partition} owns none of {wanted}")
        choice = bus_choice(config, kind=bus_kind, url=bus_url, shards=bus_shards, prefix=bus_prefix,
                            kinesis_endpoint=kinesis_endpoint)
        if choice.kind == "memory":
            raise click.BadParameter("a standalone processor needs a shared bus: --bus redis or kinesis "
                                     "(the in-process bus is for `btcpipe run`)")
        params = load_params(params_file, lake_uri, model or config.model.name, config.model.alias)
        bus = open_bus(choice)
        store = open_store(config, store_kind, store_url)
        positions = open_positions(choice, positions_dir)
        silver = None
        if lake_uri and not no_silver:
            from btcpipe.lake.lake import Lake
            from btcpipe.services.process.silver import LiveSilverSink

            silver = LiveSilverSink(Lake.open(lake_uri), params)
        metrics = Metrics()
        port = metrics_port if metrics_port is not None else config.metrics.port
        if port:
            serve_metrics(metrics, config.metrics.host, port,
                          ready=readiness({"bus": bus, "store": store, "positions": positions}))
        settings = ProcessorSettings(
            lateness_ms=lateness_ms if lateness_ms is not None else config.processor.lateness_ms,
            ttl_s=ttl_s or config.store.ttl_s,
            close_on_clock=clock_kind == "wall",
            start=start,
        )
        processor_name = name or f"processor-{index}-of-{count}"

        tracing = open_tracing(config.tracing, "processor")

        def build() -> Processor:
            return Processor(bus, store, positions, params, symbols=owned, clock=SystemClock(), settings=settings,
                             metrics=metrics, silver=silver, name=processor_name,
                             tracing=tracing)

        emf = start_emf_reporter(metrics, "processor")
    except BtcpipeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)

    shutdown = start_shutdown(config, grace_s)
    started = time.monotonic()
    last_event = [started]

    def should_stop() -> bool:
        now = time.monotonic()
        if duration is not None and now - started >= duration:
            shutdown.request("duration")
        if idle_exit is not None and now - last_event[0] >= idle_exit:
            shutdown.request("idle")
        return shutdown.is_set()

    # A bus outage (Redis down, a failover) is waited out: the processor is rebuilt from its positions.
    ride = ProcessorRide(build, should_stop=should_stop, wait=shutdown.wait)
    try:
        processor = ride.start()
        if processor is not None:
            hello = {"processor": processor.name, "symbols": owned, "resumed_from": processor.stats.resumed_from}
            click.echo(json.dumps(hello), err=True)
        while not should_stop():
            if ride.step():
                last_event[0] = time.monotonic()
        processor = ride.processor
    except BtcpipeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        current = ride.processor
        errors_before = 0 if current is None else current.stats.lake_errors + current.stats.commit_errors
        ride.close()
        if current is not None and current.stats.lake_errors + current.stats.commit_errors > errors_before:
            shutdown.note_unfinished("final silver flush or position commit failed")
        tracing.shutdown()
        if emf is not None:
            emf.stop()  # the last snapshot, after close() has counted what it flushed
    if processor is None:
        click.echo("error: stopped before the bus answered", err=True)
        sys.exit(EXIT_FAILED)
    summary: dict[str, Any] = {
        "processor": processor.name,
        "symbols": owned,
        "stats": asdict(processor.stats),
        "late_events": processor.late_events(),
        "duplicate_events": processor.duplicate_events(),
        "last_row": {s: processor.last_row(s) for s in owned},
        "consumer_skipped": processor.skipped_payloads(),
        "bus_errors": ride.bus_errors,  # ridden through; "stats" count from the last rebuild
        "rebuilds": ride.rebuilds,
        "shutdown": shutdown.finished().to_dict(),
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"{processor.name}: {processor.stats.rows} rows, {processor.stats.trades} trades, "
                   f"{summary['late_events']} late, {summary['duplicate_events']} duplicate events", err=True)

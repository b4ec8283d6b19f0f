"""``btcpipe infer``: the live inference service — features to predictions once a second."""

from __future__ import annotations

import gc
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from btcpipe.cli.wiring.bounds import MAX_RUN_S, PORT_OR_ZERO, finite, positive, redis_url_flag
from btcpipe.cli.wiring.live import bus_choice, bus_options, open_bus, open_store
from btcpipe.cli.wiring.stopping import grace_option, start_shutdown
from btcpipe.domain.errors import BtcpipeError

EXIT_FAILED = 1


@click.command("infer")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="BTCPIPE_CONFIG", show_envvar=True, help="TOML config file.")
@click.option("--symbols", default=None, help="Comma-separated symbols (default: config symbols).")
@click.option("--lake", "lake_uri", envvar="BTCPIPE_LAKE", default=None, show_envvar=True,
              help="Lake holding the model registry and the gold predictions archive (default: config [lake] uri).")
@click.option("--s3-endpoint", default=None, help="S3 endpoint URL for s3:// lakes (default: config [lake]).")
@click.option("--model", default=None, help="Registered model name (default: config [model] name).")
@click.option("--alias", default=None, help="Alias (or version) to serve and follow (default: config [model], "
                                              "production).")
@bus_options
@click.option("--store", "store_kind", type=click.Choice(["memory", "redis"]), default=None,
              help="Online store (default: config [store] kind).")
@click.option("--store-url", default=None, callback=redis_url_flag,
              help="Redis URL of the online store (default: config [store] redis_url).")
@click.option("--interval", type=click.IntRange(1, 2), default=None,
              help="Seconds between ticks, 1 or 2 (default: config [inference] interval_s).")
@click.option("--lateness-ms", type=click.IntRange(0, 5000), default=None,
              help="The processor's allowed lateness; the fallback engine uses it too (default: config [processor]).")
@click.option("--offset-ms", type=finite(0, 1900), default=None,
              help="With --fixed-offset: a tick for second t runs at t + this (default: lateness + 50 ms).")
@click.option("--row-wait-ms", type=finite(0, 10_000), default=None,
              help="A tick for second t runs as soon as the rows of t arrive on features-1s, or t + this when "
                   "they do not (then the fallback computes them). Below the deadline (default: 80 ms).")
@click.option("--fixed-offset", is_flag=True, help="Tick at t + --offset-ms instead of on the rows' arrival.")
@click.option("--deadline-ms", type=positive(10_000), default=None,
              help="A tick slower than this is skipped (default: config [inference] deadline_ms, 100).")
@click.option("--stale-after", "stale_after_s", type=positive(3600), default=None,
              help="Features older than this many seconds are stale (default: config [inference]).")
@click.option("--reload-check", "reload_check_s", type=positive(86_400), default=None,
              help="Check the registry alias every this many seconds (default: config [inference]).")
@click.option("--no-fallback", is_flag=True, help="Do not compute features from the bus when the store has none.")
@click.option("--no-archive", is_flag=True, help="Do not write the gold predictions archive.")
@click.option("--archive-every", "archive_every_s", type=finite(1, 86_400), default=60.0, show_default=True,
              help="Seconds between archive writes.")
@click.option("--duration", type=positive(MAX_RUN_S), default=None,
              help="Stop after this many seconds (default: run until SIGINT/SIGTERM).")
@grace_option
@click.option("--metrics-port", type=PORT_OR_ZERO, default=None,
              help="Serve Prometheus /metrics and /healthz on 127.0.0.1:PORT (default: config [metrics]).")
@click.option("--json", "as_json", is_flag=True, help="Print the final counts as JSON on stdout.")
def cli(  # noqa: PLR0917 - click passes every option
    config_path: Path | None, symbols: str | None, lake_uri: str | None, s3_endpoint: str | None,
    model: str | None, alias: str | None, bus_kind: str | None, bus_url: str | None, bus_shards: int,
    bus_prefix: str | None, kinesis_endpoint: str | None, store_kind: str | None, store_url: str | None,
    interval: int | None, lateness_ms: int | None, offset_ms: float | None, row_wait_ms: float | None,
    fixed_offset: bool, deadline_ms: float | None,
    stale_after_s: float | None, reload_check_s: float | None, no_fallback: bool, no_archive: bool,
    archive_every_s: float, duration: float | None, grace_s: float | None, metrics_port: int | None,
    as_json: bool,
) -> None:
    """Predict the 10-second log return of each symbol once a second (or every 2 s), on the second.

    Loads the model from the registry (hashes and the feature schema hash verified; a mismatch is refused)
    and follows its alias: a promotion is served within --reload-check seconds, without a restart. Each
    tick runs the moment the second's rows are published on features-1s (or --row-wait-ms after the second,
    the deadline counting from the second's end; --fixed-offset: at t + --offset-ms) and reads the row
    from the online store; when it is missing or stale,
    the row is computed from the bus's trades with the processor's own streaming engine. Predictions go to
    the predictions-1s stream and, with their realized returns once known, to the lake's gold archive
    (gold/predictions_1s). Outcomes, latency, shadow MAE/hit rate and feature drift are Prometheus metrics;
    with BTCPIPE_EMF=1 the key ones also go to stdout as CloudWatch EMF lines (Service=inference).
    SIGTERM/SIGINT stop it within --grace seconds, after archiving the predictions made so far.
    """
    from btcpipe.cli.wiring.config import load_config
    from btcpipe.infra.clocks import SystemClock
    from btcpipe.infra.emf import start_emf_reporter
    from btcpipe.infra.metrics import Metrics, readiness, serve_metrics
    from btcpipe.infra.tracing import open_tracing
    from btcpipe.lake.lake import Lake
    from btcpipe.model.registry import ModelRegistry
    from btcpipe.services.infer.archive import PredictionArchive
    from btcpipe.services.infer.arrivals import RowArrivals
    from btcpipe.services.infer.fallback import MarketTap
    from btcpipe.services.infer.inference import InferenceService, InferenceSettings
    from btcpipe.services.infer.model_loader import ModelWatcher

    clock = SystemClock()
    try:
        config = load_config(config_path)
        wanted = [s.strip().upper() for s in symbols.split(",") if s.strip()] if symbols else list(config.symbols)
        choice = bus_choice(config, kind=bus_kind, url=bus_url, shards=bus_shards, prefix=bus_prefix,
                            kinesis_endpoint=kinesis_endpoint)
        if choice.kind == "memory":
            raise click.BadParameter("standalone inference needs a shared bus: --bus redis or kinesis "
                                     "(the in-process bus is for `btcpipe run`)")
        lateness = lateness_ms if lateness_ms is not None else config.processor.lateness_ms
        interval_s = interval if interval is not None else config.inference.interval_s
        if interval_s not in (1, 2, 1.0, 2.0):
            raise click.BadParameter(f"[inference] interval_s must be 1 or 2, got {interval_s}")
        deadline = deadline_ms if deadline_ms is not None else config.inference.deadline_ms
        settings = InferenceSettings(
            interval_s=int(interval_s),
            offset_ms=offset_ms if offset_ms is not None else lateness + 50.0,
            deadline_ms=deadline,
            stale_after_s=stale_after_s if stale_after_s is not None else config.inference.stale_after_s,
            lateness_ms=float(lateness),
            on_arrival=not fixed_offset,
            row_wait_ms=row_wait_ms if row_wait_ms is not None else min(80.0, 0.8 * deadline),
        )
        lake = Lake.open(lake_uri or config.lake.uri, endpoint_url=s3_endpoint or config.lake.s3_endpoint or None)
        metrics = Metrics()
        watcher = ModelWatcher(
            ModelRegistry(lake.store), model or config.model.name, metrics=metrics, clock=clock,
            alias=alias or config.model.alias,
            check_every_s=reload_check_s if reload_check_s is not None else config.inference.reload_check_s,
        )
        watcher.load()
        bus = open_bus(choice)
        store = open_store(config, store_kind, store_url)
        market = None if no_fallback else MarketTap(bus, wanted, with_best_bid_ask=True)
        archive = None if no_archive else PredictionArchive(lake, clock, flush_every_s=archive_every_s)
        service = InferenceService(symbols=wanted, model=watcher, store=store, bus=bus, metrics=metrics, clock=clock,
                                   settings=settings, market=market, archive=archive,
                                   tracing=open_tracing(config.tracing, "inference"),
                                   rows=None if fixed_offset else RowArrivals(bus, wanted))
        port = metrics_port if metrics_port is not None else config.metrics.port
        if port:
            serve_metrics(metrics, config.metrics.host, port, health=service.health,
                          ready=readiness({"store": store, "bus": bus}))
        emf = start_emf_reporter(metrics, "inference")
    except BtcpipeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)

    shutdown = start_shutdown(config, grace_s)
    shutdown.on_request(service.stop)
    # Start-up objects (onnxruntime, pyarrow, boto3 ...) live for the whole run: keep them out of GC passes
    # so a full collection never lands inside a tick.
    gc.collect()
    gc.freeze()
    hello = {"inference": wanted, "model": watcher.current.name, "version": watcher.current.version,
             "settings": asdict(settings)}
    click.echo(json.dumps(hello), err=True)
    until = clock.now_us() + int(duration * 1_000_000) if duration is not None else None
    try:
        ticks = service.run(until_us=until)
        if not shutdown.is_set():
            shutdown.request("duration")
    except BtcpipeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        service.close()
        service.tracing.shutdown()
        if emf is not None:
            emf.stop()  # the last snapshot, after close() has archived what was pending
    summary: dict[str, Any] = {
        "ticks": ticks, "outcomes": dict(service.counts), "model_version": watcher.current.version,
        "model_swaps": watcher.swaps, "realized": service.shadow.realized_count,
        "archived": service.archive.written if service.archive else 0,
        "shutdown": shutdown.finished().to_dict(),
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"inference: {ticks} ticks, outcomes {summary['outcomes']}, model {summary['model_version']}",
                   err=True)

"""``btcpipe ingest``: the live ingestor — exchange WebSocket streams to the bus and bronze."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit

import click

from btcpipe.cli.wiring.bounds import MAX_RUN_S, PORT_OR_ZERO, positive
from btcpipe.cli.wiring.live import bus_choice, bus_options, open_bus
from btcpipe.cli.wiring.stopping import grace_option, rest_client, start_shutdown
from btcpipe.domain.errors import BtcpipeError, ConfigError

EXIT_FAILED = 1


def stream_urls(exchange_url: str, sbe_url: str | None, json_url: str | None) -> tuple[str, str]:
    """The SBE and JSON stream bases: given, or derived from the exchange's REST URL (local exchange layout:
    SBE at ``ws://host:port``, JSON at ``ws://host:port/json``)."""
    if sbe_url and json_url:
        return sbe_url, json_url
    parts = urlsplit(exchange_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"--exchange-url must be an http(s) URL, got {exchange_url!r}")
    ws = f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}"
    return sbe_url or ws, json_url or f"{ws}/json"


@click.command("ingest")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="BTCPIPE_CONFIG", show_envvar=True, help="TOML config file.")
@click.option("--symbols", default=None, help="Comma-separated symbols (default: config symbols).")
@click.option("--exchange-url", default=None,
              help="REST base URL of the exchange (gap fill, depth snapshots), e.g. http://127.0.0.1:8080 "
                   "(default: config [exchange] rest_url).")
@click.option("--sbe-url", default=None, help="SBE stream base, e.g. wss://stream-sbe.binance.com:9443 "
                                                "(default: config, else ws://<exchange host:port>).")
@click.option("--json-url", default=None, help="JSON stream base, e.g. wss://stream.binance.com:9443 "
                                                 "(default: config, else ws://<exchange host:port>/json).")
@click.option("--api-key-env", default=None,
              help="Environment variable holding the SBE API key (default: config [exchange] api_key_env). "
                   "Without a key the public JSON streams are used.")
@bus_options
@click.option("--lake", "lake_uri", envvar="BTCPIPE_LAKE", default=None, show_envvar=True,
              help="Lake whose bronze receives trades, book tickers and depth diffs (default: config [lake] uri).")
@click.option("--no-bronze", is_flag=True, help="Do not append raw events to bronze.")
@click.option("--snapshot-limit", type=click.IntRange(1, 5000), default=5000, show_default=True,
              help="Levels a side of the REST depth snapshot the order book starts from.")
@click.option("--silence-timeout", type=positive(3600), default=30.0, show_default=True,
              help="Reconnect a stream that delivered nothing for this many seconds.")
@click.option("--duration", type=positive(MAX_RUN_S), default=None,
              help="Stop after this many seconds (default: run until SIGINT/SIGTERM).")
@grace_option
@click.option("--metrics-port", type=PORT_OR_ZERO, default=None,
              help="Serve Prometheus /metrics and /healthz on 127.0.0.1:PORT (default: config [metrics]).")
@click.option("--json", "as_json", is_flag=True, help="Print the final statistics as JSON on stdout.")
def cli(  # noqa: PLR0917 - click passes every option
    config_path: Path | None, symbols: str | None, exchange_url: str | None, sbe_url: str | None,
    json_url: str | None, api_key_env: str | None, bus_kind: str | None, bus_url: str | None, bus_shards: int,
    bus_prefix: str | None, kinesis_endpoint: str | None, lake_uri: str | None, no_bronze: bool,
    snapshot_limit: int, silence_timeout: float, duration: float | None, grace_s: float | None,
    metrics_port: int | None, as_json: bool,
) -> None:
    """Connect to the exchange's market-data streams (SBE with an API key, else the public JSON streams,
    said loudly), and publish every trade, best bid/ask and depth diff Avro-encoded to the bus
    (market-sbe-trade, market-sbe-bestbidask, market-sbe-depth; key = symbol) and to the lake's bronze.

    Trade-id gaps are filled from REST historicalTrades; each symbol's order book follows Binance's
    snapshot + buffered diffs procedure and resyncs after a missed diff. Reconnects with jittered
    backoff, honours serverShutdown, replaces connections before their maximum age, and reconnects a
    silent stream. The API key is read from the environment and never logged. With BTCPIPE_EMF=1 the key
    metrics also go to stdout as CloudWatch EMF lines (Service=ingestor), every BTCPIPE_EMF_INTERVAL_S.

    SIGTERM/SIGINT (or the end of --duration) stop it within --grace seconds: pending REST requests are given
    up, what was received is published and written to bronze, and the summary says what was left undone.
    """
    from btcpipe.binance.weights import LIVE
    from btcpipe.binance.ws_client import MarketStreamClient, StreamSettings
    from btcpipe.cli.wiring.config import load_config, secret
    from btcpipe.infra.emf import start_emf_reporter
    from btcpipe.infra.metrics import Metrics, readiness, serve_metrics
    from btcpipe.infra.tracing import open_tracing
    from btcpipe.services.ingest.ingestor import Ingestor, IngestSettings

    try:
        config = load_config(config_path)
        wanted = [s.strip().upper() for s in symbols.split(",") if s.strip()] if symbols else list(config.symbols)
        if not wanted:
            raise ConfigError("no symbols to ingest")
        rest_url = exchange_url or config.exchange.rest_url
        if not rest_url:
            raise ConfigError("no exchange URL: pass --exchange-url or set [exchange] rest_url")
        sbe, js = stream_urls(rest_url, sbe_url or config.exchange.sbe_url or None,
                              json_url or config.exchange.stream_url or None)
        key = secret(api_key_env if api_key_env is not None else config.exchange.api_key_env)
        settings = StreamSettings(sbe_url=sbe, json_url=js, api_key=key, silence_timeout_s=silence_timeout)
        choice = bus_choice(config, kind=bus_kind, url=bus_url, shards=bus_shards, prefix=bus_prefix,
                            kinesis_endpoint=kinesis_endpoint)
        bus = open_bus(choice)
        lake = None
        if not no_bronze:
            from btcpipe.lake.lake import Lake

            lake = Lake.open(lake_uri or config.lake.uri, endpoint_url=config.lake.s3_endpoint or None)
        metrics = Metrics()
        client = MarketStreamClient(wanted, settings, metrics=metrics)
        shutdown = start_shutdown(config, grace_s, signals=False)
        rest = rest_client(config, rest_url, priority=LIVE, shutdown=shutdown)
        tracing = open_tracing(config.tracing, "ingestor")
        # The bus gets half the grace period for what is queued; bronze and the summary need the rest.
        ingestor = Ingestor(client, bus, symbols=wanted, rest=rest, lake=lake, metrics=metrics,
                            settings=IngestSettings(snapshot_limit=snapshot_limit,
                                                    stop_flush_s=0.5 * shutdown.grace_s), tracing=tracing)
        shutdown.on_request(ingestor.stop)
        port = metrics_port if metrics_port is not None else config.metrics.port
        if port:
            server = serve_metrics(metrics, config.metrics.host, port, health=ingestor.health,
                                   ready=readiness({"bus": bus}))
            click.echo(json.dumps({"metrics": f"http://{config.metrics.host}:{server.server_port}/metrics"}), err=True)
        emf = start_emf_reporter(metrics, "ingestor")
    except (BtcpipeError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        shutdown.install_signal_handlers(loop)
        if duration is not None:
            loop.call_later(duration, shutdown.request, "duration")
        await ingestor.run()

    click.echo(json.dumps({"ingest": wanted, "mode": client.mode, "bus": choice.kind,
                           "bronze": None if lake is None else lake.uri()}), err=True)
    try:
        asyncio.run(main())
    except BtcpipeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        rest.close()
        bus.close()
        tracing.shutdown()
        if emf is not None:
            emf.stop()  # the last snapshot, before the summary
    stats = ingestor.stats
    for what, count in stats.abandoned.items():
        shutdown.note_unfinished(f"{what} requests given up", count=count)
    if stats.unpublished:
        shutdown.note_unfinished("payloads the bus did not take", count=stats.unpublished)
    if ingestor.bronze is not None and ingestor.bronze.pending_rows:
        shutdown.note_unfinished("bronze rows not written", count=ingestor.bronze.pending_rows)
    if ingestor.open_gaps:
        shutdown.note_unfinished("trade gaps left open", count=len(ingestor.open_gaps))
    summary = {
        "mode": client.mode,
        "ingest": asdict(ingestor.stats),
        "client": asdict(client.stats),
        "publish": asdict(ingestor.publisher.stats),
        "bronze": None if ingestor.bronze is None else asdict(ingestor.bronze.stats),
        "books_synced": {s: b.synced for s, b in ingestor.books.items()},
        "gaps": [asdict(g) for g in ingestor.gaps],
        "rest": asdict(rest.stats),
        "shutdown": shutdown.finished().to_dict(),
    }
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(json.dumps(summary, indent=2), err=True)

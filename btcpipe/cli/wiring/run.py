"""The concrete adapters of ``btcpipe run``: the market, the local exchange (or Binance), the REST client,
the lake, and for the live stage the bus and the online store — embedded by default, real servers with
``--services``. Only the CLI layer imports this (``btcpipe.run.orchestrator.RunWiring`` is the port).
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from btcpipe.cli.wiring.config import Config, secret
from btcpipe.domain.errors import ConfigError
from btcpipe.domain.time import Clock
from btcpipe.infra.clocks import SystemClock
from btcpipe.infra.shutdown import Shutdown
from btcpipe.lake.lake import Lake
from btcpipe.run.market import RunMarket, exchange_market, recorded_market, simulated_market
from btcpipe.run.orchestrator import ExchangeEndpoints, LiveStage
from btcpipe.run.view import RunView
from btcpipe.services.backfill import RestSource

if TYPE_CHECKING:
    from btcpipe.binance.rest import BinanceRestClient
    from btcpipe.binance.weights import Priority

log = logging.getLogger(__name__)

BINANCE_REST = "https://data-api.binance.vision"
BINANCE_JSON_STREAMS = "wss://stream.binance.com:9443"
BINANCE_SBE_STREAMS = "wss://stream-sbe.binance.com:9443"
S3_BUCKET = "btcpipe-run"

_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


MAX_HISTORY_S = 48 * 3600  # run --history: the simulated tape and the backfill grow with it
MAX_LIVE_S = 24 * 3600  # run --duration


def parse_duration(text: str, *, key: str = "duration", max_s: int = MAX_HISTORY_S) -> int:
    """``2h``, ``20m``, ``90s``, ``1h30m`` or plain seconds → whole seconds in 1..``max_s``.

    Checked on the text before any arithmetic, so ``100000h`` is refused here and never sizes a tape.
    """
    value = text.strip().lower()
    if len(value) > 20:
        raise ConfigError(f"{key}: not a duration: {text[:40]!r} (use e.g. 2h, 20m, 90s, 1h30m or seconds)")
    if value.isdigit():
        seconds = int(value)
    else:
        match = _DURATION.fullmatch(value)
        if not value or match is None:
            raise ConfigError(f"{key}: not a duration: {text!r} (use e.g. 2h, 20m, 90s, 1h30m or seconds)")
        h, m, s = (int(g) if g else 0 for g in match.groups())
        seconds = h * 3600 + m * 60 + s
    if not 0 < seconds <= max_s:
        raise ConfigError(f"{key} must be between 1s and {max_s // 3600}h, got {text!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class RunOptions:
    """The options of ``btcpipe run`` after parsing: history, duration, market source, services and outputs."""

    history_s: int
    duration_s: int
    seed: int
    symbol: str
    recordings: tuple[Path, ...]
    out_dir: Path
    lake_uri: str | None  # None: <out_dir>/lake (embedded) or s3://btcpipe-run/<run id> (services)
    services: bool
    start_servers: bool
    exchange: str  # local | binance
    allow_network: bool
    config: Config
    preset: str = "realistic"  # simulator preset (btcpipe.market.presets)


class RunAdapters:
    """Implements ``RunWiring``. Servers it starts live on ``stack`` and stop when the run ends."""

    def __init__(self, options: RunOptions, stack: ExitStack, *, observer: RunView, model_name: str,
                 shutdown: Shutdown | None = None) -> None:
        self.options = options
        self.shutdown = shutdown
        self.observer = observer
        self.model_name = model_name
        self.clock: Clock = SystemClock()
        self.api_key = secrets.token_hex(16)  # the local exchange's SBE key for this run only
        self.redis_url: str | None = None
        self.s3_endpoint: str | None = None
        self.kinesis_endpoint: str | None = None
        if options.exchange == "binance" and not options.allow_network:
            raise ConfigError(
                "--exchange binance talks to Binance over the internet; add --allow-network to do that on purpose"
            )
        if options.exchange == "binance" and options.recordings:
            raise ConfigError("--recording serves a recording on the local exchange; it cannot go with binance")
        if options.services:
            self._services(stack)
        self.lake = self._lake()

    # --- servers and the lake ------------------------------------------------------------------------------
    def _services(self, stack: ExitStack) -> None:
        cfg = self.options.config
        if self.options.start_servers:
            import os

            from btcpipe.infra.devservers import MotoServer, RedisServer, aws_test_environment

            for key, value in aws_test_environment().items():
                os.environ.setdefault(key, value)
            redis_server, moto = RedisServer(), MotoServer()
            stack.enter_context(redis_server)
            stack.enter_context(moto)
            self.redis_url = redis_server.url
            self.s3_endpoint = self.kinesis_endpoint = moto.endpoint
            log.info("started redis-server and moto_server", extra={"redis": redis_server.url,
                                                                    "moto": moto.endpoint})
        else:
            self.redis_url = cfg.store.redis_url
            self.s3_endpoint = cfg.lake.s3_endpoint or None
            self.kinesis_endpoint = cfg.bus.kinesis_endpoint or None

    def _lake(self) -> Lake:
        opts = self.options
        if opts.lake_uri is not None:
            uri = opts.lake_uri
        elif opts.services:
            uri = f"s3://{S3_BUCKET}/{opts.out_dir.name}"
        else:
            uri = str(opts.out_dir / "lake")
        if uri.startswith("s3://") and self.options.services and self.options.start_servers:
            _create_bucket(uri, self.s3_endpoint)
        return Lake.open(uri, endpoint_url=self.s3_endpoint)

    # --- RunWiring -------------------------------------------------------------------------------------------
    def market(self, now_us: int) -> RunMarket:
        opts = self.options
        if opts.exchange == "binance":
            return exchange_market(opts.symbol, now_us=now_us, history_s=opts.history_s)
        if opts.recordings:
            from btcpipe.binance.recording import load_recording

            tape = load_recording(opts.recordings).to_tape()
            # Loading takes seconds: place the recording on the clock as it is now, not as it was before.
            return recorded_market(tape, now_us=self.clock.now_us(), history_s=opts.history_s,
                                   live_s=opts.duration_s)
        if opts.symbol != "BTCUSDT":
            raise ConfigError("the simulator makes a BTCUSDT market; use --symbol BTCUSDT or --exchange binance")
        return simulated_market(now_us=now_us, history_s=opts.history_s, live_s=opts.duration_s, seed=opts.seed,
                                    preset=opts.preset)

    @contextlib.contextmanager
    def exchange(self, market: RunMarket) -> Iterator[ExchangeEndpoints]:
        if market.tape is None:  # Binance itself
            cfg = self.options.config.exchange
            yield ExchangeEndpoints(
                cfg.rest_url or BINANCE_REST, cfg.stream_url or BINANCE_JSON_STREAMS,
                cfg.sbe_url or BINANCE_SBE_STREAMS, secret(cfg.api_key_env),
            )
            return
        from btcpipe.exchange.server import LocalExchange
        from btcpipe.exchange.streams.routes import StreamConfig
        from btcpipe.infra.clocks import ReplayClock

        # Tape time = wall time: the market was placed on the wall clock, so the replay runs at speed 1 from now.
        now = self.clock.now_us()
        clock = ReplayClock(now, speed=1.0, wall_start_us=now)
        streams = StreamConfig(api_keys=frozenset({self.api_key}))
        with LocalExchange(market.tape, clock=clock, streams=streams) as exchange:
            ws = exchange.ws_url
            yield ExchangeEndpoints(exchange.base_url, f"{ws}/json", ws, self.api_key)

    def rest_client(self, endpoints: ExchangeEndpoints) -> contextlib.AbstractContextManager[RestSource]:
        """The backfill's client: bulk priority on the endpoint's one budget, so the live part that follows
        (and, on Binance, runs beside other backfills of the IP) always finds its reserve."""
        from btcpipe.binance.weights import BULK

        return self._rest(endpoints, BULK)

    def _live_rest(self, endpoints: ExchangeEndpoints) -> BinanceRestClient:
        from btcpipe.binance.weights import LIVE

        return self._rest(endpoints, LIVE)

    def _rest(self, endpoints: ExchangeEndpoints, priority: Priority) -> BinanceRestClient:
        from btcpipe.cli.wiring.stopping import rest_client

        return rest_client(self.options.config, endpoints.rest_url, priority=priority, shutdown=self.shutdown)

    def live_stage(self) -> LiveStage | None:
        from btcpipe.run.live import LivePipeline, LivePorts

        bus, store, positions = self._bus_and_store()
        return LivePipeline(
            LivePorts(bus=bus, store=store, lake=self.lake, positions=positions, open_source=_stream_client,
                      open_rest=self._live_rest, clock=self.clock),
            self.observer,
            self._live_settings(),
        )

    def _live_settings(self) -> Any:
        from btcpipe.run.live import LiveSettings
        from btcpipe.services.infer.inference import InferenceSettings
        from btcpipe.services.process.processor import ProcessorSettings

        cfg = self.options.config
        lateness = cfg.processor.lateness_ms
        interval = cfg.inference.interval_s
        if interval not in (1.0, 2.0):
            raise ConfigError(f"inference.interval_s must be 1 or 2, got {interval}")
        bus_wait = 450.0 if self.options.services else 0.0  # moto_server's Kinesis: 100-500 ms from put to get
        return LiveSettings(
            model_name=self.model_name, model_alias=cfg.model.alias,
            # Inference ticks when the row arrives on features-1s; it waits for it at most what the bus needs
            # (in-process: ~1 ms, but a quiet second waits for the ingestor's heartbeat; Kinesis on moto_server:
            # 100-500 ms from put to get), and the deadline counts from the second's end on top of that wait.
            processor=ProcessorSettings(lateness_ms=lateness, ttl_s=cfg.store.ttl_s, block_ms=20),
            inference=InferenceSettings(interval_s=int(interval), on_arrival=True,
                                        row_wait_ms=bus_wait + 0.8 * cfg.inference.deadline_ms,
                                        deadline_ms=bus_wait + cfg.inference.deadline_ms,
                                        stale_after_s=cfg.inference.stale_after_s, lateness_ms=float(lateness)),
        )

    def _bus_and_store(self) -> tuple[Any, Any, Any]:
        if not self.options.services:
            from btcpipe.bus.memory import InProcessBus
            from btcpipe.bus.positions import InMemoryPositionStore
            from btcpipe.store.memory import InProcessOnlineStore

            return InProcessBus(), InProcessOnlineStore(self.clock), InMemoryPositionStore()
        from btcpipe.bus.kinesis import KinesisBus, kinesis_client
        from btcpipe.bus.port import ALL_STREAMS
        from btcpipe.bus.positions import RedisPositionStore
        from btcpipe.infra.redis_connection import RedisOptions
        from btcpipe.store.redis_store import RedisOnlineStore

        cfg = self.options.config
        assert self.redis_url is not None
        # Streams of this run only, so runs against the same moto_server never read each other's records.
        prefix = f"btcpipe-{self.options.out_dir.name.lower()}-"
        bus = KinesisBus(kinesis_client(self.kinesis_endpoint, cfg.bus.region), prefix=prefix)
        bus.ensure_streams(ALL_STREAMS, 1)
        password = None if self.options.start_servers else secret(cfg.store.redis_password_env)
        options = RedisOptions(self.redis_url, password=password, tls=cfg.store.tls)
        return bus, RedisOnlineStore(options), RedisPositionStore(options)

    def describe(self) -> dict[str, Any]:
        opts = self.options
        return {
            "exchange": opts.exchange if not opts.recordings else "local (recording)",
            "lake": self.lake.uri(),
            "bus": "kinesis (moto_server)" if opts.services else "in-process",
            "store": "redis" if opts.services else "in-process",
            "servers_started": opts.services and opts.start_servers,
            "redis": _without_password(self.redis_url),
            "s3_endpoint": self.s3_endpoint,
            "kinesis_endpoint": self.kinesis_endpoint,
        }


def _stream_client(endpoints: ExchangeEndpoints, symbols: Any) -> Any:
    from btcpipe.binance.ws_client import MarketStreamClient, StreamSettings

    if endpoints.sbe_url is None or endpoints.stream_url is None:
        raise ConfigError("the exchange serves no WebSocket streams")
    settings = StreamSettings(sbe_url=endpoints.sbe_url, json_url=endpoints.stream_url, api_key=endpoints.api_key)
    return MarketStreamClient(list(symbols), settings)


def _without_password(url: str | None) -> str | None:
    return None if url is None else re.sub(r"//[^@/]*@", "//***@", url)


def _create_bucket(uri: str, endpoint: str | None) -> None:
    import boto3

    bucket = uri[len("s3://"):].partition("/")[0]
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    try:
        client.create_bucket(Bucket=bucket)
    except Exception as exc:  # boto's error classes are generated at runtime
        if "BucketAlready" not in type(exc).__name__ and "BucketAlready" not in str(exc):
            raise ConfigError(f"cannot create the run's S3 bucket {bucket} at {endpoint}: {exc}") from exc

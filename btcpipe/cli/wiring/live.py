"""Concrete adapters for the live commands (process, replay, parity), picked from options and config.

Kept apart from the commands so each stays about its own options; only the CLI layer imports this.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from btcpipe.bus.port import Bus, PositionStore
from btcpipe.cli.wiring.bounds import redis_url_flag
from btcpipe.cli.wiring.config import Config, secret
from btcpipe.domain.errors import BtcpipeError, ConfigError
from btcpipe.features.spec import FeatureParams, check_schema_document
from btcpipe.infra.redis_connection import RedisOptions
from btcpipe.store.port import OnlineStore


@dataclass(frozen=True, slots=True)
class BusChoice:
    """The bus a live command uses, from its options and the config."""

    kind: str  # memory | redis | kinesis
    redis_url: str
    shards: int
    prefix: str
    kinesis_endpoint: str
    region: str
    password_env: str = ""
    tls: bool = False  # config [bus] tls: the bus and its positions connect over TLS

    def redis_options(self) -> RedisOptions:
        """The bus's Redis connection; the processor's positions live in the same Redis, over the same TLS."""
        return RedisOptions(self.redis_url, password=secret(self.password_env), tls=self.tls)


def bus_options(f: Any) -> Any:
    """The options every live command shares to name its bus (defaults from the config's [bus])."""
    for option in reversed([
        click.option("--bus", "bus_kind", type=click.Choice(["memory", "redis", "kinesis"]), default=None,
                     help="Bus adapter (default: config [bus] kind)."),
        click.option("--bus-url", default=None, callback=redis_url_flag,
                     help="Redis URL of a redis bus (default: config [bus] redis_url)."),
        click.option("--bus-shards", type=click.IntRange(1, 1024), default=1, show_default=True,
                     help="Shards per stream (Redis: stream keys per stream; Kinesis: shards when creating)."),
        click.option("--bus-prefix", default=None, help="Stream key/name prefix (default: the adapter's)."),
        click.option("--kinesis-endpoint", default=None, help="Kinesis endpoint, e.g. a local moto_server."),
    ]):
        f = option(f)
    return f


def bus_choice(config: Config, *, kind: str | None, url: str | None, shards: int, prefix: str | None,
               kinesis_endpoint: str | None) -> BusChoice:
    return BusChoice(
        kind=kind or config.bus.kind,
        redis_url=url or config.bus.redis_url,
        shards=shards,
        prefix=prefix if prefix is not None else config.bus.stream_prefix,
        kinesis_endpoint=kinesis_endpoint or config.bus.kinesis_endpoint,
        region=config.bus.region,
        password_env=config.bus.redis_password_env,
        tls=config.bus.tls,
    )


def open_bus(choice: BusChoice) -> Bus:
    if choice.kind == "memory":
        from btcpipe.bus.memory import InProcessBus

        return InProcessBus(n_shards=choice.shards)
    if choice.kind == "redis":
        from btcpipe.bus.redis_streams import RedisStreamsBus

        options = choice.redis_options()
        if choice.prefix:
            return RedisStreamsBus(options, n_shards=choice.shards, prefix=choice.prefix)
        return RedisStreamsBus(options, n_shards=choice.shards)
    from btcpipe.bus.kinesis import KinesisBus, kinesis_client

    client = kinesis_client(choice.kinesis_endpoint or None, choice.region)
    bus = KinesisBus(client, prefix=choice.prefix) if choice.prefix else KinesisBus(client)
    from btcpipe.bus.port import ALL_STREAMS

    bus.ensure_streams(ALL_STREAMS, choice.shards)
    return bus


def open_positions(choice: BusChoice, directory: Path | None) -> PositionStore:
    """Redis bus: positions in the same Redis; otherwise JSON files under ``directory``."""
    if directory is not None:
        from btcpipe.bus.positions import FilePositionStore

        return FilePositionStore(directory)
    if choice.kind == "redis":
        from btcpipe.bus.positions import RedisPositionStore

        return RedisPositionStore(choice.redis_options())
    if choice.kind == "memory":
        from btcpipe.bus.positions import InMemoryPositionStore

        return InMemoryPositionStore()
    raise ConfigError("a Kinesis bus needs --positions-dir (where the processor keeps its positions)")


def open_store(config: Config, kind: str | None, url: str | None) -> OnlineStore:
    kind = kind or config.store.kind
    if kind == "memory":
        from btcpipe.infra.clocks import SystemClock
        from btcpipe.store.memory import InProcessOnlineStore

        return InProcessOnlineStore(SystemClock())
    from btcpipe.store.redis_store import RedisOnlineStore

    options = RedisOptions(url or config.store.redis_url, password=secret(config.store.redis_password_env),
                           tls=config.store.tls)
    return RedisOnlineStore(options)


def load_params(params_file: Path | None, lake_uri: str | None, model: str, alias: str) -> FeatureParams:
    """Feature params from a schema/params JSON file, else from the registry's ``alias`` model."""
    try:
        if params_file is not None:
            try:
                doc = json.loads(params_file.read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot read feature params from {params_file}: {exc}") from exc
            if isinstance(doc, dict) and "hash" in doc:
                return check_schema_document(doc)
            return FeatureParams.from_json(doc)
        if not lake_uri:
            raise ConfigError("give --params FILE, or --lake URI to take the params of the registered model")
        from btcpipe.lake.lake import Lake
        from btcpipe.model.registry import ModelRegistry

        artifacts = ModelRegistry(Lake.open(lake_uri).store).load(model, alias).verify()
        return check_schema_document(artifacts.schema)
    except BtcpipeError as exc:
        raise click.BadParameter(str(exc)) from exc

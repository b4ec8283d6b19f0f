"""Configuration: one TOML file, environment overrides, validated into frozen dataclasses.

Only the CLI reads configuration and picks adapters from it. Secrets (API keys, passwords) are never
stored in the file: the file names the environment variable that holds them.

Precedence: defaults < TOML file (``--config`` or ``BTCPIPE_CONFIG``) < ``BTCPIPE__SECTION__KEY`` env vars.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints
from urllib.parse import urlsplit

from btcpipe.domain.errors import ConfigError
from btcpipe.infra.redis_connection import redis_url_problem
from btcpipe.infra.tracing import EXPORTERS, TracingSettings


@dataclass(frozen=True)
class ExchangeConfig:
    """``[exchange]``: which exchange (local or Binance), its URLs, the variable holding the API key and the REST
    weight budget (live ceiling and the reserve a backfill leaves to the live path)."""

    kind: str = "local"  # local | binance
    rest_url: str = ""  # empty: the local exchange's own URL (or Binance's public data API for kind=binance)
    stream_url: str = ""  # JSON streams
    sbe_url: str = ""  # SBE streams
    api_key_env: str = "BTCPIPE_BINANCE_API_KEY"
    # REST request weight (one budget per endpoint in a process, shared by backfill and the live path):
    weight_limit: int = 6000  # the endpoint's REQUEST_WEIGHT per minute per IP
    weight_budget_share: float = 0.8  # the live path may use this share of it
    live_reserve_share: float = 0.2  # backfill pages leave this share of the limit to the live path


@dataclass(frozen=True)
class LakeConfig:
    """``[lake]``: where the lake lives (a directory or ``s3://``) and the S3 endpoint."""

    uri: str = "var/lake"  # a directory, or s3://bucket/prefix
    s3_endpoint: str = ""  # e.g. http://127.0.0.1:5000 for moto_server


@dataclass(frozen=True)
class BusConfig:
    """``[bus]``: the bus kind and how to reach Redis or Kinesis."""

    kind: str = "memory"  # memory | redis | kinesis
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password_env: str = ""
    tls: bool = False  # TLS to a redis bus (also implied by a rediss:// URL); the positions share it
    kinesis_endpoint: str = ""
    region: str = "us-east-1"
    stream_prefix: str = ""


@dataclass(frozen=True)
class StoreConfig:
    """``[store]``: the online store kind, its Redis connection and the feature rows' TTL."""

    kind: str = "memory"  # memory | redis
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password_env: str = ""
    tls: bool = False
    ttl_s: int = 300


@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: which registered model and alias inference serves."""

    name: str = "btcusdt-10s"
    alias: str = "production"


@dataclass(frozen=True)
class ProcessorConfig:
    """``[processor]``: how long a second waits for late events before it closes."""

    lateness_ms: int = 200


@dataclass(frozen=True)
class InferenceConfig:
    """``[inference]``: tick interval, deadline, staleness bound and model reload check."""

    interval_s: float = 1.0
    deadline_ms: float = 100.0
    stale_after_s: float = 3.0
    reload_check_s: float = 5.0


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics]``: where the Prometheus endpoint listens (port 0: none)."""

    port: int = 0  # 0: no endpoint
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class TrackingConfig:
    """``[tracking]``: MLflow experiment tracking of ``btcpipe train`` (the ``tracking`` extra)."""

    enabled: bool = False
    uri: str = ""  # MLflow tracking URI; empty: a local file store, mlruns/ beside the current directory
    experiment: str = "btcpipe"


@dataclass(frozen=True)
class ShutdownConfig:
    """``[shutdown]``: how long a command may take to stop (docs/OPERATIONS.md#stopping)."""

    grace_s: float = 5.0  # a command exits at most this long after SIGTERM/SIGINT or the end of --duration


@dataclass(frozen=True)
class Config:
    """The whole configuration: the TOML file with environment overrides applied, validated."""

    symbols: tuple[str, ...] = ("BTCUSDT",)
    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
    lake: LakeConfig = field(default_factory=LakeConfig)
    bus: BusConfig = field(default_factory=BusConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    processor: ProcessorConfig = field(default_factory=ProcessorConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    shutdown: ShutdownConfig = field(default_factory=ShutdownConfig)


_CHOICES = {
    ("exchange", "kind"): {"local", "binance"},
    ("bus", "kind"): {"memory", "redis", "kinesis"},
    ("store", "kind"): {"memory", "redis"},
    ("tracing", "exporter"): set(EXPORTERS),
}

# Every number of the config has a range: (low, high, low_open). Floats must also be finite (no nan/inf).
_RANGES: dict[tuple[str, str], tuple[float, float, bool]] = {
    ("store", "ttl_s"): (1, 7 * 86_400, False),
    ("processor", "lateness_ms"): (0, 60_000, False),
    ("inference", "interval_s"): (1, 2, False),
    ("inference", "deadline_ms"): (0, 10_000, True),
    ("inference", "stale_after_s"): (0, 3_600, True),
    ("inference", "reload_check_s"): (0, 86_400, True),
    ("metrics", "port"): (0, 65_535, False),  # 0: no endpoint
    ("tracing", "sample_ratio"): (0, 1, False),
    ("exchange", "weight_limit"): (1, 1_000_000, False),
    ("exchange", "weight_budget_share"): (0, 1, True),
    ("exchange", "live_reserve_share"): (0, 1, False),  # and below weight_budget_share (WeightBudget checks)
    ("shutdown", "grace_s"): (0, 3_600, True),
}
_REDIS_URLS = {("bus", "redis_url"), ("store", "redis_url")}
_HTTP_URLS = {("exchange", "rest_url"), ("lake", "s3_endpoint"), ("bus", "kinesis_endpoint")}
_WS_URLS = {("exchange", "stream_url"), ("exchange", "sbe_url")}

T = TypeVar("T")


def _check_number(where: str, value: float, bounds: tuple[float, float, bool]) -> None:
    low, high, low_open = bounds
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    if value < low or (low_open and value == low) or value > high:
        low_text = f"> {low:g}" if low_open else f">= {low:g}"
        raise ConfigError(f"{where} must be {low_text} and <= {high:g}, got {value!r}")


def _check_url(where: str, value: str, schemes: tuple[str, ...]) -> None:
    """A service URL: empty (the default) or ``scheme://host[:port]`` with a port 1–65535."""
    if not value:
        return
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{where}: the port of {value!r} must be a number 1-65535") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(f"{where} must be a {' or '.join(s + '://' for s in schemes)} URL with a host, got {value!r}")
    if port == 0:
        raise ConfigError(f"{where}: the port of {value!r} must be a number 1-65535")


def _check_value(section: str, name: str, where: str, value: Any) -> None:
    """Range, finiteness and URL shape of one coerced value; the message names the key."""
    key = (section, name)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    if key in _RANGES:
        _check_number(where, value, _RANGES[key])
    elif key in _REDIS_URLS:
        problem = redis_url_problem(value)
        if problem:
            raise ConfigError(f"{where}: {problem}")
    elif key in _HTTP_URLS:
        _check_url(where, value, ("http", "https"))
    elif key in _WS_URLS:
        _check_url(where, value, ("ws", "wss"))
    elif key == ("lake", "uri") and "://" in value and not value.startswith(("s3://", "file://")):
        raise ConfigError(f"{where} must be a directory or s3://bucket/prefix, got {value!r}")


def _coerce(where: str, value: Any, target: Any) -> Any:
    if target is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "0", "false", "no"}:
            return value.lower() in {"1", "true", "yes"}
    elif target is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        # At most 19 digits: int64, and far below Python's int-from-text limit (which raises ValueError).
        if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value.strip()) <= 20:
            return int(value)
    elif target is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif target is str:
        if isinstance(value, str):
            return value
    elif target == tuple[str, ...]:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value) and value:
            return tuple(v.strip().upper() for v in value)
    raise ConfigError(f"{where}: expected {getattr(target, '__name__', target)}, got {value!r}")


def _build(cls: type[T], section: str, raw: dict[str, Any]) -> T:
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(raw) - known
    if unknown:
        names = ", ".join(sorted(unknown))
        raise ConfigError(f"[{section}] has unknown keys: {names} (known: {', '.join(sorted(known))})")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        where = f"{section}.{name}" if section else name
        values[name] = _coerce(where, value, hints[name])
        _check_value(section, name, where, values[name])
        choices = _CHOICES.get((section, name))
        if choices and values[name] not in choices:
            raise ConfigError(f"{where} must be one of {sorted(choices)}, got {values[name]!r}")
    return cls(**values)


def _env_overrides(environ: dict[str, str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for key, value in environ.items():
        if key.startswith("BTCPIPE__"):
            parts = key[len("BTCPIPE__") :].lower().split("__")
            if len(parts) == 1:
                out.setdefault("", {})[parts[0]] = value
            elif len(parts) == 2:
                out.setdefault(parts[0], {})[parts[1]] = value
    return out


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Load and validate configuration; every problem is a ``ConfigError`` that names the key."""
    environ = dict(os.environ) if environ is None else environ
    path = path or environ.get("BTCPIPE_CONFIG") or None
    raw: dict[str, Any] = {}
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    for section, values in _env_overrides(environ).items():
        if section:
            existing = raw.setdefault(section, {})
            if not isinstance(existing, dict):
                raise ConfigError(f"[{section}] must be a table")
            existing.update(values)
        else:
            raw.update(values)
    top: dict[str, Any] = {}
    sections = {f.name: f for f in dataclasses.fields(Config)}
    for key, value in raw.items():
        if key not in sections:
            raise ConfigError(f"unknown config key or section {key!r} (known: {', '.join(sorted(sections))})")
        if key == "symbols":
            top[key] = _coerce("symbols", value, tuple[str, ...])
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"[{key}] must be a table, got {value!r}")
        section_type = get_type_hints(Config)[key]
        top[key] = _build(section_type, key, value)
    return Config(**top)


def secret(env_name: str, environ: dict[str, str] | None = None) -> str | None:
    """Read a secret named by the config; returns None when unset. Never log the value."""
    if not env_name:
        return None
    value = (os.environ if environ is None else environ).get(env_name)
    return value or None

"""How btcpipe connects to Redis (the online store and the Redis Streams bus share it).

Password and TLS come from configuration, never from code; timeouts are short because every caller
is on a latency budget and turns a timeout into its own error (``StoreError`` / ``BusError``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from btcpipe.domain.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """How to reach Redis: URL, password (never logged), TLS and timeouts."""

    url: str = "redis://127.0.0.1:6379/0"
    password: str | None = None  # used when the URL carries none (a URL password wins); never logged
    tls: bool = False  # also implied by a rediss:// URL
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_check_hostname: bool = True
    socket_timeout_s: float = 1.0
    connect_timeout_s: float = 1.0
    retries: int = 1  # reconnect attempts on a broken connection before the error surfaces

    def __repr__(self) -> str:
        # The URL may carry a password; never print it.
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        safe = urlunsplit((parts.scheme, f"{host}{port}", parts.path, "", ""))
        return f"RedisOptions(url={safe!r}, tls={self.tls or parts.scheme == 'rediss'})"


def connect_redis(options: RedisOptions) -> redis.Redis[bytes]:
    """A client (its own connection pool) for ``options``; connects lazily on the first command."""
    parts = urlsplit(options.url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"not a Redis URL: {options!r}")
    url = options.url
    if options.tls and parts.scheme == "redis":
        url = urlunsplit(("rediss", *parts[1:]))
    retry = Retry(ExponentialBackoff(cap=0.05, base=0.005), options.retries)
    try:
        if urlsplit(url).scheme != "rediss":
            return redis.Redis.from_url(
                url,
                password=options.password,
                socket_timeout=options.socket_timeout_s,
                socket_connect_timeout=options.connect_timeout_s,
                retry=retry,
            )
        return redis.Redis.from_url(
            url,
            password=options.password,
            socket_timeout=options.socket_timeout_s,
            socket_connect_timeout=options.connect_timeout_s,
            retry=retry,
            ssl_ca_certs=options.tls_ca_file,
            ssl_certfile=options.tls_cert_file,
            ssl_keyfile=options.tls_key_file,
            ssl_check_hostname=options.tls_check_hostname,
        )
    except ValueError as exc:
        raise ConfigError(f"bad Redis configuration {options!r}: {exc}") from exc

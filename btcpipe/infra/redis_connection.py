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
        # The URL may carry a password; never print it. The port is taken as text: ``parts.port`` raises on
        # an out-of-range port, and a repr must describe a bad value, not fail on it.
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]
        safe = urlunsplit((parts.scheme, f"{host}:{port}" if port else host, parts.path, "", ""))
        return f"RedisOptions(url={safe!r}, tls={self.tls or parts.scheme == 'rediss'})"


def redis_url_problem(url: str) -> str | None:
    """What is wrong with a Redis URL (scheme, host, port 1–65535, database number), or None."""
    shown = repr(RedisOptions(url)).removeprefix("RedisOptions(url=").partition(", tls=")[0]  # no password
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # out of range or not a number
        return f"bad Redis URL {shown}: the port must be a number 1-65535"
    if parts.scheme not in ("redis", "rediss", "unix"):
        return f"not a Redis URL: {shown} (use redis://host:port/db, rediss://... or unix://path)"
    if parts.scheme != "unix" and not parts.hostname:
        return f"bad Redis URL {shown}: no host"
    if port == 0:
        return f"bad Redis URL {shown}: the port must be a number 1-65535"
    database = parts.path.strip("/")
    if parts.scheme != "unix" and database and not (database.isdigit() and int(database) < 2**16):
        return f"bad Redis URL {shown}: the database must be a number, got {database!r}"
    return None


def connect_redis(options: RedisOptions) -> redis.Redis[bytes]:
    """A client (its own connection pool) for ``options``; connects lazily on the first command."""
    problem = redis_url_problem(options.url)
    if problem:
        raise ConfigError(problem)
    parts = urlsplit(options.url)
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

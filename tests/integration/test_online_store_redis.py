"""Redis online store faults: a killed and restarted server, timeouts, passwords, corrupt values."""

from __future__ import annotations

import socket

import pytest
import redis

from btcpipe.domain.errors import StoreError
from btcpipe.domain.messages import FeatureVector1s
from btcpipe.infra.devservers import LOOPBACK, RedisServer
from btcpipe.infra.redis_connection import RedisOptions
from btcpipe.store.redis_store import RedisOnlineStore

pytestmark = pytest.mark.services

T0 = 1_723_100_000_000_000


def row(ts_sec: int) -> FeatureVector1s:
    return FeatureVector1s("BTCUSDT", ts_sec, "h", (1.0, 2.0), ts_sec + 10)


def test_a_killed_redis_gives_store_errors_and_the_store_recovers_after_restart() -> None:
    server = RedisServer()
    server.start()
    try:
        store = RedisOnlineStore(RedisOptions(server.url, connect_timeout_s=0.5, retries=0))
        store.put_features("BTCUSDT", T0, row(T0))
        server.kill()
        with pytest.raises(StoreError):
            store.get_latest("BTCUSDT")
        with pytest.raises(StoreError):
            store.put_features("BTCUSDT", T0 + 1_000_000, row(T0 + 1_000_000))
        server.restart()  # empty again: no persistence
        assert store.get_latest("BTCUSDT") is None
        store.put_features("BTCUSDT", T0 + 2_000_000, row(T0 + 2_000_000))  # the Lua script is loaded again
        assert store.get_latest("BTCUSDT") == row(T0 + 2_000_000)
    finally:
        server.stop()


def test_a_server_that_never_answers_times_out_as_a_store_error() -> None:
    with socket.socket() as silent:
        silent.bind((LOOPBACK, 0))
        silent.listen(8)  # accepts connections in the backlog, never replies
        port = silent.getsockname()[1]
        store = RedisOnlineStore(RedisOptions(f"redis://{LOOPBACK}:{port}/0", socket_timeout_s=0.2, retries=0))
        with pytest.raises(StoreError, match="failed"):
            store.get_features("BTCUSDT", T0)


def test_password_option_authenticates_and_a_wrong_password_is_a_store_error() -> None:
    with RedisServer(password="pw-123") as server:
        url = f"redis://{LOOPBACK}:{server.port}/0"
        store = RedisOnlineStore(RedisOptions(url, password="pw-123"))
        store.put_features("BTCUSDT", T0, row(T0))
        assert store.get_features("BTCUSDT", T0) == row(T0)
        with pytest.raises(StoreError):
            RedisOnlineStore(RedisOptions(url, password="wrong", retries=0)).get_latest("BTCUSDT")


def test_a_value_that_is_not_a_feature_row_is_a_store_error(redis_url: str) -> None:
    redis.Redis.from_url(redis_url).set(f"features:BTCUSDT:{T0}", b"{\"ret_1s\": 0.1}")
    with pytest.raises(StoreError, match="not a feature row"):
        RedisOnlineStore(RedisOptions(redis_url)).get_features("BTCUSDT", T0)


def test_rows_carry_the_requested_ttl_in_redis(redis_url: str) -> None:
    RedisOnlineStore(RedisOptions(redis_url)).put_features("BTCUSDT", T0, row(T0), ttl_s=120)
    client = redis.Redis.from_url(redis_url)
    assert 110 < client.ttl(f"features:BTCUSDT:{T0}") <= 120
    assert 110 < client.ttl("features:BTCUSDT:latest") <= 120

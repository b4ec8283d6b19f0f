"""Redis Streams adapter specifics: trimming behind a reader is counted, passwords, dead servers."""

from __future__ import annotations

import pytest
import redis

from btcpipe.bus.port import STREAM_TRADES, Position
from btcpipe.bus.positions import RedisPositionStore
from btcpipe.bus.redis_streams import RedisStreamsBus
from btcpipe.domain.errors import BusError
from btcpipe.infra.devservers import RedisServer, free_port
from btcpipe.infra.redis_connection import RedisOptions

pytestmark = pytest.mark.services


def test_entries_trimmed_before_a_reader_got_them_are_counted_as_lost(redis_url: str) -> None:
    bus = RedisStreamsBus(RedisOptions(redis_url), retention=10)
    bus.publish(STREAM_TRADES, "BTCUSDT", [b"first"])
    records, behind = bus.read(Position(STREAM_TRADES, "0"), 1)
    assert [r.payload for r in records] == [b"first"]
    bus.publish(STREAM_TRADES, "BTCUSDT", [str(i).encode() for i in range(3_000)])
    records, _ = bus.read(behind, 10_000)
    assert records
    assert int(records[0].payload) > 0  # the head was trimmed (MAXLEN ~ keeps whole nodes)
    assert bus.stats.lost == 1
    up_to_date = Position(STREAM_TRADES, "0", records[-1].id)
    bus.read(up_to_date, 10)
    assert bus.stats.lost == 1


def test_a_password_from_options_authenticates_and_a_wrong_one_is_a_bus_error() -> None:
    with RedisServer(password="s3cret-pw") as server:
        url = f"redis://127.0.0.1:{server.port}/0"
        bus = RedisStreamsBus(RedisOptions(url, password="s3cret-pw"))
        bus.publish(STREAM_TRADES, "BTCUSDT", [b"x"])
        assert [r.payload for r in bus.read(Position(STREAM_TRADES, "0"))[0]] == [b"x"]
        wrong = RedisStreamsBus(RedisOptions(url, password="nope"))
        with pytest.raises(BusError):
            wrong.publish(STREAM_TRADES, "BTCUSDT", [b"y"])
        assert "s3cret" not in repr(RedisOptions(f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"))


def test_a_redis_that_is_not_there_is_a_bus_error_on_publish_and_read() -> None:
    bus = RedisStreamsBus(RedisOptions(f"redis://127.0.0.1:{free_port()}/0", connect_timeout_s=0.5, retries=0))
    with pytest.raises(BusError, match="publishing"):
        bus.publish(STREAM_TRADES, "BTCUSDT", [b"x"])
    with pytest.raises(BusError, match="reading"):
        bus.read(Position(STREAM_TRADES, "0"))


def test_redis_position_store_replaces_positions_atomically_and_survives_a_new_client(redis_url: str) -> None:
    store = RedisPositionStore(RedisOptions(redis_url))
    store.save("proc", STREAM_TRADES, {"0": "1723-0", "1": "1724-3"})
    store.save("proc", STREAM_TRADES, {"0": "1800-0"})
    assert RedisPositionStore(redis.Redis.from_url(redis_url)).load("proc", STREAM_TRADES) == {"0": "1800-0"}
    assert store.load("proc", "features-1s") == {}

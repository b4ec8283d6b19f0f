"""The in-process bus: bounded by retention with counted drops, thread-safe, and its position stores."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from btcpipe.bus.memory import InProcessBus
from btcpipe.bus.port import Position
from btcpipe.bus.positions import FilePositionStore, InMemoryPositionStore
from btcpipe.domain.errors import BusError


def test_retention_drops_the_oldest_and_a_reader_behind_it_counts_what_it_lost() -> None:
    bus = InProcessBus(retention=100)
    start = Position("s", "0")
    bus.publish("s", "k", [b"0"])
    first, after_first = bus.read(start, 1)
    assert [r.payload for r in first] == [b"0"]
    bus.publish("s", "k", [str(i).encode() for i in range(1, 1_000)])
    assert bus.stats.trimmed >= 1_000 - 100 - 100 // 8
    records, _ = bus.read(after_first, 10_000)
    oldest = int(records[0].payload)
    assert oldest > 1
    assert bus.stats.lost == oldest - 1  # exactly the records between the reader and the oldest retained
    assert [int(r.payload) for r in records] == list(range(oldest, 1_000))


def test_reading_from_the_start_after_trimming_is_not_a_loss() -> None:
    bus = InProcessBus(retention=10)
    bus.publish("s", "k", [b"x"] * 100)
    records, _ = bus.read(Position("s", "0"), 1_000)
    assert records
    assert bus.stats.lost == 0


def test_concurrent_publishers_keep_each_keys_order() -> None:
    bus = InProcessBus(n_shards=2)
    keys = [f"SYM{i}" for i in range(6)]

    def publisher(key: str) -> None:
        for i in range(0, 500, 5):
            bus.publish("s", key, [f"{key}:{j}".encode() for j in range(i, i + 5)])

    threads = [threading.Thread(target=publisher, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got: dict[str, list[int]] = {k: [] for k in keys}
    for shard in bus.shards("s"):
        records, _ = bus.read(Position("s", shard), 100_000)
        ids = [int(r.id) for r in records]
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        for r in records:
            key, _, n = r.payload.decode().partition(":")
            assert bus.shard_for("s", key) == shard
            got[key].append(int(n))
    assert all(v == list(range(500)) for v in got.values())


def test_unknown_shard_and_foreign_position_are_bus_errors() -> None:
    bus = InProcessBus(n_shards=2)
    with pytest.raises(BusError, match="no shard"):
        bus.read(Position("s", "7"))
    with pytest.raises(BusError, match="position"):
        bus.read(Position("s", "0", "1700000000000-0"))


def test_close_wakes_a_blocked_reader_and_refuses_publishing() -> None:
    bus = InProcessBus()
    waiting = threading.Event()
    out: list[object] = []

    def reader() -> None:
        waiting.set()
        out.append(bus.read(Position("s", "0"), 10, block_ms=60_000))

    t = threading.Thread(target=reader)
    t.start()
    waiting.wait()
    bus.close()
    t.join(timeout=10)
    assert not t.is_alive()
    assert out == [([], Position("s", "0"))]
    with pytest.raises(BusError, match="closed"):
        bus.publish("s", "k", [b"x"])


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_position_store_saves_and_replaces_positions_per_consumer_and_stream(kind: str, tmp_path: Path) -> None:
    store = InMemoryPositionStore() if kind == "memory" else FilePositionStore(tmp_path / "pos")
    assert store.load("proc", "features-1s") == {}
    store.save("proc", "market-sbe-trade", {"0": "17", "1": "4"})
    store.save("proc", "features-1s", {"0": "3"})
    store.save("other", "market-sbe-trade", {"0": "99"})
    store.save("proc", "market-sbe-trade", {"0": "18"})
    assert store.load("proc", "market-sbe-trade") == {"0": "18"}
    assert store.load("proc", "features-1s") == {"0": "3"}
    assert store.load("other", "market-sbe-trade") == {"0": "99"}


def test_file_position_store_survives_a_new_instance_and_refuses_a_corrupt_file(tmp_path: Path) -> None:
    FilePositionStore(tmp_path).save("proc", "s", {"0": "1723-0"})
    assert FilePositionStore(tmp_path).load("proc", "s") == {"0": "1723-0"}
    (tmp_path / "proc.positions.json").write_text('{"s": {"0": "1723-0"')
    with pytest.raises(BusError, match="cannot read"):
        FilePositionStore(tmp_path).load("proc", "s")
    with pytest.raises(BusError, match="consumer name"):
        FilePositionStore(tmp_path).save("../escape", "s", {})

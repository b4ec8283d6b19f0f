"""Kinesis adapter against moto_server over HTTP: batching limits, re-sending only failed records, resume."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from btcpipe.bus.consumer import BusConsumer
from btcpipe.bus.kinesis import KinesisBus, kinesis_client
from btcpipe.bus.port import STREAM_TRADES, Position
from btcpipe.bus.positions import FilePositionStore
from btcpipe.domain.errors import BusError
from btcpipe.infra.devservers import MotoServer

pytestmark = pytest.mark.services


class InjectedPutFailures:
    """A real boto3 client whose PutRecords fails chosen entries: they are not sent, and the response
    marks them failed exactly as Kinesis does on throttling. Everything else goes to moto_server."""

    def __init__(self, client: Any, plan: list[set[int]]) -> None:
        self._client = client
        self.plan = plan  # per PutRecords call, the entry indexes to fail
        self.calls: list[list[bytes]] = []
        self.iterator_types: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_records(self, **kwargs: Any) -> dict[str, Any]:
        records = kwargs["Records"]
        self.calls.append([r["Data"] for r in records])
        fail = self.plan.pop(0) if self.plan else set()
        forward = [r for i, r in enumerate(records) if i not in fail]
        real = iter(self._client.put_records(StreamName=kwargs["StreamName"], Records=forward)["Records"]
                    if forward else [])
        out = [
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "injected"}
            if i in fail else next(real)
            for i in range(len(records))
        ]
        return {"FailedRecordCount": len(fail), "Records": out}

    def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        self.iterator_types.append(kwargs["ShardIteratorType"])
        result: dict[str, Any] = self._client.get_shard_iterator(**kwargs)
        return result


def make_bus(moto: MotoServer, plan: list[set[int]] | None = None, prefix: str | None = None,
             **kw: Any) -> tuple[KinesisBus, InjectedPutFailures]:
    client = InjectedPutFailures(kinesis_client(moto.endpoint), plan or [])
    bus = KinesisBus(client, prefix=prefix or f"k{uuid.uuid4().hex[:8]}-", poll_interval_s=0.01, backoff_s=0.001, **kw)
    bus.ensure_streams([STREAM_TRADES], shard_count=1)
    return bus, client


def read_shard(bus: KinesisBus) -> list[bytes]:
    shard = bus.shard_for(STREAM_TRADES, "BTCUSDT")
    position = Position(STREAM_TRADES, shard)
    out: list[bytes] = []
    while True:
        records, position = bus.read(position, 10_000)
        if not records:
            return out
        out.extend(r.payload for r in records)


def test_only_the_failed_records_of_a_put_are_sent_again(moto_server: MotoServer) -> None:
    bus, client = make_bus(moto_server, plan=[{1, 3, 7}])
    payloads = [f"p{i}".encode() for i in range(10)]
    assert bus.publish(STREAM_TRADES, "BTCUSDT", payloads) == 10
    assert client.calls == [payloads, [b"p1", b"p3", b"p7"]]
    assert bus.stats.publish_retries == 3
    got = read_shard(bus)
    assert sorted(got) == sorted(payloads)  # each exactly once
    assert got == [p for i, p in enumerate(payloads) if i not in (1, 3, 7)] + [b"p1", b"p3", b"p7"]


def test_publish_gives_up_with_a_bus_error_and_keeps_what_was_written(moto_server: MotoServer) -> None:
    bus, client = make_bus(moto_server, plan=[{0}, {0}, {0}], max_put_attempts=3)
    with pytest.raises(BusError, match="still failing after 3 attempts"):
        bus.publish(STREAM_TRADES, "BTCUSDT", [f"p{i}".encode() for i in range(5)])
    assert len(client.calls) == 3
    assert read_shard(bus) == [b"p1", b"p2", b"p3", b"p4"]


def test_put_records_batches_hold_at_most_500_records_and_5_mib(moto_server: MotoServer) -> None:
    bus, client = make_bus(moto_server)
    bus.publish(STREAM_TRADES, "BTCUSDT", [i.to_bytes(4, "big") for i in range(1_234)])
    assert [len(c) for c in client.calls] == [500, 500, 234]
    client.calls.clear()
    big = [bytes([i]) * 300_000 for i in range(20)]
    bus.publish(STREAM_TRADES, "BTCUSDT", big)
    assert len(client.calls) == 2
    assert all(sum(len(p) + len("BTCUSDT") for p in call) <= 5 * 1024 * 1024 for call in client.calls)
    assert [p for call in client.calls for p in call] == big


def test_a_record_over_one_mib_is_refused_clearly(moto_server: MotoServer) -> None:
    bus, _ = make_bus(moto_server)
    with pytest.raises(BusError, match="1 MiB"):
        bus.publish(STREAM_TRADES, "BTCUSDT", [b"x" * (1024 * 1024)])


def test_a_restarted_consumer_resumes_after_its_stored_sequence_number(moto_server: MotoServer, tmp_path: Path) -> None:
    bus, _ = make_bus(moto_server)
    bus.publish(STREAM_TRADES, "BTCUSDT", [f"p{i}".encode() for i in range(30)])
    first = BusConsumer(bus, STREAM_TRADES, bytes, name="proc", positions=FilePositionStore(tmp_path))
    seen = [d.value for d in first.poll(max_count=12)]
    first.commit()

    # A new process: a fresh client and bus with no cached iterators, positions from the file.
    again, client = make_bus(moto_server, prefix=bus.prefix)
    second = BusConsumer(again, STREAM_TRADES, bytes, name="proc", positions=FilePositionStore(tmp_path))
    while batch := second.poll(max_count=7):
        seen.extend(d.value for d in batch)
    assert seen == [f"p{i}".encode() for i in range(30)]
    assert client.iterator_types[0] == "AFTER_SEQUENCE_NUMBER"


def test_unreachable_kinesis_is_a_bus_error() -> None:
    from btcpipe.infra.devservers import free_port

    bus = KinesisBus(kinesis_client(f"http://127.0.0.1:{free_port()}", max_attempts=1, timeout_s=1))
    with pytest.raises(BusError, match="Kinesis"):
        bus.shards(STREAM_TRADES)


def test_ping_answers_for_a_reachable_stream_and_is_a_bus_error_otherwise(moto_server: MotoServer) -> None:
    from btcpipe.infra.devservers import free_port

    bus, _ = make_bus(moto_server)
    bus.ping()  # the readiness probe of a service on this bus
    unreachable = KinesisBus(kinesis_client(f"http://127.0.0.1:{free_port()}", max_attempts=1, timeout_s=0.5))
    with pytest.raises(BusError, match="Kinesis does not answer"):
        unreachable.ping()

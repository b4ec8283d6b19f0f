"""Helpers for the ingestor's integration tests: a simulated tape on the local exchange's real streams, a
clock that holds the replay until the client is connected, and a sink that lets a test await what arrived."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any

from btcpipe.binance.sbe_schema import TradesEvent
from btcpipe.binance.ws_client import MarketStreamClient, StreamSettings
from btcpipe.binance.ws_messages import MarketEvent
from btcpipe.domain.records import BestBidAsk, DepthDiff, Trade
from btcpipe.domain.tape import MarketTape
from btcpipe.exchange.server import LocalExchange
from btcpipe.exchange.streams.routes import StreamConfig
from btcpipe.market.config import SimConfig
from btcpipe.market.simulator import simulate

SYMBOL = "BTCUSDT"
API_KEY = "h10-ingest-key-7f3a9c1e5b"


def sim_tape(duration_s: int = 900, seed: int = 7) -> MarketTape:
    return simulate(SimConfig(seed=seed, duration_s=duration_s))


@contextlib.contextmanager
def exchange(tape: MarketTape, clock: Any, **stream_config: Any) -> Iterator[LocalExchange]:
    cfg = {"api_keys": frozenset({API_KEY}), "ping_interval_s": 0.2, "pong_timeout_s": 1.0,
           "shutdown_grace_s": 1.0, **stream_config}
    with LocalExchange(tape, clock=clock, streams=StreamConfig(**cfg)) as ex:
        yield ex


def settings(ex: LocalExchange, **overrides: Any) -> StreamSettings:
    values: dict[str, Any] = {"sbe_url": ex.ws_url, "json_url": ex.ws_url + "/json", "api_key": API_KEY,
                              "backoff_base_s": 0.02, "backoff_cap_s": 0.2, "silence_timeout_s": 5.0}
    values.update(overrides)
    return StreamSettings(**values)


class Collector:
    """A sink that keeps every event and wakes waiters; ``await wait_for(predicate)`` instead of sleeping."""

    def __init__(self) -> None:
        self.events: list[MarketEvent] = []
        self._changed = asyncio.Condition()

    async def __call__(self, event: MarketEvent) -> None:
        self.events.append(event)
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[Collector], bool], timeout: float = 20.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self)), timeout)

    def trades(self) -> list[Trade]:
        return [t for e in self.events if isinstance(e, TradesEvent) for t in e.trades]

    def trade_ids(self) -> list[int]:
        return [t.id for t in self.trades()]

    def diffs(self) -> list[DepthDiff]:
        return [e for e in self.events if isinstance(e, DepthDiff)]

    def tickers(self) -> list[BestBidAsk]:
        return [e for e in self.events if isinstance(e, BestBidAsk)]

    def last_trade_id(self) -> int:
        ids = self.trade_ids()
        return ids[-1] if ids else -1


@contextlib.asynccontextmanager
async def running(client: MarketStreamClient, sink: Callable[[MarketEvent], Awaitable[None]]) -> AsyncIterator[None]:
    """Run ``client`` into ``sink`` for the body of the ``async with``; stop it after (errors propagate)."""
    task = asyncio.create_task(client.run(sink))
    try:
        yield
    finally:
        client.stop()
        await asyncio.wait_for(task, 10)


def assert_contiguous(collector: Collector) -> None:
    """Trade ids and depth update ids delivered exactly once and without a hole."""
    ids = collector.trade_ids()
    assert ids, "no trades arrived"
    assert ids == list(range(ids[0], ids[0] + len(ids))), "trade ids duplicated, reordered or missing"
    diffs = collector.diffs()
    for prev, cur in itertools.pairwise(diffs):
        assert cur.first_update_id == prev.last_update_id + 1, f"depth diff hole/duplicate at U={cur.first_update_id}"


def without_receive_time(records: list[Any]) -> list[Any]:
    return [replace(r, ts_recv=0) for r in records]

"""The ingestor service on the local exchange's real streams and REST: gap fill, book resync, bronze, health."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from support.ingest import SYMBOL, exchange, settings, sim_tape

from btcpipe.binance.order_book import OrderBook
from btcpipe.binance.rest import BinanceRestClient
from btcpipe.binance.ws_client import MarketStreamClient
from btcpipe.bus.memory import InProcessBus
from btcpipe.bus.port import STREAM_BEST_BID_ASK, STREAM_DEPTH, STREAM_HEARTBEAT, STREAM_TRADES, Position
from btcpipe.domain.arrow_decimal import decimal_mantissas
from btcpipe.domain.errors import BusError
from btcpipe.domain.records import Trade
from btcpipe.domain.tape import MarketTape
from btcpipe.infra.clocks import ReplayClock
from btcpipe.infra.metrics import Metrics, serve_metrics
from btcpipe.lake.lake import Lake
from btcpipe.services.ingest.ingestor import Ingestor, IngestSettings
from btcpipe.wire.codec import decode_heartbeat, decode_trades

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def tape() -> MarketTape:
    return sim_tape()


def bus_trades(bus: InProcessBus) -> list[Trade]:
    records, _ = bus.read(Position(STREAM_TRADES, bus.shard_for(STREAM_TRADES, SYMBOL)), max_count=1_000_000)
    return [t for r in records for t in decode_trades(r.payload)]


def bus_count(bus: InProcessBus, stream: str) -> int:
    records, _ = bus.read(Position(stream, bus.shard_for(stream, SYMBOL)), max_count=1_000_000)
    return len(records)


def tape_trade_ids(tape: MarketTape, first: int, last: int) -> list[int]:
    return [int(i) for i in tape.trades.id if first <= i <= last]


async def run_until(ingestor: Ingestor, clock: ReplayClock, ex: object, until: object,
                    during: Sequence[object] = ()) -> None:
    """Start the replay once the ingestor is connected; apply ``during`` faults after the first trades."""
    control = ex.streams  # type: ignore[attr-defined]

    async def drive() -> None:
        await asyncio.to_thread(control.wait_until, lambda s: s.connections_open == 1)
        clock.start()
        control.wake()
        for fault in during:
            fault()  # type: ignore[operator]

    driver = asyncio.create_task(drive())
    await ingestor.run(until=until, duration_s=40)  # type: ignore[arg-type]
    await driver


def test_skipped_trade_is_filled_from_rest_and_published_in_id_order(tape: MarketTape) -> None:
    clock = ReplayClock(tape.start_us - 1, speed=10, held=True)
    skipped = int(tape.trades.id[150])
    stop_at = int(tape.trades.id[400])
    metrics = Metrics()
    bus = InProcessBus()
    with exchange(tape, clock) as ex, BinanceRestClient(ex.base_url) as rest:
        client = MarketStreamClient([SYMBOL], settings(ex), metrics=metrics)
        ingestor = Ingestor(client, bus, symbols=[SYMBOL], rest=rest, metrics=metrics)
        ex.streams.skip_trade(skipped)
        asyncio.run(run_until(ingestor, clock, ex, lambda i: i.last_trade_id(SYMBOL) >= stop_at))
    assert ex.streams.stats().skipped_trade_ids == [skipped]
    ids = [t.id for t in bus_trades(bus)]
    assert ids == tape_trade_ids(tape, int(tape.trades.id[0]), ids[-1]), "all ids once, in id order"
    assert [(g.first_missing, g.last_missing, g.filled) for g in ingestor.gaps] == [(skipped, skipped, True)]
    assert ingestor.stats.gap_fills == {"filled": 1}
    assert ingestor.stats.gap_trades_filled == 1
    exposition = metrics.exposition().decode()
    assert 'btcpipe_ingest_trade_gaps_total{symbol="BTCUSDT"} 1.0' in exposition
    assert 'btcpipe_ingest_gap_fills_total{outcome="filled",symbol="BTCUSDT"} 1.0' in exposition


def test_missed_depth_diff_resyncs_the_book_to_the_exchanges_book(tape: MarketTape) -> None:
    clock = ReplayClock(tape.start_us - 1, speed=10, held=True)
    metrics = Metrics()
    with exchange(tape, clock) as ex, BinanceRestClient(ex.base_url) as rest:
        client = MarketStreamClient([SYMBOL], settings(ex), metrics=metrics)
        ingestor = Ingestor(client, InProcessBus(), symbols=[SYMBOL], rest=rest, metrics=metrics)
        assert tape.depth is not None
        target_u = int(tape.depth.last_update_id[300])

        def resynced_and_past_target(ing: Ingestor) -> bool:
            book = ing.book(SYMBOL)
            return ing.stats.resyncs >= 1 and book is not None and book.last_update_id >= target_u

        asyncio.run(run_until(ingestor, clock, ex, resynced_and_past_target,
                              during=[ex.streams.skip_depth_update]))
        skipped = ex.streams.stats().skipped_depth
    live = ingestor.book(SYMBOL)
    assert live is not None
    assert len(skipped) == 1
    assert ingestor.stats.resyncs == 1
    assert ingestor.stats.snapshots == 2, "one snapshot to start, one after the missed diff"
    assert 'btcpipe_ingest_book_resyncs_total{symbol="BTCUSDT"} 1.0' in metrics.exposition().decode()
    # the tape's own book at the same update id: its initial book plus every diff up to it
    assert tape.initial_book is not None
    reference = OrderBook.from_snapshot(tape.initial_book)
    d = tape.depth
    for i in range(len(d)):
        u = int(d.last_update_id[i])
        if reference.last_update_id < u <= live.last_update_id:
            lo, hi = int(d.offsets[i]), int(d.offsets[i + 1])
            levels = list(zip(d.level_is_ask[lo:hi].tolist(), d.level_price[lo:hi].tolist(),
                              d.level_qty[lo:hi].tolist(), strict=True))
            reference.set_levels([(p, q) for a, p, q in levels if not a], [(p, q) for a, p, q in levels if a])
            reference.last_update_id = u
    assert reference.last_update_id == live.last_update_id
    assert live.bids == reference.bids
    assert live.asks == reference.asks


def test_bronze_receives_trades_book_tickers_depth_and_the_gap_fill(tape: MarketTape, tmp_path: Path) -> None:
    clock = ReplayClock(tape.start_us - 1, speed=10, held=True)
    skipped = int(tape.trades.id[100])
    stop_at = int(tape.trades.id[300])
    lake = Lake.open(str(tmp_path / "lake"))
    bus = InProcessBus()
    with exchange(tape, clock) as ex, BinanceRestClient(ex.base_url) as rest:
        client = MarketStreamClient([SYMBOL], settings(ex))
        ingestor = Ingestor(client, bus, symbols=[SYMBOL], rest=rest, lake=lake,
                            settings=IngestSettings(bronze_max_rows=200, bronze_max_age_s=0.5))
        ex.streams.skip_trade(skipped)
        asyncio.run(run_until(ingestor, clock, ex, lambda i: i.last_trade_id(SYMBOL) >= stop_at))
    trades = lake.read_bronze("trades", SYMBOL)
    published = bus_trades(bus)
    assert trades.column("id").to_pylist() == [t.id for t in published]
    assert list(decimal_mantissas(trades.column("price"))) == [t.price_mantissa for t in published]
    assert skipped in trades.column("id").to_pylist()
    assert lake.read_bronze("bookTicker", SYMBOL).num_rows == bus_count(bus, STREAM_BEST_BID_ASK) > 0
    depth = lake.read_bronze("depth", SYMBOL)
    assert depth.num_rows == bus_count(bus, STREAM_DEPTH) > 0
    firsts, lasts = depth.column("first_update_id").to_pylist(), depth.column("last_update_id").to_pylist()
    assert all(f == prev + 1 for prev, f in zip(lasts, firsts[1:], strict=False))
    manifests = [lake.manifest("trades", SYMBOL, day) for day in lake.bronze_days("trades", SYMBOL)]
    sources = {raw.source for m in manifests if m is not None for raw in m.raw}
    assert sources == {"ws", "rest-gapfill"}, "gap-filled trades are marked by their source in bronze"
    assert ingestor.bronze is not None
    assert ingestor.bronze.stats.failures == 0


def test_health_endpoint_and_metrics_report_the_running_ingestor(tape: MarketTape) -> None:
    clock = ReplayClock(tape.start_us - 1, speed=10, held=True)
    metrics = Metrics()
    seen: list[tuple[int, dict[str, object]]] = []
    with exchange(tape, clock) as ex, BinanceRestClient(ex.base_url) as rest:
        client = MarketStreamClient([SYMBOL], settings(ex), metrics=metrics)
        ingestor = Ingestor(client, InProcessBus(), symbols=[SYMBOL], rest=rest, metrics=metrics)
        server = serve_metrics(metrics, port=0, health=ingestor.health)
        base = f"http://127.0.0.1:{server.server_port}"

        def probe_once_synced(ing: Ingestor) -> bool:
            if ing.book(SYMBOL) is None or ing.stats.events.get("trade", 0) < 20:
                return False
            answer = httpx.get(f"{base}/healthz")
            seen.append((answer.status_code, answer.json()))
            return True

        asyncio.run(run_until(ingestor, clock, ex, probe_once_synced))
        after = httpx.get(f"{base}/healthz")
        exposition = httpx.get(f"{base}/metrics").text
        server.shutdown()
    status, body = seen[0]
    assert status == 200
    assert body["ok"] is True
    assert body["connected"] is True
    assert body["mode"] == "sbe"
    assert body["books_synced"] == {SYMBOL: True}
    assert after.status_code == 503, "a stopped ingestor is not healthy"
    for kind in ("trade", "bestBidAsk", "depth"):
        assert f'btcpipe_ingest_messages_total{{stream="{kind}",symbol="BTCUSDT"}}' in exposition
    assert "btcpipe_ingest_publish_latency_seconds_count" in exposition


class FlakyBus(InProcessBus):
    """The in-process bus failing its first ``failures`` publishes (a bus outage), then working."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def publish(self, stream: str, key: str, payloads: Sequence[bytes]) -> int:
        if self.failures > 0:
            self.failures -= 1
            raise BusError("simulated outage")
        return super().publish(stream, key, payloads)


def test_bus_outage_delays_but_loses_nothing(tape: MarketTape) -> None:
    clock = ReplayClock(tape.start_us - 1, speed=10, held=True)
    stop_at = int(tape.trades.id[200])
    bus = FlakyBus(failures=5)
    with exchange(tape, clock) as ex:
        client = MarketStreamClient([SYMBOL], settings(ex))
        ingestor = Ingestor(client, bus, symbols=[SYMBOL])
        asyncio.run(run_until(ingestor, clock, ex, lambda i: i.last_trade_id(SYMBOL) >= stop_at))
    ids = [t.id for t in bus_trades(bus)]
    assert ingestor.publisher.stats.errors == 5
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert ids[-1] >= stop_at
    assert sum(1 for _ in itertools.chain(ids)) == ingestor.stats.trades_published


def test_heartbeats_follow_the_exchange_clock_and_stop_when_the_clocks_disagree(tape: MarketTape) -> None:
    # The ingestor's clock is the exchange's: a heartbeat per second, after the trades of that second.
    clock = ReplayClock(tape.start_us - 1, speed=1, held=True)
    bus = InProcessBus()
    with exchange(tape, clock) as ex, BinanceRestClient(ex.base_url) as rest:
        client = MarketStreamClient([SYMBOL], settings(ex))
        ingestor = Ingestor(client, bus, symbols=[SYMBOL], rest=rest, now_us=clock.now_us)
        asyncio.run(run_until(ingestor, clock, ex, lambda i: i.stats.heartbeats >= 2))
    records, _ = bus.read(Position(STREAM_HEARTBEAT, bus.shard_for(STREAM_HEARTBEAT, SYMBOL)), max_count=100)
    beats = [decode_heartbeat(r.payload) for r in records]
    assert len(beats) >= 2
    assert all(b.symbol == SYMBOL and b.ts_event % 1_000_000 == 0 for b in beats)
    assert [b.ts_event for b in beats] == sorted({b.ts_event for b in beats})
    # The exchange replays the tape's own (old) times ten times faster; the ingestor keeps the system clock:
    # the clocks disagree (transit far past the tolerance), so no heartbeat at all.
    fast = ReplayClock(tape.start_us - 1, speed=10, held=True)
    bus = InProcessBus()
    stop_at = int(tape.trades.id[300])
    with exchange(tape, fast) as ex, BinanceRestClient(ex.base_url) as rest:
        client = MarketStreamClient([SYMBOL], settings(ex))
        ingestor = Ingestor(client, bus, symbols=[SYMBOL], rest=rest)  # its own (system) clock
        asyncio.run(run_until(ingestor, fast, ex, lambda i: i.last_trade_id(SYMBOL) >= stop_at))
    assert ingestor.stats.heartbeats == 0

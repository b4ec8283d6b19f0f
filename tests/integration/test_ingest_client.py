"""The WebSocket client against the local exchange's real SBE and JSON streams on loopback."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest
from support.ingest import (
    API_KEY,
    SYMBOL,
    Collector,
    assert_contiguous,
    exchange,
    running,
    settings,
    sim_tape,
    without_receive_time,
)

from btcpipe.binance.ws_client import MarketStreamClient
from btcpipe.domain.tape import MarketTape
from btcpipe.infra.clocks import ManualClock, ReplayClock
from btcpipe.infra.metrics import Metrics

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def tape() -> MarketTape:
    return sim_tape()


def test_sbe_and_json_streams_give_identical_normalized_records(tape: MarketTape) -> None:
    clock = ManualClock(tape.start_us)
    until = tape.start_us + 30_000_000
    last_id = int(tape.trades.id[tape.trades.ts_event <= until][-1])
    assert tape.best_bid_asks is not None
    last_ticker = int(tape.best_bid_asks.update_id[tape.best_bid_asks.ts_event <= until][-1])
    with exchange(tape, clock) as ex:
        sbe_client = MarketStreamClient([SYMBOL], settings(ex))
        json_client = MarketStreamClient([SYMBOL], settings(ex, api_key=None))
        sbe_events, json_events = Collector(), Collector()

        async def scenario() -> None:
            async with running(sbe_client, sbe_events), running(json_client, json_events):
                await asyncio.to_thread(ex.streams.wait_until, lambda s: s.connections_open == 2)
                clock.set(until)
                ex.streams.wake()
                for events in (sbe_events, json_events):
                    await events.wait_for(lambda c: c.last_trade_id() >= last_id)
                    # the streams are separate connections: each client must also have read every ticker
                    await events.wait_for(lambda c: bool(c.tickers()) and c.tickers()[-1].update_id >= last_ticker)
                # everything up to `until` has been replayed; wait for both to hold the same last diff
                want = max(d.last_update_id for d in sbe_events.diffs())
                await json_events.wait_for(lambda c: bool(c.diffs()) and c.diffs()[-1].last_update_id >= want)

        asyncio.run(scenario())
    assert sbe_client.mode == "sbe"
    assert json_client.mode == "json"
    assert sbe_events.trades()
    assert sbe_events.diffs()
    assert sbe_events.tickers()
    assert without_receive_time(sbe_events.trades()) == without_receive_time(json_events.trades())
    assert without_receive_time(sbe_events.diffs()) == without_receive_time(json_events.diffs())
    # JSON bookTicker has no event time on Binance: every other field agrees.
    assert [replace(b, ts_recv=0, ts_event=0) for b in sbe_events.tickers()] == [
        replace(b, ts_recv=0, ts_event=0) for b in json_events.tickers()
    ]


def test_client_reconnects_after_the_connection_drops(tape: MarketTape) -> None:
    clock = ReplayClock(tape.start_us, speed=5, held=True)
    with exchange(tape, clock) as ex:
        client = MarketStreamClient([SYMBOL], settings(ex))
        events = Collector()

        async def scenario() -> None:
            async with running(client, events):
                await asyncio.to_thread(ex.streams.wait_until, lambda s: s.connections_open == 1)
                clock.start()
                await events.wait_for(lambda c: len(c.trade_ids()) >= 20)
                assert await asyncio.to_thread(ex.streams.drop_connections) == 1
                before = len(events.trade_ids())
                await events.wait_for(
                    lambda c: client.stats.connections_opened == 2 and len(c.trade_ids()) > before + 20
                )

        asyncio.run(scenario())
    assert client.stats.reconnects == {"closed": 1}
    assert ex.streams.stats().connections_opened == 2


def test_server_shutdown_is_honoured_by_opening_the_new_connection_first_without_loss(tape: MarketTape) -> None:
    clock = ReplayClock(tape.start_us, speed=5, held=True)
    with exchange(tape, clock, shutdown_grace_s=1.0) as ex:
        client = MarketStreamClient([SYMBOL], settings(ex))
        events = Collector()

        async def scenario() -> None:
            async with running(client, events):
                await asyncio.to_thread(ex.streams.wait_until, lambda s: s.connections_open == 1)
                clock.start()
                await events.wait_for(lambda c: len(c.trade_ids()) >= 20)
                assert await asyncio.to_thread(ex.streams.server_shutdown) == 1
                # the replacement is open while the old connection still is
                await asyncio.to_thread(
                    ex.streams.wait_until, lambda s: s.connections_opened == 2 and s.connections_open == 2
                )
                await events.wait_for(lambda c: client.stats.reconnects.get("server_shutdown") == 1)
                after = len(events.trade_ids())
                await events.wait_for(lambda c: len(c.trade_ids()) > after + 30)

        asyncio.run(scenario())
    assert client.stats.reconnects == {"server_shutdown": 1}
    assert client.stats.rotation_timeouts == 0
    assert_contiguous(events)


def test_rotation_before_max_age_has_no_duplicates_and_no_loss(tape: MarketTape) -> None:
    clock = ReplayClock(tape.start_us, speed=5, held=True)
    with exchange(tape, clock, max_connection_age_s=1.5) as ex:
        client = MarketStreamClient([SYMBOL], settings(ex, max_connection_age_s=1.5, rotate_before_s=1.0))
        events = Collector()

        async def scenario() -> None:
            async with running(client, events):
                await asyncio.to_thread(ex.streams.wait_until, lambda s: s.connections_open >= 1)
                clock.start()
                await events.wait_for(lambda c: client.stats.reconnects.get("max_age", 0) >= 3)

        asyncio.run(scenario())
    assert set(client.stats.reconnects) == {"max_age"}
    assert ex.streams.stats().closed_max_age == 0, "the client must rotate before the server's age limit"
    assert client.stats.duplicates_dropped > 0, "the connections overlapped, so some events came twice"
    assert_contiguous(events)


def test_silence_watchdog_reconnects_a_stalled_stream(tape: MarketTape) -> None:
    clock = ReplayClock(tape.start_us, speed=5, held=True)
    with exchange(tape, clock) as ex:
        client = MarketStreamClient([SYMBOL], settings(ex, silence_timeout_s=0.5))
        events = Collector()

        async def scenario() -> None:
            async with running(client, events):
                await asyncio.to_thread(ex.streams.wait_until, lambda s: s.connections_open == 1)
                clock.start()
                await events.wait_for(lambda c: len(c.events) >= 50)
                await asyncio.to_thread(ex.streams.stall, 1.5)
                await events.wait_for(lambda c: client.stats.reconnects.get("silence", 0) >= 1, timeout=10)
                after = len(events.events)
                await events.wait_for(lambda c: len(c.events) > after + 50, timeout=10)

        asyncio.run(scenario())
    assert client.stats.reconnects.get("silence", 0) >= 1
    assert ex.streams.stats().connections_opened >= 2


def test_garbage_frame_is_counted_logged_and_skipped(tape: MarketTape, caplog: pytest.LogCaptureFixture) -> None:
    clock = ReplayClock(tape.start_us, speed=5, held=True)
    metrics = Metrics()
    with exchange(tape, clock) as ex:
        client = MarketStreamClient([SYMBOL], settings(ex), metrics=metrics)
        events = Collector()

        async def scenario() -> None:
            async with running(client, events):
                await asyncio.to_thread(ex.streams.wait_until, lambda s: s.connections_open == 1)
                clock.start()
                await events.wait_for(lambda c: len(c.events) >= 20)
                assert await asyncio.to_thread(ex.streams.send_garbage) == 1
                await events.wait_for(lambda c: client.stats.decode_errors == 1)
                after = len(events.events)
                await events.wait_for(lambda c: len(c.events) > after + 20)

        with caplog.at_level(logging.WARNING, logger="btcpipe.binance.ws_client"):
            asyncio.run(scenario())
    assert client.stats.decode_errors == 1
    assert client.stats.reconnects == {}, "a bad frame is skipped, the connection kept"
    exposition = metrics.exposition().decode()
    assert 'btcpipe_ingest_decode_errors_total{error="' in exposition
    assert any(r.getMessage() == "undecodable stream frame skipped" for r in caplog.records)
    assert_contiguous(events)


def test_refused_api_key_falls_back_to_json_streams_with_a_loud_warning(
    tape: MarketTape, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ReplayClock(tape.start_us, speed=5, held=True)
    with exchange(tape, clock, api_keys=frozenset({"another-key"})) as ex:
        client = MarketStreamClient([SYMBOL], settings(ex))
        events = Collector()

        async def scenario() -> None:
            async with running(client, events):
                await asyncio.to_thread(ex.streams.wait_until, lambda s: s.connections_open == 1)
                clock.start()
                await events.wait_for(lambda c: len(c.trade_ids()) >= 10)

        with caplog.at_level(logging.WARNING, logger="btcpipe.binance.ws_client"):
            asyncio.run(scenario())
    assert client.mode == "json"
    assert client.stats.fallbacks_to_json == 1
    assert ex.streams.stats().refused_403 == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("refused the API key" in r.getMessage() and "JSON streams" in r.getMessage() for r in warnings)
    assert_contiguous(events)


def test_missing_api_key_uses_json_streams_and_warns(tape: MarketTape, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="btcpipe.binance.ws_client"), exchange(tape, ManualClock(0)) as ex:
        client = MarketStreamClient([SYMBOL], settings(ex, api_key=None))
    assert client.mode == "json"
    assert client.url().startswith(ex.ws_url + "/json/stream?streams=btcusdt@trade/")
    assert client.url().endswith("&timeUnit=MICROSECOND")
    assert any("no API key configured" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_api_key_never_appears_in_logs_or_reprs(tape: MarketTape, caplog: pytest.LogCaptureFixture) -> None:
    clock = ReplayClock(tape.start_us, speed=5, held=True)
    with exchange(tape, clock) as ex:
        accepted = MarketStreamClient([SYMBOL], settings(ex))
        events = Collector()

        async def scenario() -> None:
            async with running(accepted, events):
                await asyncio.to_thread(ex.streams.wait_until, lambda s: s.connections_open == 1)
                clock.start()
                await events.wait_for(lambda c: len(c.trade_ids()) >= 5)
                await asyncio.to_thread(ex.streams.drop_connections)
                await events.wait_for(lambda c: accepted.stats.connections_opened == 2)
            await asyncio.to_thread(ex.streams.set_api_keys, {"another-key"})
            refused = MarketStreamClient([SYMBOL], settings(ex))
            more = Collector()
            async with running(refused, more):
                await more.wait_for(lambda c: len(c.events) >= 5)
            assert refused.mode == "json"

        with caplog.at_level(logging.DEBUG):
            asyncio.run(scenario())
    assert caplog.records, "the scenario logs (connects, drops, refusal)"
    for record in caplog.records:
        assert API_KEY not in record.getMessage()
        assert API_KEY not in repr(record.__dict__)
    assert API_KEY not in repr(accepted.settings)
    assert API_KEY not in repr(accepted.stats)

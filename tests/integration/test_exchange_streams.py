"""The local exchange's WebSocket streams over real loopback sockets: SBE and JSON content, auth, refusals.

The exchange runs on a ``ManualClock``: a test waits until the replay has caught up with the clock, connects,
then moves the clock and expects exactly the tape's events of that window, in order.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import orjson
import pytest
from support.streams import (
    KEY,
    Received,
    Window,
    collect,
    decode_all,
    event_time,
    expected_bba_ids,
    expected_depth_ids,
    expected_trade_groups,
    handshake_status,
    parse_json_frame,
    run,
    wait_clients_then_play,
)

from btcpipe.binance.sbe import TradesEvent
from btcpipe.domain.records import BestBidAsk, DepthDiff, DepthSnapshot, Trade
from btcpipe.domain.tape import MarketTape
from btcpipe.domain.time import US_PER_SEC
from btcpipe.exchange.server import LocalExchange
from btcpipe.exchange.streams.routes import StreamConfig
from btcpipe.infra.clocks import ManualClock
from btcpipe.market.simulator import SimConfig, simulate

SBE_HEADERS = {"X-MBX-APIKEY": KEY}


@pytest.fixture(scope="module")
def tape() -> MarketTape:
    return simulate(SimConfig(seed=7, duration_s=600))


@pytest.fixture(scope="module")
def clock(tape: MarketTape) -> ManualClock:
    return ManualClock(tape.start_us + US_PER_SEC)


@pytest.fixture(scope="module")
def exchange(tape: MarketTape, clock: ManualClock) -> Iterator[LocalExchange]:
    cfg = StreamConfig(api_keys=frozenset({KEY}), ping_interval_s=0.5, pong_timeout_s=5.0)
    with LocalExchange(tape, clock=clock, streams=cfg) as ex:
        yield ex


def test_sbe_combined_stream_frames_decode_to_the_tapes_events_in_time_order(
    exchange: LocalExchange, clock: ManualClock, tape: MarketTape
) -> None:
    window = Window(exchange, clock, 5.0)
    groups = expected_trade_groups(tape, window.start, window.end)
    bba = expected_bba_ids(tape, window.start, window.end)
    depth = expected_depth_ids(tape, window.start, window.end)
    n_expected = len(groups) + len(bba) + len(depth)
    assert len(groups) > 5
    assert len(bba) > 5
    assert len(depth) > 5
    url = f"{exchange.ws_url}/stream?streams=btcusdt@trade/btcusdt@bestBidAsk/btcusdt@depth"
    got = run(
        collect(url, headers=SBE_HEADERS, until=lambda r: len(r.binary) >= n_expected,
                on_open=lambda: window.play_when_connected(1))
    )
    records = decode_all(got.binary)
    assert len(records) == n_expected
    trade_events = [r for r in records if isinstance(r, TradesEvent)]
    assert [[t.id for t in e.trades] for e in trade_events] == groups
    assert all(t.ts_event == e.transact_time for e in trade_events for t in e.trades)
    assert [r.update_id for r in records if isinstance(r, BestBidAsk)] == bba
    assert [(r.first_update_id, r.last_update_id) for r in records if isinstance(r, DepthDiff)] == depth
    times = [event_time(r) for r in records]
    assert times == sorted(times)
    # Exact values: a trade on the wire equals the tape's row.
    first = trade_events[0].trades[0]
    i = int((tape.trades.id == first.id).argmax())
    assert (first.price_mantissa, first.qty_mantissa, first.is_buyer_maker) == (
        int(tape.trades.price[i]), int(tape.trades.qty[i]), bool(tape.trades.is_buyer_maker[i])
    )


def test_sbe_depth20_snapshots_come_every_50ms_of_tape_time_and_match_the_book(
    exchange: LocalExchange, clock: ManualClock, tape: MarketTape
) -> None:
    window = Window(exchange, clock, 1.0)
    grid = [g for g in range(window.start - window.start % 50_000 + 50_000, window.end + 1, 50_000)]
    got = run(
        collect(f"{exchange.ws_url}/ws/btcusdt@depth20", headers=SBE_HEADERS,
                until=lambda r: len(r.binary) >= len(grid), on_open=lambda: window.play_when_connected(1))
    )
    snaps = [s for s in decode_all(got.binary) if isinstance(s, DepthSnapshot)]
    assert len(snaps) == len(got.binary)
    assert [s.ts_event for s in snaps] == grid
    book = exchange.state.markets["BTCUSDT"].book
    for snap in snaps:
        rest = book.snapshot(snap.ts_event, 20)  # the REST book at the same instant
        assert (snap.last_update_id, snap.bids, snap.asks) == (rest.last_update_id, rest.bids, rest.asks)
        assert 0 < len(snap.bids) <= 20
        assert snap.bids[0][0] < snap.asks[0][0]


def test_json_combined_stream_gives_the_same_normalized_records_as_sbe(
    exchange: LocalExchange, clock: ManualClock, tape: MarketTape
) -> None:
    window = Window(exchange, clock, 4.0)
    groups = expected_trade_groups(tape, window.start, window.end)
    n_trades = sum(len(g) for g in groups)
    n_bba = len(expected_bba_ids(tape, window.start, window.end))
    n_depth = len(expected_depth_ids(tape, window.start, window.end))
    streams = "btcusdt@trade/btcusdt@bookTicker/btcusdt@depth@100ms"
    sbe_url = f"{exchange.ws_url}/stream?streams=btcusdt@trade/btcusdt@bestBidAsk/btcusdt@depth"
    json_us = f"{exchange.ws_url}/json/stream?streams={streams}&timeUnit=MICROSECOND"
    json_ms = f"{exchange.ws_url}/json/stream?streams={streams}"

    async def three() -> list[Received]:
        n_json = n_trades + n_bba + n_depth
        n_sbe = len(groups) + n_bba + n_depth
        return list(
            await asyncio.gather(
                collect(sbe_url, headers=SBE_HEADERS, until=lambda r: len(r.binary) >= n_sbe),
                collect(json_us, until=lambda r: len(r.text) >= n_json),
                collect(json_ms, until=lambda r: len(r.text) >= n_json),
                asyncio.to_thread(wait_clients_then_play, window, 3),
            )
        )[:3]  # type: ignore[return-value]

    sbe, js_us, js_ms = run(three())
    sbe_records: list[Trade | BestBidAsk | DepthDiff] = []
    for rec in decode_all(sbe.binary):
        if isinstance(rec, TradesEvent):
            sbe_records.extend(rec.trades)
        elif isinstance(rec, BestBidAsk):
            sbe_records.append(dataclasses.replace(rec, ts_event=0))
        elif isinstance(rec, DepthDiff):
            sbe_records.append(rec)
    parsed_us = [parse_json_frame(t, micros=True) for t in js_us.text]
    assert {name for name, _ in parsed_us} == set(streams.split("/"))
    assert [rec for _, rec in parsed_us] == sbe_records
    # Without timeUnit the times are ms: the same records with µs truncated to the millisecond.
    parsed_ms = [rec for _, rec in (parse_json_frame(t, micros=False) for t in js_ms.text)]
    assert len(parsed_ms) == len(sbe_records)
    for ms_rec, us_rec in zip(parsed_ms, sbe_records, strict=True):
        if isinstance(us_rec, Trade | DepthDiff):
            assert ms_rec == dataclasses.replace(us_rec, ts_event=us_rec.ts_event // 1000 * 1000)
        else:
            assert ms_rec == us_rec


def test_json_single_stream_sends_bare_binance_trade_messages(
    exchange: LocalExchange, clock: ManualClock, tape: MarketTape
) -> None:
    window = Window(exchange, clock, 3.0)
    ids = [i for g in expected_trade_groups(tape, window.start, window.end) for i in g]
    got = run(
        collect(f"{exchange.ws_url}/json/ws/btcusdt@trade", until=lambda r: len(r.text) >= len(ids),
                on_open=lambda: window.play_when_connected(1))
    )
    msgs = [orjson.loads(t) for t in got.text]
    assert [m["t"] for m in msgs] == ids
    first = msgs[0]
    assert set(first) == {"e", "E", "s", "t", "p", "q", "T", "m", "M"}
    assert first["e"] == "trade"
    assert first["s"] == "BTCUSDT"
    assert first["T"] < 10**13
    assert first["p"].count(".") == 1
    assert len(first["p"].split(".")[1]) == 8


def test_sbe_handshake_without_a_key_is_refused_401_and_with_a_wrong_key_403(exchange: LocalExchange) -> None:
    url = f"{exchange.ws_url}/ws/btcusdt@trade"
    before = exchange.streams.stats()
    assert run(handshake_status(url)) == 401
    assert run(handshake_status(url, {"X-MBX-APIKEY": "not-a-key"})) == 403
    assert run(handshake_status(url, SBE_HEADERS)) == 101
    assert run(handshake_status(f"{exchange.ws_url}/json/ws/btcusdt@trade")) == 101  # JSON needs no key
    after = exchange.streams.stats()
    assert (after.refused_401 - before.refused_401, after.refused_403 - before.refused_403) == (1, 1)


def test_api_keys_can_be_replaced_at_runtime(exchange: LocalExchange) -> None:
    url = f"{exchange.ws_url}/ws/btcusdt@trade"
    exchange.streams.set_api_keys({"rotated"})
    try:
        assert run(handshake_status(url, SBE_HEADERS)) == 403
        assert run(handshake_status(url, {"X-MBX-APIKEY": "rotated"})) == 101
    finally:
        exchange.streams.set_api_keys({KEY})


@pytest.mark.parametrize(
    "path",
    [
        "/ws/btcusdt@bookTicker",  # a JSON name on the SBE path
        "/ws/ethusdt@trade",  # a symbol the exchange does not serve
        "/ws/BTCUSDT@trade",  # symbols are lowercase
        "/json/ws/btcusdt@bestBidAsk",
        "/json/stream?streams=btcusdt@trade&timeUnit=NANOSECOND",
    ],
)
def test_unknown_streams_are_refused_400_before_the_upgrade(exchange: LocalExchange, path: str) -> None:
    assert run(handshake_status(exchange.ws_url + path, SBE_HEADERS)) == 400


def test_json_periodic_streams_tick_at_binance_s_documented_rates(
    exchange: LocalExchange, clock: ManualClock
) -> None:
    window = Window(exchange, clock, 5.0)
    names = ["btcusdt@depth20", "btcusdt@depth5@100ms", "btcusdt@depth", "btcusdt@kline_1s", "btcusdt@miniTicker"]
    url = f"{exchange.ws_url}/json/stream?streams={'/'.join(names)}"

    def by_stream(r: Received) -> dict[str, list[dict[str, object]]]:
        out: dict[str, list[dict[str, object]]] = {n: [] for n in names}
        for text in r.text:
            msg = orjson.loads(text)
            out[msg["stream"]].append(msg["data"])
        return out

    want = {"btcusdt@depth20": 5, "btcusdt@depth5@100ms": 50, "btcusdt@depth": 5, "btcusdt@kline_1s": 5,
            "btcusdt@miniTicker": 5}
    got = run(collect(url, until=lambda r: all(len(v) >= want[k] for k, v in by_stream(r).items()),
                      on_open=lambda: window.play_when_connected(1)))
    streams = by_stream(got)
    second, tenth = 1_000_000, 100_000
    first_second = (window.start // second + 1) * second
    seconds = [(first_second + i * second) // 1000 for i in range(5)]
    tenths = [((window.start // tenth + 1) * tenth + i * tenth) // 1000 for i in range(50)]
    # 1000 ms for depth<N>, the merged depth diffs, 1s klines and the mini ticker; 100 ms for depth<N>@100ms.
    assert [m["E"] for m in streams["btcusdt@depth"]] == seconds
    assert [m["E"] for m in streams["btcusdt@kline_1s"]] == seconds
    assert [m["E"] for m in streams["btcusdt@miniTicker"]] == seconds
    assert len(streams["btcusdt@depth20"]) == 5
    assert len(streams["btcusdt@depth5@100ms"]) == 50
    assert all(len(m["bids"]) == 5 for m in streams["btcusdt@depth5@100ms"])  # type: ignore[arg-type]
    assert tenths[-1] <= window.end // 1000  # all fifty 100 ms ticks lie in the window

"""Replay by the exchange clock: accelerated real time from a start offset, shared with REST; and the real
recording served back over SBE and JSON equal to what Binance sent."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from support.streams import (
    KEY,
    Received,
    Window,
    collect,
    decode_all,
    event_time,
    parse_json_frame,
    run,
    wait_clients_then_play,
)

from btcpipe.binance.json_messages import parse_trade
from btcpipe.binance.recording import iter_lines, load_recording
from btcpipe.binance.sbe import TradesEvent, decode
from btcpipe.domain.records import BestBidAsk, DepthDiff
from btcpipe.domain.time import US_PER_SEC
from btcpipe.exchange.server import LocalExchange
from btcpipe.exchange.streams.routes import StreamConfig, replay_clock
from btcpipe.infra.clocks import ManualClock
from btcpipe.market.simulator import SimConfig, simulate

SBE_HEADERS = {"X-MBX-APIKEY": KEY}


def test_accelerated_replay_from_an_offset_is_complete_ordered_paced_and_shared_with_rest() -> None:
    tape = simulate(SimConfig(seed=5, duration_s=900))
    speed, offset_s, span_us = 20.0, 300.0, 8 * US_PER_SEC
    clock = replay_clock(tape, speed=speed, start_offset_s=offset_s)
    with LocalExchange(tape, clock=clock, streams=StreamConfig(api_keys=frozenset({KEY}))) as ex:
        url = f"{ex.ws_url}/stream?streams=btcusdt@trade/btcusdt@depth"

        def covered(r: Received) -> bool:
            return len(r.binary) > 1 and event_time(decode(r.binary[-1])) - event_time(decode(r.binary[0])) >= span_us

        got = run(collect(url, headers=SBE_HEADERS, until=covered, timeout=30))
        with httpx.Client(base_url=ex.base_url) as rest:
            latest = rest.get("/api/v3/trades", params={"symbol": "BTCUSDT", "limit": 1}).json()[0]
        now_after = clock.now_us()
    records = decode_all(got.binary)
    times = [event_time(r) for r in records]
    assert times == sorted(times)
    assert times[0] >= tape.start_us + int(offset_s * US_PER_SEC)  # began mid-tape, not at its start
    trades = [t for r in records if isinstance(r, TradesEvent) for t in r.trades]
    t = tape.trades
    lo, hi = np.searchsorted(t.id, trades[0].id), np.searchsorted(t.id, trades[-1].id, side="right")
    assert [x.id for x in trades] == t.id[lo:hi].tolist()  # nothing missing in between
    diffs = [r for r in records if isinstance(r, DepthDiff)]
    assert all(b.first_update_id == a.last_update_id + 1 for a, b in itertools.pairwise(diffs))
    # Paced by the clock: 8 s of tape at 20x takes about 0.4 s of wall time (a lower bound holds under load).
    wall = got.arrival[-1] - got.arrival[0]
    assert wall >= 0.5 * (times[-1] - times[0]) / speed / US_PER_SEC
    # REST shows exactly what has happened by the shared clock: at least what streamed, nothing from the future.
    assert latest["id"] >= trades[-1].id
    assert latest["time"] * 1000 <= now_after


def test_the_real_recording_streams_back_over_sbe_and_json_as_binance_sent_it(
    recording_paths: list[Path],
) -> None:
    recording = load_recording(recording_paths)
    tape = recording.to_tape()
    clock = ManualClock(tape.start_us + 200 * US_PER_SEC)
    with LocalExchange(tape, clock=clock, streams=StreamConfig(api_keys=frozenset({KEY}))) as ex:
        window = Window(ex, clock, 15.0)
        start, end = window.start, window.end
        # A trade goes out at its event time E (as Binance sent it), not at its trade time T.
        sent = {t.id: e for t, e in zip(recording.trades, recording.trade_event_times, strict=True)}
        trades = [t for t in recording.trades if start < sent[t.id] <= end]
        tickers = [b for b in recording.best_bid_asks if start < b.ts_event <= end]
        diffs = [d for d in recording.depth_diffs if start < d.ts_event <= end]
        assert len(trades) > 50
        assert len(tickers) > 50
        assert len(diffs) > 50
        n_groups = len({(t.ts_event, sent[t.id]) for t in trades})  # no taker ids: one event per (T, E)
        n_sbe = n_groups + len(tickers) + len(diffs)
        sbe_url = f"{ex.ws_url}/stream?streams=btcusdt@trade/btcusdt@bestBidAsk/btcusdt@depth"
        json_url = f"{ex.ws_url}/json/stream?streams=btcusdt@trade/btcusdt@depth@100ms"

        async def both() -> tuple[Received, Received]:
            sbe, js, _ = await asyncio.gather(
                collect(sbe_url, headers=SBE_HEADERS, until=lambda r: len(r.binary) >= n_sbe),
                collect(json_url, until=lambda r: len(r.text) >= len(trades) + len(diffs)),
                asyncio.to_thread(wait_clients_then_play, window, 2),
            )
            return sbe, js

        sbe, js = run(both())
    records = decode_all(sbe.binary)
    got_trades = [t for r in records if isinstance(r, TradesEvent) for t in r.trades]
    assert [_no_recv(t) for t in got_trades] == [_no_recv(t) for t in trades]
    assert [_no_recv(b) for b in records if isinstance(b, BestBidAsk)] == [_no_recv(b) for b in tickers]
    assert [r for r in records if isinstance(r, DepthDiff)] == [_no_recv(d) for d in diffs]
    # The JSON path: trade messages parse to the recorded trades, depth updates to the recorded diffs.
    parsed = [rec for _, rec in (parse_json_frame(t, micros=False) for t in js.text)]
    assert [p for p in parsed if not isinstance(p, DepthDiff)] == [_no_recv(t) for t in trades]
    assert [p for p in parsed if isinstance(p, DepthDiff)] == [_no_recv(d) for d in diffs]
    # ... and equal Binance's own JSON for the same trades, field by field, the event time E included.
    recorded: dict[int, dict[str, Any]] = {}
    for line in iter_lines(recording_paths):
        data = line.message.get("data")
        if isinstance(data, dict) and data.get("e") == "trade":
            recorded[int(data["t"])] = data
    assert all(parse_trade(recorded[t.id]) == _no_recv(t) for t in got_trades)
    served = [orjson.loads(t)["data"] for t in js.text if '"e":"trade"' in t]
    assert served == [recorded[t.id] for t in trades]
    assert sum(d["E"] != d["T"] for d in served) > 0  # the recording's own E, not the trade time
    sbe_times = {t.id: ev.event_time for ev in records if isinstance(ev, TradesEvent) for t in ev.trades}
    assert all(sbe_times[t.id] == sent[t.id] for t in trades)  # SBE eventTime too (ms → µs)


def _no_recv(rec: object) -> object:
    return dataclasses.replace(rec, ts_recv=0)  # type: ignore[type-var]

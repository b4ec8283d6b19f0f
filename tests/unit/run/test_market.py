"""``btcpipe run``'s pure parts: placing a market on the wall clock, durations, the live statistics."""

from __future__ import annotations

import io
import logging
import math
from dataclasses import replace

import numpy as np
import pytest

from btcpipe.cli.wiring.run import parse_duration
from btcpipe.domain.errors import ConfigError, DataError
from btcpipe.domain.messages import FeatureVector1s, Prediction1s
from btcpipe.domain.records import Trade
from btcpipe.domain.time import US_PER_MS, US_PER_SEC
from btcpipe.market.simulator import SimConfig, simulate
from btcpipe.run.live_stats import (
    HOP_EXCHANGE_INGEST,
    HOP_FEATURE_ROW,
    HOP_INGEST_BUS,
    HOP_PREDICTION,
    LiveStats,
)
from btcpipe.run.market import SIM_TAIL_S, recorded_market, shift_tape, simulated_market
from btcpipe.run.view import HopLatency, LiveSnapshot, LogRunView, RichRunView
from btcpipe.services.infer.shadow import ShadowRow

NOW = 1_795_000_000_123_456  # not on a whole second on purpose


def test_simulated_market_ends_its_history_at_the_current_second_and_runs_on_past_the_live_part() -> None:
    market = simulated_market(now_us=NOW, history_s=600, live_s=30, seed=3)
    assert market.live_start_us == NOW - NOW % US_PER_SEC
    assert market.history_start_us == market.live_start_us - 600 * US_PER_SEC
    assert market.tape is not None
    trades = market.tape.trades
    assert int(trades.ts_event[0]) >= market.history_start_us
    # trades on both sides of "now": history to backfill, the rest to stream
    assert np.count_nonzero(trades.ts_event < market.live_start_us) > 1000
    assert int(trades.ts_event[-1]) > market.live_start_us + 30 * US_PER_SEC
    assert market.sim_duration_s == 600 + 30 + SIM_TAIL_S
    assert market.source == "simulator"


def test_shift_tape_moves_every_time_and_keeps_ids_prices_and_quantities() -> None:
    tape = simulate(SimConfig(seed=1, duration_s=60))
    moved = shift_tape(tape, 7 * US_PER_SEC)
    assert np.array_equal(moved.trades.ts_event, tape.trades.ts_event + 7 * US_PER_SEC)
    assert np.array_equal(moved.trades.id, tape.trades.id)
    assert np.array_equal(moved.trades.price, tape.trades.price)
    assert np.array_equal(moved.trades.qty, tape.trades.qty)
    assert moved.best_bid_asks is not None
    assert tape.best_bid_asks is not None
    assert np.array_equal(moved.best_bid_asks.ts_event, tape.best_bid_asks.ts_event + 7 * US_PER_SEC)
    assert np.array_equal(moved.best_bid_asks.update_id, tape.best_bid_asks.update_id)
    assert moved.depth is not None
    assert tape.depth is not None
    assert np.array_equal(moved.depth.ts_event, tape.depth.ts_event + 7 * US_PER_SEC)
    assert moved.initial_book is not None
    assert tape.initial_book is not None
    assert moved.initial_book.last_update_id == tape.initial_book.last_update_id
    assert moved.initial_book.bids == tape.initial_book.bids


def test_shift_tape_moves_the_recorded_event_times_with_the_trades() -> None:
    tape = simulate(SimConfig(seed=1, duration_s=30))
    recorded = replace(tape, trades=replace(tape.trades, event_time=tape.trades.ts_event + 1_500))  # E = T + 1.5 ms
    moved = shift_tape(recorded, 7 * US_PER_SEC)
    assert moved.trades.event_time is not None
    assert np.array_equal(moved.trades.event_time, moved.trades.ts_event + 1_500)


def test_recorded_market_plays_its_last_seconds_live_shifted_by_whole_seconds() -> None:
    tape = simulate(SimConfig(seed=2, duration_s=300))
    market = recorded_market(tape, now_us=NOW, history_s=None, live_s=60, tail_s=10)
    assert market.shift_us % US_PER_SEC == 0
    assert market.live_start_us == NOW - NOW % US_PER_SEC
    assert market.tape is not None
    # the original sub-second phase of every trade is kept
    assert np.array_equal(market.tape.trades.ts_event % US_PER_SEC, tape.trades.ts_event % US_PER_SEC)
    after = np.count_nonzero(market.tape.trades.ts_event >= market.live_start_us)
    assert after > 0
    # the live part is the last 60 s plus the 10-s tail, widened to the whole second it starts in
    assert 70 * US_PER_SEC <= market.tape.end_us - market.live_start_us < 71 * US_PER_SEC
    # at most the requested history before the live part
    limited = recorded_market(tape, now_us=NOW, history_s=100, live_s=60, tail_s=10)
    assert limited.live_start_us - limited.history_start_us == 100 * US_PER_SEC


def test_recorded_market_refuses_a_recording_too_short_for_the_live_part() -> None:
    tape = simulate(SimConfig(seed=2, duration_s=120))
    with pytest.raises(ConfigError, match="shorten --duration"):
        recorded_market(tape, now_us=NOW, history_s=None, live_s=60, tail_s=30)
    empty = shift_tape(tape, 0)
    with pytest.raises(DataError):
        recorded_market(type(empty)(symbol="BTCUSDT", trades=empty.trades.slice(0, 1)), now_us=NOW, history_s=None,
                        live_s=10)


@pytest.mark.parametrize(("text", "seconds"), [("2h", 7200), ("20m", 1200), ("90s", 90), ("1h30m", 5400),
                                               ("45", 45), (" 2M ", 120)])
def test_parse_duration_reads_hours_minutes_and_seconds(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0m", "ten minutes", "2d", "-5", "1.5h"])
def test_parse_duration_refuses_garbage_with_a_clear_error(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


def _trade(i: int, ts_event: int, ts_recv: int) -> Trade:
    return Trade("BTCUSDT", i, ts_event, 6_000_000_000_000, 100_000, False, ts_recv=ts_recv)


def test_live_stats_measures_hops_only_after_live_from_and_joins_rows_to_predictions() -> None:
    t0 = 1_795_000_000 * US_PER_SEC
    stats = LiveStats(live_from_us=t0)
    # history (before live_from) and trades without a receive time (REST fill) are not measured
    stats.on_bus_trades([_trade(1, t0 - 5, t0), _trade(2, t0 + 10, 0), _trade(3, t0 + 1_000, t0 + 4_000)],
                        read_at_us=t0 + 6_000)
    assert stats.hops_ms[HOP_EXCHANGE_INGEST] == [3.0]
    assert stats.hops_ms[HOP_INGEST_BUS] == [2.0]
    row = FeatureVector1s("BTCUSDT", t0 + US_PER_SEC, "h", (0.0,), t0 + US_PER_SEC + 210 * US_PER_MS)
    old_row = FeatureVector1s("BTCUSDT", t0 - US_PER_SEC, "h", (0.0,), t0 + 5 * US_PER_SEC)
    stats.on_rows([old_row, row])
    assert stats.hops_ms[HOP_FEATURE_ROW] == [210.0]
    pred = Prediction1s("BTCUSDT", t0 + US_PER_SEC, 1e-4, 0.4, "v1", None, 300.0,
                        t0 + US_PER_SEC + 300 * US_PER_MS)
    stats.on_prediction(pred, "store")
    assert stats.hops_ms[HOP_PREDICTION] == [90.0]
    assert stats.hit_rate() == (None, 0)
    assert stats.predictions()[0]["realized"] is None
    # outcomes: one right, one wrong, one never realized (NaN)
    later = [Prediction1s("BTCUSDT", t0 + k * US_PER_SEC, y, 0.4, "v1", None, 300.0, t0 + k * US_PER_SEC)
             for k, y in ((2, -2e-4), (3, 3e-4))]
    stats.on_outcomes([ShadowRow(pred, "store", True, 5e-5, 0.0, 1.0),
                       ShadowRow(later[0], "store", True, 1e-4, 0.0, 0.5),
                       ShadowRow(later[1], "fallback", True, math.nan, 0.0, 0.5)])
    assert stats.hit_rate() == (0.5, 2)
    rows = stats.predictions()
    assert [r["realized"] for r in rows] == [5e-5, 1e-4, None]
    assert [r["source"] for r in rows] == ["store", "store", "fallback"]
    snap = stats.snapshot(elapsed_s=1.0, remaining_s=2.0, counters={"rows": 2})
    assert snap.last_yhat == pytest.approx(3e-4)
    assert snap.realized == pytest.approx(1e-4)
    assert snap.hops[HOP_FEATURE_ROW].n == 1
    assert math.isclose(snap.hops[HOP_EXCHANGE_INGEST].p50_ms, 3.0)


def _snapshot() -> LiveSnapshot:
    return LiveSnapshot(
        elapsed_s=12.0, remaining_s=108.0, model_version="v3", last_ts_sec=1_795_000_010 * US_PER_SEC,
        last_yhat=1.5e-4, last_latency_ms=0.42, last_source="store", realized_ts_sec=1_795_000_000 * US_PER_SEC,
        realized_yhat=-2e-4, realized=-3.1e-4, hit_rate=0.625, n_realized=8, feature_age_ms=300.4,
        hops={"tick": HopLatency(0.4, 0.6, 1.9, 11)}, counters={"gaps": 1, "skipped_ticks": 0},
    )


def test_rich_view_draws_the_prediction_the_outcome_the_hops_and_the_counters() -> None:
    stream = io.StringIO()
    view = RichRunView(stream)
    view.console.width = 120
    view.live_started(120.0)
    view.live_finished(_snapshot())
    text = stream.getvalue()
    for expected in ("v3", "+1.50 bp", "-3.10 bp", "62.5% of 8", "300.4 ms", "p99 1.90", "gaps 1", "skipped_ticks 0"):
        assert expected in text, expected


def test_log_view_writes_the_same_facts_at_most_every_interval(caplog: pytest.LogCaptureFixture) -> None:
    view = LogRunView(every_s=3600.0)
    with caplog.at_level(logging.INFO, logger="btcpipe.run"):
        view.live_update(_snapshot())
        view.live_update(_snapshot())  # within the interval: nothing
        view.live_finished(_snapshot())  # the last one always
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "+1.50 bp" in lines[0]
    assert "hit rate 62.5% of 8" in lines[0]
    assert "tick p50 0.4/p99 1.9 ms" in lines[0]

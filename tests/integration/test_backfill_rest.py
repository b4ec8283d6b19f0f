"""REST backfill from the real local exchange (aiohttp on 127.0.0.1) into a real Parquet lake."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from support.backfill import (
    SYMBOL,
    US_ERA_START,
    assert_agg_trades_equal_tape,
    assert_trades_equal_tape,
    sim_tape,
    stored_rows,
)

from btcpipe.binance.rest import BinanceRestClient
from btcpipe.domain.arrow_decimal import decimal_mantissas
from btcpipe.domain.errors import MalformedResponseError
from btcpipe.domain.tape import MarketTape
from btcpipe.exchange.ratelimit import RateDecision, WeightLimiter
from btcpipe.exchange.server import LocalExchange
from btcpipe.lake.lake import Lake
from btcpipe.services.backfill import BackfillProgress, backfill

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def tape() -> MarketTape:
    return sim_tape(seed=11, duration_s=1500)


def _client(url: str, **kw: object) -> BinanceRestClient:
    return BinanceRestClient(url, backoff_base_s=0.005, backoff_cap_s=0.05, rng=random.Random(3),
                             **kw)  # type: ignore[arg-type]


class _RequestCountingLimiter(WeightLimiter):
    """A weight limiter whose clock counts requests, not seconds: each window holds exactly 8 requests.

    The limit (175 = seven historicalTrades) is then exceeded by the 8th page of a window however fast or slow
    the client is, so the test meets 429s on a loaded machine as on a quiet one. Retry-After is the 1 s the
    window has left on that clock; the client must wait it out and go on.
    """

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(175, window_s=1.0, tolerated_429s=1000, clock=lambda: self.now)

    def check(self, ip: str, weight: int) -> RateDecision:
        self.now += 0.125
        return super().check(ip, weight)


def test_backfill_equals_simulated_trades_exactly_despite_faults_and_429s(tape: MarketTape, tmp_path: Path) -> None:
    # The server allows seven pages a window (its clock counts requests) while the client believes in 6000 weight
    # a minute: the eighth page of a window is a real 429 the client must wait out (Retry-After), whatever its speed.
    # On top: latency, 5xx, truncated bodies, dropped connections.
    limiter = _RequestCountingLimiter()
    with LocalExchange(tape, limiter=limiter) as ex:
        ex.faults.set(latency_s=0.002, jitter_s=0.003, error_rate=0.08, truncate_rate=0.08, drop_rate=0.04, seed=5)
        ex.faults.script("drop", "5xx", "truncate", "drop", "truncate")  # each kind at least once, for sure
        lake = Lake.open(str(tmp_path / "lake"))
        seen: list[BackfillProgress] = []
        with _client(ex.base_url, max_retries=20) as client:
            result = backfill(client, lake, symbol=SYMBOL, kind="trades", start_us=tape.start_us,
                              end_us=tape.end_us + 1, source="rest", progress=seen.append)
        faults = ex.fault_stats
        rate = ex.stats
    assert_trades_equal_tape(lake, tape)
    assert result.rows_added == len(tape.trades)
    assert result.first_id == int(tape.trades.id[0])
    assert result.last_id == int(tape.trades.id[-1])
    # Every kind of fault was met and survived.
    assert faults.errors_5xx > 0
    assert faults.truncated > 0
    assert faults.dropped > 0
    # Eight pages in one window weigh 200 > 175: with 20+ pages to fetch, 429s are certain on this clock.
    assert rate.rejected_429 > 0
    assert result.rate_limited == rate.rejected_429
    assert rate.banned_418 == 0, "the client waited out every Retry-After instead of hammering"
    assert result.waited_s >= rate.rejected_429  # Retry-After: 1 s each
    assert seen[-1].done
    assert seen[-1].rows == len(tape.trades)


def test_agg_trades_backfill_of_a_sub_span_keeps_exactly_the_span(tape: MarketTape, tmp_path: Path) -> None:
    start = tape.start_us + 300_000_000
    end = tape.start_us + 900_000_000
    with LocalExchange(tape) as ex:
        ex.faults.set(error_rate=0.1, truncate_rate=0.1, seed=9)
        lake = Lake.open(str(tmp_path / "lake"))
        with _client(ex.base_url) as client:
            backfill(client, lake, symbol=SYMBOL, kind="aggTrades", start_us=start, end_us=end, source="rest",
                     page_limit=300)
    table = lake.read_bronze("aggTrades", SYMBOL)
    ts = table.column("ts_event").to_numpy()
    assert ts.min() >= start
    assert ts.max() < end
    from btcpipe.domain.tape import aggregate_trades

    aggs = aggregate_trades(tape.trades)
    inside = (aggs.ts_event >= start) & (aggs.ts_event < end)
    np.testing.assert_array_equal(table.column("agg_id").to_numpy(), aggs.agg_id[inside])
    np.testing.assert_array_equal(decimal_mantissas(table.column("qty")), aggs.qty[inside])


def test_whole_tape_agg_trades_equal_the_aggregation_of_the_simulated_trades(tape: MarketTape, tmp_path: Path) -> None:
    with LocalExchange(tape) as ex:
        lake = Lake.open(str(tmp_path / "lake"))
        with _client(ex.base_url) as client:
            backfill(client, lake, symbol=SYMBOL, kind="aggTrades", start_us=tape.start_us, end_us=tape.end_us + 1,
                     source="rest")
    assert_agg_trades_equal_tape(lake, tape)


def test_normal_run_never_exceeds_the_weight_limit(tape: MarketTape, tmp_path: Path) -> None:
    # A small limit in real short windows: 300 weight per 1 s. historicalTrades weighs 25, so the run needs
    # several windows and must pace itself; the server's own counter is the proof.
    limiter = WeightLimiter(300, window_s=1.0)
    with LocalExchange(tape, limiter=limiter) as ex:
        lake = Lake.open(str(tmp_path / "lake"))
        with _client(ex.base_url, weight_limit=300, weight_window_s=1.0) as client:
            result = backfill(client, lake, symbol=SYMBOL, kind="trades", start_us=tape.start_us,
                              end_us=tape.end_us + 1, source="rest")
        stats = ex.stats
    assert_trades_equal_tape(lake, tape)
    assert stats.rejected_429 == 0
    assert stats.banned_418 == 0
    assert stats.max_used_weight <= 300 * 0.8
    assert result.max_used_weight == stats.max_used_weight
    total_weight = 4 + 25 * result.requests
    assert total_weight > 300, "the run must span several windows for the test to mean anything"
    assert result.requests == stats.requests


def test_rerun_of_a_finished_span_adds_nothing(tape: MarketTape, tmp_path: Path) -> None:
    start, end = tape.start_us, tape.start_us + 200_000_000
    lake = Lake.open(str(tmp_path / "lake"))
    with LocalExchange(tape) as ex, _client(ex.base_url) as client:
        first = backfill(client, lake, symbol=SYMBOL, kind="trades", start_us=start, end_us=end, source="rest",
                         page_limit=250)
        again = backfill(client, lake, symbol=SYMBOL, kind="trades", start_us=start, end_us=end, source="rest",
                         page_limit=250)
    assert first.rows_added > 0
    assert again.rows_added == 0
    assert again.resumed_from == first.last_id + 1  # type: ignore[operator]
    assert stored_rows(lake, "trades") == first.rows_added


def test_persistently_truncated_bodies_fail_naming_the_request_and_keep_written_pages(
    tape: MarketTape, tmp_path: Path
) -> None:
    lake = Lake.open(str(tmp_path / "lake"))
    with LocalExchange(tape) as ex, _client(ex.base_url, max_retries=3) as client:
        pages: list[BackfillProgress] = []

        def break_after_two_pages(p: BackfillProgress) -> None:
            pages.append(p)
            if len(pages) == 2:
                ex.faults.set(truncate_rate=1.0)

        with pytest.raises(MalformedResponseError, match=r"GET /api/v3/historicalTrades\?symbol=BTCUSDT"):
            backfill(client, lake, symbol=SYMBOL, kind="trades", start_us=tape.start_us, end_us=tape.end_us + 1,
                     source="rest", progress=break_after_two_pages, page_limit=200)
    table = lake.read_bronze("trades", SYMBOL)
    assert table.num_rows == 400
    np.testing.assert_array_equal(table.column("id").to_numpy(), tape.trades.id[:400])


def test_klines_backfill_matches_the_exchange_minute_bars(tape: MarketTape, tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path / "lake"))
    with LocalExchange(tape) as ex, _client(ex.base_url) as client:
        result = backfill(client, lake, symbol=SYMBOL, kind="klines", start_us=US_ERA_START,
                          end_us=US_ERA_START + 20 * 60_000_000, source="rest", page_limit=7)
        again = backfill(client, lake, symbol=SYMBOL, kind="klines", start_us=US_ERA_START,
                         end_us=US_ERA_START + 20 * 60_000_000, source="rest", page_limit=7)
    table = lake.read_bronze("klines", SYMBOL)
    opens = table.column("open_time").to_numpy()
    assert table.num_rows == 20
    np.testing.assert_array_equal(np.diff(opens), 60_000_000)
    assert result.pages == 3
    assert again.rows_added == 0
    assert again.pages == 0, "a finished span resumes past its last kline and asks for nothing"
    assert opens[0] == US_ERA_START
    minute = tape.trades.ts_event < US_ERA_START + 60_000_000
    assert table.column("n_trades")[0].as_py() == int(minute.sum())
    assert decimal_mantissas(table.column("high"))[0] == int(tape.trades.price[minute].max())
    assert decimal_mantissas(table.column("low"))[0] == int(tape.trades.price[minute].min())
    assert decimal_mantissas(table.column("volume"))[0] == int(tape.trades.qty[minute].sum())

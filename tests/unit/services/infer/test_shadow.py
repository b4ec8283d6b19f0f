"""Shadow evaluation: the realized return is the training label, computed live; rolling scores as offline."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.inference import SYMBOL, sim_tape, tape_best_bid_asks, tape_trades

from btcpipe.domain.messages import Prediction1s
from btcpipe.domain.records import BestBidAsk, Trade
from btcpipe.domain.scores import score
from btcpipe.domain.time import US_PER_SEC
from btcpipe.features.labels import forward_log_return, mid_from_best_bid_asks, mid_from_trades
from btcpipe.infra.metrics import Metrics
from btcpipe.services.infer.shadow import ShadowEvaluator, ShadowRow, best_bid_ask_mid, trade_mid


def _prediction(ts_sec: int, yhat: float) -> Prediction1s:
    return Prediction1s(SYMBOL, ts_sec, yhat, 0.1, "v1", None, 250.0, ts_sec + 250_000)


def _play(shadow: ShadowEvaluator, trades: list[Trade], best_bid_asks: list[BestBidAsk], span: tuple[int, int],
          yhat: dict[int, float]) -> list[ShadowRow]:
    """Feed the market second by second as it happens, predicting each second when it begins."""
    rows = []
    ti = bi = 0
    for now in range(*span, US_PER_SEC // 4):
        t0, b0 = ti, bi
        while ti < len(trades) and trades[ti].ts_event < now:
            ti += 1
        while bi < len(best_bid_asks) and best_bid_asks[bi].ts_event < now:
            bi += 1
        shadow.add_market(trades[t0:ti], best_bid_asks[b0:bi])
        if now % US_PER_SEC == 250_000 and now - 250_000 in yhat:
            shadow.add_prediction(_prediction(now - 250_000, yhat[now - 250_000]), source="store", published=True)
        rows.extend(shadow.resolve(now))
    return rows


@pytest.mark.parametrize("label_mid", ["bbo_mid", "last_trade"])
def test_realized_returns_equal_the_offline_label_on_the_same_market(label_mid: str) -> None:
    tape = sim_tape(120)
    trades, best_bid_asks = tape_trades(tape), tape_best_bid_asks(tape)
    start = tape.start_us // US_PER_SEC * US_PER_SEC + 5 * US_PER_SEC
    seconds = [start + k * US_PER_SEC for k in range(60)]
    rng = np.random.default_rng(0)
    yhat = {t: float(v) for t, v in zip(seconds, rng.normal(0, 1e-4, len(seconds)), strict=True)}
    shadow = ShadowEvaluator(Metrics(), label_mid=label_mid)
    rows = _play(shadow, trades, best_bid_asks, (start, start + 90 * US_PER_SEC), yhat)
    assert [r.prediction.ts_sec for r in rows] == seconds
    assert tape.best_bid_asks is not None
    mid_ts, mid = (mid_from_best_bid_asks(tape.best_bid_asks) if label_mid == "bbo_mid"
                   else mid_from_trades(tape.trades))
    offline = forward_log_return(np.asarray(seconds, dtype=np.int64), mid_ts, mid)
    realized = np.array([r.realized for r in rows])
    assert np.isfinite(realized).all()
    assert realized.tolist() == offline.tolist()  # bit for bit: the same mid floats, the same label code
    assert shadow.realized_count == 60
    assert shadow.expired_count == 0


def test_a_prediction_waits_for_an_event_past_its_horizon_then_gives_up() -> None:
    t = 1_704_067_200 * US_PER_SEC
    shadow = ShadowEvaluator(Metrics(), label_mid="last_trade", expire_after_s=30)
    shadow.add_market([Trade(SYMBOL, 1, t - 1, 100_00000000, 1, False)], [])
    shadow.add_prediction(_prediction(t, 1e-4), source="store", published=True)
    shadow.add_market([Trade(SYMBOL, 2, t + 9_999_999, 101_00000000, 1, False)], [])
    assert shadow.resolve(t + 20 * US_PER_SEC) == []  # the market has not yet shown t + 10 s
    assert shadow.pending == 1
    rows = shadow.resolve(t + 40 * US_PER_SEC)  # no event for 30 s past the horizon: given up
    assert len(rows) == 1
    assert math.isnan(rows[0].realized)
    assert shadow.expired_count == 1
    shadow.add_prediction(_prediction(t + 50 * US_PER_SEC, -1e-4), source="fallback", published=False)
    shadow.add_market([Trade(SYMBOL, 3, t + 60 * US_PER_SEC, 99_00000000, 1, False)], [])
    (row,) = shadow.resolve(t + 61 * US_PER_SEC)
    assert row.realized == math.log(99.0) - math.log(101.0)  # mid as of t+50 s is the trade at t+10 s
    assert (row.source, row.published) == ("fallback", False)


def test_rolling_mae_and_hit_rate_are_the_offline_scores_of_the_last_window() -> None:
    t0 = 1_704_067_200 * US_PER_SEC
    metrics = Metrics()
    shadow = ShadowEvaluator(metrics, label_mid="last_trade", window=20)
    rng = np.random.default_rng(5)
    prices = 60_000 + np.cumsum(rng.normal(0, 5, 80)).round(2)
    yhat = rng.normal(0, 1e-4, 80)
    rows = []
    for k in range(80):
        ts = t0 + k * US_PER_SEC
        shadow.add_market([Trade(SYMBOL, k + 1, ts, int(np.rint(prices[k] * 100)) * 1_000_000, 1, False)], [])
        shadow.add_prediction(_prediction(ts, float(yhat[k])), source="store", published=True)
        rows.extend(shadow.resolve(ts + 1))
    realized = np.array([r.realized for r in rows])
    preds = np.array([r.prediction.yhat for r in rows])
    expected = score(realized[-20:], preds[-20:])
    assert rows[-1].rolling_mae == expected.mae
    assert rows[-1].rolling_hit_rate == expected.hit_rate
    assert metrics.registry.get_sample_value("btcpipe_shadow_mae", {"symbol": SYMBOL}) == expected.mae
    assert metrics.registry.get_sample_value("btcpipe_shadow_hit_rate", {"symbol": SYMBOL}) == expected.hit_rate


def test_mids_at_other_exponents_equal_the_training_mid() -> None:
    std = BestBidAsk(SYMBOL, 1, 1, 6_183_763_000_000, 1, 6_183_764_000_000, 1)
    sbe = BestBidAsk(SYMBOL, 1, 1, 6_183_763, 1, 6_183_764, 1, price_exponent=-2)
    assert best_bid_ask_mid(sbe) == best_bid_ask_mid(std) == (6_183_763_000_000 + 6_183_764_000_000) / 1e8 / 2
    assert trade_mid(Trade(SYMBOL, 1, 1, 6_183_763, 1, False, price_exponent=-2)) == 61837.63

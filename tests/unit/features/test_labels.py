"""The label of the feature contract: as-of mids and the 10-second forward log return."""

from __future__ import annotations

import math

import numpy as np
import pytest

from btcpipe.domain.decimal import parse_decimal
from btcpipe.domain.errors import DataError
from btcpipe.domain.tape import BestBidAskTape, TradeTape
from btcpipe.features.labels import (
    LABEL_HORIZON_US,
    asof_values,
    forward_log_return,
    mid_from_best_bid_asks,
    mid_from_trades,
)

S = 1_000_000


def i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def f64(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def test_asof_is_nan_before_the_first_event() -> None:
    out = asof_values(i64(10, 20), f64(1.0, 2.0), i64(0, 9))
    assert np.isnan(out).all()


def test_asof_includes_an_event_exactly_at_the_query_time() -> None:
    out = asof_values(i64(10, 20), f64(1.0, 2.0), i64(10, 20))
    assert out.tolist() == [1.0, 2.0]


def test_asof_takes_the_last_value_before_a_query_between_events_and_after_the_last() -> None:
    out = asof_values(i64(10, 20), f64(1.0, 2.0), i64(15, 19, 21, 10**12))
    assert out.tolist() == [1.0, 1.0, 2.0, 2.0]


def test_asof_takes_the_last_of_several_events_at_the_same_time() -> None:
    out = asof_values(i64(10, 10, 10), f64(1.0, 2.0, 3.0), i64(10))
    assert out.tolist() == [3.0]


def test_asof_refuses_events_out_of_time_order() -> None:
    with pytest.raises(DataError, match="time order"):
        asof_values(i64(20, 10), f64(1.0, 2.0), i64(15))


def test_asof_refuses_times_and_values_of_different_lengths() -> None:
    with pytest.raises(DataError, match="differ in length"):
        asof_values(i64(10, 20), f64(1.0), i64(15))


def test_forward_log_return_is_the_log_of_the_mid_ratio_ten_seconds_apart() -> None:
    event_ts = i64(0, 5 * S, 10 * S, 12 * S, 30 * S)
    mid = f64(100.0, 101.0, 102.0, 103.0, 104.0)
    y = forward_log_return(i64(0, 1 * S, 2 * S), event_ts, mid)
    # t=0: mid(10 s, an event exactly there) / mid(0); t=1 s: mid(11 s) = 102 / mid(1 s) = 100;
    # t=2 s: mid(12 s) = 103 / 100.
    assert y.tolist() == [
        math.log(102.0) - math.log(100.0),
        math.log(102.0) - math.log(100.0),
        math.log(103.0) - math.log(100.0),
    ]


def test_forward_log_return_is_nan_when_the_mid_at_t_is_unknown() -> None:
    y = forward_log_return(i64(0, 5 * S, 10 * S), i64(5 * S, 20 * S), f64(100.0, 101.0))
    assert math.isnan(y[0])
    assert y[1] == 0.0  # as of 15 s the mid is still the 5 s one
    assert y[2] == math.log(101.0) - math.log(100.0)


def test_forward_log_return_is_nan_past_the_end_of_the_data() -> None:
    event_ts = i64(0, 10 * S, 11 * S)
    mid = f64(100.0, 101.0, 102.0)
    y = forward_log_return(i64(0, 1 * S, 2 * S), event_ts, mid)
    # By default the data ends at the last event (11 s): t + 10 s = 12 s is past it.
    assert not np.isnan(y[:2]).any()
    assert math.isnan(y[2])
    # Told that the data runs to 30 s, the mid as of 12 s is known (no change since 11 s).
    y = forward_log_return(i64(0, 1 * S, 2 * S), event_ts, mid, data_end_us=30 * S)
    assert y[2] == math.log(102.0) - math.log(100.0)


def test_forward_log_return_uses_the_horizon_given() -> None:
    event_ts = i64(0, 1 * S, 10 * S)
    y = forward_log_return(i64(0), event_ts, f64(100.0, 110.0, 121.0), horizon_us=1 * S)
    assert y[0] == math.log(110.0) - math.log(100.0)
    assert LABEL_HORIZON_US == 10 * S


def test_forward_log_return_refuses_a_non_positive_horizon() -> None:
    with pytest.raises(DataError, match="horizon"):
        forward_log_return(i64(0), i64(0), f64(1.0), horizon_us=0)


def test_forward_log_return_of_no_events_is_all_nan() -> None:
    y = forward_log_return(i64(0, S), i64(), f64())
    assert np.isnan(y).all()


def test_mid_from_best_bid_asks_is_the_exact_decimal_midpoint() -> None:
    tape = BestBidAskTape(
        ts_event=i64(1, 2),
        update_id=i64(10, 11),
        bid_price=i64(parse_decimal("61837.63"), parse_decimal("0.1")),
        bid_qty=i64(1, 1),
        ask_price=i64(parse_decimal("61837.64"), parse_decimal("0.2")),
        ask_qty=i64(1, 1),
    )
    ts, mid = mid_from_best_bid_asks(tape)
    assert ts.tolist() == [1, 2]
    # The decimal sum is converted once: 0.1 + 0.2 gives 0.15 exactly as the float nearest 0.3, halved.
    assert mid.tolist() == [61837.635, 0.15]


def test_mid_from_trades_is_the_trade_price() -> None:
    trades = TradeTape(
        id=i64(1, 2),
        ts_event=i64(5, 7),
        price=i64(parse_decimal("100.01"), parse_decimal("100.02")),
        qty=i64(1, 1),
        is_buyer_maker=np.array([True, False]),
    )
    ts, price = mid_from_trades(trades)
    assert ts.tolist() == [5, 7]
    assert price.tolist() == [100.01, 100.02]

"""The label of the feature contract: ``y_t = log(mid_{t+10s}) − log(mid_t)``.

The mid "as of" an instant is the last value at or before it; before the first event it is unknown
(NaN), and so is any label whose horizon reaches past the end of the data. This module is the one
implementation of the label: gold labels, the simulator's oracle score and model evaluation all call it.
Pure: no IO, no wall clock.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from btcpipe.domain.decimal import STD_EXPONENT, to_float_array
from btcpipe.domain.errors import DataError
from btcpipe.domain.tape import BestBidAskTape, TradeTape

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

LABEL_HORIZON_US = 10_000_000


def _check_events(event_ts: I64, values: F64) -> None:
    if event_ts.shape != values.shape:
        raise DataError(f"event times ({event_ts.shape[0]}) and values ({values.shape[0]}) differ in length")
    if event_ts.shape[0] > 1 and bool(np.any(event_ts[1:] < event_ts[:-1])):
        raise DataError("event times are not in time order; as-of lookups need non-decreasing times")


def asof_values(event_ts: I64, values: F64, query_ts: I64) -> F64:
    """The last value at or before each query time (NaN before the first event).

    Events that share a time count in their given order: the last of them is the value as of that time.
    """
    event_ts = np.asarray(event_ts, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    _check_events(event_ts, values)
    return _asof_checked(event_ts, values, np.asarray(query_ts, dtype=np.int64))


def _asof_checked(event_ts: I64, values: F64, query_ts: I64) -> F64:
    idx = np.searchsorted(event_ts, query_ts, side="right") - 1
    out = np.full(idx.shape[0], np.nan, dtype=np.float64)
    known = idx >= 0
    out[known] = values[idx[known]]
    return out


def forward_log_return(
    ts_sec: I64,
    event_ts: I64,
    mid: F64,
    horizon_us: int = LABEL_HORIZON_US,
    *,
    data_end_us: int | None = None,
) -> F64:
    """``log(mid as of t + horizon) − log(mid as of t)`` for each ``t`` in ``ts_sec``.

    NaN where the mid at ``t`` is unknown (no event yet) or where ``t + horizon`` lies after
    ``data_end_us`` — the instant up to which the events are known to be complete. By default that is
    the last event's time: after it, "no change" cannot be told apart from "no data".
    """
    if horizon_us <= 0:
        raise DataError(f"the label horizon must be positive, got {horizon_us} µs")
    ts_sec = np.asarray(ts_sec, dtype=np.int64)
    event_ts = np.asarray(event_ts, dtype=np.int64)
    mid = np.asarray(mid, dtype=np.float64)
    _check_events(event_ts, mid)  # once for both lookups (a pass over every event)
    now = _asof_checked(event_ts, mid, ts_sec)
    later = _asof_checked(event_ts, mid, ts_sec + horizon_us)
    with np.errstate(divide="ignore", invalid="ignore"):
        label = np.log(later) - np.log(now)
    if data_end_us is None:
        data_end_us = int(event_ts[-1]) if event_ts.shape[0] else None
    if data_end_us is None:
        label[:] = np.nan
    else:
        label[ts_sec + horizon_us > data_end_us] = np.nan
    return label


def mid_from_best_bid_asks(tape: BestBidAskTape, exponent: int = STD_EXPONENT) -> tuple[I64, F64]:
    """Event times and mids of best bid/ask updates.

    The mid is the exact decimal sum ``bid + ask`` converted once and halved (halving is exact in
    binary), so every path that computes a mid from the same mantissas gets the same float.
    """
    mid = to_float_array(tape.bid_price + tape.ask_price, exponent) / 2.0
    return tape.ts_event.copy(), mid


def mid_from_trades(trades: TradeTape, exponent: int = STD_EXPONENT) -> tuple[I64, F64]:
    """The last-trade-price proxy for the mid, where the history has no best bid/ask."""
    return trades.ts_event.copy(), to_float_array(trades.price, exponent)

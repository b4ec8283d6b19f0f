"""The fast paths give the same floats as the plain ones: per-trade accumulators vs the vectorised
aggregation, one-row vs many-row window sums, the integer median, and the lake's projected reads."""

from __future__ import annotations

import functools
import operator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from support.features import SEC, T0, assert_same_rows, bronze_trades_table, make_tape

from btcpipe.domain.errors import DataError, LakeError
from btcpipe.domain.time import day_of
from btcpipe.features.arithmetic import (
    SecondAccumulator,
    _fold_oldest_first,
    _median_of_counts,
    _windows,
    aggregate_seconds,
)
from btcpipe.features.batch import build_features, fit_params
from btcpipe.features.day_build import build_span
from btcpipe.features.inputs import TradeArrays
from btcpipe.features.spec import WINDOW_BARS, FeatureParams
from btcpipe.features.streaming import StreamingFeatureEngine
from btcpipe.features.tables import BRONZE_TRADE_COLUMNS, GOLD_DATASET, trade_arrays_from_bronze
from btcpipe.lake.lake import Lake


def _random_trades(seed: int, n: int, n_bars: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sec = np.sort(rng.integers(0, n_bars, n))
    sec[: n // 3] = 3  # one crowded second: long sums, where summation order shows in the last bits
    sec = np.sort(sec)
    price = np.round(60_000 + np.cumsum(rng.normal(0, 0.7, n)), 2)
    qty = np.round(rng.lognormal(-6, 1.6, n), 8)
    ibm = rng.random(n) < 0.5
    return sec, price, qty, ibm


def test_second_accumulator_equals_aggregate_seconds_bit_for_bit() -> None:
    n_bars = 40
    sec, price, qty, ibm = _random_trades(1, 20_000, n_bars)
    ts = T0 + sec * SEC + 17
    bars = aggregate_seconds(sec, ts, price, qty, ibm, n_bars=n_bars)
    accs = [SecondAccumulator() for _ in range(n_bars)]
    for s, t, p, q, b in zip(sec.tolist(), ts.tolist(), price.tolist(), qty.tolist(), ibm.tolist(), strict=True):
        accs[s].add(t, p, q, b)
    got = np.array([[a.n, a.buy_vol, a.sell_vol, a.notional, a.max_qty, a.last_price, a.last_ts] for a in accs]).T
    want = np.vstack((bars.n, bars.buy_vol, bars.sell_vol, bars.notional, bars.max_qty, bars.last_price, bars.last_ts))
    assert_same_rows(got, want, ("n", "buy", "sell", "notional", "max_qty", "last_price", "last_ts"))
    # Not vacuous: the crowded second's sum is the sequential one, and numpy's pairwise sum differs from it.
    crowded = qty[sec == 3] * price[sec == 3]
    assert bars.notional[3] == functools.reduce(operator.add, crowded.tolist(), 0.0)
    assert float(np.sum(crowded)) != bars.notional[3]


def test_window_sums_for_one_row_equal_those_for_many_rows() -> None:
    rng = np.random.default_rng(2)
    x = rng.lognormal(0, 3, 500)
    many = _fold_oldest_first(_windows(x, 10, 491))  # the column loop (many rows)
    ones = np.array([_fold_oldest_first(_windows(x[r:], 10, 1))[0] for r in range(491)])  # accumulate (one row)
    sequential = np.array([functools.reduce(operator.add, x[r : r + 10].tolist()) for r in range(491)])
    assert (many == ones).all()
    assert (many == sequential).all()


def test_window_maxima_for_one_row_equal_those_for_many_rows_and_keep_nan() -> None:
    rng = np.random.default_rng(4)
    x = rng.lognormal(0, 3, 500)
    x[[0, 250]] = np.nan  # unknown bars
    many = _fold_oldest_first(_windows(x, 5, 496), np.maximum)
    ones = np.array([_fold_oldest_first(_windows(x[r:], 5, 1), np.maximum)[0] for r in range(496)])
    plain = np.array([np.max(x[r : r + 5]) for r in range(496)])  # NaN when the window has a NaN
    assert np.array_equal(many, ones, equal_nan=True)
    assert np.array_equal(many, plain, equal_nan=True)
    assert np.isnan(many).sum() == 1 + 5


def test_median_of_counts_is_numpys_median_and_nan_over_unknown_bars() -> None:
    rng = np.random.default_rng(3)
    for top in (50, 40_000, 3_000_000):  # int16, int32 and int64 windows
        n = rng.integers(0, top, 400).astype(np.float64)
        n[:7] = np.nan  # bars before the history
        rows = n.shape[0] - (WINDOW_BARS - 1)
        got = _median_of_counts(n, rows)
        want = np.array([np.median(n[r : r + WINDOW_BARS]) for r in range(rows)])
        assert_same_rows(got[None, :], want[None, :], ("median",))
        assert np.isnan(got[:7]).all()
        assert np.isfinite(got[7:]).all()


def test_trades_arriving_seconds_before_their_close_give_the_batch_rows() -> None:
    """A processor may receive trades of seconds it has not closed yet; they wait in their own bars."""
    tape = make_tape(4, T0, 900)
    trades = TradeArrays.from_tape(tape.trades)
    params = fit_params(trades.qty)
    batch = build_features(trades, params, start_us=T0 + SEC, end_us=T0 + 900 * SEC, history_start_us=T0)
    engine = StreamingFeatureEngine("BTCUSDT", params, start_us=T0)
    out = np.empty_like(batch.columns)
    i = 0
    for k, t in enumerate(batch.ts_sec.tolist()):
        hi = int(np.searchsorted(trades.ts_event, t + 3 * SEC))  # three seconds ahead of the close
        if k % 2:
            engine.add_trades(trades.ts_event[i:hi], trades.price[i:hi], trades.qty[i:hi], trades.is_buyer_maker[i:hi])
        else:
            for q in range(i, hi):
                engine.add_trade(int(trades.ts_event[q]), float(trades.price[q]), float(trades.qty[q]),
                                 bool(trades.is_buyer_maker[q]))
        i = hi
        out[:, k] = engine.close_second(t).values
    assert_same_rows(out, batch.columns, params.names)
    assert engine.late_trades == 0


def test_late_trades_are_counted_the_same_by_add_trade_and_add_trades() -> None:
    ts = np.array([T0 + 5, T0 + 9, T0 + 7, T0 + SEC + 1, T0 + 3, T0 + 2 * SEC], dtype=np.int64)
    ones = np.ones(6)
    a = StreamingFeatureEngine("BTCUSDT", FeatureParams(0.5), start_us=T0)
    b = StreamingFeatureEngine("BTCUSDT", FeatureParams(0.5), start_us=T0)
    flags = [a.add_trade(int(t), 1.0, 1.0, False) for t in ts.tolist()]
    assert b.add_trades(ts, ones, ones, np.zeros(6, dtype=np.bool_)) == sum(flags) == 4
    assert a.late_trades == b.late_trades == 2
    ra, rb = a.close_second(T0 + SEC), b.close_second(T0 + SEC)
    assert ra.n_trades == rb.n_trades == 2  # T0+5 and T0+9; T0+7 and T0+3 went back in time
    assert_same_rows(ra.values[:, None], rb.values[:, None], ra.names)


def _hourly_lake(path: Path) -> tuple[Lake, TradeArrays]:
    tape = make_tape(9, T0, 3 * 3600, rate=4.0, silence_s=10)
    lake = Lake.open(str(path))
    lake.append_bronze("trades", "BTCUSDT", bronze_trades_table(tape.trades), raw=b"x", raw_format="csv",
                       source="test")
    return lake, TradeArrays.from_tape(tape.trades)


def test_projected_bronze_read_equals_the_full_read_across_parts(tmp_path: Path) -> None:
    lake, trades = _hourly_lake(tmp_path)
    day = day_of(T0)
    manifest = lake.manifest("trades", "BTCUSDT", day)
    assert manifest is not None
    assert len(manifest.files) == 3  # hourly parts: the threaded path runs
    lo, hi = T0 + 1800 * SEC, T0 + 9000 * SEC  # cuts inside the first and the last part
    full = lake.read_bronze("trades", "BTCUSDT", lo, hi)
    some = lake.read_bronze("trades", "BTCUSDT", lo, hi, columns=["qty", "ts_event"])
    assert some.column_names == ["qty", "ts_event"]
    assert some.equals(full.select(["qty", "ts_event"]))
    arrays = trade_arrays_from_bronze(lake.read_bronze("trades", "BTCUSDT", columns=BRONZE_TRADE_COLUMNS))
    for name in ("ts_event", "price", "qty", "is_buyer_maker"):
        assert (getattr(arrays, name) == getattr(trades, name)).all(), name


def test_projected_bronze_read_refuses_an_unknown_column(tmp_path: Path) -> None:
    lake, _ = _hourly_lake(tmp_path)
    with pytest.raises(LakeError, match="no column"):
        lake.read_bronze("trades", "BTCUSDT", columns=["qty", "colour"])


def test_gold_is_written_as_plain_uncompressed_parquet(tmp_path: Path) -> None:
    lake, _ = _hourly_lake(tmp_path)
    build_span(lake, "BTCUSDT", day_of(T0), day_of(T0), FeatureParams(0.002))
    manifest = lake.table_manifest("gold", GOLD_DATASET, "BTCUSDT", day_of(T0))
    assert manifest is not None
    meta = pq.ParquetFile(tmp_path / manifest.files[0].path).metadata
    y = meta.schema.names.index("y")
    assert meta.row_group(0).column(y).compression == "UNCOMPRESSED"
    assert "RLE_DICTIONARY" not in meta.row_group(0).column(y).encodings
    assert lake.read_table("gold", GOLD_DATASET, "BTCUSDT").num_rows > 3 * 3600 - 100


def test_bronze_decimals_convert_exactly_and_refuse_values_beyond_int64() -> None:
    import decimal

    import pyarrow as pa

    from btcpipe.domain.arrow_decimal import PRICE, QUOTE, decimal_mantissas, decimal_to_float, mantissas_to_decimal
    from btcpipe.domain.decimal import to_float_array

    positive = np.array([0, 1, 6_000_012_345_678, 2**63 - 1], dtype=np.int64)
    mixed = np.array([5, -1, -(2**63), 2**62], dtype=np.int64)  # negatives take the full check
    for m in (positive, mixed):
        arr = pa.chunked_array([mantissas_to_decimal(m[:2]), mantissas_to_decimal(m[2:])])
        assert (decimal_mantissas(arr) == m).all()
        assert (decimal_to_float(arr) == to_float_array(m, -8)).all()
    sliced = mantissas_to_decimal(positive).slice(1, 2)
    assert (decimal_to_float(sliced) == to_float_array(positive[1:3], -8)).all()
    with_null = pa.array([decimal.Decimal("1.5"), None], PRICE)
    assert decimal_to_float(with_null).tolist() == [1.5, 0.0]
    # A price or quantity beyond the int64 mantissa cannot even be built at bronze's precision 18 ...
    with pytest.raises(pa.ArrowInvalid):
        pa.array([decimal.Decimal(2**64) / 10**8], PRICE)
    # ... and a wider decimal (quote amounts) that does not fit is refused by the conversion, not wrapped.
    too_big = pa.array([decimal.Decimal("1.5"), decimal.Decimal(2**64) / 10**8], QUOTE)
    for convert in (decimal_mantissas, decimal_to_float):
        with pytest.raises(DataError, match="does not fit"):
            convert(too_big)
    too_negative = pa.array([-decimal.Decimal(2**64) / 10**8], QUOTE)
    with pytest.raises(DataError, match="does not fit"):
        decimal_to_float(too_negative)


def test_converting_parts_in_place_gives_the_floats_of_converting_them_joined() -> None:
    from btcpipe.domain.decimal import to_float, to_float_array, to_float_concat

    rng = np.random.default_rng(7)
    whole = rng.integers(0, 10**13, 1001, dtype=np.int64)
    words = np.stack((whole, np.zeros_like(whole)), axis=1)  # the low words of decimal128 values: strided
    parts = [words[:400, 0], whole[400:401], whole[401:401], words[401:, 0]]
    for exponent in (-8, -2, 0, 3):
        joined = to_float_concat(parts, exponent)
        assert joined.tobytes() == to_float_array(whole, exponent).tobytes()
        assert [to_float(int(m), exponent) for m in whole[:50]] == joined[:50].tolist()
    assert to_float_concat([], -8).shape == (0,)

"""Time split, purge gap, incomplete rows, scaler and metrics: the pure parts of training."""

from __future__ import annotations

import numpy as np
import pytest

from btcpipe.domain.errors import ConfigError, DataError, ModelError
from btcpipe.domain.scores import score
from btcpipe.domain.time import US_PER_SEC
from btcpipe.model.dataset import LABEL_HORIZON_US, LabeledRows, drop_incomplete, rows_from_columns, split_by_time
from btcpipe.model.evaluate import fit_ridge, fit_ridge_on_val, shuffled_label_control
from btcpipe.model.scaler import StandardScaler
from btcpipe.model.synthetic import SIGNAL_SCALE, SIGNAL_WEIGHTS, synthetic_rows


def _rows(ts_seconds: np.ndarray, n_features: int = 3) -> LabeledRows:
    n = len(ts_seconds)
    rng = np.random.default_rng(0)
    return LabeledRows(
        ts_sec=ts_seconds.astype(np.int64) * US_PER_SEC,
        features=rng.standard_normal((n, n_features)),
        y=rng.standard_normal(n),
        feature_names=tuple(f"f{i}" for i in range(n_features)),
    )


def test_split_is_contiguous_in_time_with_a_purge_gap_longer_than_the_label_horizon() -> None:
    rows = _rows(np.arange(1000))
    split = split_by_time(rows, purge_us=20 * US_PER_SEC)
    assert split.train.ts_sec[-1] < split.val.ts_sec[0] < split.val.ts_sec[-1] < split.test.ts_sec[0]
    assert split.val.ts_sec[0] - split.train.ts_sec[-1] >= 20 * US_PER_SEC
    assert split.test.ts_sec[0] - split.val.ts_sec[-1] >= 20 * US_PER_SEC
    # no row lost other than those inside the gaps
    assert len(split.train) + len(split.val) + len(split.test) + split.purged_rows == 1000
    assert split.purged_rows == 2 * 19


def test_purge_gap_is_measured_in_time_across_holes_in_the_data() -> None:
    # a 30-s hole right after the training cut already separates train from val: nothing more to purge
    seconds = np.concatenate([np.arange(700), np.arange(730, 1030)])
    split = split_by_time(_rows(seconds), purge_us=20 * US_PER_SEC)
    assert split.val.ts_sec[0] == 730 * US_PER_SEC
    assert split.val.ts_sec[0] - split.train.ts_sec[-1] >= 20 * US_PER_SEC


def test_purge_gap_not_longer_than_the_label_horizon_is_refused() -> None:
    with pytest.raises(ConfigError, match="horizon"):
        split_by_time(_rows(np.arange(1000)), purge_us=LABEL_HORIZON_US)


def test_split_of_too_few_rows_says_which_part_is_empty() -> None:
    with pytest.raises(DataError, match="not enough rows"):
        split_by_time(_rows(np.arange(30)))


def test_incomplete_rows_are_dropped_and_counted() -> None:
    rows = _rows(np.arange(10))
    rows.features[0, 1] = np.nan  # warm-up
    rows.y[9] = np.nan  # no label
    rows.features[4, 2] = np.inf
    kept, dropped = drop_incomplete(rows)
    assert dropped == 3
    assert list(kept.ts_sec // US_PER_SEC) == [1, 2, 3, 5, 6, 7, 8]


def test_rows_from_columns_sorts_by_time_and_names_missing_columns() -> None:
    cols = {"ts_sec": np.array([2, 1]) * US_PER_SEC, "a": np.array([2.0, 1.0]), "y": np.array([0.2, 0.1])}
    rows = rows_from_columns(cols, ["a"])
    assert list(rows.features[:, 0]) == [1.0, 2.0]
    assert list(rows.y) == [0.1, 0.2]
    with pytest.raises(DataError, match=r"\['b'\]"):
        rows_from_columns(cols, ["a", "b"])


def test_rows_out_of_time_order_are_refused() -> None:
    with pytest.raises(DataError, match="increasing"):
        _rows(np.array([0, 2, 1]))


def test_scaler_json_round_trip_is_exact_and_constant_columns_do_not_divide_by_zero() -> None:
    x = np.random.default_rng(1).standard_normal((100, 3)) * [1e-6, 1e3, 0.0] + [1.0, -5.0, 7.0]
    scaler = StandardScaler.fit(x, ["a", "b", "c"])
    again = StandardScaler.from_json(scaler.to_json())
    assert np.array_equal(again.mean, scaler.mean)
    assert np.array_equal(again.std, scaler.std)
    scaled = again.transform(x)
    assert scaled.dtype == np.float32
    assert np.allclose(scaled[:, :2].std(axis=0), 1.0, atol=1e-5)
    assert np.all(scaled[:, 2] == 0.0)


@pytest.mark.parametrize(
    "text", [b"{", b"[]", b'{"format": "other"}', b'{"format": "btcpipe.standard_scaler/1", "feature_names": ["a"]}']
)
def test_malformed_scaler_json_is_refused_with_a_model_error(text: bytes) -> None:
    with pytest.raises(ModelError, match="scaler"):
        StandardScaler.from_json(text)


def test_scores_on_known_values() -> None:
    y = np.array([1.0, -1.0, 2.0, 0.0])
    yhat = np.array([0.5, 1.0, 0.0, 3.0])
    s = score(y, yhat)
    assert s.mae == pytest.approx((0.5 + 2 + 2 + 3) / 4)
    assert s.mse == pytest.approx((0.25 + 4 + 4 + 9) / 4)
    assert s.r2 == pytest.approx(1 - (0.25 + 4 + 4 + 9) / float(((y - y.mean()) ** 2).sum()))
    # moves: 1 (hit), −1 (miss), 2 (no call = half); the zero realized move is not counted
    assert s.n_moves == 3
    assert s.hit_rate == pytest.approx(1.5 / 3)


def test_ridge_recovers_the_known_linear_signal() -> None:
    data = synthetic_rows(20_000, seed=4)
    split = split_by_time(data.rows)
    ridge = fit_ridge_on_val(split.train, split.val)
    names = split.train.feature_names
    # coefficients are on scaled features; the synthetic signal is linear in the unscaled noise
    raw_coef = ridge.coef / ridge.scaler.std
    for name, weight in SIGNAL_WEIGHTS.items():
        scale = ridge.scaler.std[names.index(name)]
        assert raw_coef[names.index(name)] * scale == pytest.approx(weight * SIGNAL_SCALE, rel=0.1)
    r2 = score(split.test.y, ridge.predict(split.test.features)).r2
    assert r2 == pytest.approx(data.optimal_r2, abs=0.03)


def test_shuffled_label_control_scores_chance() -> None:
    split = split_by_time(synthetic_rows(40_000, seed=5).rows)
    real = score(split.test.y, fit_ridge(split.train, 10.0).predict(split.test.features))
    control = shuffled_label_control(split, seed=11)
    half_width = 4 * 0.5 / np.sqrt(control.n_moves)  # four binomial standard errors
    assert abs(control.hit_rate - 0.5) < half_width
    assert real.hit_rate > 0.5 + half_width  # the same harness does see the real signal

"""Block-bootstrap intervals: they cover the truth, widen for overlapping labels, and pair predictors."""

from __future__ import annotations

import numpy as np
import pytest

from btcpipe.domain.errors import DataError
from btcpipe.domain.scores import score
from btcpipe.domain.uncertainty import BlockBootstrap
from btcpipe.model.dataset import split_by_time
from btcpipe.model.evaluate import evaluate
from btcpipe.model.synthetic import synthetic_rows


def _overlapping_labels(n: int, seed: int) -> np.ndarray:
    """10-s sums of i.i.d. 1-s moves: neighbouring labels share 9 of 10 terms, like btcpipe's labels."""
    steps = np.random.default_rng(seed).standard_normal(n + 9)
    return np.convolve(steps, np.ones(10), mode="valid")


def test_point_figures_equal_the_plain_scores() -> None:
    rng = np.random.default_rng(0)
    y = rng.standard_normal(5000)
    yhat = 0.3 * y + rng.standard_normal(5000)
    got = BlockBootstrap(y, n_boot=200).scores(yhat)
    plain = score(y, yhat)
    assert got["r2"].value == pytest.approx(plain.r2)
    assert got["mae"].value == pytest.approx(plain.mae)
    assert got["hit_rate"].value == pytest.approx(plain.hit_rate)
    for iv in got.values():
        assert iv.low <= iv.value <= iv.high


def test_blocks_widen_the_interval_of_overlapping_labels_to_their_real_spread() -> None:
    """Over many independent samples, the hit rate of a no-skill predictor spreads as the 60-s blocks say,
    not as single rows would: a one-row block gives an interval far too narrow."""
    rng = np.random.default_rng(1)
    widths_block, widths_row, hits = [], [], []
    for seed in range(30):
        y = _overlapping_labels(3000, seed)
        yhat = rng.standard_normal(3000)
        yhat = np.convolve(np.concatenate([yhat, np.zeros(9)]), np.ones(10), mode="valid")  # overlapping too
        hits.append(score(y, yhat).hit_rate)
        widths_block.append(BlockBootstrap(y, n_boot=300, seed=seed).scores(yhat)["hit_rate"].half_width)
        widths_row.append(BlockBootstrap(y, block_s=1, n_boot=300, seed=seed).scores(yhat)["hit_rate"].half_width)
    true_half_width = 1.96 * float(np.std(hits))
    assert np.mean(widths_block) == pytest.approx(true_half_width, rel=0.4)
    assert np.mean(widths_row) < 0.6 * true_half_width


def test_compare_gives_the_difference_and_the_share_from_the_same_resamples() -> None:
    rng = np.random.default_rng(2)
    signal = 0.5 * rng.standard_normal(6000)
    y = signal + rng.standard_normal(6000)  # signal is E[y | signal]: R² ≈ 0.2
    boot = BlockBootstrap(y, n_boot=300)
    cmp = boot.compare(signal * 0.9, signal)
    assert cmp["r2_difference"].value == pytest.approx(boot.scores(signal * 0.9)["r2"].value
                                                       - boot.scores(signal)["r2"].value)
    assert cmp["r2_share"].low <= cmp["r2_share"].value <= cmp["r2_share"].high
    # paired resamples: the share's interval is much narrower than either R²'s relative width
    assert cmp["r2_share"].half_width < 0.2


def test_a_mask_scores_only_its_rows() -> None:
    y = np.arange(1.0, 1001.0) * np.where(np.arange(1000) % 2, 1.0, -1.0)
    yhat = np.where(np.arange(1000) < 500, y, -y)
    mask = np.arange(1000) < 500
    assert BlockBootstrap(y, mask=mask, n_boot=50).scores(yhat)["hit_rate"].value == 1.0
    assert BlockBootstrap(y, mask=~mask, n_boot=50).scores(yhat)["hit_rate"].value == 0.0


def test_bad_input_is_a_data_error() -> None:
    with pytest.raises(DataError):
        BlockBootstrap(np.zeros(1))
    with pytest.raises(DataError):
        BlockBootstrap(np.zeros(100), n_boot=200).scores(np.zeros(99))


def test_evaluate_reports_intervals_for_model_baselines_control_and_regimes() -> None:
    split = split_by_time(synthetic_rows(20_000, seed=4).rows)
    evaluation, _ = evaluate(lambda x: np.zeros(x.shape[0]) + 1e-9, split, seed=0)
    iv = evaluation.intervals
    assert set(iv["baselines"]) == {"predict_zero", "last_1s_return", "ridge"}
    assert iv["model"]["r2"]["low"] <= iv["model"]["r2"]["value"] <= iv["model"]["r2"]["high"]
    control = iv["shuffled_labels_ridge"]["hit_rate"]
    assert control["low"] <= control["value"] <= control["high"]
    assert abs(control["value"] - 0.5) < 1.5 * (control["high"] - control["low"])  # chance, within ~3 half-widths
    assert iv["method"]["block_s"] == 60
    kinds = {r["kind"] for r in evaluation.by_regime}
    assert "volatility tercile" in kinds
    assert "time of day (UTC)" in kinds
    assert "intervals" in evaluation.as_dict()

"""Stylized facts and the calibration table: the realistic preset matches the shared BTCUSDT recordings
within the stated bands, and the classroom preset does not (so the bands can fail)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from btcpipe.binance.recording import load_recording
from btcpipe.market.calibration import calibration_table, markdown_table
from btcpipe.market.facts import FACT_KEYS, autocorrelation, hill_tail_index, kurtosis, stylized_facts
from btcpipe.market.presets import preset_config
from btcpipe.market.simulator import oracle_score, simulate


@pytest.fixture(scope="module")
def real_facts(recording_paths: list[Path]) -> list[dict[str, float]]:
    return [stylized_facts(load_recording([p]).to_tape()) for p in recording_paths]


def test_autocorrelation_kurtosis_and_tail_index_recover_known_values() -> None:
    rng = np.random.default_rng(0)
    e = rng.standard_normal(200_000)
    ar = np.empty_like(e)
    ar[0] = e[0]
    for i in range(1, e.shape[0]):
        ar[i] = 0.6 * ar[i - 1] + e[i]
    assert autocorrelation(ar, 1) == pytest.approx(0.6, abs=0.01)
    assert autocorrelation(ar, 2) == pytest.approx(0.36, abs=0.01)
    assert kurtosis(e) == pytest.approx(3.0, abs=0.05)
    pareto = rng.pareto(1.5, 200_000) + 1.0  # P(X > x) = x^−1.5
    assert hill_tail_index(pareto) == pytest.approx(1.5, abs=0.1)


def test_realistic_preset_matches_every_fact_of_the_shared_recordings(real_facts: list[dict[str, float]]) -> None:
    config = preset_config("realistic", seed=1, duration_s=7200)
    rows = calibration_table(real_facts, stylized_facts(simulate(config)))
    assert [r.key for r in rows] == list(FACT_KEYS)
    outside = [(r.key, r.simulated, r.low, r.high) for r in rows if not r.ok]
    assert outside == []
    assert sum(r.compared for r in rows) == len(FACT_KEYS) - 1  # every fact but the span length
    assert "| trades per second, mean |" in markdown_table(rows, ["a", "b"], "sim")


def test_classroom_preset_fails_the_sign_memory_facts(real_facts: list[dict[str, float]]) -> None:
    config = preset_config("classroom", seed=1, duration_s=3600)
    rows = {r.key: r for r in calibration_table(real_facts, stylized_facts(simulate(config)))}
    assert not rows["sign_acf_10"].ok
    assert not rows["sign_acf_50"].ok


def test_realistic_oracle_explains_a_few_percent_of_the_label() -> None:
    """Published order-flow figures: ~1 % out-of-sample R², 52–58 % hits. The realistic day: 2–4 %."""
    config = preset_config("realistic", seed=2, duration_s=6 * 3600)
    score = oracle_score(simulate(config), config)
    assert 0.005 < score.r2 < 0.05
    assert 0.52 < score.hit_rate < 0.60


def test_realistic_label_moves_one_for_one_with_its_oracle() -> None:
    """The oracle is the conditional mean: regressing the label on it gives slope 1 (SE ≈ 0.05 here)."""
    from btcpipe.features.labels import forward_log_return, mid_from_best_bid_asks
    from btcpipe.market.simulator import oracle_predictions

    config = preset_config("realistic", seed=3, duration_s=12 * 3600)
    tape = simulate(config)
    ts, yhat = oracle_predictions(tape, config)
    assert tape.best_bid_asks is not None
    mid_ts, mid = mid_from_best_bid_asks(tape.best_bid_asks)
    y = forward_log_return(ts, mid_ts, mid, data_end_us=config.end_us)
    keep = np.isfinite(y)
    slope = float(np.polyfit(yhat[keep], y[keep], 1)[0])
    assert slope == pytest.approx(1.0, abs=0.2)

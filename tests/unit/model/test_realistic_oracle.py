"""The realistic preset's oracle is partly non-linear in the v1 features: a linear fit falls short of it."""

from __future__ import annotations

import numpy as np

from btcpipe.market.presets import preset_config
from btcpipe.model.dataset import drop_incomplete
from btcpipe.model.simulated import simulated_rows
from btcpipe.model.training_run import oracle_on_rows


def _share(target: np.ndarray, design: np.ndarray) -> float:
    """Share of ``target``'s variance the least-squares fit on ``design`` explains (in sample: the oracle is
    noise-free, so this measures what the design can represent, not what a model would learn)."""
    coef = np.linalg.lstsq(design, target, rcond=None)[0]
    err = target - design @ coef
    centred = target - target.mean()
    return 1.0 - float(err @ err) / float(centred @ centred)


def test_a_linear_model_of_the_features_falls_measurably_short_of_the_realistic_oracle() -> None:
    sim = simulated_rows(preset_config("realistic", seed=0, duration_s=24 * 3600))
    rows, _ = drop_incomplete(sim.rows)
    oracle = oracle_on_rows(sim.tape, sim.config, rows)
    x = (rows.features - rows.features.mean(axis=0)) / (rows.features.std(axis=0) + 1e-12)
    linear = np.column_stack([x, np.ones(len(rows))])
    names = rows.feature_names
    picked = [names.index(k) for k in ("tvi_1s", "n_trades_1s", "n_trades_5s", "burst_1s", "vol_ret_10s")]
    products = np.column_stack([x[:, i] * x[:, j] for a, i in enumerate(picked) for j in picked[a:]])
    linear_share = _share(oracle, linear)
    quadratic_share = _share(oracle, np.column_stack([linear, products]))
    assert 0.3 < linear_share < 0.85  # the features carry the signal, but not linearly (0.71 here)
    assert quadratic_share > linear_share + 0.03  # products of imbalance and activity recover more (0.76)

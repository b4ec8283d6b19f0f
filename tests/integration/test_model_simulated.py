"""On simulated market data (known optimum): features → gold → ``btcpipe train`` → ``btcpipe evaluate``
beside the simulator's oracle. The MLP must reach at least 80 % of the best possible R²."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from btcpipe.cli.main import cli
from btcpipe.domain.time import day_of, iso
from btcpipe.features.batch import FeatureFrame
from btcpipe.features.tables import GOLD_DATASET, gold_table
from btcpipe.lake.lake import Lake
from btcpipe.market.config import SimConfig
from btcpipe.model.simulated import simulated_rows

SIM = SimConfig(seed=5, duration_s=6 * 3600)


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_mlp_on_simulated_hours_reaches_most_of_the_oracle_r2(tmp_path: Path) -> None:
    sim = simulated_rows(SIM)
    rows = sim.rows
    assert rows.label_mid == "bbo_mid"
    lake = Lake.open(str(tmp_path))
    for day in sorted({day_of(int(t)) for t in rows.ts_sec}):
        sel = np.array([day_of(int(t)) == day for t in rows.ts_sec])
        frame = FeatureFrame(rows.ts_sec[sel], np.ascontiguousarray(rows.features[sel].T), rows.feature_names)
        table = gold_table(frame, rows.y[sel], rows.label_mid, sim.params, SIM.symbol)
        lake.write_table("gold", GOLD_DATASET, SIM.symbol, day, table)

    trained = json.loads(_invoke(
        "train", "--lake", str(tmp_path), "--symbol", SIM.symbol, "--start", iso(SIM.start_us),
        "--end", iso(SIM.end_us), "--name", "sim", "--seed", "1", "--epochs", "20", "--progress", "none",
    ))
    doc = json.loads(_invoke(
        "evaluate", "--lake", str(tmp_path), "--name", "sim", "--version", trained["version"], "--json",
        "--sim-seed", str(SIM.seed), "--sim-start", str(SIM.start_us), "--sim-duration-s", str(SIM.duration_s),
        "--sim-preset", "classroom",  # SimConfig defaults are the classroom preset
    ))
    oracle = doc["oracle"]
    assert oracle["r2"] > 0.05
    assert oracle["model_r2_share"] >= 0.8, doc
    assert doc["model"]["r2"] > doc["baselines"]["predict_zero"]["r2"]
    assert doc["model"]["hit_rate"] > 0.55
    for control in doc["controls"].values():
        assert abs(control["hit_rate"] - 0.5) < 4 * 0.5 / np.sqrt(control["n_moves"])

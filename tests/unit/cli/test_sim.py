"""``btcpipe sim``: generate writes exact trades, oracle prints the score, bad options are refused."""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from btcpipe.cli.main import cli
from btcpipe.domain.arrow_decimal import decimal_mantissas
from btcpipe.domain.decimal import parse_decimal
from btcpipe.market.presets import preset_config
from btcpipe.market.simulator import SimConfig, oracle_score, simulate


def test_generate_writes_the_simulated_trades_exactly_to_parquet(tmp_path: Path) -> None:
    out = tmp_path / "trades.parquet"
    result = CliRunner().invoke(
        cli, ["sim", "generate", "--preset", "classroom", "--seed", "4", "--duration", "120", "--out", str(out),
              "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.output)
    tape = simulate(SimConfig(seed=4, duration_s=120))
    assert summary["trades"] == len(tape.trades)
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == tape.trades.id.tolist()
    assert (decimal_mantissas(table.column("price")) == tape.trades.price).all()
    assert (decimal_mantissas(table.column("qty")) == tape.trades.qty).all()
    assert table.column("is_buyer_maker").to_pylist() == tape.trades.is_buyer_maker.tolist()
    assert not list(tmp_path.glob("*.tmp"))


def test_generate_writes_csv_with_decimal_strings(tmp_path: Path) -> None:
    out = tmp_path / "trades.csv"
    result = CliRunner().invoke(cli, ["sim", "generate", "--duration", "30", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "trades_per_sec" in result.output
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    tape = simulate(preset_config("realistic", duration_s=30))  # realistic is the default preset
    assert len(rows) == len(tape.trades)
    assert parse_decimal(rows[-1]["price"]) == tape.trades.price[-1]
    assert int(rows[0]["ts_event"]) == tape.trades.ts_event[0]


def test_generate_refuses_an_unknown_output_format(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["sim", "generate", "--duration", "10", "--out", str(tmp_path / "x.txt")])
    assert result.exit_code != 0
    assert ".parquet or .csv" in result.output


@pytest.mark.parametrize("preset", ["classroom", "realistic"])
def test_oracle_prints_the_same_score_as_the_library_as_json(preset: str) -> None:
    result = CliRunner().invoke(cli, ["sim", "oracle", "--preset", preset, "--seed", "2", "--hours", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    printed = orjson.loads(result.output)
    cfg = preset_config(preset, seed=2, duration_s=1800)
    score = oracle_score(simulate(cfg), cfg)
    assert (printed["r2"], printed["hit_rate"], printed["n"]) == (score.r2, score.hit_rate, score.n)
    assert printed["preset"] == preset


def test_an_unknown_preset_is_refused() -> None:
    result = CliRunner().invoke(cli, ["sim", "oracle", "--preset", "easy", "--duration", "60"])
    assert result.exit_code == 2
    assert "classroom" in result.output


def test_calibrate_prints_real_beside_simulated_and_fails_when_a_fact_is_outside(recording_paths: list[Path]) -> None:
    runner = CliRunner()
    args = ["sim", "calibrate", *(a for p in recording_paths for a in ("--recording", str(p))), "--hours", "2",
            "--seed", "1"]
    realistic = runner.invoke(cli, [*args, "--format", "json"])
    assert realistic.exit_code == 0, realistic.output
    doc = orjson.loads(realistic.output)
    assert doc["recordings"] == [p.name for p in recording_paths]
    row = next(r for r in doc["rows"] if r["key"] == "trades_per_s_mean")
    assert len(row["real"]) == 2
    assert row["ok"] is True
    classroom = runner.invoke(cli, [*args, "--preset", "classroom"])
    assert classroom.exit_code == 1
    assert "sign_acf_50" in classroom.output


def test_oracle_refuses_both_hours_and_duration_and_a_garbage_start() -> None:
    runner = CliRunner()
    both = runner.invoke(cli, ["sim", "oracle", "--hours", "1", "--duration", "60"])
    assert both.exit_code == 2
    assert "not both" in both.output
    bad = runner.invoke(cli, ["sim", "oracle", "--start", "yesterday-ish", "--duration", "60"])
    assert bad.exit_code == 2
    misaligned = runner.invoke(cli, ["sim", "oracle", "--start", "2024-01-01T00:00:00.5", "--duration", "60"])
    assert misaligned.exit_code == 2
    assert "whole second" in misaligned.output


def test_every_sim_command_has_help() -> None:
    runner = CliRunner()
    for args in (["sim", "--help"], ["sim", "generate", "--help"], ["sim", "oracle", "--help"],
                 ["sim", "calibrate", "--help"], ["report", "--help"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0
        assert "Usage" in result.output
    assert "oracle" in runner.invoke(cli, ["sim", "--help"]).output

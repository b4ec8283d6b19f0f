"""``btcpipe flink``: encode writes one decodable payload per event; a missing Flink venv is a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from btcpipe.cli.main import cli
from btcpipe.engines.flink.elements import element_of
from btcpipe.services.replay import tape_from_recording


def test_encode_writes_every_trade_and_best_bid_ask_of_a_recording_as_payload_lines(
    recording_paths: list[Path], tmp_path: Path,
) -> None:
    out = tmp_path / "payloads.txt"
    result = CliRunner().invoke(cli, ["flink", "encode", "--recording", str(recording_paths[0]), "--output", str(out)])
    assert result.exit_code == 0, result.output
    elements = [element_of(line, 0) for line in out.read_text().splitlines()]
    assert json.loads(result.output)["payloads"] == len(elements)
    tape = tape_from_recording([recording_paths[0]])
    assert sum(e is not None and e.kind == "b" for e in elements) == len(tape.best_bid_asks or [])
    times = [e.ts_ms for e in elements if e is not None]
    assert times == sorted(times)  # merged in exchange time


def test_run_without_a_flink_venv_says_how_to_build_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BTCPIPE_FLINK_PYTHON", str(tmp_path / "nowhere" / "python"))
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"trade_size_p95": 0.05}))
    payloads = tmp_path / "payloads.txt"
    payloads.write_text("")
    result = CliRunner().invoke(cli, ["flink", "run", "--input", str(payloads), "--output", str(tmp_path / "rows"),
                                      "--params", str(params), "--work-dir", str(tmp_path / "work")])
    assert result.exit_code == 1
    assert "make flink-venv" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)

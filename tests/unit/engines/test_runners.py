"""Partition runners: threads equal serial byte for byte, results keep task order, errors surface as ours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.engines import D1, D3, SYMBOLS, lake_files, write_bronze

from btcpipe.cli.features import cli
from btcpipe.cli.wiring.engines import open_runner
from btcpipe.domain.errors import ConfigError, DataError
from btcpipe.engines.feature_build import build_partitions
from btcpipe.engines.serial import SerialRunner
from btcpipe.engines.threads import ThreadRunner
from btcpipe.features.spec import FeatureParams
from btcpipe.lake.ref import LakeRef


def _fail_on_three(n: int) -> int:
    if n == 3:
        raise DataError("three is bad")
    return n * n


def test_thread_runner_keeps_task_order_and_raises_the_tasks_own_error() -> None:
    runner = ThreadRunner(3)
    try:
        assert runner.map(_fail_on_three, [5, 4, 2, 1, 0]) == [25, 16, 4, 1, 0]
        with pytest.raises(DataError, match="three is bad"):
            runner.map(_fail_on_three, [1, 2, 3, 4])
    finally:
        runner.close()
    with pytest.raises(ConfigError, match="jobs"):
        ThreadRunner(0)


def test_threads_write_the_same_parts_and_manifests_as_serial_for_two_symbols(tmp_path: Path) -> None:
    """``btcpipe features build --engine threads --symbols …`` against ``build_partitions`` in turn."""
    for name in ("serial", "threads"):
        write_bronze(tmp_path / name)
    serial = build_partitions(SerialRunner(), LakeRef(str(tmp_path / "serial")), SYMBOLS, D1, D3)
    assert serial[0].params != serial[1].params  # each symbol fitted on its own trades
    out = CliRunner().invoke(cli, ["build", "--lake", str(tmp_path / "threads"), "--symbols", ",".join(SYMBOLS),
                                   "--start", str(D1), "--end", str(D3), "--engine", "threads", "--jobs", "3",
                                   "--workers", "1", "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["engine"] == "threads"
    assert [s["symbol"] for s in summary["symbols"]] == list(SYMBOLS)
    for one, reference in zip(summary["symbols"], serial, strict=True):
        assert [d["day"] for d in one["days"]] == ["2024-03-01", "2024-03-02", "2024-03-03"]
        assert one["params"]["trade_size_p95"] == reference.params.trade_size_p95
        # The summary names exactly the parts the serial build's manifests list.
        assert [(d["silver_parts"], d["gold_parts"]) for d in one["days"]] == [
            ([f.path for f in p.silver], [f.path for f in p.gold]) for p in reference.days
        ]
    for layer in ("silver", "gold"):
        a, b = lake_files(tmp_path / "serial", layer), lake_files(tmp_path / "threads", layer)
        assert len(a) == 2 * 3 * 2  # symbols × days × (part + manifest)
        assert a == b, layer
    refused = CliRunner().invoke(cli, ["build", "--lake", str(tmp_path / "threads"), "--symbols", ",".join(SYMBOLS),
                                       "--start", str(D1), "--end", str(D3), "--write-params", str(tmp_path / "p")])
    assert refused.exit_code == 2
    assert "one symbol" in refused.output


def test_build_partitions_refuses_bad_requests_before_running_anything(tmp_path: Path) -> None:
    write_bronze(tmp_path / "lake", ("BTCUSDT",))
    lake = LakeRef(str(tmp_path / "lake"))
    with pytest.raises(ConfigError, match="repeat"):
        build_partitions(SerialRunner(), lake, ["BTCUSDT", "BTCUSDT"], D1, D3)
    with pytest.raises(DataError, match="no bronze trades for ETHUSDT"):
        build_partitions(SerialRunner(), lake, ["BTCUSDT", "ETHUSDT"], D1, D3)
    with pytest.raises(ConfigError, match="spread"):
        build_partitions(SerialRunner(), lake, ["BTCUSDT"], D1, D3, params=FeatureParams(0.01, with_spread=True))
    assert not (tmp_path / "lake" / "silver").exists()  # planned in the driver: nothing was written
    with pytest.raises(ConfigError, match="--ray-address is for --engine ray"):
        open_runner("threads", ray_address="127.0.0.2:6390")

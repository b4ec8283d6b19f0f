"""``--engine ray`` on a local Ray and on a two-node Ray cluster on loopback (``btcpipe cluster up``): the
parts and manifests equal the serial build's byte for byte, tasks land on both nodes, and a worker killed
after writing its day is retried without leaving a second copy of anything.

Ray starts slowly (seconds per node), so one cluster serves the whole session and every Ray test runs in
one xdist group."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Ray reads the mode when it is imported, and a client given an address sends a token only in token mode.
os.environ.setdefault("RAY_AUTH_MODE", "token")
ray = pytest.importorskip("ray")

import support.engines as support_engines  # noqa: E402 - after the skip: it is shipped to Ray by value
from support.backfill import US_ERA_START, bronze_files, two_symbol_tapes  # noqa: E402
from support.engines import D1, D3, SYMBOLS, build_on_node, build_then_die_once, lake_files, write_bronze  # noqa: E402

from btcpipe.domain.errors import DataError  # noqa: E402
from btcpipe.engines.feature_build import DayTask, build_partitions  # noqa: E402
from btcpipe.engines.ray_runner import RayRunner  # noqa: E402
from btcpipe.engines.serial import SerialRunner  # noqa: E402
from btcpipe.exchange.server import LocalExchange  # noqa: E402
from btcpipe.features.spec import FeatureParams  # noqa: E402
from btcpipe.lake.ref import LakeRef  # noqa: E402
from btcpipe.services.backfill_days import backfill_dump_days  # noqa: E402

pytestmark = [pytest.mark.services, pytest.mark.xdist_group("ray"), pytest.mark.timeout(600)]

BTCPIPE = [sys.executable, "-m", "btcpipe.cli.main"]
HEAD_IP = "127.0.0.2"
D_MS, D_US = dt.date(2024, 12, 31), dt.date(2025, 1, 1)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _btcpipe(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BTCPIPE, *args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """A head on 127.0.0.2 and a worker on 127.0.0.3, one CPU each, started by ``btcpipe cluster up``.

    The nodes check tokens; clients (this process, the CLI it starts) send the one in ~/.ray/auth_token
    because RAY_AUTH_MODE=token is set above."""
    port = _free_port(HEAD_IP)
    up = _btcpipe("cluster", "up", "--nodes", "2", "--head-ip", HEAD_IP, "--port", str(port))
    try:
        assert up.returncode == 0, up.stderr
        yield f"{HEAD_IP}:{port}"
    finally:
        down = _btcpipe("cluster", "down")
        assert down.returncode == 0, down.stderr


@pytest.fixture(scope="module")
def serial_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serial") / "lake"
    write_bronze(root)
    build_partitions(SerialRunner(), LakeRef(str(root)), SYMBOLS, D1, D3)
    return root


def _assert_same_layers(built: Path, reference: Path) -> None:
    for layer in ("silver", "gold"):
        got, want = lake_files(built, layer), lake_files(reference, layer)
        assert len(want) == 2 * 3 * 2  # symbols × days × (part + manifest)
        assert got == want, f"{layer}: {sorted(set(got) ^ set(want))}"


def _cli_build(lake: Path, *engine: str) -> dict[str, object]:
    out = _btcpipe("features", "build", "--lake", str(lake), "--symbols", ",".join(SYMBOLS), "--start", str(D1),
                   "--end", str(D3), *engine, "--json")
    assert out.returncode == 0, out.stderr
    summary: dict[str, object] = json.loads(out.stdout)
    return summary


def test_ray_local_build_equals_serial_byte_for_byte(tmp_path: Path, serial_lake: Path) -> None:
    write_bronze(tmp_path / "lake")
    summary = _cli_build(tmp_path / "lake", "--engine", "ray", "--jobs", "2")
    assert summary["engine"] == "ray"
    _assert_same_layers(tmp_path / "lake", serial_lake)


def test_two_node_cluster_build_equals_serial_and_uses_both_nodes(
    tmp_path: Path, serial_lake: Path, ray_cluster: str
) -> None:
    write_bronze(tmp_path / "lake")
    _cli_build(tmp_path / "lake", "--engine", "ray", "--ray-address", ray_cluster)
    _assert_same_layers(tmp_path / "lake", serial_lake)
    # The same tasks again, each reporting its node: SPREAD sends them to both.
    runner = RayRunner(ray_cluster)
    try:
        ray.cloudpickle.register_pickle_by_value(support_engines)
        assert runner.nodes() == [HEAD_IP, "127.0.0.3"]
        lake = LakeRef(str(tmp_path / "lake"))
        params = FeatureParams(0.002)
        tasks = [DayTask(lake, s, d, params, use_book=False, threads=1) for s in SYMBOLS for d in (D1, D3)]
        nodes = {node for node, _ in runner.map(build_on_node, tasks)}
        assert len(nodes) == 2
    finally:
        runner.close()


def test_killed_worker_task_is_retried_without_duplicates(tmp_path: Path, serial_lake: Path, ray_cluster: str) -> None:
    lake_root = tmp_path / "lake"
    write_bronze(lake_root)
    runner = RayRunner(ray_cluster, max_retries=2)
    try:
        ray.cloudpickle.register_pickle_by_value(support_engines)
        built = build_partitions(runner, LakeRef(str(lake_root)), SYMBOLS, D1, D3)  # a first, clean build
        # Then rebuild with each symbol's D1 worker killed after it wrote its parts.
        lake = LakeRef(str(lake_root))
        tasks = [DayTask(lake, one.symbol, p.build.day, one.params, use_book=False) for one in built for p in one.days]
        again = runner.map(build_then_die_once, tasks)
    finally:
        runner.close()
    killed = sorted(p.name for p in lake_root.glob("killed-*"))
    assert killed == [f"killed-{s}-{D1}" for s in SYMBOLS]  # the kill did happen, once per symbol
    assert [(p.symbol, p.build.day) for p in again] == [(t.symbol, t.day) for t in tasks]
    for marker in lake_root.glob("killed-*"):
        marker.unlink()
    _assert_same_layers(lake_root, serial_lake)  # one part per day and layer, the serial build's bytes


def test_dump_days_backfilled_on_the_cluster_equal_serial(tmp_path: Path, ray_cluster: str) -> None:
    """Each (symbol, day) downloads, verifies and writes its dump on a cluster node (the exchange serves
    on 127.0.0.1, which both nodes reach)."""
    start = US_ERA_START - 600_000_000  # the ms-era and the µs-era day
    days = (start_day, end_day) = (D_MS, D_US)
    with LocalExchange(two_symbol_tapes(47, 1200, start)) as ex:
        backfill_dump_days(SerialRunner(), LakeRef(str(tmp_path / "serial")), ex.base_url, kind="trades",
                           symbols=SYMBOLS, start_day=start_day, end_day=end_day)
        out = _btcpipe("backfill", "--symbols", ",".join(SYMBOLS), "--source", "dumps", "--start", str(start_day),
                       "--end", str(end_day + dt.timedelta(days=1)), "--lake", str(tmp_path / "ray"),
                       "--base-url", ex.base_url, "--engine", "ray", "--ray-address", ray_cluster)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)["results"]
    assert [(r["symbol"], r["days"]) for r in results] == [(s, [d.isoformat()]) for s in SYMBOLS for d in days]
    assert bronze_files(tmp_path / "ray") == bronze_files(tmp_path / "serial")


def test_a_tasks_own_error_reaches_the_driver_as_itself(ray_cluster: str) -> None:
    runner = RayRunner(ray_cluster)
    try:
        ray.cloudpickle.register_pickle_by_value(support_engines)
        assert runner.map(support_engines.refuse_odd, [4, 2, 0]) == [4, 2, 0]
        with pytest.raises(DataError, match="3 is odd"):  # not retried, not wrapped in Ray's error types
            runner.map(support_engines.refuse_odd, [2, 3, 4])
    finally:
        runner.close()


def test_cluster_up_refuses_127_0_0_1_clearly() -> None:
    out = _btcpipe("cluster", "up", "--head-ip", "127.0.0.1")
    assert out.returncode == 1
    assert "Ray rewrites 127.0.0.1" in out.stderr
    assert shutil.which("ray") or Path(sys.executable).with_name("ray").exists()

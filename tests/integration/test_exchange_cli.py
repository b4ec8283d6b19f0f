"""``btcpipe exchange serve`` as a user runs it: prints its URL, answers, stops on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from click.testing import CliRunner

from btcpipe.cli.main import cli

REPO_ROOT = Path(__file__).resolve().parents[2]
BTCPIPE = [sys.executable, "-m", "btcpipe.cli.main"]


def test_serve_prints_its_url_answers_and_stops_on_ctrl_c() -> None:
    env = os.environ | {"BTCPIPE_LOG_FORMAT": "json"}
    proc = subprocess.Popen(
        [*BTCPIPE, "exchange", "serve", "--sim-seed", "3", "--sim-hours", "0.05", "--weight-limit", "1200"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=env,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()  # printed once the server listens
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, timeout=10) as c:
            info = c.get("/api/v3/exchangeInfo").json()
            assert info["rateLimits"][0]["limit"] == 1200
            trades = c.get("/api/v3/trades", params={"symbol": "BTCUSDT", "limit": 5})
            assert trades.status_code == 200
            assert len(trades.json()) == 5
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_refuses_a_non_loopback_host_and_a_recording_plus_simulation(tmp_path: Path) -> None:
    runner = CliRunner()
    bad_host = runner.invoke(cli, ["exchange", "serve", "--sim-hours", "0.01", "--host", "0.0.0.0"])
    assert bad_host.exit_code == 1
    assert "loopback" in bad_host.output
    recording = tmp_path / "r.txt"
    recording.write_text("")
    both = runner.invoke(cli, ["exchange", "serve", "--recording", str(recording), "--sim-seed", "1"])
    assert both.exit_code == 2
    assert "not both" in both.output


def test_every_exchange_command_has_help() -> None:
    for args in (["exchange", "--help"], ["exchange", "serve", "--help"]):
        out = CliRunner().invoke(cli, args)
        assert out.exit_code == 0
        assert "Usage:" in out.output

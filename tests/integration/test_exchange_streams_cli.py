"""``btcpipe exchange serve`` with streams, as a user runs it: SBE with the key from the environment, JSON
without, replaying from an offset; the key never appears in the output."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from support.streams import Received, collect, decode_all, handshake_status, run

from btcpipe.binance.sbe import TradesEvent
from btcpipe.domain.time import US_PER_SEC
from btcpipe.market.config import DEFAULT_START_US

REPO_ROOT = Path(__file__).resolve().parents[2]
BTCPIPE = [sys.executable, "-m", "btcpipe.cli.main"]
SECRET = "cli-secret-key-5f2a"


def test_serve_streams_sbe_with_the_env_key_and_json_without_from_the_replay_offset() -> None:
    env = os.environ | {"BTCPIPE_LOG_FORMAT": "json", "BTCPIPE_EXCHANGE_API_KEYS": SECRET}
    args = ["exchange", "serve", "--sim-seed", "4", "--sim-hours", "0.2", "--replay-speed", "5",
            "--replay-start", "120", "--ping-interval", "0.5"]
    proc = subprocess.Popen(
        [*BTCPIPE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=env
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        ws = url.replace("http://", "ws://")
        assert run(handshake_status(f"{ws}/ws/btcusdt@trade")) == 401

        async def both() -> tuple[Received, Received]:
            sbe, js = await asyncio.gather(
                collect(f"{ws}/ws/btcusdt@trade", headers={"X-MBX-APIKEY": SECRET},
                        until=lambda r: len(r.binary) >= 5, timeout=30),
                collect(f"{ws}/json/ws/btcusdt@trade", until=lambda r: len(r.text) >= 5, timeout=30),
            )
            return sbe, js

        sbe, js = run(both())
        events = [e for e in decode_all(sbe.binary) if isinstance(e, TradesEvent)]
        assert len(events) == 5
        assert events[0].transact_time >= DEFAULT_START_US + 120 * US_PER_SEC
        assert len(js.text) >= 5
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        out, err = proc.communicate()
        assert SECRET not in out + err
        assert "1 API key(s)" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

"""``btcpipe exchange serve --fault KIND=RATE`` as a user runs it: poison reaches a stream client between the good
messages and is refused by btcpipe's own decoder with a typed error; bad fault specs are refused up front."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from support.streams import collect, run

from btcpipe.binance.sbe_schema import TradesEvent
from btcpipe.binance.ws_messages import decode_text
from btcpipe.domain.errors import DataError

REPO_ROOT = Path(__file__).resolve().parents[2]
BTCPIPE = [sys.executable, "-m", "btcpipe.cli.main"]


def test_serve_with_poison_sends_messages_the_ingestor_refuses_between_good_trades() -> None:
    args = ["exchange", "serve", "--sim-seed", "4", "--sim-hours", "0.2", "--replay-speed", "5",
            "--fault", "poison=0.5", "--fault", "5xx=0", "--fault-seed", "3"]
    proc = subprocess.Popen([*BTCPIPE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO_ROOT, env=os.environ | {"BTCPIPE_LOG_FORMAT": "json"})
    try:
        assert proc.stdout is not None
        ws = proc.stdout.readline().strip().replace("http://", "ws://")
        got = run(collect(f"{ws}/json/stream?streams=btcusdt@trade", until=lambda r: len(r.text) >= 40, timeout=30))
        good = refused = 0
        for text in got.text:
            try:
                event = decode_text(text, 0)
            except DataError:
                refused += 1
            else:
                assert isinstance(event, TradesEvent)
                good += 1
        assert good >= 10
        assert refused >= 5
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        _, err = proc.communicate()
        assert "faults: poison=0.5, 5xx=0 (seed 3)" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_fault_specs_are_refused_naming_the_option() -> None:
    for spec, why in (("poison=2", "within 0..1"), ("bogus=0.1", "KIND one of"), ("stall=x", "not a number"),
                      ("latency=nan", "within 0..60 s")):
        result = subprocess.run([*BTCPIPE, "exchange", "serve", "--fault", spec], capture_output=True, text=True,
                                cwd=REPO_ROOT, timeout=60, check=False)
        assert result.returncode == 2, spec
        assert "--fault" in result.stderr, result.stderr
        assert why in result.stderr, result.stderr
        assert "Traceback" not in result.stderr

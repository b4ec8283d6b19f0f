"""The real Binance clients of the conformance suite, in their own venv, run as scripts.

The clients (``tests/conformance/clients-requirements.txt``) live in ``.venv-clients``, built once here or by
``make .venv-clients``: ccxt pins multidict/attrs/idna exactly and binance-sdk-spot needs a newer certifi,
so installing them into the main venv would move our pins. Each client runs as a script in that venv
(``tests/conformance/clients/use_*.py``) with nothing but the base URLs changed and prints what it got as JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from btcpipe.domain.tape import MarketTape

REPO = Path(__file__).resolve().parents[2]
HERE = REPO / "tests" / "conformance"
CLIENTS_VENV = REPO / ".venv-clients"
REQUIREMENTS = HERE / "clients-requirements.txt"
_OFFLINE = re.compile(
    r"Temporary failure in name resolution|Name or service not known|Network is unreachable|NewConnectionError|"
    r"Failed to establish a new connection|No matching distribution found|Could not find a version"
)


def clients_python() -> Path:
    """The clients' venv (built under a private name, then renamed: parallel runs never see half a venv)."""
    python = CLIENTS_VENV / "bin" / "python"
    stamp = CLIENTS_VENV / "requirements.txt"
    if python.exists() and stamp.exists() and stamp.read_text() == REQUIREMENTS.read_text():
        return python
    staging = REPO / f".venv-clients.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(staging)], check=True, timeout=120)
    install = subprocess.run(
        [str(staging / "bin" / "pip"), "install", "--quiet", "-r", str(REQUIREMENTS)],
        capture_output=True, text=True, timeout=900, check=False,
    )
    if install.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        if _OFFLINE.search(install.stdout + install.stderr):
            pytest.skip(f"the Binance clients could not be installed without network: {install.stderr[-300:]}")
        pytest.fail(f"installing the Binance clients failed:\n{install.stdout}\n{install.stderr}")
    shutil.copyfile(REQUIREMENTS, staging / "requirements.txt")
    shutil.rmtree(CLIENTS_VENV, ignore_errors=True)
    try:
        staging.rename(CLIENTS_VENV)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another run finished first; use its venv
    return python


def run_clients(clients: list[str], *args: str, timeout: float = 180) -> dict[str, dict[str, Any]]:
    """Run ``clients/use_<client>.py *args`` for every client at once in the clients' venv; their JSON reports."""
    python = str(clients_python())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    procs = {
        client: subprocess.Popen(
            [python, str(HERE / "clients" / f"use_{client}.py"), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=HERE / "clients",
        )
        for client in clients
    }
    reports: dict[str, dict[str, Any]] = {}
    for client, proc in procs.items():
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"{client} crashed:\n{err[-3000:]}"
        reports[client] = json.loads(out)
    return reports


def after_everything_us(tape: MarketTape) -> int:
    """1 µs after the tape's last trade, best bid/ask and depth diff: the whole recording is history."""
    ends = [tape.end_us]
    for column in (tape.best_bid_asks, tape.depth):
        if column is not None and len(column):
            ends.append(int(column.ts_event.max()))
    return max(ends) + 1

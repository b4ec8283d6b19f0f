"""The Flink venv for tests: ``BTCPIPE_FLINK_PYTHON`` or the repository's ``.venv-flink`` (built once when missing)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from btcpipe.engines.flink.launch import FLINK_VENV, REPO, flink_python

FLINK_VERSION = "2.3.0"  # the Makefile's FLINK_VERSION


def ensure_flink_python() -> Path:
    """The Flink venv's python; builds ``.venv-flink`` like ``make flink-venv`` when there is none.

    Built in place under a lock (xdist workers and a parallel make wait for the one building it), like the
    Feast venv: a renamed venv keeps its old absolute paths. The stamp ``.installed`` marks a finished build.
    """
    if os.environ.get("BTCPIPE_FLINK_PYTHON"):
        return flink_python()
    venv = REPO / FLINK_VENV
    with (REPO / f"{FLINK_VENV}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".installed").exists() or not (venv / "bin" / "python").exists():
            if shutil.which("java") is None:
                pytest.fail("Java is missing: make system-deps installs openjdk-17-jre-headless")
            shutil.rmtree(venv, ignore_errors=True)  # nothing, or a half-built venv from an interrupted run
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
            install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                                      f"apache-flink=={FLINK_VERSION}"], capture_output=True, text=True,
                                     timeout=1200, check=False)
            if install.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                pytest.fail(f"installing apache-flink failed:\n{install.stdout[-2000:]}\n{install.stderr[-2000:]}")
            (venv / ".installed").touch()
    return flink_python()

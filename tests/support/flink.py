"""The Flink venv for tests: ``BTCPIPE_FLINK_PYTHON`` or the repository's ``.venv-flink`` (built once when missing)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from btcpipe.domain.errors import ConfigError
from btcpipe.engines.flink.launch import FLINK_VENV, REPO, flink_python

FLINK_VERSION = "2.3.0"  # the Makefile's FLINK_VERSION


def ensure_flink_python() -> Path:
    """The Flink venv's python; builds ``.venv-flink`` like ``make flink-venv`` when there is none."""
    try:
        return flink_python()
    except ConfigError:
        if os.environ.get("BTCPIPE_FLINK_PYTHON"):
            raise
    if shutil.which("java") is None:
        pytest.fail("Java is missing: make system-deps installs openjdk-17-jre-headless")
    staging = REPO / f"{FLINK_VENV}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(staging)], check=True, timeout=120)
    install = subprocess.run([str(staging / "bin" / "python"), "-m", "pip", "install", "--quiet",
                              f"apache-flink=={FLINK_VERSION}"], capture_output=True, text=True, timeout=1200,
                             check=False)
    if install.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.fail(f"installing apache-flink failed:\n{install.stdout[-2000:]}\n{install.stderr[-2000:]}")
    (staging / ".installed").touch()
    target = REPO / FLINK_VENV
    if target.exists() and not any(target.glob("lib/python*/site-packages/pyflink")):
        shutil.rmtree(target, ignore_errors=True)  # a half-built venv from an interrupted run
    try:
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another run finished first; use its venv
    return flink_python()

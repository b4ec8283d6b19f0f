"""Helpers for the stop tests: a btcpipe command as a real subprocess, SIGTERM at a chosen moment, and the time
it took to exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# What the machine may add to the command's own bound: the interpreter's teardown and a busy scheduler.
EXIT_SLACK_S = 3.0


@dataclass
class Stopped:
    returncode: int
    stdout: str
    stderr: str
    exit_s: float  # from SIGTERM to the process's end

    def summary(self) -> dict[str, Any]:
        """The last JSON document on stdout (the command's final statistics)."""
        try:
            doc = json.loads(self.stdout)
        except ValueError:  # EMF lines first, the statistics last
            doc = json.loads(self.stdout.strip().splitlines()[-1])
        assert isinstance(doc, dict)
        return doc


class Command:
    """``btcpipe ARGS`` started now, its output in files (a full pipe would block it); ``stop()`` sends SIGTERM
    and times the exit."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self._out = tempfile.TemporaryFile("w+")  # noqa: SIM115 - lives as long as the command
        self._err = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "btcpipe.cli.main", *args], stdout=self._out,
                                     stderr=self._err, text=True, env=env or dict(os.environ))

    def output(self) -> tuple[str, str]:
        texts = []
        for f in (self._out, self._err):
            f.seek(0)
            texts.append(f.read())
        return texts[0], texts[1]

    def wait_for(self, ready: Callable[[], bool], timeout: float = 60.0, what: str = "the command") -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None:
                out, err = self.output()
                raise AssertionError(f"{what} ended early ({self.proc.returncode}):\n{err[-3000:]}\n{out[-2000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"gave up waiting {timeout} s for {what}")
            time.sleep(0.05)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60.0) -> Stopped:
        started = time.monotonic()
        self.proc.send_signal(signum)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        exit_s = time.monotonic() - started
        out, err = self.output()
        return Stopped(self.proc.returncode, out, err, exit_s)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

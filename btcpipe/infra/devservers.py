"""Start real ``redis-server`` and ``moto_server`` processes on free loopback ports.

Used by the tests, the benchmarks and ``btcpipe run --services``. Each server is a context manager that
waits until the port answers and stops the process (and its children) on exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from btcpipe.domain.errors import ConfigError

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, host: str = LOOPBACK, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout}s")


class _Server:
    name = "server"

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
            prefix=f"btcpipe-{self.name}-", suffix=".log", delete=False
        )

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for_port(self.port, proc=self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"{self.name} did not start; its log: {self.log_text()[-2000:]}") from None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with_kill = self.proc.poll() is None
                if with_kill:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=10)

    def kill(self) -> None:
        """Die abruptly (SIGKILL), as a crashed server would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log_text(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def __enter__(self) -> _Server:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class RedisServer(_Server):
    """A throwaway ``redis-server``: no persistence, loopback only."""

    name = "redis"

    def __init__(self, password: str | None = None) -> None:
        super().__init__()
        self.password = password
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise ConfigError("redis-server is not installed (Debian/Ubuntu: apt-get install redis-server)")

    def command(self) -> list[str]:
        cmd = [str(self.binary), "--port", str(self.port), "--bind", LOOPBACK, "--save", "",
               "--appendonly", "no", "--protected-mode", "yes"]
        if self.password:
            cmd += ["--requirepass", self.password]
        return cmd

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{LOOPBACK}:{self.port}/0"

    def restart(self) -> None:
        """Start again on the same port (after ``kill``)."""
        self.start()


class MotoServer(_Server):
    """``moto_server`` serving the Kinesis and S3 APIs over real HTTP on loopback."""

    name = "moto"

    def command(self) -> list[str]:
        exe = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
        return [exe, "-H", LOOPBACK, "-p", str(self.port)]

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def aws_test_environment() -> dict[str, str]:
    """Credentials and region for talking to moto_server (it accepts any)."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }

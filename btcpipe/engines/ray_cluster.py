"""A Ray cluster of several nodes on this machine's loopback addresses (``btcpipe cluster up|down``).

Each node is a ``ray start`` with its own loopback address: the head on one (Ray rewrites 127.0.0.1 to
the host's address, so the default is 127.0.0.2), the workers on the next ones. Tasks then cross real
node boundaries (separate raylets, object stores, gRPC between them) without a second machine: what the
tests use to check that a spread build equals a serial one. Token authentication is on: the nodes start
with ``RAY_AUTH_MODE=token`` and share the token in ``~/.ray/auth_token`` (created by the head when
missing). A client on this machine sends that token when it runs with ``RAY_AUTH_MODE=token`` too (Ray
reads the variable at import and, given an explicit address, never turns token mode on by itself).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from btcpipe.domain.errors import ConfigError, EngineError

log = logging.getLogger(__name__)

DEFAULT_HEAD_IP = "127.0.0.2"
DEFAULT_PORT = 6390
DEFAULT_OBJECT_STORE_BYTES = 256 << 20  # per node; Ray's default (30 % of RAM) is far more than a build needs
START_TIMEOUT_S = 180.0
AUTH_ENV = {"RAY_AUTH_MODE": "token"}


@dataclass(frozen=True, slots=True)
class LoopbackCluster:
    """Where the nodes listen: the head's GCS at ``address`` and one raylet per node IP."""

    head_ip: str
    worker_ips: tuple[str, ...]
    port: int

    @property
    def address(self) -> str:
        return f"{self.head_ip}:{self.port}"

    @property
    def node_ips(self) -> tuple[str, ...]:
        return (self.head_ip, *self.worker_ips)


def loopback_cluster(nodes: int, *, head_ip: str = DEFAULT_HEAD_IP, port: int = DEFAULT_PORT) -> LoopbackCluster:
    """``nodes`` nodes on consecutive loopback addresses from ``head_ip``."""
    if nodes < 1:
        raise ConfigError(f"a cluster needs at least one node, got {nodes}")
    try:
        head = ipaddress.IPv4Address(head_ip)
    except ValueError as exc:
        raise ConfigError(f"not an IPv4 address: {head_ip!r}") from exc
    ips = [head + i for i in range(nodes)]
    if not all(ip.is_loopback for ip in ips) or head == ipaddress.IPv4Address("127.0.0.1"):
        raise ConfigError(f"the nodes must be on 127.0.0.2 … 127.255.255.254 (Ray rewrites 127.0.0.1): {head_ip}")
    return LoopbackCluster(str(ips[0]), tuple(str(ip) for ip in ips[1:]), port)


def _ray_command() -> str:
    beside = Path(sys.executable).with_name("ray")  # the venv's entry point, not some other Ray on PATH
    found = str(beside) if beside.exists() else shutil.which("ray")
    if found is None:
        raise ConfigError("the ray command is not installed: pip install 'btcpipe[ray]'")
    return found


def _run(args: list[str], what: str) -> None:
    env = {**os.environ, **AUTH_ENV}
    try:
        done = subprocess.run([_ray_command(), *args], env=env, capture_output=True, text=True,
                              timeout=START_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"{what}: ray did not answer within {START_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise EngineError(f"{what} failed (exit {done.returncode}):\n{tail}")


def start(cluster: LoopbackCluster, *, cpus_per_node: int = 1,
          object_store_bytes: int = DEFAULT_OBJECT_STORE_BYTES) -> None:
    """Start the head, then each worker joined to it; a failure stops whatever did start."""
    if cpus_per_node < 1:
        raise ConfigError(f"cpus per node must be at least 1, got {cpus_per_node}")
    common = ["--num-cpus", str(cpus_per_node), "--object-store-memory", str(object_store_bytes),
              "--disable-usage-stats"]
    try:
        _run(["start", "--head", "--node-ip-address", cluster.head_ip, "--port", str(cluster.port),
              "--include-dashboard=false", *common], f"head on {cluster.address}")
        for ip in cluster.worker_ips:
            _run(["start", "--address", cluster.address, "--node-ip-address", ip, *common], f"worker on {ip}")
    except EngineError:
        stop()
        raise
    log.info("ray cluster up", extra={"address": cluster.address, "nodes": len(cluster.node_ips)})


def stop() -> None:
    """Stop every Ray process of this user on this machine (``ray stop --force``): the loopback cluster's
    nodes share one host, so there is no stopping one node alone."""
    _run(["stop", "--force"], "ray stop")

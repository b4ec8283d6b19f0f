"""Fixtures shared by every test: the shared real data, and real servers on free loopback ports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from btcpipe.infra.devservers import MotoServer, RedisServer, aws_test_environment

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("BTCPIPE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
RECORDINGS = [SHARED_DATA / "recordings" / f"btcusdt_2024080{d}.gz" for d in (8, 9)]


def _require_shared(path: Path) -> Path:
    if path.exists():
        return path
    reason = f"shared real data not found at {path} (set BTCPIPE_SHARED_DATA or place ../shared/data)"
    if os.environ.get("BTCPIPE_REQUIRE_SHARED_DATA") == "1":
        pytest.fail(reason + " and BTCPIPE_REQUIRE_SHARED_DATA=1")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: real Binance data, read in place, never copied."""
    return _require_shared(SHARED_DATA)


@pytest.fixture(scope="session")
def recording_paths(shared_data: Path) -> list[Path]:
    """The two contiguous real recordings (10 min 51 s of BTCUSDT trade/bookTicker/depth)."""
    return [_require_shared(p) for p in RECORDINGS]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean database on the session's redis-server."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    saved = {k: os.environ.get(k) for k in aws_test_environment()}
    os.environ.update(aws_test_environment())
    with MotoServer() as server:
        yield server
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v

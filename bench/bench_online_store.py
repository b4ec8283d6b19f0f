"""Online store benchmark: write and read latency (p50/p99, µs) for the in-process and Redis stores.

Prints one JSON object. Redis runs on a real redis-server started on loopback for the run. A row has the
19 features of schema v1 plus spread (20 doubles), as the processor writes it once a second per symbol.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from btcpipe.domain.messages import FeatureVector1s
from btcpipe.infra.devservers import RedisServer
from btcpipe.infra.redis_connection import RedisOptions
from btcpipe.store.memory import InProcessOnlineStore
from btcpipe.store.port import OnlineStore
from btcpipe.store.redis_store import RedisOnlineStore

T0 = 1_723_100_000_000_000
N = 3_000


class WallClock:
    def now_us(self) -> int:
        return time.time_ns() // 1_000


def percentiles(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"p50_us": round(s[len(s) // 2], 1), "p99_us": round(s[int(len(s) * 0.99)], 1), "n": len(s)}


def timed(fn: Callable[[int], object]) -> list[float]:
    out = []
    for i in range(N):
        t = time.perf_counter_ns()
        fn(i)
        out.append((time.perf_counter_ns() - t) / 1_000)
    return out


def measure(store: OnlineStore) -> dict[str, dict[str, float]]:
    rows = [FeatureVector1s("BTCUSDT", T0 + i * 1_000_000, "ab" * 32, tuple(float(j) * 1e-4 for j in range(20)),
                            T0 + i * 1_000_000 + 150) for i in range(N)]
    write = timed(lambda i: store.put_features("BTCUSDT", rows[i].ts_sec, rows[i]))
    read = timed(lambda i: store.get_features("BTCUSDT", rows[i].ts_sec))
    latest = timed(lambda i: store.get_latest("BTCUSDT"))
    return {"write": percentiles(write), "read": percentiles(read), "read_latest": percentiles(latest)}


def main() -> None:
    result: dict[str, object] = {"in_process": measure(InProcessOnlineStore(WallClock()))}
    with RedisServer() as server:
        store = RedisOnlineStore(RedisOptions(server.url))
        result["redis"] = measure(store)
        store.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

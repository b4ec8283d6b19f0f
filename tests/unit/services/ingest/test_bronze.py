"""The bronze writer keeps every row it accepted, even when a flush is cancelled halfway (the ingestor stopping)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from btcpipe.domain.records import BestBidAsk, Trade
from btcpipe.lake.lake import Lake
from btcpipe.services.ingest.bronze import BronzeWriter

SYMBOL = "BTCUSDT"


class SlowFirstAppend:
    """A real lake whose first append waits until released (a slow S3 PUT)."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def append_bronze(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            self.release.wait(10)
        return self.lake.append_bronze(*args, **kwargs)


def test_a_flush_cancelled_halfway_leaves_every_row_for_the_final_flush(tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path / "lake"))
    slow = SlowFirstAppend(lake)
    writer = BronzeWriter(slow, max_rows=10_000, max_age_s=60.0)  # type: ignore[arg-type]
    t0 = 1_735_689_600_000_000
    trades = [Trade(SYMBOL, i, t0 + i, 6_000_000_000_000, 100_000, False) for i in range(1, 6)]
    tickers = [BestBidAsk(SYMBOL, t0 + i, i, 5_999_900_000_000, 200_000, 6_000_000_000_000, 300_000)
               for i in range(1, 4)]
    writer.add(trades, "ws")
    writer.add(tickers, "ws")

    async def main() -> bool:
        flushing = asyncio.ensure_future(writer.flush())
        await asyncio.to_thread(slow.entered.wait, 10)
        flushing.cancel()  # as the ingestor cancels its housekeeping on stop
        slow.release.set()
        await asyncio.gather(flushing, return_exceptions=True)
        return await writer.flush()

    assert asyncio.run(main()) is True
    assert lake.read_bronze("trades", SYMBOL).num_rows == len(trades)
    assert lake.read_bronze("bookTicker", SYMBOL).num_rows == len(tickers)
    assert writer.pending_rows == 0

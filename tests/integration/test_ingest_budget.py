"""One REST weight budget per endpoint, live first: a backfill that used up its share of the window leaves the
live ingestor its reserve, so the trades since the backfill are filled and the order book synchronizes at once
instead of a window later (without the reserve the second live request would wait for the window to roll)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from support.ingest import SYMBOL, exchange, settings, sim_tape

from btcpipe.binance.rest import BinanceRestClient
from btcpipe.binance.weights import BULK, LIVE, WeightBudget, depth_weight
from btcpipe.binance.ws_client import MarketStreamClient
from btcpipe.bus.memory import InProcessBus
from btcpipe.domain.errors import RequestCancelledError
from btcpipe.exchange.streams.routes import replay_clock
from btcpipe.services.ingest.ingestor import Ingestor, IngestSettings

pytestmark = [pytest.mark.services, pytest.mark.timeout(90)]

SNAPSHOT_LIMIT = 1000
SYNC_WITHIN_S = 5.0


def _budget() -> WeightBudget:
    # A small window makes "exhausted" quick to reach: live ceiling 960, bulk ceiling 720 (a 240 reserve).
    return WeightBudget(1200, budget_share=0.8, live_reserve_share=0.2)


@pytest.mark.parametrize("processes", ["one process", "two processes"])
def test_live_book_synchronizes_at_once_after_a_backfill_exhausted_its_share(processes: str) -> None:
    """One process: the backfill and the ingestor spend one ``WeightBudget``. Two processes (a ``btcpipe
    backfill`` beside a ``btcpipe ingest`` on one IP): each has its own, and only the server's used-weight header
    tells the live client what the backfill spent."""
    tape = sim_tape(900)
    budget = _budget()
    stop_backfill = threading.Event()
    with exchange(tape, replay_clock(tape, speed=10)) as ex:
        backfill = BinanceRestClient(ex.base_url, budget=budget, priority=BULK, stop=stop_backfill)
        first_id = int(tape.trades.id[0])
        while budget.room(BULK) >= 25:  # page until the bulk share of the window is spent
            backfill.historical_trades(SYMBOL, from_id=first_id, limit=1000)
        assert budget.used + depth_weight(SNAPSHOT_LIMIT) <= budget.live_ceiling
        # The backfill keeps going beside the live part: its next page waits for the window to roll.
        waiting: list[BaseException] = []

        def next_page() -> None:
            try:
                backfill.historical_trades(SYMBOL, from_id=first_id, limit=1000)
            except RequestCancelledError as exc:
                waiting.append(exc)

        pages_before = backfill.stats.requests
        pager = threading.Thread(target=next_page)
        pager.start()

        live_budget = budget if processes == "one process" else _budget()
        live_rest = BinanceRestClient(ex.base_url, budget=live_budget, priority=LIVE)
        ingestor = Ingestor(MarketStreamClient([SYMBOL], settings(ex)), InProcessBus(), symbols=[SYMBOL],
                            rest=live_rest,
                            settings=IngestSettings(snapshot_limit=SNAPSHOT_LIMIT))
        # As in `btcpipe run`: the stream continues the backfill, so its first trade shows a gap to fill from REST.
        ingestor.sequencers[SYMBOL].last_id = first_id

        def live(i: Ingestor) -> bool:
            return i.book(SYMBOL) is not None and bool(i.gaps) and all(g.filled for g in i.gaps)

        started = time.monotonic()
        asyncio.run(ingestor.run(until=live, duration_s=30))
        synced_after = time.monotonic() - started
        print(f"live book synchronized {synced_after:.2f} s after the ingestor started")
        stop_backfill.set()
        pager.join(10)
        live_rest.close()
        backfill.close()
    assert ingestor.book(SYMBOL) is not None
    assert ingestor.stats.snapshots >= 1
    assert ingestor.stats.gap_fills.get("filled", 0) >= 1
    assert synced_after < SYNC_WITHIN_S, f"the book took {synced_after:.1f} s"
    assert live_rest.stats.requests >= 2, "a gap fill and a depth snapshot at least"
    assert live_rest.stats.window_waits == 0, "the live path never waited for the window"
    assert live_rest.stats.max_used_weight >= budget.bulk_ceiling - 25, "the server counted the backfill's weight too"
    assert backfill.stats.window_waits == 1
    assert backfill.stats.requests == pages_before
    assert len(waiting) == 1, "the backfill page waited all along (and was given up at its stop)"

"""What the local exchange knows about one symbol: a ``MarketTape`` indexed for Binance's queries.

Pure: every query takes the exchange's ``now_us`` and only ever returns rows with ``ts_event <= now_us``.
Results are index ranges ``(start, stop)`` into the tape's columns (trades) or into the aggTrades built
once from them, so a page of 1000 rows costs a binary search and a slice.
"""

from __future__ import annotations

import numpy as np

from btcpipe.domain.errors import DataError
from btcpipe.domain.tape import I64, AggTradeTape, MarketTape, TradeTape, aggregate_trades
from btcpipe.exchange.book import BookReplayer
from btcpipe.exchange.klines import KlineTable, kline_table
from btcpipe.exchange.pages import from_key, in_window, most_recent


def _running_max(ts: I64) -> I64:
    # Visibility needs a non-decreasing key; a tape out of time order by a few µs still answers sanely.
    return np.maximum.accumulate(ts) if ts.shape[0] else ts


class SymbolMarket:
    """One symbol's trades, aggTrades, klines and order book, answerable as of any exchange time."""

    def __init__(self, tape: MarketTape, *, first_agg_id: int = 1) -> None:
        trades = tape.trades
        if len(trades) > 1 and not bool(np.all(np.diff(trades.id) > 0)):
            raise DataError(f"{tape.symbol}: the tape's trade ids are not strictly increasing")
        self.symbol = tape.symbol.upper()
        self.tape = tape
        self.trades: TradeTape = trades
        self.aggs: AggTradeTape = aggregate_trades(trades, first_agg_id)
        self._trade_ts = _running_max(trades.ts_event)
        self._agg_ts = _running_max(self.aggs.ts_event)
        self.book = BookReplayer(tape)
        self._klines: dict[tuple[str, int], KlineTable] = {}
        tickers = tape.best_bid_asks
        self.best_bid_ask_keys: I64 | None = (
            _running_max(tickers.ts_event) if tickers is not None and len(tickers) else None
        )

    @property
    def trade_keys(self) -> I64:
        """Each trade's visibility time (the running maximum of ``ts_event``), non-decreasing."""
        return self._trade_ts

    # --- visibility --------------------------------------------------------------------------------
    def visible_trades(self, now_us: int) -> int:
        """How many trades (from the first) have happened by ``now_us``."""
        return int(np.searchsorted(self._trade_ts, now_us, side="right"))

    def visible_aggs(self, now_us: int) -> int:
        return int(np.searchsorted(self._agg_ts, now_us, side="right"))

    def is_complete(self, now_us: int) -> bool:
        """Nothing in the tape lies after ``now_us``: the whole tape is history."""
        return self.visible_trades(now_us) == len(self.trades)

    # --- raw trades --------------------------------------------------------------------------------
    def recent_trades(self, limit: int, now_us: int) -> tuple[int, int]:
        return most_recent(limit, self.visible_trades(now_us))

    def trades_from_id(self, from_id: int, limit: int, now_us: int) -> tuple[int, int]:
        return from_key(self.trades.id, from_id, limit, self.visible_trades(now_us))

    # --- aggTrades ---------------------------------------------------------------------------------
    def recent_aggs(self, limit: int, now_us: int) -> tuple[int, int]:
        return most_recent(limit, self.visible_aggs(now_us))

    def aggs_from_id(self, from_id: int, limit: int, now_us: int) -> tuple[int, int]:
        return from_key(self.aggs.agg_id, from_id, limit, self.visible_aggs(now_us))

    def aggs_in_time(self, start_us: int | None, end_us: int | None, limit: int, now_us: int) -> tuple[int, int]:
        """aggTrades with ``start_us <= T <= end_us``: the first ``limit`` from the start when a start is
        given, else the last ``limit`` up to the end."""
        return in_window(self._agg_ts, start_us, end_us, limit, self.visible_aggs(now_us))

    # --- klines ------------------------------------------------------------------------------------
    def klines(self, interval: str, offset_us: int = 0) -> KlineTable:
        """The kline groups of ``interval`` with intervals aligned in a time zone ``offset_us`` from UTC."""
        table = self._klines.get((interval, offset_us))
        if table is None:
            table = kline_table(self.trades.ts_event, interval, offset_us)
            self._klines[(interval, offset_us)] = table
        return table

"""Trade-id continuity: find the ids the stream skipped (REST pages become trades in ``binance.rest_parsing``).

Binance trade ids of a symbol are consecutive, so any hole in what the stream delivered is a loss (a
dropped connection, a skipped message). ``TradeSequencer`` is pure: it takes the stream's trades in order and
returns the holes as ``TradeGap`` records; the ingestor fills them from REST.
"""

from __future__ import annotations

from collections.abc import Sequence

from btcpipe.domain.records import Trade, TradeGap


class TradeSequencer:
    """The last trade id seen on the stream for one symbol, and the gaps after it."""

    def __init__(self, symbol: str, last_id: int | None = None) -> None:
        self.symbol = symbol
        self.last_id = last_id

    def accept(self, trades: Sequence[Trade], ts_detected: int) -> tuple[list[Trade], list[TradeGap]]:
        """The trades after the last seen id, and the gaps before and between them (ids ascending).

        The first trade ever seen opens no gap; trades at or below the last seen id are not returned.
        """
        gaps: list[TradeGap] = []
        fresh: list[Trade] = []
        last = self.last_id
        for trade in trades:
            if last is not None:
                if trade.id <= last:
                    continue
                if trade.id > last + 1:
                    gaps.append(TradeGap(self.symbol, last + 1, trade.id - 1, ts_detected))
            fresh.append(trade)
            last = trade.id
        self.last_id = last
        return fresh, gaps

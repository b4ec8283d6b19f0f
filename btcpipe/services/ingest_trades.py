"""Trade-id continuity: find the ids the stream skipped, and turn REST ``historicalTrades`` pages into trades.

Binance trade ids of a symbol are consecutive, so any hole in what the stream delivered is a loss (a
dropped connection, a skipped message). ``TradeSequencer`` is pure: it takes the stream's trades in order and
returns the holes as ``TradeGap`` records; the ingestor fills them from REST.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from btcpipe.domain.decimal import parse_decimal
from btcpipe.domain.errors import MalformedRecordError
from btcpipe.domain.records import Trade, TradeGap
from btcpipe.domain.time import to_us


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


def rest_trades(body: Any, symbol: str, *, ts_recv: int = 0) -> list[Trade]:
    """A ``/api/v3/historicalTrades`` body (ms or µs times) → trades in id order."""
    if not isinstance(body, list):
        raise MalformedRecordError(f"historicalTrades: expected a JSON array, got {type(body).__name__}")
    out: list[Trade] = []
    for item in body:
        if not isinstance(item, Mapping):
            raise MalformedRecordError(f"historicalTrades: item is not an object: {item!r}")
        try:
            out.append(
                Trade(
                    symbol=symbol,
                    id=int(item["id"]),
                    ts_event=to_us(int(item["time"])),
                    price_mantissa=parse_decimal(item["price"]),
                    qty_mantissa=parse_decimal(item["qty"]),
                    is_buyer_maker=bool(item["isBuyerMaker"]),
                    ts_recv=ts_recv,
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedRecordError(f"historicalTrades item lacks a field or has a bad one: {exc!r}") from exc
    out.sort(key=lambda t: t.id)
    return out

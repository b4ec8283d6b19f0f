"""What Binance sent, straight from a recording file, and figures computed from it without the exchange's code.

The conformance suite compares what real clients get from the local exchange with this: the recorded JSON
messages themselves (trade, bookTicker, depthUpdate), and aggTrades, klines, tickers and order books worked
out here in plain Python from the recorded trades and diffs, so a shared bug cannot agree with itself.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson


@dataclass
class RecordedStreams:
    """The recorded payloads by kind, in file order; times are Binance's (ms)."""

    trades: list[dict[str, Any]] = field(default_factory=list)
    book_tickers: list[dict[str, Any]] = field(default_factory=list)
    diffs: list[dict[str, Any]] = field(default_factory=list)
    snapshot: dict[str, Any] | None = None

    def trade_by_id(self) -> dict[int, dict[str, Any]]:
        return {int(t["t"]): t for t in self.trades}


def read_recording(paths: Iterable[Path]) -> RecordedStreams:
    out = RecordedStreams()
    for path in paths:
        with gzip.open(path, "rb") as fh:
            for line in fh:
                _, _, body = line.strip().partition(b" ")
                msg = orjson.loads(body)
                if "lastUpdateId" in msg:
                    out.snapshot = out.snapshot or msg
                    continue
                stream, data = msg["stream"], msg["data"]
                if stream.endswith("@trade"):
                    out.trades.append(data)
                elif stream.endswith("@bookTicker"):
                    out.book_tickers.append(data)
                elif "@depth" in stream:
                    out.diffs.append(data)
    return out


def dec(text: str) -> Decimal:
    return Decimal(text)


def agg_trade_of(rec: RecordedStreams, first: int, last: int) -> dict[str, Any]:
    """The aggTrade Binance would form from trades ``first..last`` (one taker, one price)."""
    by_id = rec.trade_by_id()
    fills = [by_id[i] for i in range(first, last + 1)]
    assert len({f["p"] for f in fills}) == 1, "an aggTrade has one price"
    assert len({f["m"] for f in fills}) == 1, "an aggTrade has one taker side"
    return {"p": dec(fills[0]["p"]), "q": sum((dec(f["q"]) for f in fills), Decimal(0)), "T": fills[0]["T"],
            "m": fills[0]["m"], "E": fills[-1]["E"]}


def kline_of(rec: RecordedStreams, open_ms: int, upto_ms: int) -> dict[str, Any] | None:
    """OHLCV, trade count and first/last id of the recorded trades with ``open_ms <= T <= upto_ms``."""
    fills = [t for t in rec.trades if open_ms <= t["T"] <= upto_ms]
    if not fills:
        return None
    prices = [dec(t["p"]) for t in fills]
    return {"o": prices[0], "h": max(prices), "l": min(prices), "c": prices[-1],
            "v": sum((dec(t["q"]) for t in fills), Decimal(0)), "n": len(fills),
            "f": fills[0]["t"], "L": fills[-1]["t"]}


class RecordedBook:
    """The order book from the recorded REST snapshot and diffs, with Binance's bootstrap rule."""

    def __init__(self, rec: RecordedStreams) -> None:
        assert rec.snapshot is not None
        self._rec = rec
        self.bids: dict[Decimal, Decimal] = {dec(p): dec(q) for p, q in rec.snapshot["bids"]}
        self.asks: dict[Decimal, Decimal] = {dec(p): dec(q) for p, q in rec.snapshot["asks"]}
        self.update_id = int(rec.snapshot["lastUpdateId"])
        self._next = 0

    def advance_to(self, update_id: int) -> None:
        """Apply every recorded diff with ``u <= update_id`` (diffs already in the snapshot are skipped)."""
        diffs = self._rec.diffs
        while self._next < len(diffs) and diffs[self._next]["u"] <= update_id:
            d = diffs[self._next]
            self._next += 1
            if d["u"] <= self.update_id:
                continue
            for side, levels in ((self.bids, d["b"]), (self.asks, d["a"])):
                for p, q in levels:
                    if dec(q) == 0:
                        side.pop(dec(p), None)
                    else:
                        side[dec(p)] = dec(q)
            self.update_id = d["u"]

    def top(self, n: int) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        bids = sorted(self.bids.items(), reverse=True)[:n]
        asks = sorted(self.asks.items())[:n]
        return bids, asks


def levels(raw: Iterable[Iterable[Any]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(str(p)), Decimal(str(q))) for p, q, *_ in raw]

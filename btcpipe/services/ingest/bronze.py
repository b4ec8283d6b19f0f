"""Bronze for live data: the ingestor's raw events appended to the lake in batches.

Trades, best bid/ask and depth diffs as they arrived (exact mantissas at 8 decimals, ``ts_recv`` kept), so
book-ticker and depth history builds up for training and replay. One append per (kind, symbol, source)
per flush; a flush happens when ``max_rows`` are waiting or ``max_age_s`` has passed, and at shutdown.
The raw payload kept beside each part is JSON lines of the records (an SBE frame has no place in the lake's
raw formats); gap-fill pages from REST are kept as the exact bytes that arrived.

A failed append (``LakeError``, an S3 outage) keeps the rows for the next flush — counted and logged,
never dropped; the lake's id de-duplication makes a retried append harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa

from btcpipe.domain.arrow_decimal import PRICE, QTY, QUOTE, mantissas_to_decimal
from btcpipe.domain.errors import BtcpipeError
from btcpipe.domain.records import BestBidAsk, DepthDiff, Level, Trade
from btcpipe.lake.ports import BronzeSink
from btcpipe.lake.schemas import BRONZE_BOOK_TICKER, BRONZE_DEPTH, BRONZE_TRADES

log = logging.getLogger(__name__)
_SCALE = 10**8

BronzeRecord = Trade | BestBidAsk | DepthDiff


def _i64(values: Sequence[int]) -> pa.Array:
    return pa.array(np.fromiter(values, dtype=np.int64, count=len(values)))


def _decimal(values: Sequence[int], type_: pa.DataType) -> pa.Array:
    return mantissas_to_decimal(np.fromiter(values, dtype=np.int64, count=len(values)), type_)


def trades_table(trades: Sequence[Trade]) -> pa.Table:
    """BRONZE_TRADES rows of stream trades (at STD_EXPONENT); ``quote_qty`` = price × qty at 8 decimals."""
    return pa.Table.from_arrays(
        [
            _i64([t.id for t in trades]),
            _i64([t.ts_event for t in trades]),
            _decimal([t.price_mantissa for t in trades], PRICE),
            _decimal([t.qty_mantissa for t in trades], QTY),
            # Python ints: no overflow; digits past 8 decimals truncated, as Binance prints quoteQty.
            _quote([t.price_mantissa * t.qty_mantissa // _SCALE for t in trades]),
            pa.array([t.is_buyer_maker for t in trades], pa.bool_()),
            pa.array([True] * len(trades), pa.bool_()),  # the stream only carries best-price matches
            _i64([t.ts_recv for t in trades]),
        ],
        schema=BRONZE_TRADES,
    )


def _quote(values: list[int]) -> pa.Array:
    if all(-(2**63) <= v < 2**63 for v in values):
        return _decimal(values, QUOTE)
    import decimal

    return pa.array([decimal.Decimal(v).scaleb(-8) for v in values], QUOTE)


def book_ticker_table(rows: Sequence[BestBidAsk]) -> pa.Table:
    return pa.Table.from_arrays(
        [
            _i64([b.update_id for b in rows]),
            _i64([b.ts_event for b in rows]),
            _decimal([b.bid_price_mantissa for b in rows], PRICE),
            _decimal([b.bid_qty_mantissa for b in rows], QTY),
            _decimal([b.ask_price_mantissa for b in rows], PRICE),
            _decimal([b.ask_qty_mantissa for b in rows], QTY),
            _i64([b.ts_recv for b in rows]),
        ],
        schema=BRONZE_BOOK_TICKER,
    )


def _level_lists(sides: Sequence[tuple[Level, ...]]) -> pa.Array:
    offsets = np.zeros(len(sides) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum([len(levels) for levels in sides])
    prices = [p for levels in sides for p, _ in levels]
    qtys = [q for levels in sides for _, q in levels]
    struct_type = BRONZE_DEPTH.field("bids").type.value_type
    values = pa.StructArray.from_arrays([_decimal(prices, PRICE), _decimal(qtys, QTY)], fields=list(struct_type))
    return pa.ListArray.from_arrays(pa.array(offsets), values, type=BRONZE_DEPTH.field("bids").type)


def depth_table(diffs: Sequence[DepthDiff]) -> pa.Table:
    return pa.Table.from_arrays(
        [
            _i64([d.first_update_id for d in diffs]),
            _i64([d.last_update_id for d in diffs]),
            _i64([d.ts_event for d in diffs]),
            _level_lists([d.bids for d in diffs]),
            _level_lists([d.asks for d in diffs]),
            _i64([d.ts_recv for d in diffs]),
        ],
        schema=BRONZE_DEPTH,
    )


_KIND_OF = {Trade: "trades", BestBidAsk: "bookTicker", DepthDiff: "depth"}
_TABLE_OF: dict[str, Callable[[list[BronzeRecord]], pa.Table]] = {
    "trades": trades_table,  # type: ignore[dict-item]
    "bookTicker": book_ticker_table,  # type: ignore[dict-item]
    "depth": depth_table,  # type: ignore[dict-item]
}


@dataclass
class _Ready:
    """A table made elsewhere (a REST gap-fill page) with the exact bytes it came from."""

    kind: str
    symbol: str
    table: pa.Table
    raw: bytes
    raw_format: str
    source: str


@dataclass(slots=True)
class BronzeStats:
    """Rows the ingestor wrote to bronze, and duplicates it skipped."""

    rows_added: int = 0
    rows_duplicate: int = 0
    appends: int = 0
    failures: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class BronzeWriter:
    """Buffers live records and appends them to bronze in hourly parts."""

    def __init__(
        self,
        lake: BronzeSink,
        *,
        max_rows: int = 20_000,
        max_age_s: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lake = lake
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.stats = BronzeStats()
        self._monotonic = monotonic
        self._rows: dict[tuple[str, str, str], list[BronzeRecord]] = {}
        self._ready: list[_Ready] = []
        self._pending = 0
        self._oldest: float | None = None
        self._lock = asyncio.Lock()

    @property
    def pending_rows(self) -> int:
        return self._pending + sum(int(r.table.num_rows) for r in self._ready)

    def add(self, records: Sequence[BronzeRecord], source: str) -> None:
        if not records:
            return
        first = records[0]
        key = (_KIND_OF[type(first)], first.symbol, source)
        self._rows.setdefault(key, []).extend(records)
        self._pending += len(records)
        if self._oldest is None:
            self._oldest = self._monotonic()

    def add_table(self, kind: str, symbol: str, table: pa.Table, *, raw: bytes, raw_format: str, source: str) -> None:
        if table.num_rows:
            self._ready.append(_Ready(kind, symbol, table, raw, raw_format, source))
            if self._oldest is None:
                self._oldest = self._monotonic()

    def due(self) -> bool:
        if self._oldest is None:
            return False
        return self.pending_rows >= self.max_rows or self._monotonic() - self._oldest >= self.max_age_s

    async def flush(self) -> bool:
        """Append everything waiting; True when all of it went in (failed parts stay for the next flush)."""
        async with self._lock:
            batches = [
                _Ready(kind, symbol, _TABLE_OF[kind](rows), b"\n".join(orjson.dumps(r) for r in rows), "jsonl",
                       source)
                for (kind, symbol, source), rows in self._rows.items()
            ]
            batches.extend(self._ready)
            self._rows, self._ready, self._pending, self._oldest = {}, [], 0, None
            failed: list[_Ready] = []
            for done, batch in enumerate(batches):
                try:
                    result = await asyncio.to_thread(
                        self.lake.append_bronze, batch.kind, batch.symbol, batch.table,
                        raw=batch.raw, raw_format=batch.raw_format, source=batch.source,
                    )
                except asyncio.CancelledError:
                    # Cancelled mid-flush (the ingestor stopping): what was not written yet goes back for the
                    # final flush. The batch in flight too: its append may or may not land, and a second append
                    # of the same rows adds nothing (bronze appends are idempotent).
                    self._ready = failed + batches[done:] + self._ready
                    self._oldest = self._oldest or self._monotonic()
                    raise
                except BtcpipeError as exc:
                    failed.append(batch)
                    self.stats.failures += 1
                    log.error("bronze append failed; rows kept for the next flush",
                              extra={"kind": batch.kind, "symbol": batch.symbol, "rows": batch.table.num_rows,
                                     "error": str(exc)})
                    continue
                self.stats.appends += 1
                self.stats.rows_added += result.rows_added
                self.stats.rows_duplicate += result.rows_duplicate
                self.stats.by_kind[batch.kind] = self.stats.by_kind.get(batch.kind, 0) + result.rows_added
            if failed:
                self._ready = failed + self._ready
                self._oldest = self._monotonic()
            return not failed

"""A poll of ``BestBidAsk`` payloads decoded at once into columns (the processor's best bid/ask input).

Each payload is one fixed-layout record (symbol, seven longs, two ints), so a poll is read field by
field across all payloads with the numpy varint reader instead of one fastavro call and one
``BestBidAsk`` object per update. Small polls, and payloads the vectorised reader marks not ok, go
through the exact path (``decode_best_bid_ask``), which also says what is wrong with a corrupt one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from btcpipe.domain.decimal import MAX_EXPONENT
from btcpipe.domain.errors import DataError, PayloadDecodeError
from btcpipe.domain.records import BestBidAsk
from btcpipe.wire import avro_wire as wire
from btcpipe.wire.avro_varint import read_longs_at
from btcpipe.wire.codec import decode_best_bid_ask
from btcpipe.wire.trade_batches import BULK_FROM_BYTES, floats_at_exponents, lane_symbols

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_LONGS = ("ts_event", "ts_recv", "update_id", "bid_price_mantissa", "bid_qty_mantissa", "ask_price_mantissa",
          "ask_qty_mantissa")


@dataclass(frozen=True, slots=True)
class BestBidAskBatches:
    """One best bid/ask update per payload; a payload that could not be decoded has symbol ``""``, zeros,
    and its error in ``errors`` (``ok`` False)."""

    symbols: list[str]
    ok: npt.NDArray[np.bool_]
    ts_event: I64
    update_id: I64
    bid_price: F64
    ask_price: F64
    errors: dict[int, DataError] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.symbols)


def _from_records(records: list[BestBidAsk | None], errors: dict[int, DataError]) -> BestBidAskBatches:
    def col(get: str) -> list[object]:
        return [0 if r is None else getattr(r, get) for r in records]

    return BestBidAskBatches(
        ["" if r is None else r.symbol for r in records],
        np.array([r is not None for r in records], dtype=np.bool_),
        np.array(col("ts_event"), dtype=np.int64),
        np.array(col("update_id"), dtype=np.int64),
        np.array(col("bid_price"), dtype=np.float64),
        np.array(col("ask_price"), dtype=np.float64),
        errors,
    )


def decode_best_bid_ask_batches(payloads: Sequence[bytes]) -> BestBidAskBatches:
    """Decode a poll of ``BestBidAsk`` payloads; bad ones are reported in ``errors``, never raised."""
    m = len(payloads)
    header = wire.BEST_BID_ASK.header
    fast = all(p[: wire.HEADER_LEN] == header for p in payloads) and sum(map(len, payloads)) >= BULK_FROM_BYTES
    if not fast:
        return _one_by_one(payloads)
    lens = np.fromiter(map(len, payloads), dtype=np.int64, count=m)
    limit = np.cumsum(lens)
    raw = b"".join(payloads)
    buf = np.frombuffer(raw, dtype=np.uint8)
    pos = limit - lens + wire.HEADER_LEN
    sym_len, pos, ok = read_longs_at(buf, pos, limit)
    ok &= (sym_len >= 0) & (sym_len <= limit - pos)  # a length past the end (or so big pos + len wraps round)
    sym_at = pos
    pos = pos + np.where(ok, sym_len, 0)
    values: dict[str, I64] = {}
    for name in (*_LONGS, "price_exponent", "qty_exponent"):
        values[name], pos, good = read_longs_at(buf, pos, limit)
        ok &= good
    ok &= pos == limit
    for name in ("price_exponent", "qty_exponent"):
        ok &= np.abs(values[name]) <= MAX_EXPONENT
    symbols = lane_symbols(raw, buf, ok, sym_at, sym_len)
    if not bool(ok.all()):
        # Rare (corrupt payloads): sort it out payload by payload on the exact path.
        return _one_by_one(payloads)
    ones = np.ones(m, dtype=np.int64)
    return BestBidAskBatches(
        symbols, ok, values["ts_event"], values["update_id"],
        floats_at_exponents(values["bid_price_mantissa"], values["price_exponent"], ones),
        floats_at_exponents(values["ask_price_mantissa"], values["price_exponent"], ones),
    )


def _one_by_one(payloads: Sequence[bytes]) -> BestBidAskBatches:
    records: list[BestBidAsk | None] = []
    errors: dict[int, DataError] = {}
    for i, p in enumerate(payloads):
        try:
            bba = decode_best_bid_ask(p)
            if abs(bba.price_exponent) > MAX_EXPONENT or abs(bba.qty_exponent) > MAX_EXPONENT:
                raise PayloadDecodeError(f"corrupt BestBidAsk payload: exponents beyond ±{MAX_EXPONENT}")
            records.append(bba)
        except DataError as exc:
            records.append(None)
            errors[i] = exc
        except Exception as exc:  # untrusted bytes: no payload may stop the poll
            records.append(None)
            errors[i] = PayloadDecodeError(f"undecodable BestBidAsk payload: {type(exc).__name__}: {exc}")
    return _from_records(records, errors)

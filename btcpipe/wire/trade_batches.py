"""A whole poll of trade payloads decoded at once into one set of columns (``TradeBatches``).

Every ``MarketTradeColumns`` payload of the poll is a lane of a vectorised reader: the payloads are
joined into one buffer, the varint terminators found once, and each field read across all lanes in a
few numpy passes (``btcpipe.wire.avro_varint``). Payloads it cannot take — older ``MarketTradeBatch`` /
``MarketTrade`` messages, an Avro writer that splits arrays into several blocks, corrupt bodies — go one
by one through fastavro (``decode_trade_columns_exact``), so a rolling upgrade reads old and new
messages side by side and a corrupt payload gets a precise error without costing the good ones anything.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from btcpipe.domain.decimal import MAX_EXPONENT, STD_EXPONENT, to_float_array
from btcpipe.domain.errors import DataError, PayloadDecodeError
from btcpipe.wire import avro_wire as wire
from btcpipe.wire.avro_varint import VarintIndex, read_longs_at
from btcpipe.wire.trade_columns import (
    COLUMNS,
    TradeColumns,
    decode_trade_columns_exact,
    make_columns,
)

log = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

# Below this many bytes payloads are decoded one at a time: the vectorised reader costs ~1 ms per call
# whatever the size (a few hundred numpy calls), fastavro ~0.5 µs per value.
BULK_FROM_BYTES = 16_000


def decode_trade_columns(payload: bytes) -> TradeColumns:
    """The trades of one trade payload (any trade schema) as columns (big ones through the numpy reader)."""
    if payload[: wire.HEADER_LEN] == wire.MARKET_TRADE_COLUMNS.header and len(payload) >= BULK_FROM_BYTES:
        return decode_trade_batches([payload]).batch(0)
    return decode_trade_columns_exact(payload)


@dataclass(frozen=True, slots=True)
class TradeBatches:
    """The trades of many payloads, concatenated in payload order.

    Payload ``i`` holds trades ``offsets[i]:offsets[i + 1]`` of symbol ``symbols[i]`` at exponents
    ``price_exponent[i]``/``qty_exponent[i]``; ``price``/``qty`` are the float64 of each trade at its own
    payload's exponents. A payload that could not be decoded has no trades, symbol ``""``, and its
    error in ``errors``.
    """

    symbols: list[str]
    offsets: I64
    price_exponent: I64
    qty_exponent: I64
    id: I64
    ts_event: I64
    ts_recv: I64
    price_mantissa: I64
    qty_mantissa: I64
    is_buyer_maker: Bools
    price: F64
    qty: F64
    errors: dict[int, DataError] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def counts(self) -> I64:
        return np.diff(self.offsets)

    def batch(self, i: int) -> TradeColumns:
        if i in self.errors:
            raise self.errors[i]
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return TradeColumns(self.symbols[i], self.id[a:b], self.ts_event[a:b], self.ts_recv[a:b],
                            self.price_mantissa[a:b], self.qty_mantissa[a:b], self.is_buyer_maker[a:b],
                            int(self.price_exponent[i]), int(self.qty_exponent[i]))


@dataclass(slots=True)
class _Parsed:
    ok: Bools
    counts: I64
    symbols: list[str]
    price_exponent: I64
    qty_exponent: I64
    columns: list[I64]
    is_buyer_maker: Bools


def _parse_fast(payloads: Sequence[bytes]) -> _Parsed:
    """Vectorised read of ``MarketTradeColumns`` bodies laid out as btcpipe (and fastavro) write them.

    Every payload is a lane; a lane that breaks any rule (a field past its end, arrays of different
    lengths, several blocks per array, flags other than 0/1, a varint over 10 bytes, bad UTF-8) is
    marked not ok and left to the exact path.
    """
    m = len(payloads)
    lens = np.fromiter(map(len, payloads), dtype=np.int64, count=m)
    limit = np.cumsum(lens)
    raw = b"".join(payloads)
    buf = np.frombuffer(raw, dtype=np.uint8)
    index = VarintIndex(buf)
    pos = limit - lens + wire.HEADER_LEN
    sym_len, pos, ok = read_longs_at(buf, pos, limit)
    ok &= (sym_len >= 0) & (sym_len <= limit - pos)  # a length past the end (or so big pos + len wraps round)
    sym_at = pos
    pos = pos + np.where(ok, sym_len, 0)
    exps = []
    for _ in range(2):
        e, pos, good = read_longs_at(buf, pos, limit)
        ok &= good & (e >= -MAX_EXPONENT) & (e <= MAX_EXPONENT)
        exps.append(e)
    counts: list[I64] = []
    firsts: list[I64] = []
    last = buf.shape[0] - 1
    for _ in COLUMNS:
        n, pos, good = read_longs_at(buf, pos, limit)
        ok &= good & (n >= 0)
        n = np.where(ok, n, 0)
        first, end, good = index.skip(pos, n, limit)
        ok &= good
        has = n > 0
        ok &= ~has | ((end < limit) & (buf[np.minimum(end, last)] == 0))  # one block, then the 0 count
        pos = np.where(has, end + 1, end)
        counts.append(n)
        firsts.append(first)
    n_flags, pos, good = read_longs_at(buf, pos, limit)
    ok &= good & (pos + n_flags == limit)
    for n in counts:
        ok &= n == n_flags
    symbols = lane_symbols(raw, buf, ok, sym_at, sym_len)
    n_ok = np.where(ok, n_flags, 0)
    total = int(n_ok.sum())
    starts = np.cumsum(n_ok) - n_ok
    flag_at = np.repeat(pos - starts, n_ok) + np.arange(total, dtype=np.int64)
    flags = buf[flag_at]
    bad = flags > 1
    columns = []
    for first in firsts:
        values, proper = index.values(np.where(ok, first, 0), n_ok)
        bad |= ~proper
        columns.append(values)
    if bad.any():
        lane_of = np.repeat(np.arange(m, dtype=np.int64), n_ok)
        bad_lanes = np.unique(lane_of[bad])
        keep = ~np.isin(lane_of, bad_lanes)
        columns = [c[keep] for c in columns]
        flags = flags[keep]
        dropped = set(bad_lanes.tolist())
        symbols = [s for lane, s in zip(np.flatnonzero(ok).tolist(), symbols, strict=True) if lane not in dropped]
        ok[bad_lanes] = False
        n_ok = np.where(ok, n_flags, 0)
    return _Parsed(ok, n_ok, symbols, exps[0], exps[1], columns, flags.astype(np.bool_))


def _parse_fast_or_none(payloads: Sequence[bytes]) -> _Parsed | None:
    """``_parse_fast``, or None (every payload then goes the exact way) should a lane it did not foresee make it
    raise: a bus payload is untrusted bytes, and the exact path reports each bad one precisely."""
    try:
        return _parse_fast(payloads)
    except (IndexError, ValueError, OverflowError) as exc:
        log.warning("vectorised trade reader refused a poll; decoding payload by payload",
                    extra={"error": f"{type(exc).__name__}: {exc}"})
        return None


def lane_symbols(raw: bytes, buf: npt.NDArray[np.uint8], ok: Bools, sym_at: I64, sym_len: I64) -> list[str]:
    """The symbol of every ok lane (lanes with bad UTF-8 are marked not ok); one decode when all agree."""
    lanes = np.flatnonzero(ok)
    if lanes.size == 0:
        return []
    at, length = sym_at[lanes], sym_len[lanes]
    n0 = int(length[0])
    if bool((length == n0).all()):
        first = raw[int(at[0]) : int(at[0]) + n0]
        rows = buf[at[:, None] + np.arange(n0, dtype=np.int64)] if n0 else None
        if rows is None or bool((rows == rows[0]).all()):
            try:
                return [first.decode("utf-8")] * lanes.size
            except UnicodeDecodeError:
                pass  # sorted out lane by lane below
    symbols: list[str] = []
    cache: dict[bytes, str] = {}
    for lane in lanes.tolist():
        a = int(sym_at[lane])
        key = raw[a : a + int(sym_len[lane])]
        name = cache.get(key)
        if name is None:
            try:
                name = cache[key] = key.decode("utf-8")
            except UnicodeDecodeError:
                ok[lane] = False
                continue
        symbols.append(name)
    return symbols


def decode_trade_batches(payloads: Sequence[bytes]) -> TradeBatches:
    """Decode many trade payloads (any trade schema) into one set of columns; bad ones are reported in
    ``errors``, never raised."""
    m = len(payloads)
    header = wire.MARKET_TRADE_COLUMNS.header
    fast_lanes = [i for i, p in enumerate(payloads) if p[: wire.HEADER_LEN] == header]
    fast = [payloads[i] for i in fast_lanes]
    parsed = _parse_fast_or_none(fast) if sum(map(len, fast)) >= BULK_FROM_BYTES else None
    fast_ok = parsed is not None and bool(parsed.ok.all()) and len(fast_lanes) == m
    if fast_ok:
        assert parsed is not None
        return _assemble_fast(parsed)
    # Mixed: slow lanes decoded one by one, then everything put together in payload order.
    pieces: list[TradeColumns | None] = [None] * m
    errors: dict[int, DataError] = {}
    done = np.zeros(m, dtype=np.bool_)
    if parsed is not None:
        ok_lanes = np.flatnonzero(parsed.ok).tolist()
        offs = np.concatenate(([0], np.cumsum(parsed.counts)))
        for k, lane in enumerate(ok_lanes):
            a, b = int(offs[lane]), int(offs[lane + 1])
            i = fast_lanes[lane]
            pieces[i] = make_columns(parsed.symbols[k], [c[a:b] for c in parsed.columns], parsed.is_buyer_maker[a:b],
                              int(parsed.price_exponent[lane]), int(parsed.qty_exponent[lane]))
            done[i] = True
    for i in np.flatnonzero(~done).tolist():
        try:
            pieces[i] = decode_trade_columns_exact(payloads[i])
        except DataError as exc:
            errors[i] = exc
        except Exception as exc:  # untrusted bytes: no payload may stop the poll
            errors[i] = PayloadDecodeError(f"undecodable trade payload: {type(exc).__name__}: {exc}")
    return _assemble(pieces, errors)


def floats_at_exponents(mantissas: I64, exponents: I64, counts: I64) -> F64:
    """``to_float_array`` of each run of ``counts[i]`` mantissas at ``exponents[i]`` (one call per exponent)."""
    if exponents.size and bool((exponents == exponents[0]).all()):
        return to_float_array(mantissas, int(exponents[0]))
    per_trade = np.repeat(exponents, counts)
    out = np.empty(mantissas.shape[0], dtype=np.float64)
    for e in np.unique(per_trade).tolist():
        sel = per_trade == e
        out[sel] = to_float_array(mantissas[sel], int(e))
    return out


def _assemble_fast(p: _Parsed) -> TradeBatches:
    offsets = np.zeros(p.counts.shape[0] + 1, dtype=np.int64)
    np.cumsum(p.counts, out=offsets[1:])
    ids, ts, recv, pm, qm = p.columns
    return TradeBatches(p.symbols, offsets, p.price_exponent, p.qty_exponent, ids, ts, recv, pm, qm,
                        p.is_buyer_maker, floats_at_exponents(pm, p.price_exponent, p.counts),
                        floats_at_exponents(qm, p.qty_exponent, p.counts))


def _assemble(pieces: list[TradeColumns | None], errors: dict[int, DataError]) -> TradeBatches:
    empty = np.zeros(0, dtype=np.int64)
    counts = np.array([0 if c is None else len(c) for c in pieces], dtype=np.int64)
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    present = [c for c in pieces if c is not None]
    cols = [np.concatenate([getattr(c, name) for c in present]) if present else empty for name in COLUMNS]
    ibm = np.concatenate([c.is_buyer_maker for c in present]) if present else np.zeros(0, dtype=np.bool_)
    pe = np.array([STD_EXPONENT if c is None else c.price_exponent for c in pieces], dtype=np.int64)
    qe = np.array([STD_EXPONENT if c is None else c.qty_exponent for c in pieces], dtype=np.int64)
    ids, ts, recv, pm, qm = cols
    return TradeBatches(["" if c is None else c.symbol for c in pieces], offsets, pe, qe, ids, ts, recv, pm, qm,
                        ibm, floats_at_exponents(pm, pe, counts), floats_at_exponents(qm, qe, counts), errors)

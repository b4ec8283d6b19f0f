"""Avro ``long`` (zig-zag varint) encoding and decoding, one value in Python or whole arrays in numpy.

Avro writes a long as its zig-zag form ``(v << 1) ^ (v >> 63)`` in little-endian groups of 7 bits, the
high bit of each byte saying "more follows" (at most 10 bytes). A varint therefore ends at the first
byte below 0x80: the decoders here find every such terminator of a buffer once and then read many
varints at once, so the cost per value is a few numpy element operations instead of a Python loop.

Readers return an ``ok`` mask instead of raising: callers decode many independent payloads side by side
and pass the bad ones to a slower, exact path that says what is wrong with them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from btcpipe.domain.errors import MalformedRecordError

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]

MAX_VARINT = 10
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_AR10 = np.arange(MAX_VARINT, dtype=np.int64)
_SHIFTS = (7 * _AR10).astype(np.uint64)
_BOUNDS = np.array([1 << (7 * k) for k in range(1, MAX_VARINT)], dtype=np.uint64)


# --- encoding ----------------------------------------------------------------------------------------
def append_long(out: bytearray, value: int) -> None:
    """Append one Avro long; ``MalformedRecordError`` outside the signed 64-bit range."""
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise MalformedRecordError(f"{value} does not fit an Avro long")
    z = (value << 1) ^ (value >> 63)
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)


def encode_longs(values: I64) -> bytes:
    """The Avro longs of ``values`` back to back (an array block's items)."""
    v = np.ascontiguousarray(values, dtype=np.int64)
    if v.size == 0:
        return b""
    z = ((v << 1) ^ (v >> 63)).view(np.uint64)
    lengths = np.ones(v.shape[0], dtype=np.int64)
    for bound in _BOUNDS:
        lengths += z >= bound
    ends = np.cumsum(lengths)
    starts = ends - lengths
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    for j in range(int(lengths.max())):
        live = np.flatnonzero(lengths > j)
        group = (z[live] >> np.uint64(7 * j)) & np.uint64(0x7F)
        more = (lengths[live] > j + 1).astype(np.uint64) << np.uint64(7)
        out[starts[live] + j] = (group | more).astype(np.uint8)
    return out.tobytes()


# --- decoding ----------------------------------------------------------------------------------------
def unzigzag(z: npt.NDArray[np.uint64]) -> I64:
    return ((z >> np.uint64(1)) ^ (np.uint64(0) - (z & np.uint64(1)))).view(np.int64)


def read_longs_at(buf: U8, pos: I64, limit: I64) -> tuple[I64, I64, Mask]:
    """One long per lane at ``pos`` (lanes end at ``limit``): (values, position after, ok)."""
    last = buf.shape[0] - 1
    if last < 0:
        n = pos.shape[0]
        return np.zeros(n, np.int64), pos, np.zeros(n, np.bool_)
    head = buf[np.clip(pos, 0, last)]
    if bool((head < 0x80).all()):  # every lane a one-byte varint: lengths, small counts, exponents
        ok = (pos >= 0) & (pos < limit)
        small = head.astype(np.int64)
        return (small >> 1) ^ -(small & 1), pos + 1, ok
    idx = np.minimum(pos[:, None] + _AR10, last)
    raw = buf[idx]
    more = raw >= 0x80
    stop = np.argmin(more, axis=1)  # first byte without the continuation bit
    lengths = stop + 1
    ok = ~more[np.arange(raw.shape[0]), stop] & (pos + lengths <= limit) & (pos >= 0)
    used = _AR10[None, :] < lengths[:, None]
    groups = np.where(used, (raw & 0x7F).astype(np.uint64) << _SHIFTS, np.uint64(0))
    values = unzigzag(np.bitwise_or.reduce(groups, axis=1))
    return values, pos + lengths, ok


class VarintIndex:
    """The varint terminators of a buffer, to read runs of consecutive longs (array items) in bulk."""

    def __init__(self, buf: U8) -> None:
        self.buf = buf
        self.term = np.flatnonzero(buf < 0x80).astype(np.int64)

    def skip(self, pos: I64, counts: I64, limit: I64) -> tuple[I64, I64, Mask]:
        """Per lane, ``counts`` longs starting at ``pos``: (index of the first one, position after, ok)."""
        term = self.term
        first = np.searchsorted(term, pos).astype(np.int64)
        last = first + counts - 1
        ok = (counts >= 0) & (counts <= limit - pos) & (last < term.shape[0])
        has = ok & (counts > 0)
        after_last = term[np.clip(last, 0, term.shape[0] - 1)] + 1 if term.size else pos
        end = np.where(has, after_last, pos)
        ok &= end <= limit
        return first, end, ok

    def values(self, first: I64, counts: I64) -> tuple[I64, Mask]:
        """The longs of the runs ``[first, first + count)`` (terminator indices), concatenated; and which are
        proper varints (at most 10 bytes), one flag per value."""
        total = int(counts.sum())
        if total == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.bool_)
        offsets = np.cumsum(counts) - counts
        k = np.repeat(first - offsets, counts) + np.arange(total, dtype=np.int64)
        term = self.term
        ends = term[k]
        starts = np.where(k > 0, term[np.maximum(k - 1, 0)] + 1, 0)
        lengths = ends - starts + 1
        proper = lengths <= MAX_VARINT
        z = np.zeros(total, dtype=np.uint64)
        buf = self.buf
        for j in range(int(min(lengths.max(), MAX_VARINT))):
            live = np.flatnonzero(lengths > j) if j else None
            at = starts + j if live is None else starts[live] + j
            group = (buf[at] & 0x7F).astype(np.uint64) << np.uint64(7 * j)
            if live is None:
                z |= group
            else:
                z[live] |= group
        return unzigzag(z), proper

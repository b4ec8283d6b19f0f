"""Exact conversions between Arrow ``decimal128(·, 8)`` columns and int64 mantissas, and the decimal types.

Bronze keeps prices and quantities exact as decimals; silver and the live path hold float64 made by the
one division in ``domain.decimal`` — these functions reach it from Arrow columns without strings, so batch
and live floats agree to the bit. Pure: Arrow arrays in, numpy arrays out.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from btcpipe.domain.decimal import STD_EXPONENT, to_float_concat
from btcpipe.domain.errors import DataError

SCALE = -STD_EXPONENT
_INT64_DIGITS = 18  # every decimal of at most this many digits has an int64 mantissa
# Precision 18 fits an int64 mantissa (up to ~1e10 at 8 decimals: any BTC price or quantity), so Parquet stores
# price and quantity as plain INT64 (``store_decimal_as_integer``), which decodes ~3x faster than the 9-byte
# fixed-length form a precision of 20 needs. Quote amounts can exceed that and keep precision 28.
PRICE = pa.decimal128(18, SCALE)
QTY = pa.decimal128(18, SCALE)
QUOTE = pa.decimal128(28, SCALE)


def _low_words(arr: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, npt.NDArray[np.int64]]:
    """The array (one chunk) and a view of its values' low 64-bit words, checked to hold the whole value."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if not pa.types.is_decimal(arr.type) or arr.type.scale != SCALE:
        raise DataError(f"expected decimal128 with scale {SCALE}, got {arr.type}")
    # decimal128 is two little-endian 64-bit words per value; our magnitudes fit the low word, and the
    # high word is the sign extension. A precision of 18 digits or fewer always fits (|v| < 10^18 < 2^63);
    # a wider type is checked so an out-of-range value cannot pass silently.
    words = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=2 * (arr.offset + len(arr)))
    words = words[2 * arr.offset :].reshape(-1, 2)
    low, high = words[:, 0], words[:, 1]
    if arr.type.precision <= _INT64_DIGITS:
        return arr, low
    # Prices and quantities are non-negative: all-zero high words and no negative low word pass the
    # check without the full comparison's temporaries.
    if (high.any() or (low.shape[0] and low.min() < 0)) and not np.array_equal(high, low >> 63):
        raise DataError("decimal value does not fit an int64 mantissa")
    return arr, low


def decimal_mantissas(arr: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.int64]:
    """The unscaled int64 values of a ``decimal128(·, 8)`` column (exact; nulls become 0)."""
    arr, low = _low_words(arr)
    out = low.copy()
    if arr.null_count:
        out[~np.asarray(arr.is_valid())] = 0
    return out


def mantissas_to_decimal(mantissas: npt.NDArray[np.int64], type_: pa.DataType = PRICE) -> pa.Array:
    """Build a ``decimal128(·, 8)`` array from int64 mantissas without going through strings."""
    m = np.ascontiguousarray(mantissas, dtype=np.int64)
    words = np.empty((m.shape[0], 2), dtype=np.int64)
    words[:, 0] = m
    words[:, 1] = m >> 63
    return pa.Array.from_buffers(type_, m.shape[0], [None, pa.py_buffer(words.tobytes())])


def decimal_to_float(arr: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.float64]:
    """Silver's float64 of a bronze decimal column: the same division the live path uses (nulls give 0.0).

    Chunk by chunk (a day read from Parquet is one chunk per row group), so the 16-byte decimals are
    never concatenated.
    """
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    mantissas = []
    for chunk in chunks:
        one, low = _low_words(chunk)
        mantissas.append(decimal_mantissas(one) if one.null_count else low)
    return to_float_concat(mantissas, STD_EXPONENT)

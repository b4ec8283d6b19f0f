"""Exact decimals as (mantissa, exponent), the way Binance's SBE streams carry them.

Bronze keeps prices and quantities exact; silver converts to float64 with ``to_float``. Every path
(REST strings, dump CSV, SBE mantissas, JSON streams) converts through the same function so the float
that a feature sees is bit-identical whatever the source. Dividing an exact integer by an exact power
of ten is correctly rounded in IEEE-754, which multiplying by 1e-8 is not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from btcpipe.domain.errors import MalformedRecordError

# The exponent btcpipe normalises Binance prices and quantities to (8 decimals, as REST prints them).
STD_EXPONENT = -8
# Exponents (and exponent differences) this module converts: 10^18 is the largest power of ten below 2^63, so
# any wider shift of an int64 mantissa either loses every digit or overflows. Beyond it: MalformedRecordError.
MAX_EXPONENT = 18
_POW10: list[int] = [int(10**k) for k in range(MAX_EXPONENT + 1)]
# The largest |mantissa| btcpipe keeps: 18 digits, the precision of the lake's decimal128(18, 8) columns
# (any BTC price or quantity fits; an int64 holds it).
MAX_MANTISSA = 10**18 - 1


def _pow10(k: int, what: str) -> int:
    if not 0 <= k <= MAX_EXPONENT:
        raise MalformedRecordError(f"{what}: a shift of 10^{k} is outside the ±{MAX_EXPONENT} btcpipe converts")
    return _POW10[k]


def check_exponent(exponent: int) -> int:
    """``exponent`` if ``to_float``/``rescale`` can take it, else ``MalformedRecordError``."""
    if not -MAX_EXPONENT <= exponent <= MAX_EXPONENT:
        raise MalformedRecordError(f"exponent {exponent} is outside ±{MAX_EXPONENT}")
    return exponent


def check_mantissa(mantissa: int, what: str = "mantissa") -> int:
    """``mantissa`` if it has at most 18 digits (the lake's decimal precision), else ``MalformedRecordError``."""
    if not -MAX_MANTISSA <= mantissa <= MAX_MANTISSA:
        raise MalformedRecordError(f"{what} {mantissa} has more than 18 digits")
    return mantissa

def parse_decimal(text: str | bytes, exponent: int = STD_EXPONENT) -> int:
    """Parse a decimal string such as ``"61837.63000000"`` to its mantissa at ``exponent``.

    Raises ``MalformedRecordError`` for anything that is not a plain decimal, or that has more
    fractional digits than ``exponent`` can hold without rounding.
    """
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if not isinstance(text, str):  # a JSON number or null where Binance sends a string
        raise MalformedRecordError(f"not a decimal string: {text!r} ({type(text).__name__})")
    s = text.strip()
    neg = s.startswith("-")
    if neg or s.startswith("+"):
        s = s[1:]
    whole, dot, frac = s.partition(".")
    scale = -exponent
    _pow10(scale, f"parse {text!r}")
    if not (whole.isascii() and frac.isascii()):  # str.isdigit also accepts '²' and other digits int() refuses
        raise MalformedRecordError(f"not a decimal number: {text!r}")
    if not (whole.isdigit() or (whole == "" and frac.isdigit())) or (dot and frac and not frac.isdigit()):
        raise MalformedRecordError(f"not a decimal number: {text!r}")
    frac = frac.rstrip("0")
    if len(frac) > scale:
        raise MalformedRecordError(f"{text!r} has more than {scale} decimals")
    if len(whole.lstrip("0")) + scale > len(str(MAX_MANTISSA)):  # before int(): no 5000-digit integers
        raise MalformedRecordError(f"{text[:40]!r} has more than 18 digits at exponent {exponent}")
    mantissa = int(whole or "0") * _POW10[scale] + (int(frac) * _POW10[scale - len(frac)] if frac else 0)
    return -mantissa if neg else mantissa


def format_decimal(mantissa: int, exponent: int = STD_EXPONENT) -> str:
    """Format like Binance REST: fixed ``-exponent`` decimals (``"61837.63000000"``)."""
    check_exponent(exponent)
    if exponent >= 0:
        return str(mantissa * _POW10[exponent])
    scale = -exponent
    sign = "-" if mantissa < 0 else ""
    whole, frac = divmod(abs(mantissa), _POW10[scale])
    return f"{sign}{whole}.{frac:0{scale}d}"


def rescale(mantissa: int, exponent: int, to_exponent: int = STD_EXPONENT) -> int:
    """Express ``mantissa × 10^exponent`` at ``to_exponent``; refuses to drop digits and shifts beyond
    ±``MAX_EXPONENT`` (``MalformedRecordError``, never IndexError: the exponent comes off the wire)."""
    if exponent == to_exponent:
        return mantissa
    what = f"{mantissa}e{exponent} at exponent {to_exponent}"
    if exponent > to_exponent:
        return mantissa * _pow10(exponent - to_exponent, what)
    q, r = divmod(mantissa, _pow10(to_exponent - exponent, what))
    if r:
        raise MalformedRecordError(f"{mantissa}e{exponent} cannot be expressed at exponent {to_exponent}")
    return q


def to_float(mantissa: int, exponent: int = STD_EXPONENT) -> float:
    check_exponent(exponent)
    if exponent >= 0:
        return float(mantissa * _POW10[exponent])
    return mantissa / float(_POW10[-exponent])


def to_float_array(mantissas: npt.NDArray[np.int64], exponent: int = STD_EXPONENT) -> npt.NDArray[np.float64]:
    """Vector twin of ``to_float``: the same IEEE division, element by element."""
    return to_float_concat([mantissas], exponent)


def to_float_concat(
    parts: Sequence[npt.NDArray[np.int64]], exponent: int = STD_EXPONENT
) -> npt.NDArray[np.float64]:
    """``to_float_array`` of the parts one after another, without first concatenating the mantissas.

    Each part is cast straight into its slice of the result (any strides; the low words of a
    ``decimal128`` buffer need no copy), then the whole result is divided in place: the floats equal
    ``to_float_array(np.concatenate(parts))``.
    """
    check_exponent(exponent)
    out = np.empty(sum(int(p.shape[0]) for p in parts), dtype=np.float64)
    pos = 0
    for part in parts:
        n = int(part.shape[0])
        if exponent >= 0:
            out[pos : pos + n] = part * _POW10[exponent]
        else:
            out[pos : pos + n] = part
        pos += n
    if exponent < 0:
        np.divide(out, float(_POW10[-exponent]), out=out)
    return out

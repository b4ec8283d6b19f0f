"""Exact money arithmetic on 8-decimal mantissas (quote quantities for REST, klines and dumps)."""

from __future__ import annotations

import numpy as np

from btcpipe.domain.tape import I64

_SCALE = 10**8


def quote_mantissas(price: I64, qty: I64) -> I64:
    """``price × qty`` at 8 decimals, as Binance prints ``quoteQty``, without int64 overflow.

    A full-precision product of two 8-decimal mantissas needs ~70 bits, so both factors are split into
    whole and fractional parts; only the fraction × fraction term can have digits past 8 decimals, and
    those are truncated. BTCUSDT (0.01 tick, 0.00001 step) never has such digits: the product is exact.
    """
    ph, pl = np.divmod(price, _SCALE)
    qh, ql = np.divmod(qty, _SCALE)
    out: I64 = ph * qh * _SCALE + ph * ql + pl * qh + (pl * ql) // _SCALE
    return out

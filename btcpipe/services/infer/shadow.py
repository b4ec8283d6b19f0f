"""Shadow evaluation: join each prediction to its realized 10-s return once the market has revealed it.

The realized return is the model's own label, computed by the one label implementation
(``labels.forward_log_return``) on the mid the model was trained with: the best bid/ask mid
(``bbo_mid``, exact decimal sum halved, as ``labels.mid_from_book_tickers``) or the last-trade proxy.
A prediction stamped ``t`` is realized once a mid event at or after ``t + 10 s`` has been seen (the
label's own rule: data known up to the newest event); one that waits longer than ``expire_after``
past its horizon is given up (realized = NaN) so nothing waits forever. Rolling MAE and the
directional hit rate (``btcpipe.domain.scores.score``, the offline definition) over the last
``window`` realized predictions go to the metrics and to each row of the archive.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from btcpipe.domain.decimal import STD_EXPONENT, rescale, to_float
from btcpipe.domain.errors import DataError
from btcpipe.domain.messages import Prediction1s
from btcpipe.domain.records import BestBidAsk, Trade
from btcpipe.domain.scores import score
from btcpipe.domain.time import US_PER_SEC
from btcpipe.features.labels import LABEL_HORIZON_US, forward_log_return
from btcpipe.features.tables import LABEL_MID_BEST_BID_ASK
from btcpipe.infra.metrics import Metrics

log = logging.getLogger(__name__)

_NAN = float("nan")
_KEEP_MARGIN_US = 5 * US_PER_SEC


def _std_mantissa(mantissa: int, exponent: int) -> int | None:
    try:
        return rescale(mantissa, exponent, STD_EXPONENT)
    except DataError:
        return None


def best_bid_ask_mid(best_bid_ask: BestBidAsk) -> float:
    """The mid exactly as training computed it: (bid + ask) as one decimal at STD_EXPONENT, halved."""
    bid = _std_mantissa(best_bid_ask.bid_price_mantissa, best_bid_ask.price_exponent)
    ask = _std_mantissa(best_bid_ask.ask_price_mantissa, best_bid_ask.price_exponent)
    if bid is None or ask is None:  # finer than 8 decimals: cannot match training's mantissas anyway
        return to_float(best_bid_ask.bid_price_mantissa + best_bid_ask.ask_price_mantissa,
                        best_bid_ask.price_exponent) / 2.0
    return to_float(bid + ask, STD_EXPONENT) / 2.0


def trade_mid(trade: Trade) -> float:
    """The last-trade-price proxy, as ``labels.mid_from_trades``."""
    price = _std_mantissa(trade.price_mantissa, trade.price_exponent)
    return trade.price if price is None else to_float(price, STD_EXPONENT)


@dataclass(frozen=True, slots=True)
class ShadowRow:
    """A prediction with its outcome: what the archive stores."""

    prediction: Prediction1s
    source: str  # "store" or "fallback"
    published: bool
    realized: float  # NaN when never realized
    rolling_mae: float
    rolling_hit_rate: float

    @property
    def abs_error(self) -> float:
        return abs(self.prediction.yhat - self.realized)


@dataclass(slots=True)
class _Pending:
    prediction: Prediction1s
    source: str
    published: bool


class _MidSeries:
    """Mid events of one symbol in time order, trimmed to what pending predictions still need."""

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.mid: list[float] = []
        self.out_of_order = 0

    def add(self, ts: int, mid: float) -> None:
        if self.ts and ts < self.ts[-1]:
            self.out_of_order += 1  # as-of lookups need time order; the label would not see it either
            return
        if not math.isfinite(mid) or mid <= 0.0:
            return
        self.ts.append(ts)
        self.mid.append(mid)

    @property
    def data_end(self) -> int | None:
        return self.ts[-1] if self.ts else None

    def trim_before(self, ts: int) -> None:
        """Keep the last event at or before ``ts`` (the as-of value) and everything after it."""
        k = int(np.searchsorted(np.asarray(self.ts, dtype=np.int64), ts, side="right")) - 1
        if k > 0:
            del self.ts[:k], self.mid[:k]


class ShadowEvaluator:
    """Joins predictions to their realized 10-s returns once known and keeps rolling MAE and hit rate."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        label_mid: str,
        window: int = 300,
        horizon_us: int = LABEL_HORIZON_US,
        expire_after_s: float = 60.0,
    ) -> None:
        self.metrics = metrics
        self.use_best_bid_ask = label_mid == LABEL_MID_BEST_BID_ASK
        self.label_mid = label_mid
        self.window = window
        self.horizon_us = horizon_us
        self.expire_after_us = int(expire_after_s * US_PER_SEC)
        self._mids: dict[str, _MidSeries] = {}
        self._pending: dict[str, deque[_Pending]] = {}
        self._realized: dict[str, deque[tuple[float, float]]] = {}
        self.realized_count = 0
        self.expired_count = 0

    def set_label_mid(self, label_mid: str) -> None:
        """A new model may use the other mid; the pending predictions keep their mid series."""
        self.label_mid = label_mid
        self.use_best_bid_ask = label_mid == LABEL_MID_BEST_BID_ASK

    def _series(self, symbol: str) -> _MidSeries:
        series = self._mids.get(symbol)
        if series is None:
            series = self._mids[symbol] = _MidSeries()
        return series

    def add_market(self, trades: Iterable[Trade], best_bid_asks: Iterable[BestBidAsk]) -> None:
        if self.use_best_bid_ask:
            for best_bid_ask in best_bid_asks:
                self._series(best_bid_ask.symbol).add(best_bid_ask.ts_event, best_bid_ask_mid(best_bid_ask))
        else:
            for trade in trades:
                self._series(trade.symbol).add(trade.ts_event, trade_mid(trade))

    def add_prediction(self, prediction: Prediction1s, *, source: str, published: bool) -> None:
        self._pending.setdefault(prediction.symbol, deque()).append(_Pending(prediction, source, published))

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self._pending.values())

    def resolve(self, now_us: int, *, flush_all: bool = False) -> list[ShadowRow]:
        """Rows whose outcome is now known (or given up on); updates the rolling metrics."""
        out: list[ShadowRow] = []
        for symbol in set(self._pending) | set(self._mids):
            queue = self._pending.setdefault(symbol, deque())
            series = self._series(symbol)
            end = series.data_end
            ready: list[_Pending] = []
            while queue and end is not None and queue[0].prediction.ts_sec + self.horizon_us <= end:
                ready.append(queue.popleft())
            if ready:
                ts = np.fromiter((p.prediction.ts_sec for p in ready), dtype=np.int64, count=len(ready))
                y = forward_log_return(ts, np.asarray(series.ts, dtype=np.int64),
                                       np.asarray(series.mid, dtype=np.float64), self.horizon_us, data_end_us=end)
                out.extend(self._realize(symbol, p, float(v)) for p, v in zip(ready, y, strict=True))
            give_up_before = now_us - self.horizon_us - self.expire_after_us
            while queue and (flush_all or queue[0].prediction.ts_sec <= give_up_before):
                self.expired_count += 1
                out.append(self._realize(symbol, queue.popleft(), _NAN))
            # Keep what pending predictions and the next ones (stamped a moment before now) look up.
            keep_from = now_us - _KEEP_MARGIN_US
            if queue:
                keep_from = min(keep_from, queue[0].prediction.ts_sec)
            series.trim_before(keep_from)
        return out

    def _realize(self, symbol: str, pending: _Pending, realized: float) -> ShadowRow:
        window = self._realized.setdefault(symbol, deque(maxlen=self.window))
        yhat = pending.prediction.yhat
        if math.isfinite(realized) and math.isfinite(yhat):
            window.append((yhat, realized))
            self.realized_count += 1
        mae, hit = self.rolling(symbol)
        if window:
            self.metrics.shadow_mae.labels(symbol=symbol).set(mae)
            if math.isfinite(hit):
                self.metrics.shadow_hit_rate.labels(symbol=symbol).set(hit)
        return ShadowRow(pending.prediction, pending.source, pending.published, realized, mae, hit)

    def rolling(self, symbol: str) -> tuple[float, float]:
        """(MAE, hit rate) over the last ``window`` realized predictions; NaN without any."""
        window = self._realized.get(symbol)
        if not window:
            return _NAN, _NAN
        pairs = np.asarray(window, dtype=np.float64)
        s = score(pairs[:, 1], pairs[:, 0])
        return s.mae, s.hit_rate

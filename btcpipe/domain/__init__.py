"""The pure core every layer shares: records, time (int64 µs, UTC), exact decimals, columnar tapes, feature
rows and predictions, forecast scores, retry backoff and the one error tree. No IO, no wall clock."""

from btcpipe.domain.errors import BtcpipeError, ConfigError, DataError
from btcpipe.domain.messages import FeatureVector1s, Prediction1s
from btcpipe.domain.records import BestBidAsk, DepthDiff, DepthSnapshot, Kline, Trade, TradeGap
from btcpipe.domain.time import US_PER_SEC, Clock

__all__ = [
    "US_PER_SEC",
    "BestBidAsk",
    "BtcpipeError",
    "Clock",
    "ConfigError",
    "DataError",
    "DepthDiff",
    "DepthSnapshot",
    "FeatureVector1s",
    "Kline",
    "Prediction1s",
    "Trade",
    "TradeGap",
]

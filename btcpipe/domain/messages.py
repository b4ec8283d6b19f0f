"""Messages the live pipeline produces: a 1-s feature row, a prediction and the ingestor's heartbeat.

``ts_sec`` is the start of second *t* in µs since the epoch (a multiple of 1 000 000), like every other
timestamp in btcpipe; the row stamped *t* describes ``[t − 1 s, t)``. ``values`` are in the order of the
feature schema identified by ``schema_hash`` (NaN allowed).
"""

from __future__ import annotations

from dataclasses import dataclass

from btcpipe.domain.errors import MalformedRecordError
from btcpipe.domain.time import US_PER_SEC, is_microseconds


def check_ts_sec(ts_sec: int) -> int:
    """Refuse a ``ts_sec`` that is not a whole second in µs (catches seconds or ms passed by mistake)."""
    if not is_microseconds(ts_sec) or ts_sec % US_PER_SEC:
        raise MalformedRecordError(f"ts_sec must be a whole second in µs since the epoch, got {ts_sec}")
    return ts_sec


@dataclass(frozen=True, slots=True)
class FeatureVector1s:
    """One symbol's feature row for one second as the live path carries it (bus, store): values in schema order."""

    symbol: str
    ts_sec: int
    schema_hash: str
    values: tuple[float, ...]
    ts_computed: int  # µs, when the processor produced the row


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The ingestor vouches that every market event of ``symbol`` before ``ts_event`` (µs) has been published."""

    symbol: str
    ts_event: int


@dataclass(frozen=True, slots=True)
class Prediction1s:
    """One prediction of the 10-s log return for a second, with its latency, model version and feature age."""

    symbol: str
    ts_sec: int
    yhat: float
    latency_ms: float
    model_version: str
    uncertainty: float | None
    feature_age_ms: float
    ts_pred: int  # µs, when the prediction was made

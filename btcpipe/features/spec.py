"""Feature schema v1: the ordered names, dtypes, units and windows of the 1-second feature rows.

The order is fixed by DESIGN.md and is the column order of the model's input. ``schema_hash`` is the
sha256 of the canonical JSON of everything that defines the arithmetic (names, order, dtypes, units,
windows, definition version); the model stores it and inference refuses a model whose hash differs
from the running code's. Fitted values (the trade-size percentile) are not part of the hash — they
travel in ``schema_v1.json`` beside it — but whether ``spread`` is present is, because it changes the
input width.

Bump ``DEFINITION_VERSION`` whenever a formula in ``arithmetic.py`` changes meaning, even when no name
changes: the hash then refuses models trained on the old numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from btcpipe.domain.errors import ConfigError, SchemaHashMismatchError

SCHEMA_NAME = "btcpipe.features"
SCHEMA_VERSION = 1
# Version of the formulas behind the names (see docs/FEATURES.md).
DEFINITION_VERSION = "1.0"

# Longest trailing look-back of any feature, in 1-s bars including the current one (the 60-s median).
WINDOW_BARS = 60


@dataclass(frozen=True, slots=True)
class FeatureDef:
    """One feature of the schema: name, unit, trailing window and what it means."""

    name: str
    unit: str
    window_s: int  # trailing 1-s bars the value depends on, counting the current one
    description: str
    dtype: str = "float64"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "unit": self.unit, "window_s": self.window_s}


_BASE: tuple[FeatureDef, ...] = (
    FeatureDef("ret_1s", "log return", 2, "log(p_t) − log(p_{t−1s}), p = last trade price carried forward"),
    FeatureDef("ret_2s", "log return", 3, "log(p_t) − log(p_{t−2s})"),
    FeatureDef("ret_5s", "log return", 6, "log(p_t) − log(p_{t−5s})"),
    FeatureDef("vwap_5s_dev", "log ratio", 5, "log(p_t / VWAP over [t−5s, t)); 0 when no trade in the window"),
    FeatureDef("n_trades_1s", "trades", 1, "number of trades in [t−1s, t)"),
    FeatureDef("n_trades_5s", "trades", 5, "number of trades in [t−5s, t)"),
    FeatureDef("buy_vol_1s", "base asset", 1, "taker-buy base volume in [t−1s, t)"),
    FeatureDef("sell_vol_1s", "base asset", 1, "taker-sell base volume in [t−1s, t)"),
    FeatureDef("tvi_1s", "ratio [−1, 1]", 1, "(buy − sell) / (buy + sell) over [t−1s, t); 0 without trades"),
    FeatureDef("buy_vol_5s", "base asset", 5, "taker-buy base volume in [t−5s, t)"),
    FeatureDef("sell_vol_5s", "base asset", 5, "taker-sell base volume in [t−5s, t)"),
    FeatureDef("tvi_5s", "ratio [−1, 1]", 5, "(buy − sell) / (buy + sell) over [t−5s, t); 0 without trades"),
    FeatureDef("avg_trade_size_1s", "base asset", 1, "(buy + sell) / n over [t−1s, t); 0 without trades"),
    FeatureDef("vol_ret_10s", "log return", 11, "sample std (ddof 1) of the ten 1-s log returns ending at t"),
    FeatureDef("burst_1s", "ratio", WINDOW_BARS, "n_trades_1s / max(1, median of n_trades_1s over 60 s)"),
    FeatureDef("large_trade_flag_5s", "0/1", 5, "1 if a trade in [t−5s, t) has qty > fitted trade_size_p95"),
    FeatureDef("time_since_last_trade_ms", "ms", 1, "(t − time of the last trade before t) / 1000"),
    FeatureDef("last_price_minus_1s", "quote asset", 2, "p_t − p_{t−1s}"),
    FeatureDef("last_price_minus_5s", "quote asset", 6, "p_t − p_{t−5s}"),
)
_SPREAD = FeatureDef("spread", "quote asset", 1, "best ask − best bid as of just before t")

BASE_FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in _BASE)


def feature_defs(with_spread: bool = False) -> tuple[FeatureDef, ...]:
    return (*_BASE, _SPREAD) if with_spread else _BASE


def feature_names(with_spread: bool = False) -> tuple[str, ...]:
    return tuple(f.name for f in feature_defs(with_spread))


@dataclass(frozen=True, slots=True)
class FeatureParams:
    """Parameters of the arithmetic decided from the training data and stored with the model.

    ``trade_size_p95``: the 95th percentile of single-trade quantity (base asset) on the training split,
    the threshold of ``large_trade_flag_5s``. ``with_spread``: whether the schema carries ``spread``
    (only when the training data has best bid/ask history).
    """

    trade_size_p95: float
    with_spread: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.trade_size_p95) and self.trade_size_p95 >= 0):
            raise ConfigError(f"trade_size_p95 must be a finite non-negative number, got {self.trade_size_p95!r}")

    @property
    def names(self) -> tuple[str, ...]:
        return feature_names(self.with_spread)

    def to_json(self) -> dict[str, Any]:
        return {"trade_size_p95": self.trade_size_p95, "with_spread": self.with_spread}

    @classmethod
    def from_json(cls, doc: object) -> FeatureParams:
        """Read params from their JSON object, or from a whole ``schema_v1.json`` (its ``params``)."""
        if isinstance(doc, dict) and isinstance(doc.get("params"), dict):
            doc = doc["params"]
        if not isinstance(doc, dict):
            raise ConfigError(f"feature params must be a JSON object, got {type(doc).__name__}")
        p95 = doc.get("trade_size_p95")
        spread = doc.get("with_spread", False)
        if isinstance(p95, bool) or not isinstance(p95, int | float):
            raise ConfigError(f"feature params: trade_size_p95 must be a number, got {p95!r}")
        if not isinstance(spread, bool):
            raise ConfigError(f"feature params: with_spread must be true/false, got {spread!r}")
        return cls(float(p95), spread)


def _definition(with_spread: bool) -> dict[str, Any]:
    return {
        "schema": SCHEMA_NAME,
        "version": SCHEMA_VERSION,
        "definition_version": DEFINITION_VERSION,
        "row": "ts_sec = t (µs, whole second) describes [t-1s, t)",
        "features": [f.to_json() for f in feature_defs(with_spread)],
    }


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def schema_hash(params: FeatureParams | None = None) -> str:
    """sha256 (hex) of the running code's schema definition; ``params`` only decides ``with_spread``."""
    with_spread = params.with_spread if params is not None else False
    return hashlib.sha256(_canonical(_definition(with_spread))).hexdigest()


def schema_document(params: FeatureParams) -> dict[str, Any]:
    """The content of ``schema_v1.json``: definition, fitted params and the hash."""
    doc = _definition(params.with_spread)
    doc["names"] = list(params.names)
    doc["params"] = params.to_json()
    doc["hash"] = schema_hash(params)
    return doc


def check_schema_document(doc: dict[str, Any]) -> FeatureParams:
    """Verify a stored ``schema_v1.json`` against the running code; return its params.

    Raises ``SchemaHashMismatchError`` when its hash or names differ from what this code computes.
    """
    params = FeatureParams.from_json(doc)
    expected = schema_hash(params)
    if doc.get("hash") != expected:
        raise SchemaHashMismatchError(
            f"feature schema hash {doc.get('hash')!r} differs from the running feature code's {expected!r} "
            f"(definition {DEFINITION_VERSION}); rebuild features and retrain"
        )
    if list(doc.get("names", params.names)) != list(params.names):
        raise SchemaHashMismatchError("feature names in schema_v1.json differ from the running feature code's")
    return params

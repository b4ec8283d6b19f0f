"""Schema v1: DESIGN.md's names and order, a hash that is stable and that notices every definition change."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from btcpipe.domain.errors import ConfigError, SchemaHashMismatchError
from btcpipe.features import spec
from btcpipe.features.spec import FeatureParams, check_schema_document, schema_document, schema_hash

DESIGN_ORDER = [
    "ret_1s", "ret_2s", "ret_5s", "vwap_5s_dev", "n_trades_1s", "n_trades_5s", "buy_vol_1s", "sell_vol_1s",
    "tvi_1s", "buy_vol_5s", "sell_vol_5s", "tvi_5s", "avg_trade_size_1s", "vol_ret_10s", "burst_1s",
    "large_trade_flag_5s", "time_since_last_trade_ms", "last_price_minus_1s", "last_price_minus_5s",
]

# Pinned on purpose: if this changes, the feature definition changed — bump DEFINITION_VERSION, rebuild
# features and retrain (models carrying the old hash will be refused, as they must be).
PINNED_HASH_V1 = "fba13c7599a08fd08467e58116fea3680dbb43ee0f367d3ff35dea38e3b7bfd5"


def test_names_and_order_are_the_design_contract() -> None:
    assert list(spec.feature_names()) == DESIGN_ORDER
    assert list(spec.feature_names(with_spread=True)) == [*DESIGN_ORDER, "spread"]
    assert all(f.dtype == "float64" for f in spec.feature_defs(True))


def test_schema_hash_is_pinned_and_the_same_in_a_fresh_interpreter() -> None:
    assert schema_hash() == PINNED_HASH_V1
    fresh = subprocess.run(
        [sys.executable, "-c", "from btcpipe.features.spec import schema_hash; print(schema_hash())"],
        capture_output=True, text=True, check=True,
    )
    assert fresh.stdout.strip() == PINNED_HASH_V1


def test_fitted_values_do_not_change_the_hash_but_spread_does() -> None:
    assert schema_hash(FeatureParams(0.01)) == schema_hash(FeatureParams(3.0)) == schema_hash()
    assert schema_hash(FeatureParams(0.01, with_spread=True)) != schema_hash()


@pytest.mark.parametrize(
    "change",
    [
        lambda defs: defs[::-1],  # order
        lambda defs: (dataclasses.replace(defs[0], dtype="float32"), *defs[1:]),  # dtype
        lambda defs: (dataclasses.replace(defs[4], window_s=2), *defs[:4], *defs[5:]),  # window (and order)
        lambda defs: (*defs[:3], dataclasses.replace(defs[3], window_s=10), *defs[4:]),  # window only
        lambda defs: (*defs[:5], dataclasses.replace(defs[5], unit="lots"), *defs[6:]),  # unit
        lambda defs: (*defs[:1], dataclasses.replace(defs[1], name="ret_3s"), *defs[2:]),  # name
    ],
)
def test_any_definition_change_changes_the_hash(monkeypatch: pytest.MonkeyPatch, change: object) -> None:
    assert callable(change)
    monkeypatch.setattr(spec, "_BASE", change(spec._BASE))
    assert schema_hash() != PINNED_HASH_V1


def test_definition_version_is_part_of_the_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spec, "DEFINITION_VERSION", "1.1")
    assert schema_hash() != PINNED_HASH_V1


def test_schema_document_round_trips_and_refuses_a_foreign_hash() -> None:
    params = FeatureParams(0.0421, with_spread=True)
    doc = json.loads(json.dumps(schema_document(params)))
    assert check_schema_document(doc) == params
    assert doc["names"][-1] == "spread"
    assert doc["params"] == {"trade_size_p95": 0.0421, "with_spread": True}
    assert FeatureParams.from_json(doc) == params  # a schema_v1.json is accepted as params
    doc["hash"] = "0" * 64
    with pytest.raises(SchemaHashMismatchError, match="differs from the running feature code"):
        check_schema_document(doc)
    other = schema_document(params)
    other["names"] = other["names"][:-1]
    with pytest.raises(SchemaHashMismatchError, match="names"):
        check_schema_document(other)


@pytest.mark.parametrize(
    "bad",
    [[], {"trade_size_p95": "0.1"}, {"trade_size_p95": True}, {"trade_size_p95": -1.0},
     {"trade_size_p95": float("nan")}, {"trade_size_p95": 0.1, "with_spread": "yes"}, {}],
)
def test_garbage_params_are_refused_with_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError):
        FeatureParams.from_json(bad)

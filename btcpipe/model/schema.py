"""The model's side of the feature contract: write ``schema_v1.json``, ask the running code for its hash.

The definition (names, order, units, windows, hash) belongs to ``btcpipe.features.spec``; this module
only serialises it with the fitted parameters and turns spec errors into model errors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from btcpipe.domain.errors import ConfigError, ModelIntegrityError
from btcpipe.features.spec import FeatureParams, schema_document, schema_hash


def schema_json(params: FeatureParams) -> bytes:
    """``schema_v1.json`` for a model trained on features computed with ``params``."""
    return json.dumps(schema_document(params), indent=2, sort_keys=True).encode()


def params_of(schema: Mapping[str, Any]) -> FeatureParams:
    try:
        return FeatureParams.from_json(dict(schema))
    except ConfigError as exc:
        raise ModelIntegrityError(f"schema_v1.json has unusable feature params: {exc}") from exc


def running_schema_hash(schema: Mapping[str, Any]) -> str:
    """The hash the running feature code gives the model's feature set (with or without ``spread``)."""
    return schema_hash(params_of(schema))



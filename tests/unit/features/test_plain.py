"""Plain-data snapshot encoding: exact to the bit (NaN, -0.0, extremes included), JSON-safe, and strict on bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from btcpipe.domain.errors import DataError
from btcpipe.features import plain


def test_arrays_and_scalars_survive_json_bit_for_bit() -> None:
    floats = np.array([0.1, -0.0, math.nan, math.inf, -math.inf, 5e-324, 1.7976931348623157e308])
    ints = np.array([-(2**63), -1, 0, 2**63 - 1], dtype=np.int64)
    doc = json.loads(json.dumps({"f": plain.pack_f64(floats), "i": plain.pack_i64(ints),
                                 "b": plain.pack_bool([True, False, True]),
                                 "s": [plain.pack_float(v) for v in floats.tolist()]}, allow_nan=False))
    assert plain.unpack_f64(doc["f"], "f").tobytes() == floats.tobytes()
    assert plain.unpack_i64(doc["i"], "i").tolist() == ints.tolist()
    assert plain.unpack_bool(doc["b"], "b").tolist() == [True, False, True]
    back = np.array([plain.unpack_float(v, "s") for v in doc["s"]])
    assert back.tobytes() == floats.tobytes()


def test_malformed_fields_are_data_errors_naming_the_field() -> None:
    with pytest.raises(DataError, match="ring"):
        plain.unpack_f64("AAAA", "ring")  # 3 bytes: not whole float64 values
    with pytest.raises(DataError, match="ends"):
        plain.unpack_i64(12, "ends")
    with pytest.raises(DataError, match="bid"):
        plain.unpack_float("not-hex", "bid")
    with pytest.raises(DataError, match="'pos'"):
        plain.field({"pos": True}, "pos", int)
    with pytest.raises(DataError, match="version 3 is not supported"):
        plain.check_version({"kind": "k", "version": 3}, "k", 1)

"""Plain-data encoding for snapshots of live feature state: exact, JSON-serialisable, no pickle.

A snapshot must restore *bit-identical* state (the rows after a restore equal the rows without one), and
it must survive JSON and an engine's managed state (Flink keeps it as a string or bytes). So:

- float arrays and int64 arrays travel as base64 of their little-endian bytes (exact, NaN included);
- float scalars as ``float.hex`` strings (exact, and ``nan`` is a plain string, not JSON's missing NaN);
- everything else is ints, bools, strings, lists and dicts.

Pure: no IO.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from btcpipe.domain.errors import DataError

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


def pack_f64(values: npt.ArrayLike) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f8").tobytes()).decode("ascii")


def pack_i64(values: npt.ArrayLike) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype="<i8").tobytes()).decode("ascii")


def pack_bool(values: npt.ArrayLike) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype=np.uint8).tobytes()).decode("ascii")


def _raw(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise DataError(f"snapshot field {what} must be a base64 string, got {type(text).__name__}")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise DataError(f"snapshot field {what} is not valid base64: {exc}") from exc


def unpack_f64(text: object, what: str) -> F64:
    raw = _raw(text, what)
    if len(raw) % 8:
        raise DataError(f"snapshot field {what} is not a whole number of float64 values")
    return np.frombuffer(raw, dtype="<f8").astype(np.float64)


def unpack_i64(text: object, what: str) -> I64:
    raw = _raw(text, what)
    if len(raw) % 8:
        raise DataError(f"snapshot field {what} is not a whole number of int64 values")
    return np.frombuffer(raw, dtype="<i8").astype(np.int64)


def unpack_bool(text: object, what: str) -> Bools:
    return np.frombuffer(_raw(text, what), dtype=np.uint8).astype(np.bool_)


def pack_float(value: float) -> str:
    return float(value).hex()


def unpack_float(text: object, what: str) -> float:
    if not isinstance(text, str):
        raise DataError(f"snapshot field {what} must be a float.hex string, got {type(text).__name__}")
    try:
        return float.fromhex(text)
    except ValueError as exc:
        raise DataError(f"snapshot field {what} is not a float.hex string: {text!r}") from exc


def field(doc: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """``doc[name]``, checked to be of ``kind`` (bool is not accepted as int)."""
    if name not in doc:
        raise DataError(f"snapshot has no field {name!r}")
    value = doc[name]
    if isinstance(value, bool) and kind is int:
        raise DataError(f"snapshot field {name!r} must be an integer, got a bool")
    if not isinstance(value, kind):
        raise DataError(f"snapshot field {name!r} has type {type(value).__name__}")
    return value


def optional_int(doc: Mapping[str, Any], name: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    return int(field(doc, name, int))


def check_version(doc: object, kind: str, version: int) -> Mapping[str, Any]:
    """The snapshot as a mapping, once its ``kind`` and ``version`` are the ones this code reads."""
    if not isinstance(doc, Mapping):
        raise DataError(f"a {kind} snapshot must be a JSON object, got {type(doc).__name__}")
    if doc.get("kind") != kind:
        raise DataError(f"not a {kind} snapshot (kind {doc.get('kind')!r})")
    got = doc.get("version")
    if got != version:
        raise DataError(f"{kind} snapshot version {got!r} is not supported (this code reads version {version})")
    return doc

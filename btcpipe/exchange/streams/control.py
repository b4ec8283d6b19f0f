"""Live control of a stream connection: Binance's ``SUBSCRIBE``, ``UNSUBSCRIBE``, ``LIST_SUBSCRIPTIONS``,
``SET_PROPERTY``/``GET_PROPERTY`` (``combined``) text frames, on JSON and SBE connections alike.

Requests are ``{"method": ..., "params": [...], "id": ...}``; ``id`` is a 64-bit integer, an alphanumeric
string of at most 36 characters, or null, and comes back in the reply: ``{"result": null, "id": 1}`` on
success, ``{"result": [...], "id": 3}`` for a query, ``{"error": {"code": 2, "msg": ...}, "id": 1}`` on a
refusal (codes 0 unknown property, 1 bad value type, 2 invalid request, 3 invalid JSON). A refused request
changes nothing. The 5-messages-per-second limit is ``MessageRateLimit``.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from btcpipe.exchange.streams.formats import StreamNameError, StreamSpec, WireFormat, parse_stream_name

_ID = re.compile(r"^[A-Za-z0-9-]{1,36}$")
_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
RequestId = int | str | None


class MessageRateLimit:
    """At most ``limit`` incoming messages (pings, pongs, control frames) in any ``window_s`` on a connection."""

    def __init__(self, limit: int = 5, window_s: float = 1.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        while self._times and now - self._times[0] >= self.window_s:
            self._times.popleft()
        self._times.append(now)
        return len(self._times) <= self.limit


@dataclass(frozen=True, slots=True)
class ControlPort:
    """What a control request may do to its connection (the hub's operations, bound to one subscriber)."""

    fmt: WireFormat
    symbols: Sequence[str]
    max_streams: int
    subscribed: Callable[[], list[str]]
    subscribe: Callable[[list[StreamSpec]], None]
    unsubscribe: Callable[[list[str]], None]
    combined: Callable[[], bool]
    set_combined: Callable[[bool], None]


class _RefusedError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def _reply(result: Any, request_id: RequestId) -> str:
    return orjson.dumps({"result": result, "id": request_id}).decode()


def _error(code: int, msg: str, request_id: RequestId) -> str:
    return orjson.dumps({"error": {"code": code, "msg": msg}, "id": request_id}).decode()


def _request_id(raw: Any) -> RequestId:
    if raw is None or (isinstance(raw, int) and not isinstance(raw, bool) and -(2**63) <= raw < 2**63):
        return raw
    if isinstance(raw, str) and _ID.match(raw):
        return raw
    raise _RefusedError(2, "Invalid request: request ID must be an unsigned integer")


def handle_control(text: str, port: ControlPort) -> str:
    """Apply one control frame to a connection; the reply to send back (always one)."""
    try:
        request = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return _error(3, f"Invalid JSON: {exc}", None)
    if not isinstance(request, dict):
        return _error(3, "Invalid JSON: expected an object", None)
    request_id: RequestId = None
    try:
        request_id = _request_id(request.get("id"))
        return _reply(_dispatch(request, port), request_id)
    except _RefusedError as exc:
        return _error(exc.code, exc.msg, request_id)


def _dispatch(request: dict[str, Any], port: ControlPort) -> Any:
    method = request.get("method")
    if method is None:
        raise _RefusedError(2, "Invalid request: missing field `method`")
    if method not in _METHODS:
        raise _RefusedError(2, f"Invalid request: unknown variant {method!r}, expected one of {', '.join(_METHODS)}")
    params = request.get("params", [])
    if not isinstance(params, list):
        raise _RefusedError(2, "Invalid request: params must be an array")
    if method == "LIST_SUBSCRIPTIONS":
        return port.subscribed()
    if method in ("SET_PROPERTY", "GET_PROPERTY"):
        return _property(method, params, port)
    if not all(isinstance(p, str) for p in params):
        raise _RefusedError(2, "Invalid request: stream names must be strings")
    if method == "UNSUBSCRIBE":
        port.unsubscribe(list(params))
        return None
    try:
        specs = [parse_stream_name(name, port.fmt, port.symbols) for name in params]
    except StreamNameError as exc:
        raise _RefusedError(2, f"Invalid request: invalid stream ({exc})") from exc
    if len(set(port.subscribed()) | {s.name for s in specs}) > port.max_streams:
        raise _RefusedError(2, f"Invalid request: more than {port.max_streams} streams on one connection")
    port.subscribe(specs)
    return None


def _property(method: str, params: list[Any], port: ControlPort) -> Any:
    if not params or not isinstance(params[0], str):
        raise _RefusedError(2, "Invalid request: property name must be a string")
    if params[0] != "combined":
        raise _RefusedError(0, "Unknown property")
    if method == "GET_PROPERTY":
        return port.combined()
    if len(params) != 2:
        too_many = len(params) > 2
        raise _RefusedError(2, "Invalid request: too many parameters" if too_many else "Invalid request: no value")
    if not isinstance(params[1], bool):
        raise _RefusedError(1, "Invalid value type: expected Boolean")
    port.set_combined(params[1])
    return None

"""Live stream control: Binance's SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS/SET_PROPERTY replies and the
5-messages-per-second limit."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from btcpipe.exchange.streams.control import ControlPort, MessageRateLimit, handle_control
from btcpipe.exchange.streams.formats import StreamSpec


class _Conn:
    def __init__(self) -> None:
        self.streams: list[str] = []
        self.is_combined = False

    def port(self, fmt: str = "json") -> ControlPort:
        return ControlPort(
            fmt=fmt,  # type: ignore[arg-type]
            symbols=["BTCUSDT"], max_streams=3,
            subscribed=lambda: list(self.streams),
            subscribe=lambda specs: self.streams.extend(s.name for s in specs if s.name not in self.streams),
            unsubscribe=lambda names: [self.streams.remove(n) for n in names if n in self.streams] and None,
            combined=lambda: self.is_combined,
            set_combined=lambda flag: setattr(self, "is_combined", flag),
        )


def _ask(conn: _Conn, request: Any, fmt: str = "json") -> dict[str, Any]:
    text = request if isinstance(request, str) else orjson.dumps(request).decode()
    reply: dict[str, Any] = orjson.loads(handle_control(text, conn.port(fmt)))
    return reply


def test_subscribe_list_and_unsubscribe_answer_with_the_request_id() -> None:
    conn = _Conn()
    assert _ask(conn, {"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade", "btcusdt@depth5"], "id": 1}) == {
        "result": None, "id": 1}
    assert _ask(conn, {"method": "LIST_SUBSCRIPTIONS", "id": "abc-7"}) == {
        "result": ["btcusdt@aggTrade", "btcusdt@depth5"], "id": "abc-7"}
    assert _ask(conn, {"method": "UNSUBSCRIBE", "params": ["btcusdt@depth5"], "id": None}) == {
        "result": None, "id": None}
    assert conn.streams == ["btcusdt@aggTrade"]


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"method": "SUBSCRIBE", "params": ["btcusdt@nope"], "id": 2}, 2),  # unknown stream
        ({"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": 2}, 2),  # unknown symbol
        ({"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m", "btcusdt@trade", "btcusdt@ticker",
                                            "btcusdt@miniTicker"], "id": 2}, 2),  # over max_streams
        ({"method": "FETCH", "id": 2}, 2),
        ({"params": [], "id": 2}, 2),
        ({"method": "SET_PROPERTY", "params": ["colour", True], "id": 2}, 0),
        ({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 2}, 1),
    ],
)
def test_refusals_carry_binance_s_codes_and_the_id_and_change_nothing(request_: dict[str, Any], code: int) -> None:
    conn = _Conn()
    reply = _ask(conn, request_)
    assert reply["error"]["code"] == code
    assert reply["id"] == 2
    assert conn.streams == []


def test_bad_json_and_bad_ids_are_refused() -> None:
    assert _ask(_Conn(), "{not json")["error"]["code"] == 3
    reply = _ask(_Conn(), {"method": "LIST_SUBSCRIPTIONS", "id": "x" * 37})
    assert (reply["error"]["code"], reply["id"]) == (2, None)


def test_sbe_connections_take_sbe_names_only() -> None:
    assert _ask(_Conn(), {"method": "SUBSCRIBE", "params": ["btcusdt@bestBidAsk"], "id": 1}, "sbe") == {
        "result": None, "id": 1}
    assert _ask(_Conn(), {"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 1}, "sbe")["error"]["code"] == 2


def test_the_combined_property_can_be_read_and_set() -> None:
    conn = _Conn()
    assert _ask(conn, {"method": "SET_PROPERTY", "params": ["combined", True], "id": 5}) == {"result": None, "id": 5}
    assert _ask(conn, {"method": "GET_PROPERTY", "params": ["combined"], "id": 6}) == {"result": True, "id": 6}


def test_five_messages_a_second_pass_and_the_sixth_does_not() -> None:
    limit = MessageRateLimit()
    assert [limit.allow(10.0 + i * 0.1) for i in range(6)] == [True] * 5 + [False]
    assert limit.allow(11.6)  # a second after the earlier ones, room again


def test_spec_names_are_kept_as_requested() -> None:
    assert StreamSpec("btcusdt@depth", "BTCUSDT", "depth@1000ms").name == "btcusdt@depth"

"""Stream messages at the ingestor's boundary: well-framed but impossible values (exponents beyond ±18, integers
beyond int64, mantissas of more than 18 digits, wrong JSON types) are refused with the error tree, never with
IndexError, ValueError or AttributeError — and never reach the bus or bronze."""

from __future__ import annotations

import orjson
import pytest

from btcpipe.binance.sbe import encode_best_bid_ask, encode_trades
from btcpipe.binance.sbe_schema import TradesEvent
from btcpipe.binance.ws_messages import decode_binary, decode_text
from btcpipe.domain.errors import DataError, MalformedRecordError
from btcpipe.domain.records import BestBidAsk, Trade
from btcpipe.exchange.streams.random_faults import POISON_VARIANTS, poison_json, poison_sbe

T_MS = 1723161255342
T_US = T_MS * 1000
P, Q = 6183763000000, 2000000


def _trade_json(**fields: object) -> str:
    data: dict[str, object] = {"e": "trade", "E": T_MS, "s": "BTCUSDT", "t": 3735683259, "p": "61837.63000000",
                               "q": "0.02000000", "T": T_MS, "m": True, "M": True}
    data.update(fields)
    body = orjson.dumps(data).decode()
    return '{"stream":"btcusdt@trade","data":' + body + "}"


def test_a_good_trade_decodes_on_both_wires() -> None:
    sbe = decode_binary(encode_trades([Trade("BTCUSDT", 7, T_US, P, Q, True)]), T_US)
    assert isinstance(sbe, TradesEvent)
    assert sbe.trades[0].price_mantissa == P
    json = decode_text(_trade_json(), T_US)
    assert isinstance(json, TradesEvent)
    assert json.trades[0].price_mantissa == P


@pytest.mark.parametrize("price_exponent", [11, 12, 127, -27, -128])
def test_sbe_trade_with_an_exponent_beyond_the_power_table_is_a_typed_error(price_exponent: int) -> None:
    frame = encode_trades([Trade("BTCUSDT", 7, T_US, 1, Q, True, price_exponent, -8)])
    with pytest.raises(MalformedRecordError, match="outside"):
        decode_binary(frame, T_US)


def test_sbe_best_bid_ask_with_a_bad_quantity_exponent_is_a_typed_error() -> None:
    frame = encode_best_bid_ask(BestBidAsk("BTCUSDT", T_US, 5, P, Q, P + 1, Q, -8, 100))
    with pytest.raises(MalformedRecordError):
        decode_binary(frame, T_US)


@pytest.mark.parametrize(("trade_id", "price"), [(-5, P), (7, 2**63 - 1), (7, -(10**18))])
def test_sbe_trade_with_a_negative_id_or_a_19_digit_mantissa_is_refused(trade_id: int, price: int) -> None:
    with pytest.raises(MalformedRecordError):
        decode_binary(encode_trades([Trade("BTCUSDT", trade_id, T_US, price, Q, True)]), T_US)


@pytest.mark.parametrize(
    "fields",
    [
        {"E": "soon"},  # int("soon") outside any try before
        {"E": 2**63 + 1},
        {"p": 61837.63},  # a number where a string belongs: AttributeError before
        {"q": None},
        {"t": "3735683259"},
        {"t": 1.5},
        {"t": True},
        {"m": "yes"},
        {"s": 5},
        {"T": None},
    ],
)
def test_json_trade_with_a_wrong_type_is_a_typed_error(fields: dict[str, object]) -> None:
    with pytest.raises(MalformedRecordError):
        decode_text(_trade_json(**fields), T_US)


def test_json_trade_with_a_thirty_digit_price_is_refused_before_the_sink() -> None:
    with pytest.raises(MalformedRecordError, match="18 digits"):
        decode_text(_trade_json(p="1" * 30), T_US)


def test_json_trade_id_above_2_pow_63_is_refused_before_the_sink() -> None:
    text = _trade_json().replace('"t":3735683259', f'"t":{2**63 + 7}')
    with pytest.raises(MalformedRecordError):
        decode_text(text, T_US)


def test_json_depth_update_with_levels_of_the_wrong_shape_is_a_typed_error() -> None:
    text = ('{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,'
            '"b":{"p":"1"},"a":[["1.0"]]}}')
    with pytest.raises(MalformedRecordError):
        decode_text(text, T_US)


@pytest.mark.parametrize("variant", range(POISON_VARIANTS))
def test_every_poison_message_of_the_local_exchange_is_refused_with_a_typed_error(variant: int) -> None:
    with pytest.raises(DataError):
        decode_binary(poison_sbe("BTCUSDT", T_US, variant), T_US)
    stream = "btcusdt@trade" if variant < 4 else "btcusdt@bookTicker" if variant == 4 else "btcusdt@depth@100ms"
    body = poison_json("BTCUSDT", T_US, variant, micros=True).decode()
    with pytest.raises(DataError):
        decode_text('{"stream":"' + stream + '","data":' + body + "}", T_US)

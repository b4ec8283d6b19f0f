"""Mutation fuzzing of every decoder at a boundary of btcpipe: SBE frames, JSON stream messages, bus payloads,
REST pages and dump archives.

Each ``FuzzTarget`` has seed inputs (valid messages, including extreme but legal ones) and a decoder; ``fuzz``
mutates seeds (bit flips, extreme integers written over fields, truncation, splicing, and for JSON: values
swapped for wrong types, huge numbers, missing keys) and sorts every outcome into decoded / a typed error
(the project's ``BtcpipeError`` tree) / an untyped exception — the bug class this exists to find. The unit
tests run a few thousand inputs per decoder; ``bench/fuzz_decoders.py`` runs hundreds of thousands.
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from btcpipe.binance.dumps import read_archive
from btcpipe.binance.rest_parsing import rest_trades
from btcpipe.binance.sbe import encode_best_bid_ask, encode_depth_diff, encode_depth_snapshot, encode_trades
from btcpipe.binance.ws_messages import decode_binary, decode_text
from btcpipe.domain.errors import BtcpipeError
from btcpipe.domain.records import BestBidAsk, DepthDiff, DepthSnapshot, Trade
from btcpipe.wire.best_bid_ask_columns import decode_best_bid_ask_batches
from btcpipe.wire.codec import (
    decode_message,
    decode_trade_batches,
    decode_trades,
    encode_depth_delta,
    encode_trade,
)
from btcpipe.wire.codec import (
    encode_best_bid_ask as bus_best_bid_ask,
)
from btcpipe.wire.codec import (
    encode_trades as bus_trades,
)
from btcpipe.wire.trade_columns import TradeColumns, encode_trade_columns

Mutator = Callable[[random.Random, bytes, list[bytes]], bytes]

_P, _Q = 6183763000000, 2000000
_T0 = 1723161255342000
# Integers that break naive decoders: int8/int16/int32/int64 edges, 2^63 and beyond.
EXTREME_INTS = (0, 1, -1, 127, -128, 255, 2**15, 2**31 - 1, -(2**31), 2**53 + 1, 2**63 - 1, -(2**63), 2**63,
                2**64, 10**30, 111111111111111111111111111111)


def _trades(n: int, *, exponent: int = -8, first_id: int = 3735683259) -> list[Trade]:
    return [Trade("BTCUSDT", first_id + i, _T0, _P + i, _Q * (i + 1), i % 2 == 0, exponent, exponent,
                  _T0 + 900 + i) for i in range(n)]


# --- generic byte mutations ------------------------------------------------------------------------------
def mutate_bytes(rng: random.Random, data_in: bytes, seeds: list[bytes]) -> bytes:
    """1-3 byte-level mutations; op 2 and 9 write extreme signed integers over aligned fields (exponents,
    mantissas, ids), which is how well-framed poison looks."""
    data = bytearray(data_in)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(10)
        n = len(data)
        if op == 0 and n:  # flip bits
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # overwrite a byte
            data[rng.randrange(n)] = rng.randrange(256)
        elif op == 2 and n >= 2:  # an extreme int8 / u16 somewhere (exponents, lengths, counts)
            at = rng.randrange(n - 1)
            if rng.random() < 0.5:
                data[at] = rng.choice((0x7F, 0x80, 0x0B, 0xE5, 0xFF, 0x13, 0xED))
            else:
                data[at : at + 2] = struct.pack("<H", rng.choice((0, 1, 0xFF, 0xFFFF, rng.randrange(1 << 16))))
        elif op == 3:  # truncate
            del data[rng.randrange(n + 1) :]
        elif op == 4:  # extend
            data += rng.randbytes(rng.randint(1, 40))
        elif op == 5:  # insert
            at = rng.randrange(n + 1)
            data[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == 6 and n:  # delete a range
            at = rng.randrange(n)
            del data[at : at + rng.randint(1, 8)]
        elif op == 7:  # splice with another seed
            other = rng.choice(seeds)
            data = data[: rng.randrange(n + 1)] + other[rng.randrange(len(other) + 1) :]
        elif op == 8 and n >= 8:  # an extreme int64 (ids, times, mantissas)
            at = rng.randrange(n - 7)
            data[at : at + 8] = struct.pack("<q", rng.choice((2**63 - 1, -(2**63), -1, 10**18, -(10**18))))
        elif op == 9 and n >= 10:  # an Avro varint of extreme value (zigzag, up to 10 bytes and beyond)
            at = rng.randrange(n)
            data[at:at] = _varint(rng.choice(EXTREME_INTS))
    return bytes(data)


def _varint(value: int) -> bytes:
    z = (value << 1) ^ (value >> 127) if value < 0 else value << 1
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


# --- JSON mutations --------------------------------------------------------------------------------------
_WRONG_VALUES: tuple[Any, ...] = (None, True, False, 1.5, -1, 2**63, 2**64, 10**30, "", "x", "1e5", "NaN",
                                  "111111111111111111111111111111", "-0.000000001", [], {}, [["1", "2"]],
                                  "٣", "²", 1e300)


def _mutate_value(rng: random.Random, value: Any) -> Any:
    if isinstance(value, dict) and value:
        key = rng.choice(list(value))
        choice = rng.randrange(4)
        out = dict(value)
        if choice == 0:
            del out[key]
        elif choice == 1:
            out[key] = rng.choice(_WRONG_VALUES)
        else:
            out[key] = _mutate_value(rng, value[key])
        return out
    if isinstance(value, list) and value:
        at = rng.randrange(len(value))
        out_list = list(value)
        if rng.random() < 0.2:
            del out_list[at]
        else:
            out_list[at] = _mutate_value(rng, value[at])
        return out_list
    if isinstance(value, int) and not isinstance(value, bool) and rng.random() < 0.6:
        return rng.choice(EXTREME_INTS)
    if isinstance(value, str) and rng.random() < 0.5:
        return rng.choice(("111111111111111111111111111111", "1" * 5000, value + "1", value[:-1], "-" + value,
                           value + "e5", " " + value, "0x10"))
    return rng.choice(_WRONG_VALUES)


def mutate_json(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    """Structure-aware: parse, change 1-2 values to wrong types or extreme numbers, re-serialise; now and
    then fall back to byte mutations (broken JSON)."""
    if rng.random() < 0.25:
        return mutate_bytes(rng, data, seeds)
    value = orjson.loads(data)
    for _ in range(rng.randint(1, 2)):
        value = _mutate_value(rng, value)
    return _dumps(value)


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson refuses integers beyond 64 bits; write them by hand like a hostile server would
        return repr(value).replace("None", "null").replace("True", "true").replace("False", "false").replace(
            "'", '"').encode()


# --- targets ----------------------------------------------------------------------------------------------
@dataclass
class FuzzTarget:
    """One decoder, its seed inputs and how to mutate them."""

    name: str
    seeds: list[bytes]
    decode: Callable[[bytes], object]
    mutate: Mutator = mutate_bytes


@dataclass
class FuzzResult:
    """Outcome counts of one run; ``untyped`` holds the exceptions outside the project's error tree."""

    name: str
    inputs: int = 0
    decoded: int = 0
    typed: Counter[str] = field(default_factory=Counter)
    untyped: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"decoder": self.name, "inputs": self.inputs, "decoded": self.decoded,
                "typed_errors": sum(self.typed.values()), "untyped_exceptions": sum(self.untyped.values()),
                "typed_by_class": dict(self.typed), "untyped_by_class": dict(self.untyped),
                "untyped_examples": self.examples[:5]}


def fuzz(target: FuzzTarget, inputs: int, seed: int = 0) -> FuzzResult:
    """Decode ``inputs`` mutated seeds (every 10th a seed as is) and count the outcomes."""
    rng = random.Random(seed)
    result = FuzzResult(target.name)
    for i in range(inputs):
        base = rng.choice(target.seeds)
        data = base if i % 10 == 0 else target.mutate(rng, base, target.seeds)
        result.inputs += 1
        try:
            target.decode(data)
        except BtcpipeError as exc:
            result.typed[type(exc).__name__] += 1
        except Exception as exc:  # the failure fuzzing exists to find
            result.untyped[type(exc).__name__] += 1
            if len(result.examples) < 20:
                result.examples.append(f"{type(exc).__name__}: {str(exc)[:120]} for {data[:200].hex()}")
        else:
            result.decoded += 1
    return result


def _sbe_seeds() -> list[bytes]:
    trades = _trades(5)
    levels = tuple((_P - 100 * i, _Q + i) for i in range(20))
    return [
        encode_trades(trades[:1]),
        encode_trades(trades, event_time=_T0 + 500),
        encode_best_bid_ask(BestBidAsk("BTCUSDT", _T0, 50093239212, _P, 378826000, _P + 1000000, 154698000)),
        encode_best_bid_ask(BestBidAsk("BTCUSDT", 1, 2, 3, 4, 5, 6, -2, -3)),
        encode_depth_snapshot(DepthSnapshot("BTCUSDT", 50093239218, levels, levels[::-1], _T0)),
        encode_depth_diff(DepthDiff("BTCUSDT", _T0, 50093239189, 50093239202, levels[:3], levels[3:7])),
    ]


def _json_seeds() -> list[bytes]:
    def wrap(stream: str, data: dict[str, Any]) -> bytes:
        return orjson.dumps({"stream": stream, "data": data})

    return [
        wrap("btcusdt@trade", {"e": "trade", "E": 1723161255342, "s": "BTCUSDT", "t": 3735683259,
                               "p": "61837.63000000", "q": "0.02000000", "T": 1723161255342, "m": True, "M": True}),
        wrap("btcusdt@bookTicker", {"u": 50093239212, "s": "BTCUSDT", "b": "61837.63000000", "B": "3.78826000",
                                    "a": "61837.64000000", "A": "1.54698000"}),
        wrap("btcusdt@depth@100ms", {"e": "depthUpdate", "E": 1723161255400, "s": "BTCUSDT", "U": 50093239189,
                                     "u": 50093239202, "b": [["61837.63000000", "0.1"]],
                                     "a": [["61837.64000000", "0.00000000"]]}),
        wrap("btcusdt@depth20@100ms", {"lastUpdateId": 50093239218, "bids": [["61837.63", "1.0"]],
                                       "asks": [["61837.64", "2.0"]]}),
        b'{"e":"serverShutdown","E":1723161255400}',
    ]


def _decode_poll(payload: bytes) -> object:
    """The payload in a poll with good ones (every 4th, by length, big enough for the vectorised reader):
    the good ones must come through whatever the bad one is; the bad one's error is raised for counting."""
    poll = [_BIG_TRADES, payload, _BIG_TRADES] if len(payload) % 4 == 0 else [_SMALL_TRADES, payload]
    batches = decode_trade_batches(poll)
    if set(batches.errors) - {1}:
        raise AssertionError(f"a good payload was lost next to a bad one: {batches.errors}")
    if 1 in batches.errors:
        raise batches.errors[1]
    decode_trades(payload)  # the record path on its own
    return batches


def _decode_best_bid_ask_poll(payload: bytes) -> object:
    """One payload on its own, and (every 8th, by length) in a poll big enough for the vectorised reader."""
    poll = [payload, *[_GOOD_BEST_BID_ASK] * 250] if len(payload) % 8 == 0 else [payload]
    batches = decode_best_bid_ask_batches(poll)
    if set(batches.errors) - {0}:
        raise AssertionError(f"a good payload was lost next to a bad one: {batches.errors}")
    if batches.errors:
        raise batches.errors[0]
    return batches


def _decode_rest(body: bytes) -> object:
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # the REST client refuses non-JSON before parsing (MalformedResponseError)
    return rest_trades(items, "BTCUSDT")


def _zip(csv: bytes, method: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as z:
        z.writestr("BTCUSDT-trades-2024-08-09.csv", csv)
    return out.getvalue()


def _decode_archive(data: bytes) -> object:
    return read_archive("trades", data, "BTCUSDT-trades-2024-08-09.zip")


_GOOD_BEST_BID_ASK = bus_best_bid_ask(BestBidAsk("BTCUSDT", _T0, 50093239212, _P, 378826000, _P + 1, 154698000))
_BIG_TRADES = encode_trade_columns(TradeColumns.from_trades(_trades(700)))
_SMALL_TRADES = bus_trades(_trades(2))
_CSV = b"".join(b"%d,61837.63000000,0.02000000,1236.75260000,%d,true,true\n" % (3735683259 + i, _T0 // 1000 + i)
                for i in range(20))
_REST = orjson.dumps([{"id": 3735683259 + i, "price": "61837.63000000", "qty": "0.02000000",
                       "quoteQty": "1236.75260000", "time": _T0 // 1000 + i, "isBuyerMaker": True,
                       "isBestMatch": True} for i in range(5)])


def targets() -> list[FuzzTarget]:
    """Every decoder at a boundary, with its seeds."""
    mixed = [*_trades(2), *_trades(1, exponent=-2, first_id=3735683262)]
    return [
        FuzzTarget("sbe_frame", _sbe_seeds(), lambda b: decode_binary(b, _T0)),
        FuzzTarget("json_message", _json_seeds(), lambda b: decode_text(b, _T0), mutate_json),
        FuzzTarget("bus_trade_payload", [bus_trades(_trades(3)), bus_trades(mixed), encode_trade(_trades(1)[0]),
                                         encode_trade_columns(TradeColumns.from_trades(_trades(40)))], _decode_poll),
        FuzzTarget("bus_best_bid_ask_payload",
                   [_GOOD_BEST_BID_ASK, bus_best_bid_ask(BestBidAsk("BTCUSDT", 1, 2, 3, 4, 5, 6, -18, 18))],
                   _decode_best_bid_ask_poll),
        FuzzTarget("bus_other_payload",
                   [encode_depth_delta(DepthDiff("BTCUSDT", _T0, 5, 9, ((_P, _Q),), ((_P + 1, 0),)))],
                   decode_message),
        FuzzTarget("rest_trades_page", [_REST], _decode_rest, mutate_json),
        FuzzTarget("dump_archive", [_zip(_CSV, zipfile.ZIP_DEFLATED), _zip(_CSV, zipfile.ZIP_LZMA),
                                    _zip(_CSV, zipfile.ZIP_BZIP2), _zip(_CSV, zipfile.ZIP_STORED)], _decode_archive),
    ]

"""Fuzz: random and mutated frames give a record or a typed DecodeError — never any other exception."""

from __future__ import annotations

import random
import struct
from collections import Counter

from support.fuzz import mutate_bytes

from btcpipe.binance.sbe import (
    decode,
    decode_prefix,
    encode,
    encode_best_bid_ask,
    encode_depth_diff,
    encode_depth_snapshot,
    encode_trades,
)
from btcpipe.domain.errors import DecodeError
from btcpipe.domain.records import BestBidAsk, DepthDiff, DepthSnapshot, Trade

SEED = 20240808
RANDOM_FRAMES = 40_000
MUTATED_FRAMES = 120_000
TEMPLATES = (10000, 10001, 10002, 10003)


def _seed_frames() -> list[bytes]:
    p, q = 6183763000000, 2000000
    trades = [Trade("BTCUSDT", 3735683259 + i, 1723161255342000, p + i, q * (i + 1), i % 2 == 0) for i in range(5)]
    levels = tuple((p - 100 * i, q + i) for i in range(20))
    frames = [
        encode_trades(trades[:1]),
        encode_trades(trades, event_time=1723161255342500),
        encode_best_bid_ask(BestBidAsk("BTCUSDT", 1723161255363631, 50093239212, p, 378826000, p + 1000000, 154698000)),
        encode_best_bid_ask(BestBidAsk("ÉTHÜSDT", 1, 2, 3, 4, 5, 6, -2, -3)),
        encode_depth_snapshot(DepthSnapshot("BTCUSDT", 50093239218, levels, levels[::-1], 1723161255363631)),
        encode_depth_diff(DepthDiff("BTCUSDT", 1723161255400000, 50093239189, 50093239202, levels[:3], levels[3:7])),
        encode_depth_diff(DepthDiff("X", 1, 5, 5, (), ())),
    ]
    # A frame as a later schema would write it: longer root and entry blocks.
    grown = struct.pack("<HHHH", 30, 10003, 1, 0) + frames[5][8:34] + b"\0\0\0\0"
    grown += struct.pack("<HH", 20, 1) + struct.pack("<qq", p, q) + b"\1\2\3\4"
    grown += struct.pack("<HH", 16, 0) + b"\x07BTCUSDT"
    return [*frames, grown]


def _mutate(rng: random.Random, frame: bytes, seeds: list[bytes]) -> bytes:
    """The shared byte mutations of ``support.fuzz``, and in a third of the frames a rewritten header field
    (block length, template, schema id or version), which only an SBE frame has."""
    data = bytearray(mutate_bytes(rng, frame, seeds))
    if len(data) >= 8 and rng.random() < 1 / 3:
        field = rng.randrange(4)
        choices = [rng.randrange(1 << 16), 0]
        choices.append((rng.randrange(60), rng.choice(TEMPLATES), 1, 0)[field])
        data[2 * field : 2 * field + 2] = struct.pack("<H", rng.choice(choices))
    return bytes(data)


def _random_frame(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return rng.randbytes(rng.randint(0, 200))
    header = struct.pack("<HHHH", rng.randrange(64), rng.choice(TEMPLATES), 1, 0)
    return header + rng.randbytes(rng.randint(0, 300))


def test_decoder_survives_random_and_mutated_frames_with_typed_errors_only() -> None:
    rng = random.Random(SEED)
    seeds = _seed_frames()
    outcomes: Counter[str] = Counter()
    unexpected: list[str] = []
    frames = (_random_frame(rng) for _ in range(RANDOM_FRAMES))
    mutated = (_mutate(rng, rng.choice(seeds), seeds) for _ in range(MUTATED_FRAMES))
    for i, frame in enumerate((*frames, *mutated)):
        try:
            record = decode(frame)
        except DecodeError as exc:
            outcomes[type(exc).__name__] += 1
        except Exception as exc:  # the failure this test exists to catch
            unexpected.append(f"{type(exc).__name__}: {exc} for frame {frame.hex()}")
        else:
            outcomes["decoded"] += 1
            # What decodes is a valid record: it encodes and decodes back to itself.
            assert decode(encode(record)) == record
        if i % 10 == 0:  # the slow field walker too, on a sample
            try:
                decode_prefix(frame)
            except DecodeError:
                pass
            except Exception as exc:
                unexpected.append(f"decode_prefix {type(exc).__name__}: {exc} for frame {frame.hex()}")
    assert not unexpected, "\n".join(unexpected[:10])
    assert sum(outcomes.values()) >= 100_000
    for kind in ("decoded", "TruncatedFrameError", "GroupOverrunError", "SchemaIdError", "SchemaVersionError",
                 "UnknownTemplateError", "MalformedFrameError"):
        assert outcomes[kind] > 100, outcomes

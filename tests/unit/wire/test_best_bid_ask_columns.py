"""A poll of BestBidAsk payloads decoded at once equals decoding each one, and bad ones are reported."""

from __future__ import annotations

import random

import numpy as np

from btcpipe.domain.errors import PayloadDecodeError, PayloadSchemaError
from btcpipe.domain.records import BestBidAsk, Trade
from btcpipe.wire.best_bid_ask_columns import decode_best_bid_ask_batches
from btcpipe.wire.codec import decode_best_bid_ask, encode_best_bid_ask, encode_trades

T0 = 1_723_100_000_000_000


def updates(n: int, seed: int = 0, symbol: str = "BTCUSDT") -> list[BestBidAsk]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        bid = 6_183_763_000_000 + rng.randrange(-10**9, 10**9)
        out.append(BestBidAsk(symbol, T0 + 700 * i, 9_000_000_000 + i, bid, rng.randrange(1, 10**10),
                              bid + rng.randrange(1, 10**6), rng.randrange(1, 10**10), rng.choice([-8, -2]), -8,
                              T0 + 700 * i + 900))
    return out


def test_a_big_poll_decodes_like_each_payload_alone() -> None:
    items = updates(2_000, seed=1)
    payloads = [encode_best_bid_ask(b) for b in items]
    batch = decode_best_bid_ask_batches(payloads)
    assert not batch.errors
    assert batch.ok.all()
    assert batch.symbols == ["BTCUSDT"] * len(items)
    assert batch.ts_event.tolist() == [b.ts_event for b in items]
    assert batch.update_id.tolist() == [b.update_id for b in items]
    assert batch.bid_price.tolist() == [b.bid_price for b in items]  # the one float conversion, bit for bit
    assert batch.ask_price.tolist() == [b.ask_price for b in items]


def test_small_polls_and_mixed_symbols_take_the_exact_path_with_the_same_result() -> None:
    items = updates(5, seed=2) + updates(3, seed=3, symbol="ETHUSDT")
    batch = decode_best_bid_ask_batches([encode_best_bid_ask(b) for b in items])
    assert batch.symbols == [b.symbol for b in items]
    assert batch.bid_price.tolist() == [b.bid_price for b in items]
    assert len(decode_best_bid_ask_batches([])) == 0


def test_corrupt_and_foreign_payloads_are_reported_and_the_rest_decoded() -> None:
    items = updates(1_000, seed=4)
    payloads = [encode_best_bid_ask(b) for b in items]
    payloads[3] = payloads[3][:-2]
    payloads[7] = encode_trades([Trade("BTCUSDT", 1, T0, 5, 6, True)])
    payloads[9] = payloads[9] + b"\x01"
    batch = decode_best_bid_ask_batches(payloads)
    assert sorted(batch.errors) == [3, 7, 9]
    assert isinstance(batch.errors[7], PayloadSchemaError)
    assert isinstance(batch.errors[3], PayloadDecodeError)
    assert batch.ok.tolist() == [i not in (3, 7, 9) for i in range(1_000)]
    good = np.flatnonzero(batch.ok)
    assert batch.update_id[good].tolist() == [decode_best_bid_ask(payloads[i]).update_id for i in good.tolist()]


def test_random_mutations_never_escape_as_other_errors() -> None:
    rng = random.Random(7)
    seeds = [encode_best_bid_ask(b) for b in updates(20, seed=5)]
    for _ in range(20):
        payloads = []
        for _ in range(400):
            data = bytearray(rng.choice(seeds))
            if rng.random() < 0.3:
                data[rng.randrange(10, len(data))] = rng.randrange(256)
            payloads.append(bytes(data))
        batch = decode_best_bid_ask_batches(payloads)
        for i in np.flatnonzero(batch.ok).tolist():
            assert batch.update_id[i] == decode_best_bid_ask(payloads[i]).update_id

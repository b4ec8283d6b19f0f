"""Recordings keep what the wire carried: each trade's event time E and, when present, the order ids b/a."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson

from btcpipe.binance.recording import load_recording
from btcpipe.domain.tape import aggregate_trades


def _line(recv_ns: int, data: dict[str, Any]) -> bytes:
    return f"{recv_ns} ".encode() + orjson.dumps({"stream": "btcusdt@trade", "data": data}) + b"\n"


def _trade(t: int, e: int, tt: int, m: bool, *, b: int | None = None, a: int | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"e": "trade", "E": e, "s": "BTCUSDT", "t": t, "p": "100.00000000", "q": "1.00000000",
                         "T": tt, "m": m, "M": True}
    if b is not None:
        d |= {"b": b, "a": a}
    return d


def _write(path: Path, trades: list[dict[str, Any]]) -> Path:
    with gzip.open(path, "wb") as fh:
        for i, d in enumerate(trades):
            fh.write(_line(1_700_000_000_000_000_000 + i, d))
    return path


def test_the_event_time_of_every_trade_is_kept_in_us(tmp_path: Path) -> None:
    rec = load_recording([_write(tmp_path / "r.gz", [_trade(1, 1_700_000_000_105, 1_700_000_000_100, True),
                                                     _trade(2, 1_700_000_000_140, 1_700_000_000_100, True)])])
    tape = rec.to_tape()
    assert tape.trades.event_time is not None
    assert tape.trades.event_time.tolist() == [1_700_000_000_105_000, 1_700_000_000_140_000]
    assert tape.trades.ts_event.tolist() == [1_700_000_000_100_000] * 2
    assert tape.trades.taker_order is None  # the stream did not carry order ids


def test_order_ids_give_the_taker_so_aggregates_split_by_taker_order(tmp_path: Path) -> None:
    # Same time, price and side, but two taker orders (the buyer is the taker when m is false).
    trades = [_trade(1, 1_000, 1_000, False, b=77, a=10), _trade(2, 1_000, 1_000, False, b=77, a=11),
              _trade(3, 1_000, 1_000, False, b=78, a=12)]
    tape = load_recording([_write(tmp_path / "r.gz", trades)]).to_tape()
    assert tape.trades.taker_order is not None
    assert tape.trades.taker_order.tolist() == [77, 77, 78]
    aggs = aggregate_trades(tape.trades)
    assert list(zip(aggs.first_trade_id.tolist(), aggs.last_trade_id.tolist(), strict=True)) == [(1, 2), (3, 3)]
    # Without the ids the same fills look like one taker order (what a recording without b/a must assume).
    blind = load_recording([_write(tmp_path / "s.gz", [_trade(i, 1_000, 1_000, False) for i in (1, 2, 3)])])
    assert len(aggregate_trades(blind.to_tape().trades)) == 1

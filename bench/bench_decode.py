"""Decode speed: SBE frame → record vs orjson-parsing the equivalent JSON message → the same record.

Messages are real ones from the shared recording (a single trade; a depth diff of the recording's median
size; a bookTicker), parsed by the JSON path the ingestor falls back to (``btcpipe.binance.json_messages``)
and, encoded as SBE frames, by ``btcpipe.binance.sbe.decode``; both in the same run. Prints JSON:
µs per message (best of alternating SBE/JSON rounds, and the median), and the JSON/SBE ratio.

    .venv/bin/python bench/bench_decode.py [--shared-data PATH] [--seconds-per-case 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from btcpipe.binance.json_messages import parse_book_ticker, parse_depth_update, parse_trade, stream_kind
from btcpipe.binance.recording import iter_lines
from btcpipe.binance.sbe import TradesEvent, decode, encode_best_bid_ask, encode_depth_diff, encode_trades

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SHARED = Path(os.environ.get("BTCPIPE_SHARED_DATA", REPO.parent / "shared" / "data"))


def _real_messages(shared: Path) -> dict[str, dict[str, Any]]:
    """The first trade, the first bookTicker and the depth diff of median level count, as stream JSON."""
    files = sorted((shared / "recordings").glob("btcusdt_*.gz"))
    if not files:
        raise SystemExit(f"no recordings under {shared / 'recordings'} (set --shared-data)")
    found: dict[str, dict[str, Any]] = {}
    depth: list[dict[str, Any]] = []
    for line in iter_lines(files):
        data = line.message.get("data")
        if not isinstance(data, dict):
            continue
        kind = stream_kind(str(line.message.get("stream", "")))
        if kind == "depth":
            depth.append(data)
        elif kind in ("trade", "bookTicker"):
            found.setdefault(kind, data)
    sizes = sorted(depth, key=lambda d: len(d["b"]) + len(d["a"]))
    found["depth"] = sizes[len(sizes) // 2]
    return found


def _time_per_call(fn: Callable[[], object], seconds: float) -> tuple[float, float]:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    repeats = max(3, int(seconds / max(timer.timeit(number), 1e-9)))
    runs = [t / number * 1e6 for t in timer.repeat(repeat=min(repeats, 15), number=number)]
    return min(runs), statistics.median(runs)


def _time_pair(a: Callable[[], object], b: Callable[[], object], seconds: float) -> tuple[list[float], list[float]]:
    """µs per call of ``a`` and ``b``, measured in alternating rounds so a load change on the machine hits both."""
    ta, tb = timeit.Timer(a), timeit.Timer(b)
    na, _ = ta.autorange()
    nb, _ = tb.autorange()
    runs_a: list[float] = []
    runs_b: list[float] = []
    spent = 0.0
    while len(runs_a) < 5 or (spent < seconds and len(runs_a) < 30):
        da, db = ta.timeit(na), tb.timeit(nb)
        runs_a.append(da / na * 1e6)
        runs_b.append(db / nb * 1e6)
        spent += da + db
    return runs_a, runs_b


def _case(
    name: str, sbe: Callable[[], object], js: Callable[[], object], *, frame: bytes, text: bytes, seconds: float
) -> dict[str, Any]:
    sbe_runs, json_runs = _time_pair(sbe, js, seconds)
    sbe_best, sbe_median = min(sbe_runs), statistics.median(sbe_runs)
    json_best, json_median = min(json_runs), statistics.median(json_runs)
    return {
        "case": name,
        "sbe_bytes": len(frame),
        "json_bytes": len(text),
        "sbe_us": round(sbe_best, 3),
        "sbe_us_median": round(sbe_median, 3),
        "json_us": round(json_best, 3),
        "json_us_median": round(json_median, 3),
        "json_over_sbe": round(json_best / sbe_best, 2),
        "sbe_faster": sbe_best < json_best,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared-data", type=Path, default=DEFAULT_SHARED)
    ap.add_argument("--seconds-per-case", type=float, default=3.0)
    args = ap.parse_args()
    msgs = _real_messages(args.shared_data)
    seconds = args.seconds_per_case
    results = []

    trade_text = orjson.dumps(msgs["trade"])
    trade = parse_trade(orjson.loads(trade_text))
    trade_frame = encode_trades([trade], event_time=trade.ts_event)
    decoded = decode(trade_frame)
    assert isinstance(decoded, TradesEvent)
    assert decoded.trades == (trade,), "SBE and JSON paths disagree on the trade"
    results.append(_case(
        "single_trade", lambda: decode(trade_frame), lambda: parse_trade(orjson.loads(trade_text)),
        frame=trade_frame, text=trade_text, seconds=seconds,
    ))

    depth_text = orjson.dumps(msgs["depth"])
    diff = parse_depth_update(orjson.loads(depth_text))
    diff_frame = encode_depth_diff(diff)
    assert decode(diff_frame) == diff, "SBE and JSON paths disagree on the depth diff"
    case = _case(
        "depth_diff", lambda: decode(diff_frame), lambda: parse_depth_update(orjson.loads(depth_text)),
        frame=diff_frame, text=depth_text, seconds=seconds,
    )
    case["levels"] = len(diff.bids) + len(diff.asks)
    results.append(case)

    ticker_text = orjson.dumps(msgs["bookTicker"])
    ticker = parse_book_ticker(orjson.loads(ticker_text), ts_event=1)
    ticker_frame = encode_best_bid_ask(ticker)
    assert decode(ticker_frame) == ticker, "SBE and JSON paths disagree on the best bid/ask"
    results.append(_case(
        "best_bid_ask", lambda: decode(ticker_frame),
        lambda: parse_book_ticker(orjson.loads(ticker_text), ts_event=1),
        frame=ticker_frame, text=ticker_text, seconds=seconds,
    ))

    encode_us, _ = _time_per_call(lambda: encode_depth_diff(diff), seconds / 2)
    print(json.dumps({
        "bench": "decode",
        "unit": "microseconds per message (best of alternating rounds; median beside it)",
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "source": "shared/data/recordings (real BTCUSDT stream messages)",
        "results": results,
        "sbe_encode_depth_diff_us": round(encode_us, 3),
    }, indent=2))


if __name__ == "__main__":
    main()

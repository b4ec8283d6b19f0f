"""Parity on Apache Flink: a tape replayed through the PyFlink job against the batch builder, every value.

The tape becomes a file of bus payloads (columnar trades and best bid/ask updates, base64 lines, merged
in exchange time the way ``btcpipe replay`` publishes them); the Flink job (``btcpipe.engines.flink``, in
``.venv-flink``) reads it with a bounded file source and writes its rows; the batch side is built here,
in btcpipe's venv, with the history starting where the job's grid starts. Warm-up rows (before the
first row with its whole 60 s lookback) are reported apart, as in ``btcpipe.run.parity``.
"""

from __future__ import annotations

import heapq
import tempfile
from collections.abc import Sequence
from pathlib import Path

from btcpipe.bus.port import STREAM_TRADES
from btcpipe.domain.errors import DataError
from btcpipe.domain.records import BestBidAsk
from btcpipe.domain.tape import MarketTape
from btcpipe.domain.time import US_PER_SEC, floor_sec, iso
from btcpipe.engines.flink.elements import encode_line, parse_row_line
from btcpipe.engines.flink.launch import JobOptions, run_job
from btcpipe.features.batch import fit_params
from btcpipe.features.inputs import TradeArrays
from btcpipe.features.spec import WINDOW_BARS, FeatureParams, schema_hash
from btcpipe.run.parity import ParityReport, batch_rows, compare_rows
from btcpipe.services.replay import market_events
from btcpipe.wire.codec import TradeColumns, encode_best_bid_ask, encode_trade_columns

PATH = "bus payloads (file) → Flink: decode → watermarks → key_by(symbol) → SymbolFeatureState in managed state"


def write_payloads(tapes: MarketTape | Sequence[MarketTape], path: Path, *, with_best_bid_ask: bool = True) -> int:
    """The tapes' trades (and best bid/ask) as base64 bus payload lines merged in exchange time; returns the count."""
    kinds = ("trade", "bestbidask") if with_best_bid_ask else ("trade",)
    tape_list = [tapes] if isinstance(tapes, MarketTape) else list(tapes)
    events = heapq.merge(*(market_events(t, kinds) for t in tape_list), key=lambda e: (e[0], e[1]))
    n = 0
    with path.open("w") as f:
        for _, _, stream, item in events:
            if stream == STREAM_TRADES:
                assert isinstance(item, TradeColumns)
                payload = encode_trade_columns(item)
            else:
                assert isinstance(item, BestBidAsk)
                payload = encode_best_bid_ask(item)
            f.write(encode_line(payload) + "\n")
            n += 1
    return n


def read_rows(path: Path, symbol: str) -> tuple[dict[int, tuple[float, ...]], int]:
    """The job's rows of ``symbol`` by second, and how many seconds came more than once (must be 0)."""
    rows: dict[int, tuple[float, ...]] = {}
    repeated = 0
    for line in path.read_text().splitlines():
        if line.strip():
            r = parse_row_line(line)
            if r.symbol == symbol:
                repeated += r.ts_sec in rows
                rows[r.ts_sec] = r.values
    return rows, repeated


def run_flink_parity(
    tape: MarketTape, params: FeatureParams | None = None, *, work_dir: Path | None = None, parallelism: int = 1,
    checkpoint_ms: int = 0, fail_after: int = 0, timeout_s: float = 1800.0,
) -> ParityReport:
    """Flink rows for ``tape`` against batch rows (see the module doc); ``fail_after`` injects one failure."""
    if len(tape.trades) == 0:
        raise DataError("the tape has no trades")
    if params is None:
        params = fit_params(TradeArrays.from_tape(tape.trades, tape.exponent).qty,
                            with_spread=tape.best_bid_asks is not None and len(tape.best_bid_asks) > 0)
    with tempfile.TemporaryDirectory(prefix="btcpipe-flink-") as tmp:
        work = work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        payloads = work / "payloads.txt"
        n_payloads = write_payloads(tape, payloads, with_best_bid_ask=params.with_spread)
        out = work / "rows.jsonl"
        summary = run_job(JobOptions(payloads, out, params, work, parallelism=parallelism,
                                     checkpoint_ms=checkpoint_ms, fail_after=fail_after), timeout_s=timeout_s)
        rows, repeated = read_rows(out, tape.symbol)
        failed_once = (work / "failed-once").exists()
    report = ParityReport(tape.symbol, PATH, schema_hash(params), params.to_json(), live={
        "engine": "flink", "payloads": n_payloads, "trades_in_tape": len(tape.trades), "rows": len(rows),
        "repeated_rows": repeated, "parallelism": parallelism, "checkpoint_ms": checkpoint_ms,
        "injected_failure": failed_once, "job_seconds": summary.get("seconds")})
    if not rows:
        report.warmup = {"rows": 0, "reason": "the Flink job produced no row"}
        return report
    bars_from = min(rows) - US_PER_SEC  # the job's grid: its first row describes [bars_from, bars_from + 1 s)
    end_us = floor_sec(int(tape.trades.ts_event[-1])) + 2 * US_PER_SEC
    frame = batch_rows(tape, params, bars_from=bars_from, end_us=end_us)
    complete_from = bars_from + WINDOW_BARS * US_PER_SEC
    report.warmup = {"rows": int((frame.ts_sec < complete_from).sum()), "from": iso(bars_from + US_PER_SEC),
                     "reason": f"rows before {iso(complete_from)} lack their whole {WINDOW_BARS} s lookback"}
    report = compare_rows(rows, frame, complete_from=complete_from, report=report)
    report.rows_different += repeated  # a second emitted twice is a failure too (exactly once)
    return report

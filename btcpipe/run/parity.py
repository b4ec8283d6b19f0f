"""Parity end to end: the live path's feature rows against the batch builder's, every row, every value.

The live path is the real one, on loopback: the tape is served by the local exchange's SBE WebSocket
streams (trade, and bestBidAsk when the schema has ``spread``; depth feeds no feature and is left out)
on an accelerated exchange clock → the ingestor (WebSocket client, SBE decode, gap checks) → the bus
(Avro) → the processor → the online store. The rows are read back from the online store. The batch
side builds the same span from the tape with ``build_features``.

While the replay runs the processor closes seconds in event time only (an accelerated replay on a busy
machine must not turn pipeline lag into late events); when the ingestor has delivered the tape's last
trade the exchange clock closes the remaining seconds, as it closes a silent live market's.

Which rows are compared: the live grid starts at ``bars_from``, the first second the processor saw
completely (the ingestor joins the replay a moment after it starts). A row needs the 60 s before it
(``WINDOW_BARS``), so rows before ``bars_from + 60 s`` are warm-up rows: the live side knows less history
than the batch side there and they are reported, not compared. The batch side is built with its history
starting at the same ``bars_from`` — so the warm-up rows are in fact equal too, and the report says so
— through the row of the tape's last trade.

A difference is any value that is not bit-equal (NaN equals NaN); the report gives rows compared, rows
missing on either side, the largest absolute difference per feature and the first differing values.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from btcpipe.domain.errors import BtcpipeError, DataError
from btcpipe.domain.tape import MarketTape
from btcpipe.domain.time import US_PER_SEC, floor_sec, iso
from btcpipe.features.batch import FeatureFrame, build_features, fit_params
from btcpipe.features.inputs import BestBidAskArrays, TradeArrays
from btcpipe.features.spec import WINDOW_BARS, FeatureParams, schema_hash

log = logging.getLogger(__name__)

PATH = "local exchange (SBE WebSocket) → ingestor → bus → processor → online store"
_MAX_LISTED = 20


@dataclass(slots=True)
class ParityReport:
    """The parity verdict: rows and values compared between the live path and the batch builder."""

    symbol: str
    path: str
    schema_hash: str
    params: dict[str, Any]
    rows_compared: int = 0
    rows_equal: int = 0
    rows_different: int = 0
    rows_missing_online: int = 0  # batch rows in the compared span the online store does not have
    rows_missing_offline: int = 0  # online rows in the compared span the batch builder did not produce
    compared_from: str | None = None
    compared_to: str | None = None
    warmup: dict[str, Any] = field(default_factory=dict)
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # per feature, over rows both sides have
    nan_mismatches: dict[str, int] = field(default_factory=dict)  # NaN on one side only
    first_differences: list[dict[str, Any]] = field(default_factory=list)
    missing_online: list[str] = field(default_factory=list)
    live: dict[str, Any] = field(default_factory=dict)  # counters of the live run

    @property
    def ok(self) -> bool:
        return self.rows_compared > 0 and not (self.rows_different or self.rows_missing_online
                                                or self.rows_missing_offline)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}


def compare_rows(
    online: Mapping[int, Sequence[float]], batch: FeatureFrame, *, complete_from: int, report: ParityReport
) -> ParityReport:
    """Compare online rows with the batch frame's rows from ``complete_from`` on (into ``report``)."""
    names = batch.names
    report.max_abs_diff = dict.fromkeys(names, 0.0)
    report.nan_mismatches = dict.fromkeys(names, 0)
    keep = batch.ts_sec >= complete_from
    frame = batch.take(keep)
    if len(frame):
        report.compared_from, report.compared_to = iso(int(frame.ts_sec[0])), iso(int(frame.ts_sec[-1]))
    batch_ts = set(frame.ts_sec.tolist())
    last = int(frame.ts_sec[-1]) if len(frame) else complete_from
    report.rows_missing_offline = sum(1 for t in online if complete_from <= t <= last and t not in batch_ts)
    for i, t in enumerate(frame.ts_sec.tolist()):
        values = online.get(t)
        if values is None:
            report.rows_missing_online += 1
            if len(report.missing_online) < _MAX_LISTED:
                report.missing_online.append(iso(t))
            continue
        a = np.asarray(values, dtype=np.float64)
        b = frame.columns[:, i]
        if a.shape != b.shape:
            raise DataError(f"online row {iso(t)} has {a.shape[0]} values, the schema {b.shape[0]}")
        report.rows_compared += 1
        both_nan = np.isnan(a) & np.isnan(b)
        equal = (a == b) | both_nan
        if equal.all():
            report.rows_equal += 1
            continue
        report.rows_different += 1
        for j in np.flatnonzero(~equal).tolist():
            name = names[j]
            if math.isnan(a[j]) or math.isnan(b[j]):
                report.nan_mismatches[name] += 1
            else:
                report.max_abs_diff[name] = max(report.max_abs_diff[name], abs(float(a[j]) - float(b[j])))
            if len(report.first_differences) < _MAX_LISTED:
                report.first_differences.append(
                    {"ts_sec": iso(t), "feature": name, "online": float(a[j]), "batch": float(b[j])})
    return report


def batch_rows(tape: MarketTape, params: FeatureParams, *, bars_from: int, end_us: int) -> FeatureFrame:
    """Batch rows ``bars_from + 1 s … end_us − 1 s`` with the history known from ``bars_from``."""
    best_bid_ask = None
    if params.with_spread:
        if tape.best_bid_asks is None:
            raise DataError("the params have 'spread' but the tape has no best bid/ask")
        best_bid_ask = BestBidAskArrays.from_tape(tape.best_bid_asks, tape.exponent)
    return build_features(TradeArrays.from_tape(tape.trades, tape.exponent), params, start_us=bars_from + US_PER_SEC,
                          end_us=end_us, history_start_us=bars_from, best_bid_ask=best_bid_ask)


@dataclass(slots=True)
class LiveRun:
    """The feature rows the live path produced, read back from the online store, with its counters."""

    rows: dict[int, tuple[float, ...]]
    bars_from: int | None
    counters: dict[str, Any]


def live_rows(
    tape: MarketTape, params: FeatureParams, *, speed: float, lateness_ms: int, timeout_s: float,
    api_key: str = "btcpipe-parity",
) -> LiveRun:
    """Serve ``tape`` on the local exchange and run ingestor → in-process bus → processor → in-process store.

    Returns the rows read back from the online store (every second from the first row to the row of
    the tape's last trade), where the processor's grid starts, and the live counters.
    """
    from btcpipe.binance.rest import BinanceRestClient
    from btcpipe.binance.ws_client import MarketStreamClient, StreamSettings
    from btcpipe.bus.memory import InProcessBus
    from btcpipe.bus.positions import InMemoryPositionStore
    from btcpipe.exchange.server import LocalExchange
    from btcpipe.exchange.streams.hub import StreamConfig
    from btcpipe.exchange.streams.routes import replay_clock
    from btcpipe.infra.clocks import SystemClock
    from btcpipe.services.ingest.ingestor import Ingestor
    from btcpipe.services.process.processor import Processor, ProcessorSettings
    from btcpipe.store.memory import InProcessOnlineStore

    symbol = tape.symbol
    end_row = floor_sec(int(tape.trades.ts_event[-1])) + US_PER_SEC
    last_id = int(tape.trades.id[-1])
    clock = replay_clock(tape, speed=speed)
    bus = InProcessBus()
    wall = SystemClock()
    ttl_s = max(300, int(timeout_s) + 60)  # rows are read back after the run: keep them for all of it
    store = InProcessOnlineStore(wall)
    # While the replay runs, seconds close in event time only: an accelerated replay on a loaded machine
    # must not turn pipeline lag into "late" events. Once the ingestor has delivered the last trade, the
    # clock closes the tail (the seconds after the last event), as it does for a silent live market.
    settings = ProcessorSettings(lateness_ms=lateness_ms, ttl_s=ttl_s, block_ms=20, close_on_clock=False)
    processor = Processor(bus, store, InMemoryPositionStore(), params, symbols=[symbol], clock=clock,
                          settings=settings, name="parity")
    deadline = time.monotonic() + timeout_s
    ingest_error: list[BaseException] = []
    with LocalExchange(tape, clock=clock, streams=StreamConfig(api_keys=frozenset({api_key}))) as ex:
        kinds = ("trade", "bestBidAsk") if params.with_spread else ("trade",)  # depth feeds no feature
        client = MarketStreamClient([symbol], StreamSettings(sbe_url=ex.ws_url, json_url=f"{ex.ws_url}/json",
                                                             api_key=api_key, kinds=kinds))
        rest = BinanceRestClient(ex.base_url)
        ingestor = Ingestor(client, bus, symbols=[symbol], rest=rest, lake=None)

        def ingest() -> None:
            try:
                asyncio.run(ingestor.run(until=lambda ing: ing.last_trade_id(symbol) >= last_id,
                                         duration_s=timeout_s))
            except BaseException as exc:  # reported by the caller's thread
                ingest_error.append(exc)

        thread = threading.Thread(target=ingest, name="parity-ingestor", daemon=True)
        thread.start()
        try:
            while (processor.last_row(symbol) or 0) < end_row and time.monotonic() < deadline:
                processor.step()
                if ingest_error:
                    break
                if not thread.is_alive() and not processor.settings.close_on_clock:
                    processor.settings = replace(settings, close_on_clock=True)
        finally:
            ingestor.stop()
            thread.join(timeout=30)
            rest.close()
        processor.close()
    if ingest_error:
        raise BtcpipeError(f"the ingestor failed: {ingest_error[0]!r}") from ingest_error[0]
    state = processor.states[symbol]
    rows: dict[int, tuple[float, ...]] = {}
    if state.first_row is not None and state.last_row is not None:
        for t in range(state.first_row, min(state.last_row, end_row) + US_PER_SEC, US_PER_SEC):
            v = store.get_features(symbol, t)
            if v is not None:
                rows[t] = v.values
    counters = {
        "speed": speed,
        "lateness_ms": lateness_ms,
        "timed_out": (processor.last_row(symbol) or 0) < end_row,
        "trades_in_tape": len(tape.trades),
        "trades_ingested": ingestor.stats.trades_published,
        "trade_gaps": ingestor.stats.gaps,
        "trades_processed": processor.stats.trades,
        "best_bid_ask_processed": processor.stats.best_bid_ask_records,
        "late_events": processor.late_events(),
        "duplicate_events": processor.duplicate_events(),
        "skipped_payloads": processor.skipped_payloads(),
        "online_rows": len(rows),
        "first_online_row": iso(state.first_row) if state.first_row else None,
        "last_online_row": iso(state.last_row) if state.last_row else None,
    }
    return LiveRun(rows, state.bars_from, counters)


def run_parity(
    tape: MarketTape, params: FeatureParams | None = None, *, speed: float = 20.0, lateness_ms: int | None = None,
    timeout_s: float = 300.0,
) -> ParityReport:
    """Live rows through the whole live path against batch rows for the same tape; see the module doc.

    ``params`` default: fitted on the tape itself (trade-size p95; ``spread`` when it has best bid/ask).
    ``lateness_ms`` default: 200 ms of *wall* time, i.e. ``200 × speed`` ms of exchange time. Lateness
    absorbs transport disorder (between the trade and bid/ask streams, say), which happens in wall time;
    an accelerated replay shrinks a fixed exchange-time lateness below it and would count bid/ask
    updates as late that a real-time run takes in time.
    """
    if len(tape.trades) == 0:
        raise DataError("the tape has no trades")
    if params is None:
        params = fit_params(TradeArrays.from_tape(tape.trades, tape.exponent).qty,
                            with_spread=tape.best_bid_asks is not None and len(tape.best_bid_asks) > 0)
    lateness = int(200 * max(1.0, speed)) if lateness_ms is None else lateness_ms
    live = live_rows(tape, params, speed=speed, lateness_ms=lateness, timeout_s=timeout_s)
    report = ParityReport(tape.symbol, PATH, schema_hash(params), params.to_json(), live=live.counters)
    if live.bars_from is None:
        report.warmup = {"rows": 0, "reason": "the live path produced no row"}
        return report
    end_us = floor_sec(int(tape.trades.ts_event[-1])) + 2 * US_PER_SEC  # through the row of the last trade
    frame = batch_rows(tape, params, bars_from=live.bars_from, end_us=end_us)
    complete_from = live.bars_from + WINDOW_BARS * US_PER_SEC
    warm = frame.take(frame.ts_sec < complete_from)
    warm_equal = sum(1 for i, t in enumerate(warm.ts_sec.tolist())
                     if t in live.rows and _same(live.rows[t], warm.columns[:, i]))
    report.warmup = {
        "rows": len(warm),
        "from": iso(int(warm.ts_sec[0])) if len(warm) else None,
        "to": iso(int(warm.ts_sec[-1])) if len(warm) else None,
        "equal_anyway": warm_equal,
        "reason": (f"the live grid starts at {iso(live.bars_from)}, the first second the processor saw "
                   f"completely; a row needs the {WINDOW_BARS} s before it, so rows before "
                   f"{iso(complete_from)} do not have their whole lookback on the live side"),
    }
    return compare_rows(live.rows, frame, complete_from=complete_from, report=report)


def _same(a: Sequence[float], b: np.ndarray) -> bool:
    x = np.asarray(a, dtype=np.float64)
    return bool(np.all((x == b) | (np.isnan(x) & np.isnan(b))))

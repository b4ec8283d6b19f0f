"""Backfill: history from Binance (REST pages or daily dumps) into the lake's bronze.

REST: locate the first id of the span (aggTrades with ``startTime`` gives the aggTrade id ``a`` and the
first raw trade id ``f``), then page forward by ``fromId``. Every page is appended to bronze as it
arrives, so the page *is* the checkpoint: a run that is killed resumes from the highest id that bronze
holds inside the span, plus one. Bronze appends are idempotent, so a page written twice adds nothing.
Dumps: one whole UTC day at a time, verified and fully parsed before the first row is written.

Repair comes first: every bronze part of the span's days is verified against its manifest, and one that
does not match (or is gone) is quarantined (``btcpipe.lake.repair``). Then every id hole that
``btcpipe lake check`` would report inside the span (a deleted or quarantined part, a lost page) is fetched
again by ``fromId`` (REST) — dumps refetch whole days, which fills a day's holes by construction.

A stop (``should_stop()`` true, or the REST client's ``RequestCancelledError`` when its wait or request is
given up) ends the run after the page in hand is written: the result says ``stopped`` and the next run
resumes from there. Compaction is left to that next run, so the stop stays quick.

Composition only: the client, the lake and the progress sink are ports, chosen by the CLI.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import pyarrow as pa
import pyarrow.compute as pc

from btcpipe.binance.dumps import DumpDay
from btcpipe.binance.rest import RestResponse, RestStats
from btcpipe.binance.rest_parsing import DumpKind, in_time_range
from btcpipe.domain.errors import ConfigError, RequestCancelledError
from btcpipe.domain.time import US_PER_DAY, day_of, day_start_us, iso
from btcpipe.lake.lake import Lake
from btcpipe.lake.repair import IdHole, id_holes, quarantine_bad_parts
from btcpipe.lake.schemas import ID_COLUMN

log = logging.getLogger(__name__)

Kind = Literal["trades", "aggTrades", "klines"]
Source = Literal["rest", "dumps"]
KINDS: tuple[Kind, ...] = ("trades", "aggTrades", "klines")
SOURCES: tuple[Source, ...] = ("rest", "dumps")


# --- ports --------------------------------------------------------------------------------------------
@runtime_checkable
class RestSource(Protocol):
    """The part of ``btcpipe.binance.rest.BinanceRestClient`` a backfill pages through."""

    weight_limit: int
    stats: RestStats

    def agg_trades(
        self,
        symbol: str,
        from_id: int | None = None,
        start_time_us: int | None = None,
        end_time_us: int | None = None,
        limit: int = 1000,
    ) -> RestResponse: ...

    def historical_trades(self, symbol: str, from_id: int | None = None, limit: int = 1000) -> RestResponse: ...

    def klines(
        self,
        symbol: str,
        interval: str = "1m",
        start_time_us: int | None = None,
        end_time_us: int | None = None,
        limit: int = 1000,
    ) -> RestResponse: ...


@runtime_checkable
class DumpSource(Protocol):
    """Where a backfill gets a daily dump from (the dump client)."""

    def fetch_day(self, kind: DumpKind, symbol: str, day: dt.date) -> DumpDay: ...


# --- progress and result ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BackfillProgress:
    """A backfill's progress so far, for the progress bar and logs."""

    kind: str
    rows: int  # rows added to bronze so far
    pages: int  # REST pages (or dump CSV chunks) done so far
    covered_us: int  # how far into the span the data reaches (µs after start)
    span_us: int
    elapsed_s: float
    done: bool = False

    @property
    def fraction(self) -> float:
        return min(1.0, self.covered_us / self.span_us) if self.span_us > 0 else 1.0


ProgressSink = Callable[[BackfillProgress], None]


@dataclass(slots=True)
class BackfillResult:
    """What a backfill did: rows added, pages or days fetched, weight used, 429s, retries and where it resumed."""

    symbol: str
    kind: str
    source: str
    start_us: int
    end_us: int
    rows_added: int = 0
    rows_duplicate: int = 0
    pages: int = 0  # REST pages (or dump CSV chunks) written
    seconds: float = 0.0
    first_id: int | None = None  # lowest and highest id written or found in the span
    last_id: int | None = None
    resumed_from: int | None = None  # the id a resumed run continued from
    days: list[str] = field(default_factory=list)
    # REST only: what the client saw of the weight limit.
    requests: int = 0
    weight_limit: int | None = None
    max_used_weight: int = 0
    rate_limited: int = 0
    retries: int = 0
    waited_s: float = 0.0
    # Repair: parts moved aside because they contradicted their manifest, holes found in bronze inside the
    # span (with the rows fetched into each), and the holes still open after the run (Binance never had them).
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    holes: list[dict[str, int]] = field(default_factory=list)
    holes_left: int = 0
    stopped: str | None = None  # why the run ended before the end of the span (it resumes from there)

    @property
    def rows_per_s(self) -> float:
        return self.rows_added / self.seconds if self.seconds > 0 else 0.0

    @property
    def weight_share(self) -> float | None:
        """The highest share of the minute's weight limit in use at any response."""
        return self.max_used_weight / self.weight_limit if self.weight_limit else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(start=iso(self.start_us), end=iso(self.end_us), rows_per_s=round(self.rows_per_s, 1),
                   weight_share=self.weight_share)
        return out


# --- entry point --------------------------------------------------------------------------------------
def backfill(
    client: RestSource | DumpSource,
    lake: Lake,
    *,
    symbol: str,
    kind: str,
    start_us: int,
    end_us: int,
    source: str,
    progress: ProgressSink | None = None,
    interval: str = "1m",
    page_limit: int = 1000,
    compact: bool = True,
    clock: Callable[[], float] = time.monotonic,
    should_stop: Callable[[], bool] = lambda: False,
) -> BackfillResult:
    """Fill bronze ``kind`` for ``symbol`` over ``[start_us, end_us)`` from ``source`` ("rest" or "dumps");
    ends early, everything fetched written, when ``should_stop()`` turns true."""
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if source not in SOURCES:
        raise ConfigError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    if end_us <= start_us:
        raise ConfigError(f"empty span: end {iso(end_us)} is not after start {iso(start_us)}")
    run = _Run(lake, BackfillResult(symbol, kind, source, start_us, end_us), progress=progress, clock=clock,
               should_stop=should_stop)
    # Before anything is appended: a part that contradicts its manifest would fail every overlapping append.
    run.result.quarantined = [asdict(q) for q in quarantine_bad_parts(lake, kind, symbol, start_us, end_us)]
    repairs_holes = kind in ("trades", "aggTrades")
    if repairs_holes and source == "dumps":  # REST finds them once it knows the span's first id
        run.result.holes = _holes(id_holes(lake, kind, symbol, start_us, end_us))
    try:
        if source == "dumps":
            if kind == "klines":
                raise ConfigError("dumps hold trades and aggTrades here; backfill klines from REST")
            if not isinstance(client, DumpSource):
                raise ConfigError("source 'dumps' needs a dumps client")
            _backfill_dumps(client, run, "trades" if kind == "trades" else "aggTrades")
        else:
            if not isinstance(client, RestSource):
                raise ConfigError("source 'rest' needs a REST client")
            try:
                if kind == "klines":
                    _backfill_klines(client, run, interval, page_limit)
                else:
                    _backfill_trades(client, run, page_limit)
            finally:
                run.take_rest_stats(client)
    except (_Stopped, RequestCancelledError) as exc:
        run.result.stopped = f"stopped before the end of the span: {exc}"
        log.warning("backfill stopped; the next run resumes after the last page written",
                    extra={"kind": kind, "symbol": symbol, "last_id": run.result.last_id, "pages": run.result.pages})
    if repairs_holes and run.result.stopped is None and (run.result.holes or run.result.quarantined):
        run.result.holes_left = len(id_holes(lake, kind, symbol, run.result.start_us, run.result.end_us))
    if compact and run.result.stopped is None:
        for day in run.days_touched():
            lake.compact(kind, symbol, day)
    return run.finish()


# --- the run's bookkeeping ----------------------------------------------------------------------------
class _Stopped(Exception):  # noqa: N818 - control flow: the stop asked for between pages
    """``should_stop()`` turned true between two pages."""


class _Run:
    def __init__(self, lake: Lake, result: BackfillResult, *, progress: ProgressSink | None,
                 clock: Callable[[], float], should_stop: Callable[[], bool] = lambda: False) -> None:
        self.should_stop = should_stop
        self.lake = lake
        self.progress = progress
        self.clock = clock
        self.started = clock()
        self.result = result
        self.covered_us = 0
        self._days: set[dt.date] = set()

    def write(self, table: pa.Table, raw: bytes, raw_format: str, source: str, ts_col: str) -> None:
        r = self.result
        if table.num_rows:
            outcome = self.lake.append_bronze(r.kind, r.symbol, table, raw=raw, raw_format=raw_format,
                                              source=source)
            r.rows_added += outcome.rows_added
            r.rows_duplicate += outcome.rows_duplicate
            ids = table.column(ID_COLUMN[r.kind])
            lo, hi = pc.min(ids).as_py(), pc.max(ids).as_py()
            r.first_id = lo if r.first_id is None else min(r.first_id, lo)
            r.last_id = hi if r.last_id is None else max(r.last_id, hi)
            ts = table.column(ts_col)
            first_day, last_day = day_of(pc.min(ts).as_py()), day_of(pc.max(ts).as_py())
            day = first_day
            while day <= last_day:
                self._days.add(day)
                day += dt.timedelta(days=1)
            self.covered_us = max(self.covered_us, pc.max(ts).as_py() - r.start_us)
        r.pages += 1
        log.debug("page written", extra={"kind": r.kind, "symbol": r.symbol, "page": r.pages,
                                         "rows": table.num_rows, "last_id": r.last_id})
        self.report()
        if self.should_stop():
            raise _Stopped(f"{r.pages} pages written, last id {r.last_id}")

    def report(self, done: bool = False) -> None:
        if self.progress is not None:
            r = self.result
            covered = r.end_us - r.start_us if done else self.covered_us
            self.progress(BackfillProgress(r.kind, r.rows_added, r.pages, covered, r.end_us - r.start_us,
                                           self.clock() - self.started, done))

    def days_touched(self) -> list[dt.date]:
        return sorted(self._days)

    def take_rest_stats(self, client: RestSource) -> None:
        s, r = client.stats, self.result
        r.requests = s.requests
        r.weight_limit = client.weight_limit
        r.max_used_weight = s.max_used_weight
        r.rate_limited = s.rate_limited
        r.retries = s.server_errors + s.transport_errors + s.malformed + s.rate_limited
        r.waited_s = round(s.waited_s, 3)

    def finish(self) -> BackfillResult:
        r = self.result
        r.seconds = self.clock() - self.started
        r.days = [d.isoformat() for d in self.days_touched()]
        self.report(done=r.stopped is None)
        log.info("backfill done" if r.stopped is None else "backfill stopped",
                 extra={k: v for k, v in r.to_dict().items() if k != "days"})
        return r


def _resume_from(run: _Run, first_in_span: int) -> int:
    """The id to continue from: one past the highest id bronze already holds inside the span."""
    r = run.result
    highest = run.lake.bronze_max_id(r.kind, r.symbol)
    if highest is None or highest < first_in_span:
        return first_in_span
    held = run.lake.read_bronze(r.kind, r.symbol, r.start_us, r.end_us)
    if held.num_rows == 0:
        return first_in_span
    last = pc.max(held.column(ID_COLUMN[r.kind])).as_py()
    r.first_id = pc.min(held.column(ID_COLUMN[r.kind])).as_py()
    r.last_id = last
    ts_col = "open_time" if r.kind == "klines" else "ts_event"
    run.covered_us = pc.max(held.column(ts_col)).as_py() - r.start_us
    r.resumed_from = max(first_in_span, last + 1)
    log.info("resuming backfill", extra={"kind": r.kind, "symbol": r.symbol, "from_id": r.resumed_from,
                                         "rows_held": held.num_rows})
    return r.resumed_from


def _backfill_trades(client: RestSource, run: _Run, page_limit: int) -> None:
    r = run.result
    locator = client.agg_trades(r.symbol, start_time_us=r.start_us, end_time_us=r.end_us - 1, limit=1)
    assert locator.table is not None
    if locator.table.num_rows == 0:
        log.info("no trades in the span", extra={"symbol": r.symbol, "start": iso(r.start_us), "end": iso(r.end_us)})
        return
    first = locator.table.column("agg_id" if r.kind == "aggTrades" else "first_trade_id")[0].as_py()
    # Holes inside what bronze holds, and its head (the span's first id .. the first id held).
    r.holes = _holes(id_holes(run.lake, r.kind, r.symbol, r.start_us, r.end_us, first_id=first))
    for hole in r.holes:
        hole["rows_added"] = _fill_hole(client, run, IdHole(hole["first_id"], hole["last_id"]), page_limit)
    cursor = _resume_from(run, first)
    id_col = ID_COLUMN[r.kind]
    while True:
        page = _trades_page(client, r.kind, r.symbol, cursor, page_limit)
        table = page.table
        assert table is not None
        if table.num_rows == 0:
            break
        keep = in_time_range(table, r.start_us, r.end_us)
        run.write(keep, page.raw, "json", "rest", "ts_event")
        past_end = pc.max(table.column("ts_event")).as_py() >= r.end_us
        if past_end or table.num_rows < page_limit:
            break
        cursor = pc.max(table.column(id_col)).as_py() + 1


def _holes(holes: list[IdHole]) -> list[dict[str, int]]:
    return [{"first_id": h.first_id, "last_id": h.last_id, "rows_added": 0} for h in holes]


def _trades_page(client: RestSource, kind: str, symbol: str, from_id: int, limit: int) -> RestResponse:
    if kind == "aggTrades":
        return client.agg_trades(symbol, from_id=from_id, limit=limit)
    return client.historical_trades(symbol, from_id=from_id, limit=limit)


def _fill_hole(client: RestSource, run: _Run, hole: IdHole, page_limit: int) -> int:
    """Page by ``fromId`` through the hole's ids and append those inside the span; the rows added."""
    r = run.result
    id_col = ID_COLUMN[r.kind]
    added_before = r.rows_added
    cursor = hole.first_id
    while cursor <= hole.last_id:
        page = _trades_page(client, r.kind, r.symbol, cursor, min(page_limit, hole.last_id - cursor + 1))
        table = page.table
        assert table is not None
        if table.num_rows == 0:
            break
        ids = table.column(id_col)
        inside = pc.and_(pc.greater_equal(ids, hole.first_id), pc.less_equal(ids, hole.last_id))
        run.write(in_time_range(table.filter(inside), r.start_us, r.end_us), page.raw, "json", "rest", "ts_event")
        highest = pc.max(ids).as_py()
        if highest >= hole.last_id:
            break
        cursor = highest + 1
    log.info("hole refetched", extra={"kind": r.kind, "symbol": r.symbol, "first_id": hole.first_id,
                                      "last_id": hole.last_id, "rows_added": r.rows_added - added_before})
    return r.rows_added - added_before


def _backfill_klines(client: RestSource, run: _Run, interval: str, page_limit: int) -> None:
    r = run.result
    cursor = r.start_us
    highest = run.lake.bronze_max_id("klines", r.symbol)
    if highest is not None and highest >= r.start_us:
        held = run.lake.read_bronze("klines", r.symbol, r.start_us, r.end_us)
        if held.num_rows:
            last_close = pc.max(held.column("close_time")).as_py()
            cursor = r.resumed_from = last_close + 1
    while cursor < r.end_us:
        page = client.klines(r.symbol, interval, start_time_us=cursor, end_time_us=r.end_us - 1, limit=page_limit)
        table = page.table
        assert table is not None
        if table.num_rows == 0:
            break
        keep = in_time_range(table, r.start_us, r.end_us, column="open_time")
        run.write(keep, page.raw, "json", "rest", "open_time")
        if table.num_rows < page_limit:
            break
        cursor = pc.max(table.column("close_time")).as_py() + 1


def _backfill_dumps(client: DumpSource, run: _Run, kind: DumpKind) -> None:
    r = run.result
    # Dumps come in whole UTC days: the span widens to the days it touches.
    first_day, last_day = day_of(r.start_us), day_of(r.end_us - 1)
    r.start_us, r.end_us = day_start_us(first_day), day_start_us(last_day) + US_PER_DAY
    day = first_day
    while day <= last_day:
        dump = client.fetch_day(kind, r.symbol, day)
        log.info("dump verified", extra={"file": dump.name, "sha256": dump.sha256, "rows": dump.rows,
                                         "time_unit": dump.time_unit})
        for chunk in dump.chunks:
            run.write(chunk.table, chunk.raw, "csv", "dumps", "ts_event")
        day += dt.timedelta(days=1)

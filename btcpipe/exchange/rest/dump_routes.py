"""``/data/spot/daily/{trades|aggTrades}/{SYMBOL}/{SYMBOL}-{kind}-{YYYY-MM-DD}.zip[.CHECKSUM]``, as
data.binance.vision serves them.

A day is published once it is over on the exchange clock, or once the tape has nothing left to reveal
(the whole tape is history). Unpublished days, days without trades and malformed names get S3's 404 — and,
unless the exchange allows partial days (``partial_dump_days``, on for short test tapes), a day the tape
covers only in part: a Binance file holds the whole day, so a tape that starts or ends inside the day (its
first trade more than ``EDGE_SLACK_US`` after midnight, or its last that long before the next) has no dump
for it, and a client falls back to REST as it does for today.
Building a day takes seconds, so it runs in a worker thread, once per file; the result is cached.
Dump faults (``Faults.set_dump_fault``) serve a wrong checksum, or a corrupt zip with a checksum that
matches the corrupt bytes (so only opening the archive reveals it).
"""

from __future__ import annotations

import asyncio
import hashlib

from aiohttp import web

from btcpipe.domain.errors import DataError
from btcpipe.domain.time import US_PER_DAY, US_PER_SEC, day_start_us
from btcpipe.exchange.rest.dumps import DumpName, checksum_line, daily_csv, parse_dump_name, zip_csv
from btcpipe.exchange.source import SymbolMarket
from btcpipe.exchange.state import EXCHANGE, ExchangeState

_CHECKSUM_SUFFIX = ".CHECKSUM"
_BUILD_LOCKS: web.AppKey[dict[str, asyncio.Lock]] = web.AppKey("btcpipe_dump_locks", dict)


def _not_found(key: str) -> web.Response:
    body = f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code><Key>{key}</Key></Error>"
    return web.Response(status=404, text=body, content_type="application/xml")


def corrupt(zip_bytes: bytes) -> bytes:
    """Flip a run of bytes in the middle of the compressed data (headers stay readable)."""
    mid = len(zip_bytes) // 2
    span = min(64, max(1, len(zip_bytes) // 8))
    damaged = bytes(b ^ 0xA5 for b in zip_bytes[mid : mid + span])
    return zip_bytes[:mid] + damaged + zip_bytes[mid + span :]


EDGE_SLACK_US = 60 * US_PER_SEC  # BTCUSDT never goes a minute without a trade; a tape edge does


def covers_whole_day(market: SymbolMarket, day_start: int) -> bool:
    """The tape holds the whole UTC day from ``day_start`` (not just the part of it the tape overlaps)."""
    tape = market.tape
    return tape.start_us <= day_start + EDGE_SLACK_US and tape.end_us >= day_start + US_PER_DAY - EDGE_SLACK_US


def _published(state: ExchangeState, market: SymbolMarket, name: DumpName, now_us: int) -> bool:
    day_start = day_start_us(name.day)
    if not state.partial_dump_days and not covers_whole_day(market, day_start):
        return False
    return day_start + US_PER_DAY <= now_us or market.is_complete(now_us)


def _build(market: SymbolMarket, name: DumpName) -> tuple[bytes, str] | None:
    csv, rows = daily_csv(market.tape, name.kind, name.day, aggs=market.aggs)
    if rows == 0:
        return None
    data = zip_csv(name.csv_name, csv, day=name.day)
    return data, checksum_line(data, name.zip_name)


async def _dump(state: ExchangeState, locks: dict[str, asyncio.Lock], market: SymbolMarket, name: DumpName
                ) -> tuple[bytes, str] | None:
    cached = state.dump_cache.get(name.path)
    if cached is not None:
        return cached
    lock = locks.setdefault(name.path, asyncio.Lock())
    async with lock:
        cached = state.dump_cache.get(name.path)
        if cached is None:
            built = await asyncio.get_running_loop().run_in_executor(None, _build, market, name)
            if built is None:
                return None
            state.dump_cache[name.path] = cached = built
    return cached


async def serve_dump(request: web.Request) -> web.Response:
    state = request.app[EXCHANGE]
    kind, symbol, filename = request.match_info["kind"], request.match_info["symbol"], request.match_info["file"]
    want_checksum = filename.endswith(_CHECKSUM_SUFFIX)
    zip_name = filename.removesuffix(_CHECKSUM_SUFFIX)
    try:
        name = parse_dump_name(zip_name)
    except DataError:
        return _not_found(request.path)
    market = state.market(name.symbol)
    if (name.kind != kind or name.symbol != symbol or market is None
            or not _published(state, market, name, state.now_us())):
        return _not_found(request.path)
    dump = await _dump(state, request.app[_BUILD_LOCKS], market, name)
    if dump is None:
        return _not_found(request.path)
    data, line = dump
    fault = state.faults.dump_fault()
    if fault == "corrupt_zip":
        data = corrupt(data)
        line = checksum_line(data, name.zip_name)
    elif fault == "wrong_checksum":
        line = f"{hashlib.sha256(data + b'revised').hexdigest()}  {name.zip_name}"
    if want_checksum:
        return web.Response(body=line.encode(), content_type="text/plain")
    return web.Response(body=data, content_type="application/zip")


def add_dump_routes(app: web.Application) -> None:
    app[_BUILD_LOCKS] = {}
    app.router.add_get("/data/spot/daily/{kind}/{symbol}/{file}", serve_dump)

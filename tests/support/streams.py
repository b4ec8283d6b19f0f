"""Helpers for the stream tests: real aiohttp WebSocket clients against a LocalExchange on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp
import numpy as np
import orjson

from btcpipe.binance.json_messages import parse_book_ticker, parse_depth_update, parse_trade
from btcpipe.binance.sbe import TradesEvent, decode
from btcpipe.domain.records import BestBidAsk, DepthDiff, DepthSnapshot, Trade
from btcpipe.domain.tape import MarketTape
from btcpipe.domain.time import US_PER_SEC
from btcpipe.exchange.server import LocalExchange
from btcpipe.infra.clocks import ManualClock

KEY = "test-key-1"
T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


@dataclass
class Received:
    binary: list[bytes] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    close_code: int | None = None
    close_message: str = ""
    closed: bool = False
    error: bool = False
    pings: int = 0
    closed_at: float = 0.0
    arrival: list[float] = field(default_factory=list)  # loop time of each data frame


async def collect(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    until: Callable[[Received], bool],
    timeout: float = 10.0,
    autoping: bool = True,
    pong: bool = True,
    on_open: Callable[[], None] | None = None,
) -> Received:
    """Read frames until ``until(received)`` holds, the server closes, or ``timeout`` passes."""
    got = Received()
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers=headers, autoping=autoping, heartbeat=None) as ws,
    ):
        if on_open is not None:
            on_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not until(got):
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                # Not receive(timeout=): aiohttp restarts that timeout on every ping it answers itself.
                msg = await asyncio.wait_for(ws.receive(), left)
            except TimeoutError:
                break
            if msg.type == aiohttp.WSMsgType.BINARY:
                got.binary.append(msg.data)
                got.arrival.append(loop.time())
            elif msg.type == aiohttp.WSMsgType.TEXT:
                got.text.append(msg.data)
                got.arrival.append(loop.time())
            elif msg.type == aiohttp.WSMsgType.PING:  # only seen with autoping=False
                got.pings += 1
                if pong:
                    await ws.pong(msg.data)
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                got.closed = True
                got.close_code = ws.close_code
                got.close_message = str(msg.extra or "")
                got.closed_at = loop.time()
                break
            elif msg.type == aiohttp.WSMsgType.ERROR:
                got.closed = got.error = True
                break
    return got


async def handshake_status(url: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status of a refused handshake (101 if the upgrade succeeded)."""
    return (await handshake(url, headers))[0]


async def handshake(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    """(status, response headers) of a handshake; 101 if the upgrade succeeded."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url, headers=headers):
                return 101, {}
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status, dict(exc.headers or {})


class Window:
    """A slice of tape time a test replays: the replay is caught up at ``start`` before clients connect."""

    def __init__(self, exchange: LocalExchange, clock: ManualClock, seconds: float) -> None:
        self.exchange, self.clock = exchange, clock
        self.start = clock.now_us() + US_PER_SEC
        self.end = self.start + int(seconds * US_PER_SEC)
        clock.set(self.start)
        exchange.streams.wake()
        exchange.streams.wait_until(lambda s: s.replayed_up_to_us >= self.start, timeout=10)
        self._open_before = exchange.streams.stats().connections_opened

    def play_when_connected(self, n_clients: int) -> None:
        """Called in the client's loop once a socket is open: move the clock when all ``n_clients`` are in."""
        ctl = self.exchange.streams
        if ctl.stats().connections_opened - self._open_before >= n_clients:
            self.clock.set(self.end)
            ctl.wake()
        elif n_clients == 1:
            raise AssertionError("the client has its 101 but the exchange has not registered it")


def wait_clients_then_play(window: Window, n_clients: int) -> None:
    window.exchange.streams.wait_until(
        lambda s: s.connections_opened - window._open_before >= n_clients, timeout=10
    )
    window.clock.set(window.end)
    window.exchange.streams.wake()


# --- the tape's events, computed independently of the server ----------------------------------------------------
def expected_trade_groups(tape: MarketTape, after_us: int, upto_us: int) -> list[list[int]]:
    """Trade ids per match event (same time and taker order) with ``after < ts <= upto``."""
    t = tape.trades
    groups: list[list[int]] = []
    prev: tuple[int, int] | None = None
    for i in np.flatnonzero((t.ts_event > after_us) & (t.ts_event <= upto_us)).tolist():
        key = (int(t.ts_event[i]), int(t.taker_order[i]) if t.taker_order is not None else 0)
        if key != prev:
            groups.append([])
            prev = key
        groups[-1].append(int(t.id[i]))
    return groups


def expected_bba_ids(tape: MarketTape, after_us: int, upto_us: int) -> list[int]:
    b = tape.best_bid_asks
    assert b is not None
    return b.update_id[(b.ts_event > after_us) & (b.ts_event <= upto_us)].tolist()  # type: ignore[no-any-return]


def expected_depth_ids(tape: MarketTape, after_us: int, upto_us: int) -> list[tuple[int, int]]:
    d = tape.depth
    assert d is not None
    sel = (d.ts_event > after_us) & (d.ts_event <= upto_us)
    return list(zip(d.first_update_id[sel].tolist(), d.last_update_id[sel].tolist(), strict=True))


def decode_all(frames: list[bytes]) -> list[TradesEvent | BestBidAsk | DepthDiff | DepthSnapshot]:
    return [decode(f) for f in frames]


def event_time(rec: TradesEvent | BestBidAsk | DepthDiff | DepthSnapshot | Trade) -> int:
    return rec.transact_time if isinstance(rec, TradesEvent) else rec.ts_event


def parse_json_frame(text: str, *, micros: bool) -> tuple[str, Trade | BestBidAsk | DepthDiff | dict[str, object]]:
    """(stream name, normalized record) of one combined JSON frame; bookTicker gets ts_event 0."""
    msg = orjson.loads(text)
    stream, data = msg["stream"], msg["data"]
    kind = stream.split("@")[1]
    if kind == "trade":
        return stream, parse_trade(data, time_unit_us=micros)
    if kind == "bookTicker":
        return stream, parse_book_ticker(data, ts_event=0)
    if kind == "depth":
        return stream, parse_depth_update(data, time_unit_us=micros)
    return stream, data

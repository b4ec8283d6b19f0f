"""The local exchange's shared state: its markets, its clock, its limiter and its faults.

Stored on the aiohttp application under ``EXCHANGE`` so that routes added later (the WebSocket streams,
``add_stream_routes(app, ...)``) reach the same tapes and the same exchange time as REST.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp import web

from btcpipe.domain.errors import ConfigError
from btcpipe.domain.tape import MarketTape
from btcpipe.domain.time import Clock
from btcpipe.exchange.faults import Faults
from btcpipe.exchange.ratelimit import WeightLimiter
from btcpipe.exchange.source import SymbolMarket
from btcpipe.infra.clocks import HistoryClock


@dataclass
class ExchangeState:
    """Everything the local exchange serves from: the symbols' markets, its clock, the weight limiter and faults."""

    markets: dict[str, SymbolMarket]
    clock: Clock
    limiter: WeightLimiter
    faults: Faults
    # Built dumps by URL path: (zip bytes, checksum line); a day's dump is immutable once published.
    dump_cache: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    # Publish a daily dump for a day the tape covers only in part (a short test tape straddling midnight)?
    # Binance's file always holds the whole day, so a sandbox for other clients says 404 instead.
    partial_dump_days: bool = True

    def now_us(self) -> int:
        return self.clock.now_us()

    def market(self, symbol: str) -> SymbolMarket | None:
        return self.markets.get(symbol.upper())


def build_state(
    tapes: Iterable[MarketTape],
    *,
    clock: Clock | None = None,
    limiter: WeightLimiter | None = None,
    faults: Faults | None = None,
    first_agg_id: int = 1,
    partial_dump_days: bool = True,
) -> ExchangeState:
    markets: dict[str, SymbolMarket] = {}
    for tape in tapes:
        symbol = tape.symbol.upper()
        if symbol in markets:
            raise ConfigError(f"two tapes for {symbol}: the exchange serves one tape per symbol")
        markets[symbol] = SymbolMarket(tape, first_agg_id=first_agg_id)
    if not markets:
        raise ConfigError("the exchange needs at least one tape to serve")
    end = max(m.tape.end_us for m in markets.values())
    return ExchangeState(
        markets=markets,
        clock=clock or HistoryClock(end),
        limiter=limiter or WeightLimiter(),
        faults=faults or Faults(),
        partial_dump_days=partial_dump_days,
    )


EXCHANGE: web.AppKey[ExchangeState] = web.AppKey("btcpipe_exchange", ExchangeState)

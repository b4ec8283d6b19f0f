"""Stream faults drawn at random per event, and the poison messages the ``poison`` fault sends.

``StreamFaultRates`` holds a probability per replayed event for each stream fault kind (``btcpipe exchange
serve --fault KIND=RATE`` sets them; ``StreamControl.set_fault_rates`` at runtime):

- ``garbage``: an undecodable frame (unknown SBE schema / truncated JSON) before the event;
- ``poison``: a well-framed message the client must refuse (see below) before the event;
- ``skip-trade`` / ``skip-depth``: the event (a trade group / a depth diff) is not sent (a gap the client
  must notice);
- ``stall``: nothing is sent for ``STALL_S`` seconds, then everything queued goes out.

Poison is extra: it never replaces a real event, so a client that skips it loses nothing. Each poison message
is framed correctly — an SBE frame of a known template, a JSON object of the right stream — but carries a
value no Binance message has: a price exponent beyond ±18 (``rescale`` cannot express it), a mantissa of 19
digits, a trade id or update id that is negative or above 2^63 (SBE's int64 read as negative), a number where
Binance sends a decimal string, a string where it sends a number, a boolean that is not one.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Literal

from btcpipe.binance.sbe_encode import encode_best_bid_ask, encode_depth_diff, encode_trades
from btcpipe.domain.errors import ConfigError
from btcpipe.domain.records import BestBidAsk, DepthDiff, Trade

StreamFaultKind = Literal["garbage", "poison", "skip-trade", "skip-depth", "stall"]
STREAM_FAULT_KINDS: tuple[StreamFaultKind, ...] = ("garbage", "poison", "skip-trade", "skip-depth", "stall")
STALL_S = 1.0  # how long one ``stall`` fault holds the streams

_P, _Q = 6_183_763_000_000, 2_000_000


POISON_VARIANTS = 6  # 0-3: trades, 4: best bid/ask, 5: depth diff


def poison_sbe(symbol: str, now_us: int, variant: int) -> bytes:
    """Poison SBE frame number ``variant`` (cycling through the kinds of bad value)."""
    match variant % 6:
        case 0:  # price exponent +11: 10^19 shift to the standard exponent
            return encode_trades([Trade(symbol, 1, now_us, 1, _Q, False, 11, -8)])
        case 1:  # price exponent -27
            return encode_trades([Trade(symbol, 1, now_us, _P, _Q, False, -27, -8)])
        case 2:  # a mantissa of 19 digits
            return encode_trades([Trade(symbol, 1, now_us, 2**63 - 1, _Q, False)])
        case 3:  # a trade id beyond int63 (a uint64 id read as int64)
            return encode_trades([Trade(symbol, -(2**63) + 5, now_us, _P, _Q, False)])
        case 4:  # best bid/ask with a quantity exponent of 100
            return encode_best_bid_ask(BestBidAsk(symbol, now_us, 7, _P, _Q, _P + 1, _Q, -8, 100))
        case _:  # a depth diff whose update ids are negative
            return encode_depth_diff(DepthDiff(symbol, now_us, -9, -8, ((_P, _Q),), ()))


def poison_json(symbol: str, now_us: int, variant: int, *, micros: bool) -> bytes:
    """Poison JSON body number ``variant`` in the shape of a ``trade`` / ``bookTicker`` / ``depthUpdate``
    message (written by hand: a well-behaved encoder cannot write integers beyond 64 bits)."""
    t = now_us if micros else now_us // 1000
    s = f'"s":"{symbol}"'
    match variant % 6:
        case 0:  # a price of thirty digits
            body = f'{{"e":"trade","E":{t},{s},"t":1,"p":"{"1" * 30}","q":"0.1","T":{t},"m":true,"M":true}}'
        case 1:  # a trade id above 2^63
            body = f'{{"e":"trade","E":{t},{s},"t":{2**63 + 7},"p":"1.0","q":"0.1","T":{t},"m":true,"M":true}}'
        case 2:  # a number where Binance sends a decimal string
            body = f'{{"e":"trade","E":{t},{s},"t":1,"p":61837.63,"q":"0.1","T":{t},"m":true,"M":true}}'
        case 3:  # a string where Binance sends a number, and a boolean that is not one
            body = f'{{"e":"trade","E":"{t}",{s},"t":1,"p":"1.0","q":"0.1","T":{t},"m":"yes","M":true}}'
        case 4:  # bookTicker with a negative update id
            body = f'{{"u":-5,{s},"b":"1.0","B":"1.0","a":"1.1","A":"1.0"}}'
        case _:  # depthUpdate whose levels are an object
            body = f'{{"e":"depthUpdate","E":{t},{s},"U":1,"u":2,"b":{{"p":"1"}},"a":[]}}'
    return body.encode()


@dataclass(frozen=True, slots=True)
class FaultDraw:
    """What happens around one event: frames to send first, whether to drop it, whether to stall."""

    garbage: bool = False
    poison: bool = False
    skip: bool = False
    stall: bool = False


NO_FAULT = FaultDraw()


class StreamFaultRates:
    """Per-event probabilities of the stream faults; seeded, so a run can be repeated. Thread-safe."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._rates: dict[StreamFaultKind, float] = dict.fromkeys(STREAM_FAULT_KINDS, 0.0)
        self._any = False

    def set(self, rates: dict[StreamFaultKind, float], seed: int | None = None) -> None:
        """Change some rates (each within [0, 1]); the others stay."""
        for kind, rate in rates.items():
            if kind not in STREAM_FAULT_KINDS:
                raise ConfigError(f"unknown stream fault {kind!r}; known: {', '.join(STREAM_FAULT_KINDS)}")
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(f"{kind} rate must be within [0, 1], got {rate}")
        with self._lock:
            self._rates.update(rates)
            self._any = any(self._rates.values())
            if seed is not None:
                self._rng.seed(seed)

    def rates(self) -> dict[StreamFaultKind, float]:
        with self._lock:
            return dict(self._rates)

    def draw(self, *, is_trade: bool, is_depth: bool) -> FaultDraw:
        """The faults for one event (each kind drawn on its own)."""
        if not self._any:
            return NO_FAULT
        with self._lock:
            r, rng = self._rates, self._rng
            return FaultDraw(
                garbage=rng.random() < r["garbage"],
                poison=rng.random() < r["poison"],
                skip=(is_trade and rng.random() < r["skip-trade"]) or (is_depth and rng.random() < r["skip-depth"]),
                stall=rng.random() < r["stall"],
            )

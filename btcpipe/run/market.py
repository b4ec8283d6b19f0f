"""The market ``btcpipe run`` serves: a simulated or recorded tape placed so that tape time = wall time.

The local exchange answers REST only with what has "happened" by its clock, and streams the rest as it
happens. ``btcpipe run`` serves the tape on the wall clock, so the tape must be placed in time: the
simulated market starts ``history`` before now and runs on past the live part; a recording is shifted by
whole seconds (so its second boundaries stay where they were) so that its last ``live`` seconds lie ahead.

Pure: "now" comes in as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from btcpipe.domain.errors import ConfigError, DataError
from btcpipe.domain.tape import I64, BestBidAskTape, DepthTape, MarketTape
from btcpipe.domain.time import US_PER_SEC, floor_sec

# The simulated tape runs this long past the planned end of the live part, so that a slow start (training
# on a busy machine) still finds a market streaming, and the last predictions' labels can be realized.
SIM_TAIL_S = 180


@dataclass(frozen=True, slots=True)
class RunMarket:
    """The market of a run: a tape placed on the wall clock (none for Binance) and the span to backfill."""

    symbol: str
    tape: MarketTape | None
    history_start_us: int  # first second the backfill asks for
    live_start_us: int  # wall time at which the live part begins (the backfill ends here, exclusive)
    source: str  # "simulator", "recording" or "binance"
    sim_seed: int | None = None  # the simulator run, so the oracle can be computed beside the model
    sim_start_us: int | None = None
    sim_duration_s: int | None = None
    shift_us: int = 0  # how far a recording was moved in time
    sim_preset: str | None = None  # the simulator preset (btcpipe.market.presets)


def simulated_market(
    *, now_us: int, history_s: int, live_s: int, seed: int = 0, preset: str = "realistic"
) -> RunMarket:
    """Simulate ``history_s`` seconds before ``now_us`` and the live part (plus a tail) after it."""
    from btcpipe.market.presets import preset_config
    from btcpipe.market.simulator import simulate

    if history_s <= 0 or live_s <= 0:
        raise ConfigError(f"history and live duration must be positive, got {history_s}s and {live_s}s")
    live_start = floor_sec(now_us)
    start = live_start - history_s * US_PER_SEC
    config = preset_config(preset, seed=seed, start_us=start, duration_s=history_s + live_s + SIM_TAIL_S)
    tape = simulate(config)
    return RunMarket(config.symbol, tape, start, live_start, "simulator", seed, config.start_us, config.duration_s,
                     sim_preset=preset)


def _shift(ts: I64 | None, offset: int) -> I64 | None:
    return None if ts is None else ts + offset


def shift_tape(tape: MarketTape, offset_us: int) -> MarketTape:
    """The same market ``offset_us`` later: every event and receive time moves, ids and prices stay."""
    t = tape.trades
    trades = replace(t, ts_event=t.ts_event + offset_us, ts_recv=_shift(t.ts_recv, offset_us),
                     event_time=_shift(t.event_time, offset_us))
    tickers: BestBidAskTape | None = None
    if tape.best_bid_asks is not None:
        b = tape.best_bid_asks
        tickers = replace(b, ts_event=b.ts_event + offset_us, ts_recv=_shift(b.ts_recv, offset_us))
    depth: DepthTape | None = None
    if tape.depth is not None:
        d = tape.depth
        depth = replace(d, ts_event=d.ts_event + offset_us, ts_recv=_shift(d.ts_recv, offset_us))
    book = tape.initial_book
    if book is not None:
        book = replace(
            book,
            ts_event=book.ts_event + offset_us if book.ts_event else 0,
            ts_recv=book.ts_recv + offset_us if book.ts_recv else 0,
        )
    return replace(tape, trades=trades, best_bid_asks=tickers, depth=depth, initial_book=book)


# A recording keeps this much after the live part's planned end: the offline stages run on the wall clock first
# (a minute on a busy 2-core machine), the duration counts from the first tick, and the last predictions need
# 10 s more market to be realized. What the recording plays while the offline stages run reaches the bus as the
# ingestor's REST gap fill.
RECORDING_TAIL_S = 90


def recorded_market(
    tape: MarketTape, *, now_us: int, history_s: int | None, live_s: int, tail_s: int = RECORDING_TAIL_S
) -> RunMarket:
    """Shift a recording so that its last ``live_s + tail_s`` seconds lie after now.

    The history is what the recording holds before its live part: at most ``history_s`` seconds of it.
    """
    if len(tape.trades) < 2:
        raise DataError("the recording holds fewer than two trades; there is nothing to replay")
    if live_s <= 0:
        raise ConfigError(f"the live duration must be positive, got {live_s}s")
    first, last = floor_sec(tape.start_us), tape.end_us
    span_s = (last - first) // US_PER_SEC
    if span_s <= live_s + tail_s + 60:
        raise ConfigError(
            f"the recording spans {span_s} s: too short for {live_s} s live (+{tail_s} s to start and to realize "
            "the last predictions) after at least 60 s of history; shorten --duration"
        )
    live_start_tape = last - (live_s + tail_s) * US_PER_SEC
    live_start_tape -= live_start_tape % US_PER_SEC
    history_start_tape = first if history_s is None else max(first, live_start_tape - history_s * US_PER_SEC)
    shift = floor_sec(now_us) - live_start_tape
    return RunMarket(
        tape.symbol.upper(),
        shift_tape(tape, shift),
        history_start_tape + shift,
        live_start_tape + shift,
        "recording",
        shift_us=shift,
    )


def exchange_market(symbol: str, *, now_us: int, history_s: int) -> RunMarket:
    """A real exchange's market: no tape, the history is the ``history_s`` seconds before now."""
    if history_s <= 0:
        raise ConfigError(f"history must be positive, got {history_s}s")
    live_start = floor_sec(now_us)
    return RunMarket(symbol.upper(), None, live_start - history_s * US_PER_SEC, live_start, "binance")

"""What flows through the Flink job, in plain data: bus payloads in, feature rows out (no pyflink here).

Input lines are bus payloads in base64 (one per line: a file, a socket or a stream record carries them
unchanged). ``element_of`` reads one payload's symbol, kind and event time (for Flink's timestamps and
its key); ``apply_payloads`` hands a symbol's buffered payloads, in arrival order, to its
``SymbolFeatureState`` with the processor's batch decoders. Rows leave as JSON lines with their values
base64-packed (``btcpipe.features.plain``), exact to the bit.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from btcpipe.domain.errors import DataError, MalformedRecordError
from btcpipe.domain.time import US_PER_SEC, floor_sec
from btcpipe.features import plain
from btcpipe.features.streaming import FeatureRow
from btcpipe.features.symbol_state import SymbolFeatureState
from btcpipe.wire.avro_wire import BEST_BID_ASK, HEARTBEAT, TRADE_SCHEMAS, schema_of
from btcpipe.wire.best_bid_ask_columns import decode_best_bid_ask_batches
from btcpipe.wire.codec import decode_best_bid_ask, decode_heartbeat, decode_trade_batches, decode_trade_columns

TRADES, BEST_BID_ASK_KIND, HEARTBEAT_KIND = "t", "b", "h"
US_PER_MS = 1000


@dataclass(frozen=True, slots=True)
class Element:
    """One bus payload as the job keys and times it: ``ts_ms`` is Flink's event timestamp."""

    symbol: str
    kind: str
    ts_ms: int
    timer_ms: int  # the end of the row this payload belongs to (a heartbeat: the last row it closes)
    line: str  # the payload, base64 (what the state's buffer keeps)


def encode_line(payload: bytes) -> str:
    return base64.b64encode(payload).decode("ascii")


def _payload(line: str) -> bytes:
    try:
        return base64.b64decode(line.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedRecordError(f"input line is not base64: {exc}") from exc


def element_of(line: str, out_of_orderness_ms: int) -> Element | None:
    """The element of one input line; None for payload kinds no feature reads (depth, rows, ...).

    Raises ``DataError`` for a line that is not a decodable bus payload (the caller counts and skips it).
    A heartbeat at ``t`` vouches for every event before ``t``: its timestamp is set so that Flink's
    bounded-out-of-orderness watermark (newest timestamp − bound − 1 ms) reaches ``t`` exactly.
    """
    payload = _payload(line)
    name = schema_of(payload).name
    if name in {s.name for s in TRADE_SCHEMAS}:
        cols = decode_trade_columns(payload)
        if len(cols) == 0:
            return None
        ts = int(cols.ts_event.max())
        return Element(cols.symbol, TRADES, ts // US_PER_MS, (floor_sec(ts) + US_PER_SEC) // US_PER_MS, line)
    if name == BEST_BID_ASK.name:
        bba = decode_best_bid_ask(payload)
        ts = bba.ts_event
        return Element(bba.symbol, BEST_BID_ASK_KIND, ts // US_PER_MS, (floor_sec(ts) + US_PER_SEC) // US_PER_MS,
                       line)
    if name == HEARTBEAT.name:
        hb = decode_heartbeat(payload)
        t_ms = hb.ts_event // US_PER_MS
        return Element(hb.symbol, HEARTBEAT_KIND, t_ms + out_of_orderness_ms + 1, floor_sec(hb.ts_event) // US_PER_MS,
                       line)
    return None


def apply_payloads(state: SymbolFeatureState, kinds: Sequence[str], lines: Sequence[str]) -> None:
    """Apply buffered payloads in arrival order; runs of one kind are decoded at once, like a processor poll."""
    i, n = 0, len(lines)
    while i < n:
        j = i
        while j < n and kinds[j] == kinds[i]:
            j += 1
        payloads = [_payload(x) for x in lines[i:j]]
        if kinds[i] == TRADES:
            b = decode_trade_batches(payloads)
            if b.errors:
                raise next(iter(b.errors.values()))
            state.add_trade_arrays(b.id, b.ts_event, b.price, b.qty, b.is_buyer_maker)
        elif kinds[i] == BEST_BID_ASK_KIND:
            q = decode_best_bid_ask_batches(payloads)
            if q.errors:
                raise next(iter(q.errors.values()))
            state.add_best_bid_ask_arrays(q.ts_event, q.update_id, q.bid_price, q.ask_price)
        else:
            for p in payloads:
                state.add_heartbeat(decode_heartbeat(p).ts_event)
        i = j


def row_line(row: FeatureRow) -> str:
    return json.dumps({"symbol": row.symbol, "ts_sec": row.ts_sec, "n_trades": row.n_trades,
                       "values": plain.pack_f64(row.values)})


@dataclass(frozen=True, slots=True)
class RowRecord:
    """A feature row read back from the job's output."""

    symbol: str
    ts_sec: int
    n_trades: int
    values: tuple[float, ...]


def parse_row_line(line: str) -> RowRecord:
    try:
        d = json.loads(line)
        values = plain.unpack_f64(d["values"], "values")
        return RowRecord(str(d["symbol"]), int(d["ts_sec"]), int(d["n_trades"]), tuple(np.asarray(values).tolist()))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"not a feature row line: {line[:80]!r} ({exc})") from exc

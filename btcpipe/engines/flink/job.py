"""The PyFlink DataStream job: payload lines → elements → watermarks → key_by(symbol) → symbol state → rows.

Runs only in ``.venv-flink`` (``python -m btcpipe.engines.flink.job --help``); btcpipe's CLI starts it
through ``btcpipe.engines.flink.launch``. The arithmetic is the processor's: each symbol's
``SymbolFeatureState`` lives in Flink *managed* state as its versioned JSON ``snapshot()`` (a
``ValueState`` of strings, no pickle), so a restore from a checkpoint continues bit-identically. Payloads
wait in a ``ListState`` until their second's event-time timer fires; the timer applies them in arrival
order and closes every second up to it (``close_until`` with lateness 0: the lateness is the watermark's
bounded out-of-orderness). A bounded input ends with Flink's final watermark, which closes the last row.

Sinks: the rows come back to this driver through Flink's collect sink (exactly once with checkpoints) and
are written as JSON lines; with ``--redis-url`` a map also puts them in the online store (idempotent
``features:{symbol}:{ts_sec}`` + latest, so a replay after a restore rewrites the same values).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyflink.common import Configuration, Duration, Types, WatermarkStrategy
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.datastream.connectors.file_system import FileSource, StreamFormat
from pyflink.datastream.functions import FlatMapFunction, KeyedProcessFunction, MapFunction, RuntimeContext
from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor

from btcpipe.domain.errors import DataError
from btcpipe.engines.flink.elements import apply_payloads, element_of, parse_row_line, row_line
from btcpipe.engines.flink.options import parse_args
from btcpipe.features.spec import FeatureParams, schema_hash
from btcpipe.features.symbol_state import SymbolFeatureState

log = logging.getLogger(__name__)
US_PER_MS = 1000


class DecodePayloads(FlatMapFunction):
    """Input line → (symbol, kind, ts_ms, timer_ms, line); undecodable lines are counted and skipped."""

    def __init__(self, out_of_orderness_ms: int) -> None:
        self.bound = out_of_orderness_ms
        self.skipped = 0

    def flat_map(self, value: str) -> Iterator[tuple[str, str, int, int, str]]:
        if not value.strip():
            return
        try:
            e = element_of(value, self.bound)
        except DataError as exc:
            self.skipped += 1
            log.warning("skipped an undecodable payload (%d so far): %s", self.skipped, exc)
            return
        if e is not None:
            yield e.symbol, e.kind, e.ts_ms, e.timer_ms, e.line


class FailOnce(MapFunction):
    """Failure injection for the restore test: raises once, after ``after`` elements and a completed
    checkpoint (a ``chk-*/_metadata`` under ``checkpoint_dir``); ``marker`` remembers it failed."""

    def __init__(self, after: int, marker: str, checkpoint_dir: str) -> None:
        self.after, self.marker, self.checkpoint_dir = after, Path(marker), Path(checkpoint_dir)
        self.seen = 0

    def map(self, value: Any) -> Any:
        if self.marker.exists():
            return value
        self.seen += 1
        time.sleep(0.002)  # slow the input until the failure so checkpoints complete before it
        if self.seen >= self.after and any(self.checkpoint_dir.glob("*/chk-*/_metadata")):
            self.marker.write_text(str(self.seen))
            raise RuntimeError(f"injected failure after {self.seen} elements")
        return value


class EventTime(TimestampAssigner):
    """An element's Flink event time, its ``ts_ms`` field (a heartbeat's is set so the watermark reaches its time)."""

    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        return int(value[2])


class SymbolFeatures(KeyedProcessFunction):
    """Keyed by symbol: the symbol's ``SymbolFeatureState`` as a JSON snapshot in a ``ValueState``."""

    def __init__(self, params_json: str) -> None:
        self.params_json = params_json

    def open(self, runtime_context: RuntimeContext) -> None:
        self.params = FeatureParams.from_json(json.loads(self.params_json))
        self.state = runtime_context.get_state(ValueStateDescriptor("symbol-state", Types.STRING()))
        self.pending = runtime_context.get_list_state(
            ListStateDescriptor("pending", Types.TUPLE([Types.STRING(), Types.STRING()])))
        # The last state this worker wrote, per symbol: when managed state still holds that exact snapshot
        # the object is reused instead of parsed again (after a restore the cache is empty).
        self.cache: dict[str, tuple[str, SymbolFeatureState]] = {}

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[str]:
        self.pending.add((value[1], value[4]))
        ctx.timer_service().register_event_time_timer(int(value[3]))
        return iter(())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[str]:
        symbol = str(ctx.get_current_key())
        text = self.state.value()
        cached = self.cache.get(symbol)
        if text is None:
            state = SymbolFeatureState(symbol, self.params, lateness_us=0)
        elif cached is not None and cached[0] == text:
            state = cached[1]
        else:
            state = SymbolFeatureState.restore(json.loads(text))
        pending = list(self.pending.get() or [])
        if pending:
            apply_payloads(state, [p[0] for p in pending], [p[1] for p in pending])
            self.pending.clear()
        rows = state.close_until(timestamp * US_PER_MS)
        text = json.dumps(state.snapshot(), separators=(",", ":"))
        self.state.update(text)
        self.cache[symbol] = (text, state)
        for row in rows:
            yield row_line(row)


class StoreRows(MapFunction):
    """Puts each row in the online store (Redis, through btcpipe's store adapter); passes it on."""

    def __init__(self, redis_url: str, schema_hash_hex: str) -> None:
        self.redis_url, self.schema_hash_hex = redis_url, schema_hash_hex

    def open(self, runtime_context: RuntimeContext) -> None:
        from btcpipe.infra.redis_connection import RedisOptions
        from btcpipe.store.redis_store import RedisOnlineStore

        self.store = RedisOnlineStore(RedisOptions(url=self.redis_url))

    def map(self, value: str) -> str:
        from btcpipe.domain.messages import FeatureVector1s

        r = parse_row_line(value)
        self.store.put_features(r.symbol, r.ts_sec, FeatureVector1s(
            r.symbol, r.ts_sec, self.schema_hash_hex, r.values, time.time_ns() // 1000))
        return value

    def close(self) -> None:
        self.store.close()


def build(env: StreamExecutionEnvironment, args: argparse.Namespace, params: FeatureParams) -> Any:
    """The job graph; returns the stream of row lines."""
    builder = FileSource.for_record_stream_format(StreamFormat.text_line_format(), str(args.input))
    if args.follow:
        builder = builder.monitor_continuously(Duration.of_millis(args.monitor_ms))
    bound = args.out_of_orderness_ms
    lines = env.from_source(builder.build(), WatermarkStrategy.no_watermarks(), "bus payloads").set_parallelism(1)
    elements = lines.flat_map(DecodePayloads(bound), output_type=Types.TUPLE(
        [Types.STRING(), Types.STRING(), Types.LONG(), Types.LONG(), Types.STRING()])).set_parallelism(1)
    if args.fail_after:
        elements = elements.map(FailOnce(args.fail_after, args.fail_marker, args.checkpoint_dir),
                                output_type=elements.get_type()).set_parallelism(1)
    timed = elements.assign_timestamps_and_watermarks(
        WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(bound))
        .with_timestamp_assigner(EventTime()))
    rows = timed.key_by(lambda e: e[0], key_type=Types.STRING()).process(
        SymbolFeatures(json.dumps(params.to_json())), output_type=Types.STRING())
    if args.redis_url:
        rows = rows.map(StoreRows(args.redis_url, schema_hash(params)), output_type=Types.STRING())
    return rows


def environment(args: argparse.Namespace) -> StreamExecutionEnvironment:
    config = Configuration()
    config.set_string("python.execution-mode", "process")  # thread mode restarted the job here; not used
    # the workers run this very interpreter (the venv with pyflink), not whatever `python` is on PATH
    config.set_string("python.executable", sys.executable)
    config.set_string("python.client.executable", sys.executable)
    config.set_string("restart-strategy.type", "fixed-delay")
    config.set_string("restart-strategy.fixed-delay.attempts", str(args.restart_attempts))
    config.set_string("restart-strategy.fixed-delay.delay", "500 ms")
    if args.checkpoint_dir:
        where = args.checkpoint_dir
        config.set_string("execution.checkpointing.dir", where if "://" in where else Path(where).resolve().as_uri())
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.set_parallelism(args.parallelism)
    if args.checkpoint_ms:
        env.enable_checkpointing(args.checkpoint_ms)
    return env


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    params = FeatureParams.from_json(json.loads(Path(args.params).read_text()))
    env = environment(args)
    rows = build(env, args, params)
    started = time.monotonic()
    n = 0
    out = Path(args.output)
    with out.open("w") as f, rows.execute_and_collect("btcpipe features") as results:
        for line in results:
            f.write(line + "\n")
            n += 1
            if args.follow:
                f.flush()
    print(json.dumps({"rows": n, "seconds": round(time.monotonic() - started, 3)}))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())

"""Tracing through the real services: trades ingested, processed into feature rows and predicted on, with the
OpenTelemetry SDK's in-memory exporter. A prediction's trace must lead to its feature row and from there to the
trade frames of that second; with tracing off nothing is traced and no record carries trace metadata."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.inference import PARAMS, SYMBOL, linear_model, sim_tape, tape_trades

from btcpipe.binance.sbe_schema import TradesEvent
from btcpipe.bus.memory import InProcessBus
from btcpipe.bus.port import STREAM_FEATURES, STREAM_PREDICTIONS, STREAM_TRADES, Position
from btcpipe.bus.positions import InMemoryPositionStore
from btcpipe.domain.records import Trade
from btcpipe.domain.time import US_PER_SEC
from btcpipe.infra.clocks import ManualClock
from btcpipe.infra.metrics import Metrics
from btcpipe.infra.tracing import NO_TRACING, Tracing, TracingSettings, open_tracing, second_ids
from btcpipe.lake.lake import Lake
from btcpipe.lake.objects import LocalObjectStore
from btcpipe.model.registry import ModelRegistry
from btcpipe.services.infer.inference import InferenceService
from btcpipe.services.infer.model_loader import ModelWatcher
from btcpipe.services.ingest.ingestor import Ingestor
from btcpipe.services.process.processor import Processor, ProcessorSettings
from btcpipe.store.memory import InProcessOnlineStore
from btcpipe.wire.codec import decode_feature_vector

FRAME = 7  # trades per stream frame


class TapeSource:
    """The trades of a tape as stream frames of ``FRAME`` fills (the ingestor's MarketSource port)."""

    def __init__(self, trades: Sequence[Trade]) -> None:
        self.trades = trades

    async def run(self, sink) -> None:  # type: ignore[no-untyped-def]
        for k in range(0, len(self.trades), FRAME):
            frame = tuple(self.trades[k : k + FRAME])
            ts = frame[-1].ts_event
            await sink(TradesEvent(SYMBOL, ts, ts, frame, ts_recv=ts + 1_000))

    def stop(self) -> None:
        return


def _pipeline(tmp_path: Path, tracing: Tracing, seconds: int = 110) -> tuple[InProcessBus, list[Trade], int]:
    """Ingest ``seconds`` of a simulated tape, process it, predict the last complete second; returns the bus, the
    trades and that second."""
    tape = sim_tape(duration_s=seconds + 10)
    trades = [t for t in tape_trades(tape) if t.ts_event < tape.start_us + seconds * US_PER_SEC]
    bus = InProcessBus()
    ingestor = Ingestor(TapeSource(trades), bus, symbols=[SYMBOL], tracing=tracing)
    asyncio.run(ingestor.run())
    clock = ManualClock(trades[-1].ts_event)
    store = InProcessOnlineStore(clock)
    processor = Processor(bus, store, InMemoryPositionStore(), PARAMS, symbols=[SYMBOL], clock=clock,
                          settings=ProcessorSettings(close_on_clock=False), tracing=tracing)
    while processor.step(block_ms=0):
        pass
    last = processor.last_row(SYMBOL)
    assert last is not None
    # The last closed second that had trades: its row links to frames.
    ts_sec = max(t.ts_event // US_PER_SEC * US_PER_SEC + US_PER_SEC for t in trades if t.ts_event < last)
    registry = ModelRegistry(Lake(LocalObjectStore(tmp_path / "lake")).store)
    registry.register("btc", linear_model(seed=1))
    registry.promote("btc", "v1")
    metrics = Metrics()
    watcher = ModelWatcher(registry, "btc", metrics=metrics, clock=clock, check_every_s=5)
    watcher.load()
    service = InferenceService(symbols=[SYMBOL], model=watcher, store=store, bus=bus, metrics=metrics, clock=clock,
                               tracing=tracing)
    [result] = service.tick(ts_sec)
    assert result.outcome == "predicted", result
    return bus, trades, ts_sec


def _records(bus: InProcessBus, stream: str) -> list:  # type: ignore[type-arg]
    return [r for shard in bus.shards(stream) for r in bus.read(Position(stream, shard), 1_000_000)[0]]


def _hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def test_a_predictions_trace_leads_to_its_feature_row_and_the_trades_of_its_second(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    tracing = open_tracing(TracingSettings(enabled=True, sample_ratio=1.0), "test", exporter=exporter)
    bus, trades, ts_sec = _pipeline(tmp_path, tracing)
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    trace_id, root_id = second_ids(SYMBOL, ts_sec)

    # The prediction: its tick is a child of the second's root, which is the processor's feature-row span.
    [tick] = [s for s in spans if s.name == "inference.tick" and s.attributes["ts_sec"] == ts_sec]
    assert tick.context.trace_id == trace_id
    assert tick.parent is not None
    assert tick.parent.span_id == root_id
    row = by_id[root_id]
    assert row.name == "features.second"
    assert row.attributes["ts_sec"] == ts_sec
    assert row.context.trace_id == trace_id
    children = {s.name for s in spans if s.parent is not None and s.parent.span_id == root_id}
    assert {"store.write", "bus.publish", "inference.tick"} <= children

    # The row links to the consume spans of the frames of its second, each continuing its frame's trace:
    # consume -> bus.publish (ingestor) -> ingest.receive, whose trade ids cover every trade of the second.
    second_ids_ = {t.id for t in trades if ts_sec - US_PER_SEC <= t.ts_event < ts_sec}
    assert second_ids_
    covered: set[int] = set()
    for link in row.links:
        consume = by_id[link.context.span_id]
        assert consume.name == "bus.consume"
        assert consume.context.trace_id != trace_id  # the trade's own trace, not the second's
        publish = by_id[consume.parent.span_id]  # type: ignore[union-attr]
        assert publish.name == "bus.publish"
        assert publish.attributes["stream"] == STREAM_TRADES
        receive: ReadableSpan = by_id[publish.parent.span_id]  # type: ignore[union-attr]
        assert receive.name == "ingest.receive"
        ids = set(range(receive.attributes["first_id"], receive.attributes["last_id"] + 1))  # type: ignore[arg-type]
        assert ids & second_ids_, "a linked frame has no trade of the second"
        covered |= ids
    assert second_ids_ <= covered

    # The bus records carry the same contexts: the feature row's record names the row's span, the prediction's
    # record names a publish span under the tick.
    [feature_record] = [r for r in _records(bus, STREAM_FEATURES) if decode_feature_vector(r.payload).ts_sec == ts_sec]
    assert feature_record.trace == f"00-{_hex(trace_id, 32)}-{_hex(root_id, 16)}-01"
    [prediction_record] = _records(bus, STREAM_PREDICTIONS)
    publish_id = int(prediction_record.trace.split("-")[2], 16)
    assert by_id[publish_id].parent.span_id == tick.context.span_id  # type: ignore[union-attr]
    trade_records = _records(bus, STREAM_TRADES)
    assert all(r.trace is not None for r in trade_records)  # ratio 1: every frame sampled


def test_with_sampling_at_zero_nothing_is_traced(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    tracing = open_tracing(TracingSettings(enabled=True, sample_ratio=0.0), "test", exporter=exporter)
    bus, _, _ = _pipeline(tmp_path, tracing, seconds=70)
    assert exporter.get_finished_spans() == ()
    assert all(r.trace is None for s in (STREAM_TRADES, STREAM_FEATURES, STREAM_PREDICTIONS) for r in _records(bus, s))


def test_tracing_off_leaves_no_metadata_on_the_bus(tmp_path: Path) -> None:
    bus, _, _ = _pipeline(tmp_path, NO_TRACING, seconds=70)
    assert all(r.trace is None for s in (STREAM_TRADES, STREAM_FEATURES, STREAM_PREDICTIONS) for r in _records(bus, s))


@pytest.mark.parametrize("ratio", [0.05, 0.5])
def test_the_processor_and_inference_sample_the_same_seconds(ratio: float) -> None:
    a = open_tracing(TracingSettings(enabled=True, sample_ratio=ratio), "processor", exporter=InMemorySpanExporter())
    b = open_tracing(TracingSettings(enabled=True, sample_ratio=ratio), "inference", exporter=InMemorySpanExporter())
    seconds = [1_700_000_000 * US_PER_SEC + k * US_PER_SEC for k in range(4000)]
    sampled = [t for t in seconds if a.second_traceparent(SYMBOL, t) is not None]
    assert sampled == [t for t in seconds if b.second_traceparent(SYMBOL, t) is not None]
    assert abs(len(sampled) / len(seconds) - ratio) < 0.03

"""Test support for the inference service: real ONNX models without torch, and a market driven by a clock.

``linear_model`` builds a real ONNX graph (MatMul + Add + Reshape, run by onnxruntime like the MLP)
with a real scaler and schema, so tests know every artifact and can tamper with any of them.
``MarketWorld`` plays a simulated tape through real ports as a ``ManualClock`` advances: trades and best
bid/ask onto the bus as they happen, and a processor twin (the streaming feature engine, which is what
the processor runs) writing each closed second into the online store. Tests switch parts off to make
faults: ``processor_on`` (a dead processor), ``bus_on`` (bus lag: events held back, then released).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from btcpipe.bus.memory import InProcessBus
from btcpipe.bus.port import STREAM_BEST_BID_ASK, STREAM_FEATURES, STREAM_PREDICTIONS, STREAM_TRADES, Bus, Position
from btcpipe.domain.errors import StoreError
from btcpipe.domain.messages import FeatureVector1s, Prediction1s
from btcpipe.domain.records import BestBidAsk, Trade
from btcpipe.domain.tape import MarketTape
from btcpipe.domain.time import US_PER_SEC
from btcpipe.features.spec import FeatureParams, schema_document
from btcpipe.features.streaming import FeatureRow, StreamingFeatureEngine
from btcpipe.infra.clocks import ManualClock
from btcpipe.infra.metrics import Metrics
from btcpipe.lake.lake import Lake
from btcpipe.lake.objects import LocalObjectStore
from btcpipe.market.config import SimConfig
from btcpipe.market.simulator import simulate
from btcpipe.model.artifacts import INPUT_NAME, OUTPUT_NAME, ModelArtifacts, assemble
from btcpipe.model.registry import ModelRegistry
from btcpipe.model.scaler import StandardScaler
from btcpipe.services.infer.archive import PredictionArchive
from btcpipe.services.infer.arrivals import RowArrivals
from btcpipe.services.infer.fallback import MarketTap
from btcpipe.services.infer.inference import InferenceService, InferenceSettings, TickResult
from btcpipe.services.infer.model_loader import ModelWatcher
from btcpipe.store.memory import InProcessOnlineStore
from btcpipe.store.port import OnlineStore
from btcpipe.wire.codec import decode_prediction, encode_best_bid_ask, encode_feature_vector, encode_trades

SYMBOL = "BTCUSDT"
PARAMS = FeatureParams(trade_size_p95=0.05)
START_US = 1_704_067_200 * US_PER_SEC  # 2024-01-01T00:00:00Z


def linear_onnx(weights: np.ndarray, bias: float) -> bytes:
    """``yhat[N] = features[N, F] @ weights + bias`` as one self-contained ONNX graph (float32)."""
    n = weights.shape[0]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", [INPUT_NAME, "w"], ["h"]),
            helper.make_node("Add", ["h", "b"], ["h2"]),
            helper.make_node("Reshape", ["h2", "shape"], [OUTPUT_NAME]),
        ],
        "linear",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch"])],
        initializer=[
            numpy_helper.from_array(weights.astype(np.float32).reshape(n, 1), "w"),
            numpy_helper.from_array(np.array([bias], dtype=np.float32), "b"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "shape"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def linear_model(
    params: FeatureParams = PARAMS,
    *,
    seed: int = 0,
    bias: float = 0.0,
    label_mid: str = "bbo_mid",
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
    schema_hash: str | None = None,
    uncertainty: float = 2e-4,
) -> ModelArtifacts:
    """A complete, verifiable model. ``schema_hash`` forces another hash into schema_v1.json (and so the
    manifest): hashes verify, but the schema no longer matches the running feature code."""
    names = params.names
    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 1e-4, size=len(names))
    scaler = StandardScaler(
        names,
        np.zeros(len(names)) if mean is None else np.asarray(mean, dtype=np.float64),
        np.ones(len(names)) if std is None else np.asarray(std, dtype=np.float64),
    )
    doc = schema_document(params)
    if schema_hash is not None:
        doc["hash"] = schema_hash
    import json

    schema_json = json.dumps(doc, indent=2, sort_keys=True).encode()
    info = {
        "symbol": SYMBOL,
        "feature_names": list(names),
        "label": {"kind": "log_return", "horizon_s": 10, "mid": label_mid},
        "data": {"first_ts": START_US - 86_400 * US_PER_SEC, "last_ts": START_US - US_PER_SEC},
        "uncertainty": uncertainty,
        "tag": f"linear seed={seed} bias={bias}",
    }
    return assemble(model_onnx=linear_onnx(weights, bias), scaler_json=scaler.to_json(), schema_json=schema_json,
                    info=info)


def sim_tape(duration_s: int = 400, seed: int = 3, start_us: int = START_US) -> MarketTape:
    return simulate(SimConfig(seed=seed, start_us=start_us, duration_s=duration_s))


def tape_trades(tape: MarketTape) -> list[Trade]:
    t = tape.trades
    return [
        Trade(tape.symbol, int(i), int(ts), int(p), int(q), bool(m))
        for i, ts, p, q, m in zip(t.id, t.ts_event, t.price, t.qty, t.is_buyer_maker, strict=True)
    ]


def tape_best_bid_asks(tape: MarketTape) -> list[BestBidAsk]:
    b = tape.best_bid_asks
    assert b is not None
    return [
        BestBidAsk(tape.symbol, int(ts), int(u), int(bp), int(bq), int(ap), int(aq))
        for ts, u, bp, bq, ap, aq in zip(b.ts_event, b.update_id, b.bid_price, b.bid_qty, b.ask_price, b.ask_qty,
                                          strict=True)
    ]


@dataclass
class MarketWorld:
    """A simulated market played through real ports as the clock advances (see the module docstring)."""

    tape: MarketTape
    bus: Bus
    store: OnlineStore
    clock: ManualClock
    params: FeatureParams = PARAMS
    lateness_us: int = 200_000
    processor_on: bool = True
    bus_on: bool = True
    publish_rows: bool = False  # the twin also publishes each row on features-1s (what inference ticks on)
    rows: dict[int, FeatureRow] = field(default_factory=dict)  # every row the processor twin computed
    store_failures: int = 0
    on_advance: list[Callable[[int], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.trades = tape_trades(self.tape)
        self.best_bid_asks = tape_best_bid_asks(self.tape)
        self._ti = 0
        self._bi = 0
        self._published_until = self.clock.now_us()
        # Events before the clock's start are history nobody streams; the processor twin saw them all.
        while self._ti < len(self.trades) and self.trades[self._ti].ts_event < self._published_until:
            self._ti += 1
        while self._bi < len(self.best_bid_asks) and self.best_bid_asks[self._bi].ts_event < self._published_until:
            self._bi += 1
        first_second = self.tape.start_us // US_PER_SEC * US_PER_SEC
        self.engine = StreamingFeatureEngine(SYMBOL, self.params, start_us=first_second)
        self._pi = 0
        self._pb = 0
        self._closed = first_second

    @property
    def schema_hash(self) -> str:
        return self.engine.schema_hash

    def sleep(self, seconds: float) -> None:
        """The sleeper the service gets: time passes, the market moves."""
        self.clock.advance(seconds)
        self.advance_to(self.clock.now_us())

    def advance_to(self, now_us: int) -> None:
        if self.bus_on:
            self._publish_until(now_us)
        self._process_until(now_us)
        for hook in self.on_advance:
            hook(now_us)

    def _publish_until(self, now_us: int) -> None:
        batch: list[Trade] = []
        while self._ti < len(self.trades) and self.trades[self._ti].ts_event < now_us:
            batch.append(self.trades[self._ti])
            self._ti += 1
        for k in range(0, len(batch), 500):
            self.bus.publish(STREAM_TRADES, SYMBOL, [encode_trades(batch[k : k + 500])])
        payloads = []
        while self._bi < len(self.best_bid_asks) and self.best_bid_asks[self._bi].ts_event < now_us:
            payloads.append(encode_best_bid_ask(self.best_bid_asks[self._bi]))
            self._bi += 1
        if payloads:
            self.bus.publish(STREAM_BEST_BID_ASK, SYMBOL, payloads)
        self._published_until = now_us

    def _process_until(self, now_us: int) -> None:
        """The processor twin: it sees what the bus has carried and closes seconds past the lateness."""
        visible = self._published_until
        while self._closed + US_PER_SEC + self.lateness_us <= min(now_us, visible + self.lateness_us):
            t = self._closed + US_PER_SEC
            while self._pi < self._ti and self.trades[self._pi].ts_event < t:
                self.engine.add_trade_record(self.trades[self._pi])
                self._pi += 1
            while self._pb < self._bi and self.best_bid_asks[self._pb].ts_event < t:
                self.engine.add_best_bid_ask_record(self.best_bid_asks[self._pb])
                self._pb += 1
            row = self.engine.close_second(t)
            self._closed = t
            self.rows[t] = row
            if self.processor_on:
                try:
                    self.store.put_features(SYMBOL, t, row.to_message(self.schema_hash, now_us))
                except StoreError:
                    self.store_failures += 1
                if self.publish_rows:
                    self.bus.publish(STREAM_FEATURES, SYMBOL,
                                     [encode_feature_vector(row.to_message(self.schema_hash, now_us))])

    def message(self, ts_sec: int) -> FeatureVector1s:
        return self.rows[ts_sec].to_message(self.schema_hash, ts_sec)


def finite(values: object) -> bool:
    return all(math.isfinite(float(v)) for v in np.asarray(values).ravel())


T0 = START_US + 5 * US_PER_SEC  # the service starts 5 s into the tape
WARM = 62  # seconds of market the fallback engine needs before its rows are complete


@dataclass
class Rig:
    clock: ManualClock
    bus: InProcessBus
    store: InProcessOnlineStore
    world: MarketWorld
    registry: ModelRegistry
    metrics: Metrics
    service: InferenceService
    lake: Lake
    results: list[TickResult] = field(default_factory=list)

    def by_outcome(self, outcome: str) -> list[TickResult]:
        return [r for r in self.results if r.outcome == outcome]

    def ticks(self, outcome: str) -> float:
        return self.metrics.registry.get_sample_value(
            "btcpipe_inference_ticks_total", {"symbol": SYMBOL, "outcome": outcome}) or 0.0

    def published(self) -> list[Prediction1s]:
        out = []
        for shard in self.bus.shards(STREAM_PREDICTIONS):
            records, _ = self.bus.read(Position(STREAM_PREDICTIONS, shard), max_count=100_000)
            out.extend(decode_prediction(r.payload) for r in records)
        return out


def make_rig(
    tmp_path: Path,
    *,
    settings: InferenceSettings | None = None,
    store_wrapper: Callable[[InProcessOnlineStore], object] | None = None,
    perf_ns: Callable[[], int] | None = None,
    clock: ManualClock | None = None,
    row_delay_us: int | None = None,
) -> Rig:
    """``row_delay_us``: the processor twin publishes each row on features-1s this long after its second, and
    the service predicts on arrival (``RowArrivals``); without it, the twin writes the store only (after the
    lateness) and the service ticks at its fixed offset."""
    clock = clock or ManualClock(T0)
    bus = InProcessBus()
    store = InProcessOnlineStore(clock)
    lake = Lake(LocalObjectStore(tmp_path / "lake"))
    registry = ModelRegistry(lake.store)
    registry.register("btc", linear_model(seed=1))
    registry.promote("btc", "v1")
    metrics = Metrics()
    watcher = ModelWatcher(registry, "btc", metrics=metrics, clock=clock, check_every_s=5)
    watcher.load()
    world = MarketWorld(sim_tape(), bus, store, clock)
    if row_delay_us is not None:
        world.lateness_us, world.publish_rows = row_delay_us, True
        settings = settings or InferenceSettings(on_arrival=True)
    results: list[TickResult] = []
    extra = {"perf_ns": perf_ns} if perf_ns is not None else {}
    service = InferenceService(
        symbols=[SYMBOL], model=watcher, store=store_wrapper(store) if store_wrapper else store,  # type: ignore[arg-type]
        bus=bus, metrics=metrics, clock=clock, settings=settings, market=MarketTap(bus, [SYMBOL]),
        rows=RowArrivals(bus, [SYMBOL]) if row_delay_us is not None else None,
        archive=PredictionArchive(lake, clock, flush_every_s=30), sleep=world.sleep, on_result=results.append,
        **extra,  # type: ignore[arg-type]
    )
    return Rig(clock, bus, store, world, registry, metrics, service, lake, results)

"""``btcpipe run``: the whole pipeline on one machine, stage after stage, each timed and named.

Stages: ``exchange`` (serve the simulated or recorded market on the wall clock) → ``backfill`` (REST raw
trades of the history into bronze) → ``check`` (the lake check must pass) → ``features`` (silver/gold) →
``train`` (MLP, registered) → ``promote`` (production alias) → ``live`` (ingestor → processor → inference for
the duration) → ``report`` (HTML, plots, JSON). A failing stage stops the run with a ``StageError`` that
names it; the stages already done stay in the summary, which is written either way.

Composition only. The concrete adapters (the local exchange, the REST client, the lake, the bus and the
store, servers when asked) come from a ``RunWiring`` the CLI builds; what happens on screen from a
``RunObserver`` (``btcpipe.run.view``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from btcpipe.domain.errors import BtcpipeError, StageError
from btcpipe.domain.time import US_PER_SEC, Clock, iso
from btcpipe.lake.lake import Lake
from btcpipe.model.progress import TrainingReporter
from btcpipe.model.train import TrainConfig
from btcpipe.run.market import RunMarket
from btcpipe.run.offline import (
    STAGE_BACKFILL,
    STAGE_CHECK,
    STAGE_FEATURES,
    STAGE_PROMOTE,
    STAGE_TRAIN,
    run_backfill,
    run_check,
    run_features,
    run_promote,
    run_train,
)
from btcpipe.services.backfill import BackfillProgress, RestSource

log = logging.getLogger(__name__)

STAGE_EXCHANGE = "exchange"
STAGE_LIVE = "live"
STAGE_REPORT = "report"
STAGES = (STAGE_EXCHANGE, STAGE_BACKFILL, STAGE_CHECK, STAGE_FEATURES, STAGE_TRAIN, STAGE_PROMOTE, STAGE_LIVE,
          STAGE_REPORT)


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What a run does (the CLI fills it from options and config)."""

    out_dir: Path  # the run's directory: report, summary, logs (and the lake by default)
    history_s: int = 7200
    duration_s: int = 120
    seed: int = 0
    model_name: str = "btcusdt-10s"
    epochs: int = 30
    patience: int = 5
    live: bool = True  # False: stop after promote (the offline part only)

    def train_config(self) -> TrainConfig:
        return TrainConfig(seed=self.seed, max_epochs=self.epochs, patience=self.patience)


@dataclass(slots=True)
class StageRecord:
    """One stage of a run: when it started, how long it took, whether it succeeded, its summary or error."""

    name: str
    started_us: int
    seconds: float = 0.0
    ok: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "started": iso(self.started_us), "seconds": round(self.seconds, 3),
                "ok": self.ok, "summary": self.summary, "error": self.error}


@dataclass(frozen=True, slots=True)
class ExchangeEndpoints:
    """Where the run's exchange answers: REST base URL and, when streams are served, their URLs."""

    rest_url: str
    stream_url: str | None = None  # JSON WebSocket streams
    sbe_url: str | None = None  # SBE WebSocket streams (need an API key)
    api_key: str | None = None


class LiveStage(Protocol):
    """The live part: start ingestor → processor → inference, predict for ``duration_s``; feeds the report."""

    def __call__(self, market: RunMarket, endpoints: ExchangeEndpoints, duration_s: int) -> LiveResult: ...


@dataclass(slots=True)
class LiveResult:
    """What the live stage saw, for the summary and the report's plots."""

    summary: dict[str, Any]
    predictions: list[dict[str, Any]] = field(default_factory=list)  # ts_sec, yhat, realized, latency_ms, ...
    hops_ms: dict[str, list[float]] = field(default_factory=dict)  # hop name → latencies (ms)


class RunWiring(Protocol):
    """The concrete adapters of one run (built by the CLI)."""

    clock: Clock
    lake: Lake

    def market(self, now_us: int) -> RunMarket: ...

    def exchange(self, market: RunMarket) -> AbstractContextManager[ExchangeEndpoints]: ...

    def rest_client(self, endpoints: ExchangeEndpoints) -> AbstractContextManager[RestSource]: ...

    def live_stage(self) -> LiveStage | None: ...

    def describe(self) -> dict[str, Any]: ...


class RunObserver(Protocol):
    """What the terminal shows: stage starts and ends, backfill and training progress."""

    def stage_started(self, name: str, detail: str) -> None: ...

    def stage_finished(self, record: StageRecord) -> None: ...

    def backfill_progress(self, progress: BackfillProgress) -> None: ...

    def training_reporter(self) -> TrainingReporter: ...


@dataclass(slots=True)
class RunResult:
    """The whole run: its plan, the stages done, the live result and where the report is."""

    plan: RunPlan
    stages: list[StageRecord]
    started_us: int
    finished_us: int = 0
    market: dict[str, Any] = field(default_factory=dict)
    wiring: dict[str, Any] = field(default_factory=dict)
    live: LiveResult | None = None
    failed_stage: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.failed_stage is None

    def stage(self, name: str) -> StageRecord | None:
        return next((s for s in self.stages if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "failed_stage": self.failed_stage,
            "error": self.error,
            "started": iso(self.started_us),
            "finished": iso(self.finished_us) if self.finished_us else None,
            "seconds": round((self.finished_us - self.started_us) / US_PER_SEC, 3) if self.finished_us else None,
            "plan": {"history_s": self.plan.history_s, "duration_s": self.plan.duration_s, "seed": self.plan.seed,
                     "model_name": self.plan.model_name, "epochs": self.plan.epochs, "live": self.plan.live,
                     "out_dir": str(self.plan.out_dir)},
            "wiring": self.wiring,
            "market": self.market,
            "stages": [s.to_dict() for s in self.stages],
            "live": None if self.live is None else {"summary": self.live.summary},
        }


class _Stages:
    """Times each stage, records its summary, and turns any btcpipe error into a ``StageError`` naming it."""

    def __init__(self, result: RunResult, observer: RunObserver, clock: Clock) -> None:
        self.result = result
        self.observer = observer
        self.clock = clock

    @contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[StageRecord]:
        record = StageRecord(name, self.clock.now_us())
        self.result.stages.append(record)
        self.observer.stage_started(name, detail)
        started = time.monotonic()
        try:
            yield record
            record.ok = True
        except StageError as exc:
            record.error = str(exc)
            raise
        except BtcpipeError as exc:
            record.error = str(exc)
            raise StageError(name, str(exc)) from exc
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the summary still says how far the run got
            record.error = "interrupted (SIGINT/SIGTERM)"
            raise StageError(name, record.error) from exc
        except Exception as exc:  # a bug: still name the stage, keep the traceback in the log
            log.exception("unexpected error", extra={"stage": name})
            record.error = f"{type(exc).__name__}: {exc}"
            raise StageError(name, record.error) from exc
        finally:
            record.seconds = time.monotonic() - started
            self.observer.stage_finished(record)


def run_pipeline(
    plan: RunPlan,
    wiring: RunWiring,
    observer: RunObserver,
    *,
    write_report: Callable[[RunResult], dict[str, str]] | None = None,
) -> RunResult:
    """Run every stage in order. Never raises a btcpipe error: a failure is in ``result.failed_stage``."""
    clock = wiring.clock
    result = RunResult(plan, [], clock.now_us(), wiring=wiring.describe())
    stages = _Stages(result, observer, clock)
    try:
        _Runner(plan, wiring, observer, stages, result).run()
    except StageError as exc:
        result.failed_stage, result.error = exc.stage, str(exc)
        log.error("run failed", extra={"stage": exc.stage, "error": str(exc)})
    result.finished_us = clock.now_us()
    if write_report is not None:
        try:
            with stages.stage(STAGE_REPORT, str(plan.out_dir)) as record:
                record.summary.update(write_report(result))
        except StageError as exc:
            if result.failed_stage is None:
                result.failed_stage, result.error = exc.stage, str(exc)
    return result


@dataclass(slots=True)
class _Runner:
    plan: RunPlan
    wiring: RunWiring
    observer: RunObserver
    stages: _Stages
    result: RunResult

    def run(self) -> None:
        with ExitStack() as running:
            with self.stages.stage(STAGE_EXCHANGE, "market and local exchange") as record:
                market = self.wiring.market(self.wiring.clock.now_us())
                self.result.market = _describe_market(market)
                endpoints = running.enter_context(self.wiring.exchange(market))
                record.summary.update({"rest_url": endpoints.rest_url, "stream_url": endpoints.stream_url,
                                       "sbe_url": endpoints.sbe_url,
                                       "trades_on_tape": len(market.tape.trades) if market.tape else None})
            self.offline(market, endpoints)
            if self.plan.live:
                self.live(market, endpoints)

    def offline(self, market: RunMarket, endpoints: ExchangeEndpoints) -> None:
        plan, lake, stage = self.plan, self.wiring.lake, self.stages.stage
        span = f"{iso(market.history_start_us)} → {iso(market.live_start_us)}"
        with stage(STAGE_BACKFILL, f"raw trades over REST, {span}") as record:
            with self.wiring.rest_client(endpoints) as client:
                backfilled = run_backfill(client, lake, market, progress=self.observer.backfill_progress)
            record.summary.update({k: v for k, v in backfilled.to_dict().items() if k not in ("symbol", "kind")})
        with stage(STAGE_CHECK, f"lake check of bronze trades in {lake.uri()}") as record:
            report = run_check(lake, market)
            record.summary.update({"ok": report.ok, "days": [
                {k: v for k, v in d.to_dict().items() if k in _CHECK_FIELDS} for d in report.days]})
        with stage(STAGE_FEATURES, "silver features_1s and gold features_labeled") as record:
            features = run_features(lake, market)
            record.summary.update({"schema_hash": features.schema_hash, "params": features.params.to_json(),
                                   "days": features.days})
        with stage(STAGE_TRAIN, f"MLP, at most {plan.epochs} epochs, seed {plan.seed}") as record:
            trained = run_train(lake, market, name=plan.model_name, config=plan.train_config(),
                                reporter=self.observer.training_reporter())
            record.summary.update({"name": trained.name, "version": trained.version, "uri": trained.uri,
                                   "rows": trained.rows, "best_epoch": trained.best_epoch,
                                   "metrics": trained.metrics, "oracle": trained.oracle,
                                   "train_seconds": trained.seconds, "history": trained.history,
                                   "card": trained.card})
        with stage(STAGE_PROMOTE, f"{trained.name} {trained.version} → production") as record:
            record.summary["production"] = run_promote(lake, trained)

    def live(self, market: RunMarket, endpoints: ExchangeEndpoints) -> None:
        duration = self.plan.duration_s
        with self.stages.stage(STAGE_LIVE, f"ingestor → processor → inference for {duration} s") as record:
            live = self.wiring.live_stage()
            if live is None:
                raise StageError(STAGE_LIVE, "this build has no live stage wired")
            self.result.live = live(market, endpoints, duration)
            record.summary.update(self.result.live.summary)


_CHECK_FIELDS = ("day", "rows", "first_id", "last_id", "missing_ids", "duplicates", "out_of_order", "coverage", "ok")


def _describe_market(market: RunMarket) -> dict[str, Any]:
    out: dict[str, Any] = {
        "source": market.source, "symbol": market.symbol,
        "history_start": iso(market.history_start_us), "live_start": iso(market.live_start_us),
    }
    if market.tape is not None:
        out.update(trades=len(market.tape.trades), tape_start=iso(market.tape.start_us),
                   tape_end=iso(market.tape.end_us))
    if market.sim_seed is not None:
        out["sim_seed"] = market.sim_seed
    if market.sim_preset is not None:
        out["sim_preset"] = market.sim_preset
    if market.shift_us:
        out["shift_s"] = market.shift_us / US_PER_SEC
    return out

"""The offline stages of ``btcpipe run``: REST backfill → lake check → features → train → register/promote.

Composition only: each stage calls the service or package that owns the work (``services.backfill``,
``lake.check``, ``features.pipeline``, ``model.pipeline``, ``model.registry``) and returns a small summary
for the run report. A stage that cannot do its job raises ``StageError`` naming itself; the cause is chained.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from btcpipe.domain.errors import BtcpipeError, StageError
from btcpipe.domain.time import day_of, iso
from btcpipe.features.spec import FeatureParams, schema_hash
from btcpipe.lake.check import CheckReport, check_lake
from btcpipe.lake.lake import Lake
from btcpipe.model.progress import TrainingReporter
from btcpipe.model.registry import ModelRegistry
from btcpipe.model.train import TrainConfig
from btcpipe.run.market import RunMarket

if TYPE_CHECKING:
    from btcpipe.model.training_run import TrainingRun
from btcpipe.services.backfill import BackfillResult, ProgressSink, RestSource, backfill

log = logging.getLogger(__name__)

STAGE_BACKFILL = "backfill"
STAGE_CHECK = "check"
STAGE_FEATURES = "features"
STAGE_TRAIN = "train"
STAGE_PROMOTE = "promote"

# A run needs this many complete gold rows at least: 70/15/15 split with a purge gap on each side.
MIN_TRAINING_ROWS = 300


def run_backfill(
    client: RestSource, lake: Lake, market: RunMarket, *, progress: ProgressSink | None = None
) -> BackfillResult:
    """Raw trades of ``[history_start, live_start)`` over REST into bronze (resumable, paced by weight)."""
    symbol = market.symbol
    try:
        result = backfill(
            client, lake, symbol=symbol, kind="trades", source="rest",
            start_us=market.history_start_us, end_us=market.live_start_us, progress=progress,
        )
    except BtcpipeError as exc:
        raise StageError(STAGE_BACKFILL, str(exc)) from exc
    if result.rows_added + result.rows_duplicate == 0 and result.first_id is None:
        raise StageError(
            STAGE_BACKFILL,
            f"the exchange returned no {symbol} trades between {iso(market.history_start_us)} and "
            f"{iso(market.live_start_us)}",
        )
    return result


def run_check(lake: Lake, market: RunMarket) -> CheckReport:
    """The backfilled span must be complete: no id gap, no duplicate, in time order, files = manifests."""
    symbol = market.symbol
    try:
        report = check_lake(lake, "trades", symbol, market.history_start_us, market.live_start_us)
    except BtcpipeError as exc:
        raise StageError(STAGE_CHECK, str(exc)) from exc
    if not report.ok:
        bad = [d.to_dict() for d in report.days if not d.ok]
        problems = "; ".join(
            f"{d['day']}: {d['unknown_missing_ids']} missing ids, {d['duplicates']} duplicates, "
            f"{d['out_of_order']} out of order, {len(d['integrity_errors'])} integrity errors"
            for d in bad
        ) or "no data"
        raise StageError(STAGE_CHECK, f"the lake check found problems in bronze trades: {problems}")
    return report


@dataclass(frozen=True, slots=True)
class FeatureSummary:
    """What the features stage built: fitted parameters, schema hash and the days."""

    params: FeatureParams
    schema_hash: str
    days: list[dict[str, Any]]

    @property
    def gold_rows(self) -> int:
        return sum(int(d["gold_rows"]) for d in self.days)


def run_features(lake: Lake, market: RunMarket) -> FeatureSummary:
    """silver features_1s and gold features_labeled for every day the history touches."""
    from btcpipe.features.day_build import build_span

    symbol = market.symbol
    first_day, last_day = day_of(market.history_start_us), day_of(market.live_start_us - 1)
    try:
        params, days = build_span(lake, symbol, first_day, last_day)
    except BtcpipeError as exc:
        raise StageError(STAGE_FEATURES, str(exc)) from exc
    rows = [
        {"day": d.day.isoformat(), "trades": d.trades, "silver_rows": d.silver_rows, "gold_rows": d.gold_rows,
         "label_mid": d.label_mid, "warmed_up": d.warmed_up}
        for d in days
    ]
    return FeatureSummary(params, schema_hash(params), rows)


@dataclass(frozen=True, slots=True)
class TrainedVersion:
    """The model version the train stage registered, with its evaluation."""

    name: str
    version: str
    uri: str
    rows: dict[str, int]
    best_epoch: int
    metrics: dict[str, Any]
    oracle: dict[str, float] | None = None
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    card: dict[str, Any] = field(default_factory=dict)  # what the model card shows: data span, label mid, ...


def run_train(
    lake: Lake,
    market: RunMarket,
    *,
    name: str,
    config: TrainConfig,
    reporter: TrainingReporter | None = None,
) -> TrainedVersion:
    """Train on the gold rows of the history, register the model as a new version (not yet served)."""
    from btcpipe.model.dataset import drop_incomplete
    from btcpipe.model.gold import load_gold
    from btcpipe.model.training_run import train_from_rows

    symbol = market.symbol
    try:
        gold = load_gold(lake, symbol, market.history_start_us, market.live_start_us)
        complete = len(drop_incomplete(gold.rows)[0])
        if complete < MIN_TRAINING_ROWS:
            raise StageError(
                STAGE_TRAIN,
                f"only {complete} gold rows between {iso(market.history_start_us)} and {iso(market.live_start_us)}; "
                f"training needs at least {MIN_TRAINING_ROWS} (about {MIN_TRAINING_ROWS // 60 + 2} minutes of "
                "history): raise --history",
            )
        run = train_from_rows(gold.rows, gold.params, symbol=symbol, config=config, reporter=reporter)
        registry = ModelRegistry(lake.store)
        version = registry.register(name, run.artifacts)
    except StageError:
        raise
    except BtcpipeError as exc:
        raise StageError(STAGE_TRAIN, str(exc)) from exc
    manifest = run.artifacts.manifest
    oracle = _oracle(market, run, gold.rows.label_mid)
    return TrainedVersion(
        name=name,
        version=version,
        uri=lake.store.uri(f"models/{name}/{version}"),
        rows={"dropped_incomplete": run.dropped_rows, "train": len(run.split.train), "val": len(run.split.val),
              "test": len(run.split.test)},
        best_epoch=run.trained.best_epoch,
        metrics=dict(manifest.get("metrics", {})),
        oracle=oracle,
        seconds=round(run.trained.seconds, 3),
        history=[{"epoch": h.epoch, "train_loss": h.train_loss, "val_loss": h.val_loss} for h in run.trained.history],
        card={"label_mid": manifest.get("label", {}).get("mid"),
              "data_first": iso(int(manifest["data"]["first_ts"])), "data_last": iso(int(manifest["data"]["last_ts"])),
              "features": len(manifest.get("feature_names", [])), "uncertainty": manifest.get("uncertainty")},
    )


def _oracle(market: RunMarket, run: TrainingRun, label_mid: str) -> dict[str, Any] | None:
    """For a simulated market: the best possible predictor's score on the test span, on the model's labels,
    with bootstrap intervals (the oracle's R² and hit rate, the model's share of its R²)."""
    if (market.tape is None or market.sim_seed is None or market.sim_start_us is None
            or market.sim_duration_s is None):
        return None
    from btcpipe.features.tables import LABEL_MID_BEST_BID_ASK
    from btcpipe.market.presets import preset_config
    from btcpipe.market.simulator import oracle_score
    from btcpipe.model.evaluate import beside_oracle, oracle_intervals
    from btcpipe.model.training_run import oracle_on_rows

    config = preset_config(market.sim_preset or "classroom", seed=market.sim_seed, start_us=market.sim_start_us,
                           duration_s=market.sim_duration_s)
    test = run.split.test
    model_r2 = float(run.evaluation.model.r2)
    first, last = test.span_us
    try:
        score = oracle_score(
            market.tape, config, start_us=first, end_us=last + 1,
            mid_source="book" if label_mid == LABEL_MID_BEST_BID_ASK else "trades",
        )
    except BtcpipeError as exc:
        log.warning("oracle not computed", extra={"error": str(exc)})
        return None
    out = beside_oracle(model_r2, float(score.r2), float(score.hit_rate), int(score.n))
    out["preset"] = market.sim_preset or "classroom"
    model_yhat = run.trained.predict(test.features).astype(np.float64)
    out.update(oracle_intervals(test, model_yhat, oracle_on_rows(market.tape, config, test)))
    return out


def run_promote(lake: Lake, trained: TrainedVersion) -> str:
    """Point the production alias at the new version (the registry verifies it first)."""
    registry = ModelRegistry(lake.store)
    try:
        registry.promote(trained.name, trained.version)
        current = registry.production_version(trained.name)
    except BtcpipeError as exc:
        raise StageError(STAGE_PROMOTE, str(exc)) from exc
    if current != trained.version:
        raise StageError(STAGE_PROMOTE, f"production is {current}, not the new {trained.version}")
    return current

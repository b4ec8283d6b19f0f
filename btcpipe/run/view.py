"""What ``btcpipe run`` shows while it works: stage lines, backfill and training progress, and the live view.

Two views with one interface (``RunObserver`` of ``pipeline_run`` plus ``live_update``):

- ``RichRunView`` on a terminal: a line per finished stage, a progress bar for the backfill and training,
  and during the live stage a ``rich.live.Live`` panel — last prediction, realized return once known,
  rolling hit rate, per-hop latencies, feature age, counters — redrawn on every update;
- ``LogRunView`` elsewhere (pipes, CI, files): the same facts as structured log lines, the live ones at most
  every ``every_s`` seconds, so a log stays readable.

The live stage builds a ``LiveSnapshot`` (pure data) and hands it to ``live_update``; the views only draw.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import IO, Any

from btcpipe.domain.time import iso
from btcpipe.model.progress import LogReporter, RichReporter, TrainingReporter
from btcpipe.run.orchestrator import StageRecord
from btcpipe.services.backfill import BackfillProgress

log = logging.getLogger("btcpipe.run")


@dataclass(frozen=True, slots=True)
class HopLatency:
    """Latency percentiles of one hop of the live path, in ms."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    n: int


@dataclass(frozen=True, slots=True)
class LiveSnapshot:
    """The live stage's state at one instant (what the view draws)."""

    elapsed_s: float
    remaining_s: float
    model_version: str | None = None
    last_ts_sec: int | None = None  # second of the last prediction
    last_yhat: float | None = None  # predicted 10-s log return
    last_latency_ms: float | None = None  # the tick's own latency (read features + infer + publish)
    last_source: str | None = None  # predicted (store row) | fallback (own row)
    realized_ts_sec: int | None = None  # the newest prediction whose realized return is known
    realized_yhat: float | None = None
    realized: float | None = None
    hit_rate: float | None = None  # rolling directional hit rate over the realized predictions
    n_realized: int = 0
    feature_age_ms: float | None = None
    hops: dict[str, HopLatency] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)


def _bp(value: float | None) -> str:
    """A log return in basis points (what a person reads at a glance)."""
    return "—" if value is None or math.isnan(value) else f"{value * 1e4:+.2f} bp"


def _ms(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.1f} ms"


def _pct(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, float) and not math.isnan(value) else "—"


def stage_brief(record: StageRecord) -> str:
    """The one thing worth reading about a finished stage (from its summary)."""
    s = record.summary
    if not record.ok:
        return ""
    if record.name == "backfill":
        share = s.get("weight_share")
        weight = f", at most {share:.0%} of the weight limit" if isinstance(share, float) else ""
        return f"{s.get('rows_added', 0):,} trades in {s.get('pages', 0)} pages{weight}"
    if record.name == "check":
        days = s.get("days", [])
        return f"{sum(int(d.get('rows') or 0) for d in days):,} trades, no gap, no duplicate" if s.get("ok") else ""
    if record.name == "features":
        return f"schema {str(s.get('schema_hash', ''))[:12]}…"
    if record.name == "train":
        model = (s.get("metrics") or {}).get("model") or {}
        text = f"{s.get('version')}: test R² {_num(model.get('r2'))}, hit rate {_pct(model.get('hit_rate'))}"
        oracle = s.get("oracle")
        if oracle:
            text += f" (the oracle's R² {_num(oracle.get('r2'))}, hit rate {_pct(oracle.get('hit_rate'))})"
        return text
    if record.name == "promote":
        return f"production = {s.get('production')}"
    if record.name == "live":
        return f"{s.get('predictions', 0)} predictions, hit rate {_pct(s.get('hit_rate'))} of {s.get('realized', 0)}"
    return ""


def _num(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "—"


def _stage_text(record: StageRecord) -> str:
    mark = "ok" if record.ok else "FAILED"
    extra = f": {record.error}" if record.error else ""
    brief = stage_brief(record)
    return f"stage {record.name} {mark} in {record.seconds:.1f} s{extra}" + (f" — {brief}" if brief else "")


class LogRunView:
    """Structured log lines: one per stage event, backfill progress and live state at most every ``every_s``."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._last_progress = -math.inf
        self._last_live = -math.inf

    def stage_started(self, name: str, detail: str) -> None:
        log.info(f"stage {name}: {detail}", extra={"stage": name, "event": "started"})

    def stage_finished(self, record: StageRecord) -> None:
        level = logging.INFO if record.ok else logging.ERROR
        log.log(level, _stage_text(record), extra={"stage": record.name, "event": "finished", "ok": record.ok,
                                                   "seconds": round(record.seconds, 3)})

    def backfill_progress(self, progress: BackfillProgress) -> None:
        now = time.monotonic()
        if not progress.done and now - self._last_progress < self.every_s:
            return
        self._last_progress = now
        log.info(f"backfill {progress.fraction:.0%}: {progress.rows:,} trades, {progress.pages} pages",
                 extra={"stage": "backfill", "rows": progress.rows, "pages": progress.pages,
                        "done_pct": round(100 * progress.fraction, 1)})

    def training_reporter(self) -> TrainingReporter:
        return LogReporter()

    def live_started(self, duration_s: float) -> None:
        log.info(f"live for {duration_s:.0f} s", extra={"stage": "live", "event": "view"})

    def live_update(self, snap: LiveSnapshot, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_live < self.every_s:
            return
        self._last_live = now
        hops = ", ".join(f"{k} p50 {v.p50_ms:.1f}/p99 {v.p99_ms:.1f} ms" for k, v in snap.hops.items())
        text = (
            f"live {snap.elapsed_s:.0f}s: last prediction "
            f"{iso(snap.last_ts_sec) if snap.last_ts_sec else '—'} {_bp(snap.last_yhat)} "
            f"({snap.last_source or '—'}, {_ms(snap.last_latency_ms)}); realized {_bp(snap.realized)} "
            f"vs {_bp(snap.realized_yhat)}; hit rate {_pct(snap.hit_rate)} of {snap.n_realized}; "
            f"feature age {_ms(snap.feature_age_ms)}; {hops}"
        )
        log.info(text, extra={"stage": "live", "event": "view", "counters": snap.counters})

    def live_finished(self, snap: LiveSnapshot) -> None:
        self.live_update(snap, force=True)


class RichRunView:
    """The terminal view: rich lines, bars and a live panel on stderr (stdout keeps the command's result)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        from rich.console import Console

        self.console = Console(stderr=stream is None, file=stream)
        self._progress: Any = None
        self._task: Any = None
        self._live: Any = None

    # --- stages ----------------------------------------------------------------------------------------
    def stage_started(self, name: str, detail: str) -> None:
        self.console.print(f"[bold cyan]▶ {name}[/] {detail}")
        if name == "backfill":
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("  trades"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                TextColumn("{task.fields[rows]:>10,} rows"), TimeElapsedColumn(), console=self.console,
                transient=True,
            )
            self._task = self._progress.add_task("backfill", total=1000, rows=0)
            self._progress.start()

    def stage_finished(self, record: StageRecord) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        style = "green" if record.ok else "bold red"
        brief = stage_brief(record)
        self.console.print(f"[{style}]{'✓' if record.ok else '✗'} {record.name}[/] {record.seconds:.1f} s"
                           + (f" — {record.error}" if record.error else "") + (f" — {brief}" if brief else ""))

    def backfill_progress(self, progress: BackfillProgress) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=int(1000 * progress.fraction), rows=progress.rows)

    def training_reporter(self) -> TrainingReporter:
        return RichReporter()

    # --- live ------------------------------------------------------------------------------------------
    def live_started(self, duration_s: float) -> None:
        from rich.live import Live

        self._live = Live(self._render(LiveSnapshot(0.0, duration_s)), console=self.console, refresh_per_second=4,
                          transient=False)
        self._live.start()

    def live_update(self, snap: LiveSnapshot, *, force: bool = False) -> None:
        if self._live is not None:
            self._live.update(self._render(snap))

    def live_finished(self, snap: LiveSnapshot) -> None:
        if self._live is not None:
            self._live.update(self._render(snap))
            self._live.stop()
            self._live = None

    @staticmethod
    def _render(snap: LiveSnapshot) -> Any:
        from rich.table import Table

        table = Table(title=f"btcpipe live — {snap.elapsed_s:.0f} s, {snap.remaining_s:.0f} s to go",
                      show_header=False, expand=False)
        table.add_column("what", style="bold")
        table.add_column("value")
        last = iso(snap.last_ts_sec)[11:19] if snap.last_ts_sec else "—"
        table.add_row("model", snap.model_version or "—")
        table.add_row("last prediction", f"{last}  {_bp(snap.last_yhat)}  ({snap.last_source or '—'}, "
                                         f"tick {_ms(snap.last_latency_ms)})")
        realized_at = iso(snap.realized_ts_sec)[11:19] if snap.realized_ts_sec else "—"
        table.add_row("realized (10 s)", f"{realized_at}  {_bp(snap.realized)}  predicted {_bp(snap.realized_yhat)}")
        table.add_row("hit rate", f"{_pct(snap.hit_rate)} of {snap.n_realized}")
        table.add_row("feature age", _ms(snap.feature_age_ms))
        for hop, lat in snap.hops.items():
            table.add_row(f"hop {hop}", f"p50 {lat.p50_ms:.2f}  p90 {lat.p90_ms:.2f}  p99 {lat.p99_ms:.2f} ms "
                                        f"(n={lat.n})")
        table.add_row("counters", "  ".join(f"{k} {v:,}" for k, v in snap.counters.items()) or "—")
        return table


RunView = LogRunView | RichRunView


def make_view(mode: str, *, is_tty: bool) -> RunView:
    """``auto`` picks the rich view on a terminal and log lines otherwise."""
    if mode == "rich" or (mode == "auto" and is_tty):
        return RichRunView()
    return LogRunView()

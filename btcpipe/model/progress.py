"""Training progress: a rich bar with train/val loss on a terminal, structured log lines elsewhere."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("btcpipe.model.train")


@dataclass(frozen=True, slots=True)
class EpochStats:
    """One training epoch's losses."""

    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    best_epoch: int
    seconds: float


class TrainingReporter(Protocol):
    """Where training progress goes: a terminal bar, log lines or nowhere."""

    def start(self, max_epochs: int) -> None: ...
    def epoch(self, stats: EpochStats) -> None: ...
    def finish(self, stopped_early: bool) -> None: ...


class LogReporter:
    """Training progress as structured log lines."""

    def start(self, max_epochs: int) -> None:
        log.info("training started", extra={"max_epochs": max_epochs})

    def epoch(self, stats: EpochStats) -> None:
        log.info(
            f"epoch {stats.epoch}: train loss {stats.train_loss:.5f}, val loss {stats.val_loss:.5f}",
            extra={"epoch": stats.epoch, "train_loss": stats.train_loss, "val_loss": stats.val_loss,
                   "best_epoch": stats.best_epoch, "seconds": round(stats.seconds, 3)},
        )

    def finish(self, stopped_early: bool) -> None:
        log.info("training finished", extra={"stopped_early": stopped_early})


class RichReporter:
    """Training progress as a rich progress bar on a terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        # stderr: stdout carries the command's result (JSON)
        self._progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[losses]}"),
            TimeElapsedColumn(), console=Console(stderr=True), transient=False,
        )
        self._task: Any = None

    def start(self, max_epochs: int) -> None:
        self._progress.start()
        self._task = self._progress.add_task("train", total=max_epochs, losses="")

    def epoch(self, stats: EpochStats) -> None:
        losses = f"train {stats.train_loss:.5f}  val {stats.val_loss:.5f}  best@{stats.best_epoch}"
        self._progress.update(self._task, completed=stats.epoch, losses=losses)

    def finish(self, stopped_early: bool) -> None:
        if stopped_early and self._task is not None:
            self._progress.update(self._task, total=self._progress.tasks[0].completed)
        self._progress.stop()


class SilentReporter:
    """No training progress (tests, benchmarks)."""

    def start(self, max_epochs: int) -> None: ...
    def epoch(self, stats: EpochStats) -> None: ...
    def finish(self, stopped_early: bool) -> None: ...


def default_reporter() -> TrainingReporter:
    return RichReporter() if sys.stderr.isatty() else LogReporter()

"""``run_pipeline``: every failure names its stage, the run stops there, and the summary is still written."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from btcpipe.domain.errors import DataError
from btcpipe.infra.clocks import ManualClock
from btcpipe.lake.lake import Lake
from btcpipe.run.market import RunMarket
from btcpipe.run.orchestrator import ExchangeEndpoints, RunPlan, run_pipeline
from btcpipe.run.report import write_report
from btcpipe.run.view import LogRunView


class _Wiring:
    """A wiring whose market or exchange raises what the test asks for."""

    def __init__(self, lake: Lake, *, market_error: BaseException | None = None) -> None:
        self.clock = ManualClock(1_795_000_000_000_000)
        self.lake = lake
        self.market_error = market_error
        self.exchange_closed = False

    def market(self, now_us: int) -> RunMarket:
        if self.market_error is not None:
            raise self.market_error
        return RunMarket("BTCUSDT", None, now_us - 60_000_000, now_us, "test")

    @contextlib.contextmanager
    def exchange(self, market: RunMarket) -> Iterator[ExchangeEndpoints]:
        try:
            yield ExchangeEndpoints("http://127.0.0.1:9")
        finally:
            self.exchange_closed = True

    def rest_client(self, endpoints: ExchangeEndpoints) -> Any:
        raise DataError("no REST in this test")

    def live_stage(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"exchange": "test"}


def _run(tmp_path: Path, wiring: _Wiring) -> Any:
    plan = RunPlan(out_dir=tmp_path / "out", history_s=60, duration_s=5)
    return run_pipeline(plan, wiring, LogRunView(), write_report=lambda r: write_report(r, plan.out_dir))


@pytest.mark.parametrize(
    ("error", "message"),
    [(RuntimeError("boom"), "RuntimeError: boom"), (KeyboardInterrupt(), "interrupted (SIGINT/SIGTERM)"),
     (DataError("bad tape"), "bad tape")],
)
def test_a_failing_market_fails_the_exchange_stage_by_name_and_still_writes_the_summary(
    tmp_path: Path, error: BaseException, message: str
) -> None:
    result = _run(tmp_path, _Wiring(Lake.open(str(tmp_path / "lake")), market_error=error))
    assert result.failed_stage == "exchange"
    assert result.error == f"stage 'exchange' failed: {message}"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["ok"] is False
    assert summary["failed_stage"] == "exchange"
    assert [(s["name"], s["ok"], s["error"]) for s in summary["stages"]] == [("exchange", False, message)]
    assert result.stage("report").ok


def test_a_stage_error_after_the_exchange_started_still_stops_the_exchange(tmp_path: Path) -> None:
    wiring = _Wiring(Lake.open(str(tmp_path / "lake")))
    result = _run(tmp_path, wiring)
    assert result.failed_stage == "backfill"
    assert "no REST in this test" in result.error
    assert wiring.exchange_closed
    assert [s.name for s in result.stages] == ["exchange", "backfill", "report"]
    assert [s.ok for s in result.stages] == [True, False, True]

"""The run report reads like a report: headline first, intervals, ISO times, no JSON blobs, rebuildable."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support.run_report import T0, sample_result

from btcpipe.domain.errors import DataError
from btcpipe.run.report import rebuild_report, write_report


def _page(tmp_path: Path, **kwargs: bool) -> str:
    paths = write_report(sample_result(tmp_path, **kwargs), tmp_path)
    return Path(paths["html"]).read_text()


def test_headline_comes_first_with_model_oracle_live_interval_deadline_and_data_path(tmp_path: Path) -> None:
    page = _page(tmp_path)
    head = page[page.index("<div class='headline'>"): page.index("</div>")]
    assert page.index("<div class='headline'>") < page.index("<h2>")  # before every section
    assert "Run succeeded" in head
    assert re.search(r"R² -?\d+\.\d\d % \[-?\d+\.\d\d, -?\d+\.\d\d\]", head)  # the model's R² with its interval
    assert "ridge R²" in head
    assert "oracle" in head
    assert re.search(r"hit rate \d+\.\d % \[\d+\.\d, \d+\.\d\] \(50 % = chance\)", head)  # live, with interval
    assert "Second end → prediction" in head
    assert "100 ms deadline" in head
    assert "1 gaps, 0 resyncs, 2 late events, 0 skipped ticks" in head


def test_tables_show_iso_times_and_no_json_or_raw_epoch_microseconds(tmp_path: Path) -> None:
    page = _page(tmp_path)
    assert str(T0) not in page
    assert "2026-12-02T" in page
    assert '{"' not in page
    assert "{'" not in page
    for text in ("data span", "feature schema hash", "best bid/ask mid"):
        assert text in page


def test_a_failed_run_says_which_stage_failed_and_why(tmp_path: Path) -> None:
    page = _page(tmp_path, ok=False)
    assert "Run FAILED at stage “promote”" in page
    assert "registry refused: bad checksum" in page


def test_a_measured_second_end_to_prediction_hop_is_used_and_extra_hops_are_listed(tmp_path: Path) -> None:
    page = _page(tmp_path, extra_hop=True)
    assert "(measured, n = 120)" in page
    assert page.count("second end→prediction") >= 1


def test_without_the_direct_hop_the_headline_says_it_is_a_bound(tmp_path: Path) -> None:
    assert "sum of its two hops" in _page(tmp_path)


def test_rebuild_from_summary_gives_the_same_page_and_plots(tmp_path: Path) -> None:
    first = _page(tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    plots = [Path(p) for p in summary["report"]["plots"]]
    assert {p.name for p in plots} == {"model_vs_ruler.png", "predictions_vs_realized.png", "latency_hops.png",
                                       "training_loss.png"}
    for p in [*plots, tmp_path / "report.html"]:
        p.unlink()
    paths = rebuild_report(tmp_path)
    assert Path(paths["html"]).read_text() == first
    assert all(p.exists() for p in plots)


def test_rebuild_of_a_directory_without_summary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a btcpipe run directory"):
        rebuild_report(tmp_path)


def test_no_share_of_the_oracle_is_claimed_when_its_interval_reaches_zero(tmp_path: Path) -> None:
    result = sample_result(tmp_path)
    train = next(s for s in result.stages if s.name == "train")
    train.summary["oracle"]["oracle"]["r2"]["low"] = -0.01
    page = Path(write_report(result, tmp_path)["html"]).read_text()
    assert "its interval reaches zero" in page
    assert "the model reaches" not in page

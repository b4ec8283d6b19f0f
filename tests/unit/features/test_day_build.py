"""Bronze → silver/gold through a real local lake, day by day, and the ``btcpipe features`` command."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from support.features import SEC, assert_same_rows, bronze_book_table, bronze_trades_table, make_tape, same_tables

from btcpipe.cli.features import cli
from btcpipe.domain.errors import ConfigError, DataError
from btcpipe.domain.tape import MarketTape
from btcpipe.domain.time import day_start_us
from btcpipe.features import labels
from btcpipe.features.batch import build_features
from btcpipe.features.day_build import build_span
from btcpipe.features.inputs import BestBidAskArrays, TradeArrays
from btcpipe.features.spec import FeatureParams, schema_hash
from btcpipe.features.tables import (
    GOLD_DATASET,
    LABEL_MID_BEST_BID_ASK,
    LABEL_MID_TRADE,
    SILVER_DATASET,
    frame_from_table,
    params_from_table,
)
from btcpipe.lake.lake import Lake

D1 = dt.date(2024, 3, 1)
D2 = dt.date(2024, 3, 2)
MIDNIGHT = day_start_us(D2)


@pytest.fixture(scope="module")
def tape() -> MarketTape:
    # Two hours around midnight: the last hour of D1 and the first of D2.
    return make_tape(11, MIDNIGHT - 3600 * SEC, 2 * 3600, rate=6.0, silence_s=20)


def _lake(path: Path, tape: MarketTape, *, book: bool) -> Lake:
    lake = Lake.open(str(path))
    lake.append_bronze("trades", "BTCUSDT", bronze_trades_table(tape.trades), raw=b"synthetic", raw_format="csv",
                       source="test")
    if book:
        assert tape.best_bid_asks is not None
        lake.append_bronze("bookTicker", "BTCUSDT", bronze_book_table(tape.best_bid_asks), raw=b"synthetic",
                           raw_format="jsonl", source="test")
    return lake


def test_days_built_separately_equal_days_built_together(tmp_path: Path, tape: MarketTape) -> None:
    params = FeatureParams(0.002, with_spread=True)
    together = _lake(tmp_path / "a", tape, book=True)
    build_span(together, "BTCUSDT", D1, D2, params)  # two threads per day (the default) ...
    apart = _lake(tmp_path / "b", tape, book=True)
    build_span(apart, "BTCUSDT", D2, D2, params, workers=1)  # ... equal one: D2 alone, before D1 exists
    build_span(apart, "BTCUSDT", D1, D1, params, workers=1)
    for layer, dataset in (("silver", SILVER_DATASET), ("gold", GOLD_DATASET)):
        for day in (D1, D2):
            a = together.read_table(layer, dataset, "BTCUSDT", day, day)  # type: ignore[arg-type]
            b = apart.read_table(layer, dataset, "BTCUSDT", day, day)  # type: ignore[arg-type]
            assert a.num_rows > 0
            assert same_tables(a, b), (layer, day)
    # And D2's rows are the rows of one continuous build over both days.
    assert tape.best_bid_asks is not None
    trades, best_bid_ask = TradeArrays.from_tape(tape.trades), BestBidAskArrays.from_tape(tape.best_bid_asks)
    silver2 = frame_from_table(together.read_table("silver", SILVER_DATASET, "BTCUSDT", D2, D2))
    continuous = build_features(trades, params, start_us=day_start_us(D1), end_us=int(silver2.ts_sec[-1]) + SEC,
                                history_start_us=day_start_us(D1), best_bid_ask=best_bid_ask)
    k = int(np.searchsorted(continuous.ts_sec, MIDNIGHT))
    assert_same_rows(continuous.columns[:, k:], silver2.columns, params.names)
    assert np.isfinite(silver2.columns).all()  # warmed up from D1's tail: no NaN at midnight


def test_gold_labels_use_best_bid_ask_mid_and_drop_rows_past_the_data(tmp_path: Path, tape: MarketTape) -> None:
    lake = _lake(tmp_path, tape, book=True)
    params, days = build_span(lake, "BTCUSDT", D1, D2)
    assert params.with_spread
    assert [d.label_mid for d in days] == [LABEL_MID_BEST_BID_ASK, LABEL_MID_BEST_BID_ASK]
    gold = lake.read_table("gold", GOLD_DATASET, "BTCUSDT", D1, D2)
    assert gold.schema.metadata[b"btcpipe.label_mid"] == LABEL_MID_BEST_BID_ASK.encode()
    assert set(gold["label_mid"].to_pylist()) == {LABEL_MID_BEST_BID_ASK}
    assert gold.schema.metadata[b"btcpipe.schema_hash"] == schema_hash(params).encode()
    assert params_from_table(gold) == params
    ts = gold["ts_sec"].to_numpy()
    assert tape.best_bid_asks is not None
    bts, mid = labels.mid_from_best_bid_asks(tape.best_bid_asks)
    expected = labels.forward_log_return(ts, bts, mid)
    np.testing.assert_array_equal(gold["y"].to_numpy(), expected)
    # D1's last second is labeled from D2's head; D2 stops where the horizon passes the last quote.
    assert MIDNIGHT - SEC in set(ts.tolist())
    assert ts[-1] + labels.LABEL_HORIZON_US <= bts[-1] < ts[-1] + SEC + labels.LABEL_HORIZON_US
    silver = lake.read_table("silver", SILVER_DATASET, "BTCUSDT", D2, D2)
    assert silver.num_rows > gold.filter(pa.compute.greater_equal(gold["ts_sec"], MIDNIGHT)).num_rows


def test_gold_without_book_history_uses_last_trade_proxy(tmp_path: Path, tape: MarketTape) -> None:
    lake = _lake(tmp_path, tape, book=False)
    params, days = build_span(lake, "BTCUSDT", D1, D2)
    assert not params.with_spread
    assert {d.label_mid for d in days} == {LABEL_MID_TRADE}
    gold = lake.read_table("gold", GOLD_DATASET, "BTCUSDT", D1, D2)
    assert "spread" not in gold.column_names
    tts, price = labels.mid_from_trades(tape.trades)
    expected = labels.forward_log_return(gold["ts_sec"].to_numpy(), tts, price)
    np.testing.assert_array_equal(gold["y"].to_numpy(), expected)


def test_params_are_fitted_on_the_earliest_share_of_the_span(tmp_path: Path, tape: MarketTape) -> None:
    lake = _lake(tmp_path, tape, book=False)
    params, _ = build_span(lake, "BTCUSDT", D1, D2, train_fraction=0.5)
    # The first half of [D1, D2] ends at D2 00:00: only D1's trades count.
    qty = TradeArrays.from_tape(tape.trades).qty[tape.trades.ts_event < MIDNIGHT]
    assert params.trade_size_p95 == float(np.percentile(qty, 95))


def test_spread_without_book_history_missing_days_and_zero_workers_are_refused(
    tmp_path: Path, tape: MarketTape
) -> None:
    lake = _lake(tmp_path, tape, book=False)
    with pytest.raises(ConfigError, match="spread"):
        build_span(lake, "BTCUSDT", D1, D2, FeatureParams(0.001, with_spread=True))
    with pytest.raises(DataError, match="2024-03-03"):
        build_span(lake, "BTCUSDT", D1, dt.date(2024, 3, 3))
    with pytest.raises(ConfigError, match="workers"):
        build_span(lake, "BTCUSDT", D1, D2, workers=0)


def test_cli_build_writes_both_layers_and_reports_json(tmp_path: Path, tape: MarketTape) -> None:
    _lake(tmp_path / "lake", tape, book=True)
    out = CliRunner().invoke(
        cli, ["build", "--lake", str(tmp_path / "lake"), "--start", "2024-03-01", "--end", "2024-03-02", "--json",
              "--write-params", str(tmp_path / "schema_v1.json")],
    )
    assert out.exit_code == 0, out.output
    (summary,) = json.loads(out.stdout)["symbols"]
    assert summary["symbol"] == "BTCUSDT"
    assert [d["day"] for d in summary["days"]] == ["2024-03-01", "2024-03-02"]
    assert summary["days"][1]["warmed_up"]
    assert not summary["days"][0]["warmed_up"]
    doc = json.loads((tmp_path / "schema_v1.json").read_text())
    assert doc["hash"] == summary["schema_hash"]
    assert doc["names"][-1] == "spread"
    # The written schema document is accepted back as --params and gives the same tables.
    again = CliRunner().invoke(cli, ["build", "--lake", str(tmp_path / "lake"), "--start", "2024-03-02",
                                     "--end", "2024-03-02", "--params", str(tmp_path / "schema_v1.json"), "--json"])
    assert again.exit_code == 0, again.output


def test_cli_refuses_garbage_params_and_missing_data_clearly(tmp_path: Path, tape: MarketTape) -> None:
    _lake(tmp_path / "lake", tape, book=False)
    bad = tmp_path / "params.json"
    bad.write_text('{"trade_size_p95": "big"')
    out = CliRunner().invoke(cli, ["build", "--lake", str(tmp_path / "lake"), "--start", "2024-03-01",
                                   "--end", "2024-03-01", "--params", str(bad)])
    assert out.exit_code == 2
    assert "cannot read feature params" in out.output
    bad.write_text('{"trade_size_p95": "big"}')
    out = CliRunner().invoke(cli, ["build", "--lake", str(tmp_path / "lake"), "--start", "2024-03-01",
                                   "--end", "2024-03-01", "--params", str(bad)])
    assert out.exit_code == 2
    assert "trade_size_p95 must be a number" in out.output
    out = CliRunner().invoke(cli, ["build", "--lake", str(tmp_path / "lake"), "--start", "2024-05-01",
                                   "--end", "2024-05-01"])
    assert out.exit_code == 1
    assert "no bronze trades" in out.output

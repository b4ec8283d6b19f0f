"""Lake key parts are whole-string matches: a trailing newline is not a valid symbol, dataset or date folder."""

from __future__ import annotations

import datetime as dt

import pytest

from btcpipe.domain.errors import LakeError
from btcpipe.lake.keys import check_dataset, check_symbol, parse_date_dir


@pytest.mark.parametrize("symbol", ["BTCUSDT\n", "BTC/USDT", "btcusdt", "B"])
def test_a_symbol_must_be_the_whole_string(symbol: str) -> None:
    with pytest.raises(LakeError, match="invalid symbol"):
        check_symbol(symbol)


def test_a_dataset_name_with_a_trailing_newline_is_refused() -> None:
    check_dataset("gold", "features_1s")
    with pytest.raises(LakeError, match="invalid dataset"):
        check_dataset("gold", "features_1s\n")


def test_a_date_folder_with_a_trailing_newline_is_not_a_day() -> None:
    assert parse_date_dir("date=2024-01-02") == dt.date(2024, 1, 2)
    assert parse_date_dir("date=2024-01-02\n") is None

"""One span of trades in memory → its silver and gold tables: features, label, Arrow tables.

``features.day_build.build_day`` calls ``span_tables`` between reading bronze and writing the two
partitions, and ``bench/bench_features.py`` times the same call. Given an executor, the label's as-of
lookups (two binary searches over every trade) run on it while the calling thread computes the
features; numpy releases the GIL in both, so on two cores the label costs almost no wall time. The
tables are the same with or without an executor: the two computations share no state.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from btcpipe.domain.tape import BestBidAskTape
from btcpipe.domain.time import US_PER_SEC
from btcpipe.features.batch import FeatureFrame, build_features
from btcpipe.features.inputs import BestBidAskArrays, TradeArrays
from btcpipe.features.spec import FeatureParams
from btcpipe.features.tables import feature_table, gold_table, label_mid_from_arrays, label_rows
from btcpipe.features.threads import run_beside


@dataclass(frozen=True, slots=True)
class SpanTables:
    """One span's feature rows and their silver and gold Arrow tables."""

    frame: FeatureFrame  # the silver rows
    silver: pa.Table
    gold: pa.Table
    label_mid: str  # which mid the label used ("bbo_mid" or "last_trade")

    @property
    def gold_rows(self) -> int:
        return int(self.gold.num_rows)


def span_tables(
    trades: TradeArrays,
    params: FeatureParams,
    symbol: str,
    *,
    start_us: int,
    end_us: int,
    history_start_us: int,
    book: BestBidAskTape | None = None,
    use_book: bool = False,
    data_end_us: int | None = None,
    executor: Executor | None = None,
) -> SpanTables:
    """Silver rows for the whole seconds ``[start_us, end_us)`` and gold = those with a label.

    ``book``: best bid/ask history, used for ``spread`` when the params have it and for the label's mid
    when ``use_book``. ``data_end_us``: up to when the label's events are complete (see
    ``labels.forward_log_return``); ``None`` means the last event.
    """
    mid_kind, mid_ts, mid = label_mid_from_arrays(trades, book if use_book else None)
    n_rows = max(0, (end_us - start_us) // US_PER_SEC)
    ts_sec: npt.NDArray[np.int64] = start_us + US_PER_SEC * np.arange(n_rows, dtype=np.int64)
    labelled = run_beside(executor, label_rows, ts_sec, mid_ts, mid, data_end_us)
    frame = build_features(
        trades, params, start_us=start_us, end_us=end_us, history_start_us=history_start_us,
        best_bid_ask=BestBidAskArrays.from_tape(book) if book is not None else None, executor=executor,
    )
    y, n_keep = labelled()
    silver = feature_table(frame, params, symbol)
    gold = gold_table(frame.take(slice(0, n_keep)), y[:n_keep], mid_kind, params, symbol)
    return SpanTables(frame, silver, gold, mid_kind)

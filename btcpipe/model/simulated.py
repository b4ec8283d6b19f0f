"""Labeled rows straight from the market simulator (no lake): for model-quality checks beside the oracle.

The same path as gold: ``features.batch.build_features`` on the tape's trades, the label from
``features.labels`` on the best bid/ask mid, parameters fitted on the earliest 70 % of trades (the
training share of the split).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from btcpipe.domain.tape import MarketTape
from btcpipe.domain.time import US_PER_SEC
from btcpipe.features.batch import build_features, fit_params
from btcpipe.features.inputs import TradeArrays
from btcpipe.features.labels import forward_log_return
from btcpipe.features.spec import FeatureParams
from btcpipe.features.tables import label_mid_series
from btcpipe.market.config import SimConfig
from btcpipe.market.simulator import OracleScore, oracle_score, simulate
from btcpipe.model.dataset import LabeledRows


@dataclass(frozen=True)
class SimulatedRows:
    """Labeled rows from the simulator and what is needed to score its oracle beside a model."""

    rows: LabeledRows
    params: FeatureParams
    config: SimConfig
    tape: MarketTape  # kept for the oracle

    def oracle_on(self, part: LabeledRows) -> OracleScore:
        first, last = part.span_us
        return oracle_score(self.tape, self.config, start_us=first, end_us=last + 1)


def simulated_rows(config: SimConfig, *, train_fraction: float = 0.7) -> SimulatedRows:
    tape = simulate(config)
    trades = TradeArrays.from_tape(tape.trades, tape.exponent)
    cut = config.start_us + int(config.duration_s * train_fraction) * US_PER_SEC
    params = fit_params(trades.qty[trades.ts_event < cut])
    # the first row whose second lies wholly inside the simulation, up to the end
    frame = build_features(trades, params, start_us=config.start_us + US_PER_SEC, end_us=config.end_us,
                           history_start_us=config.start_us)
    label_mid, mid_ts, mid = label_mid_series(tape.trades, tape.best_bid_asks)
    y = forward_log_return(frame.ts_sec, mid_ts, mid, data_end_us=config.end_us)
    rows = LabeledRows(frame.ts_sec, np.ascontiguousarray(frame.columns.T), y, frame.names, label_mid)
    return SimulatedRows(rows, params, config, tape)



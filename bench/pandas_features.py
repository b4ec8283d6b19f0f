"""The yardstick: schema-v1 features and last-trade-proxy labels written the plain pandas way.

Bronze trades Parquet in, gold Parquet out, the same definitions as ``btcpipe.features`` (see
docs/FEATURES.md) — groupby per second, reindex to the grid, rolling windows. It is what one would write
first; ``bench_features.py`` times btcpipe's builder against it in the same run. Values agree with
btcpipe's to floating-point tolerance (rolling sums are computed differently), not bit for bit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

US = 1_000_000


def read_trades(bronze_path: str) -> pd.DataFrame:
    """The four columns, prices and quantities as float64 (pandas reads the decimals as Decimal objects)."""
    df = pd.read_parquet(bronze_path, columns=["ts_event", "price", "qty", "is_buyer_maker"])
    df["price"] = df["price"].astype("float64")
    df["qty"] = df["qty"].astype("float64")
    return df


def build_gold(bronze_path: str, gold_path: str, *, trade_size_p95: float, start_us: int, end_us: int,
               history_start_us: int, horizon_us: int = 10 * US) -> int:
    df = read_trades(bronze_path)
    df = df[df["ts_event"] >= history_start_us]
    df["sec"] = (df["ts_event"] - history_start_us) // US
    df["buy"] = df["qty"].where(~df["is_buyer_maker"], 0.0)
    df["sell"] = df["qty"].where(df["is_buyer_maker"], 0.0)
    df["notional"] = df["price"] * df["qty"]
    g = df.groupby("sec").agg(
        n=("qty", "size"), buy=("buy", "sum"), sell=("sell", "sum"), notional=("notional", "sum"),
        max_qty=("qty", "max"), last_price=("price", "last"), last_ts=("ts_event", "last"),
    )
    n_bars = (end_us - history_start_us) // US - 1
    bars = g.reindex(pd.RangeIndex(n_bars))
    for col in ("n", "buy", "sell", "notional", "max_qty"):
        bars[col] = bars[col].fillna(0.0)
    bars["price"] = bars["last_price"].ffill()
    bars["last_ts"] = bars["last_ts"].ffill()
    bars["ts_sec"] = history_start_us + (bars.index.to_numpy() + 1) * US

    out = pd.DataFrame({"ts_sec": bars["ts_sec"]})
    logp = np.log(bars["price"])
    out["ret_1s"] = logp - logp.shift(1)
    out["ret_2s"] = logp - logp.shift(2)
    out["ret_5s"] = logp - logp.shift(5)
    vol = bars["buy"] + bars["sell"]
    vol5 = vol.rolling(5).sum()
    vwap = bars["notional"].rolling(5).sum() / vol5
    out["vwap_5s_dev"] = np.log(bars["price"] / vwap).where(vol5 != 0, 0.0)
    out["n_trades_1s"] = bars["n"]
    out["n_trades_5s"] = bars["n"].rolling(5).sum()
    out["buy_vol_1s"] = bars["buy"]
    out["sell_vol_1s"] = bars["sell"]
    out["tvi_1s"] = ((bars["buy"] - bars["sell"]) / vol).where(vol != 0, 0.0)
    buy5, sell5 = bars["buy"].rolling(5).sum(), bars["sell"].rolling(5).sum()
    out["buy_vol_5s"] = buy5
    out["sell_vol_5s"] = sell5
    out["tvi_5s"] = ((buy5 - sell5) / (buy5 + sell5)).where((buy5 + sell5) != 0, 0.0)
    out["avg_trade_size_1s"] = (vol / bars["n"]).where(bars["n"] != 0, 0.0)
    out["vol_ret_10s"] = out["ret_1s"].rolling(10).std()
    median = bars["n"].rolling(60).median()
    out["burst_1s"] = bars["n"] / median.clip(lower=1.0)
    out["large_trade_flag_5s"] = (bars["max_qty"].rolling(5).max() > trade_size_p95).astype("float64")
    out["time_since_last_trade_ms"] = (bars["ts_sec"] - bars["last_ts"]) / 1000.0
    out["last_price_minus_1s"] = bars["price"] - bars["price"].shift(1)
    out["last_price_minus_5s"] = bars["price"] - bars["price"].shift(5)
    out = out[(out["ts_sec"] >= start_us) & (out["ts_sec"] < end_us)]

    # Label: last trade price as of t and t + horizon (at or before), rows past the data dropped.
    mids = df[["ts_event", "price"]]
    now = pd.merge_asof(out[["ts_sec"]], mids, left_on="ts_sec", right_on="ts_event", direction="backward")
    fwd = pd.merge_asof(pd.DataFrame({"t": out["ts_sec"].to_numpy() + horizon_us}), mids, left_on="t",
                        right_on="ts_event", direction="backward")
    out["y"] = np.log(fwd["price"].to_numpy()) - np.log(now["price"].to_numpy())
    out = out[out["ts_sec"] + horizon_us <= df["ts_event"].iloc[-1]]
    out.to_parquet(gold_path, index=False)
    return len(out)

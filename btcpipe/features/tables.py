"""Arrow tables of the feature layers, and bronze tables to the arithmetic's inputs.

silver ``features_1s``: ``ts_sec`` (int64 µs) then the schema's features (float64) in order.
gold ``features_labeled``: the same plus ``y`` (float64, the label) and ``label_mid`` (which mid the
label used: ``"bbo_mid"`` or ``"last_trade"``). Both carry the schema hash, the fitted params and the
symbol in the Arrow schema metadata (``btcpipe.*`` keys).
"""

from __future__ import annotations

import json
from concurrent.futures import Executor

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from btcpipe.domain.arrow_decimal import decimal_mantissas, decimal_to_float
from btcpipe.domain.decimal import STD_EXPONENT
from btcpipe.domain.errors import DataError
from btcpipe.domain.tape import BestBidAskTape, TradeTape
from btcpipe.features import labels
from btcpipe.features.batch import FeatureFrame
from btcpipe.features.inputs import TradeArrays
from btcpipe.features.spec import FeatureParams, schema_hash
from btcpipe.features.threads import run_beside

F64 = npt.NDArray[np.float64]

SILVER_DATASET = "features_1s"
GOLD_DATASET = "features_labeled"
LABEL_MID_BEST_BID_ASK = "bbo_mid"
LABEL_MID_TRADE = "last_trade"
META_HASH = b"btcpipe.schema_hash"
META_PARAMS = b"btcpipe.feature_params"
META_SYMBOL = b"btcpipe.symbol"
META_LABEL_MID = b"btcpipe.label_mid"
# The bronze trade columns the features and the label read (bronze also keeps quote_qty, is_best_match,
# ts_recv): reading only these skips most of the Parquet decoding.
BRONZE_TRADE_COLUMNS = ("id", "ts_event", "price", "qty", "is_buyer_maker")
# How silver/gold feature tables are written: plain float64 pages without dictionary or compression.
# Feature floats barely compress (zstd saves ~30 %) and dictionary-encoding them is most of the write
# time; the files stay ordinary Parquet that any reader opens.
FEATURE_PARQUET_OPTIONS: dict[str, str | bool] = {"compression": "none", "use_dictionary": False}


# --- bronze → inputs ---------------------------------------------------------------------------------
def trade_tape_from_bronze(table: pa.Table) -> TradeTape:
    """Exact mantissas of a bronze ``trades`` table (sorted by id, as ``Lake.read_bronze`` returns it)."""
    ibm = table["is_buyer_maker"].to_numpy(zero_copy_only=False)
    return TradeTape(
        id=table["id"].to_numpy(zero_copy_only=False).astype(np.int64, copy=False),
        ts_event=table["ts_event"].to_numpy(zero_copy_only=False).astype(np.int64, copy=False),
        price=decimal_mantissas(table["price"]),
        qty=decimal_mantissas(table["qty"]),
        is_buyer_maker=np.asarray(ibm, dtype=np.bool_),
    )


def trade_arrays_from_bronze(table: pa.Table, executor: Executor | None = None) -> TradeArrays:
    """A bronze ``trades`` table (sorted by id) straight to the arithmetic's float arrays.

    The floats are ``to_float_array`` of the exact mantissas, as ``TradeArrays.from_tape`` gives, without
    building the tape in between. Reads ``ts_event``, ``price``, ``qty`` and ``is_buyer_maker``; a null
    in any of them is refused (a decimal null would otherwise read as a zero price). With an executor,
    the quantities convert on it while this thread converts the prices.
    """
    for name in BRONZE_TRADE_COLUMNS[1:]:
        if table[name].null_count:
            raise DataError(f"bronze trades: {table[name].null_count} rows have no {name}")
    qty = run_beside(executor, decimal_to_float, table["qty"])
    price = decimal_to_float(table["price"])
    return TradeArrays(
        table["ts_event"].to_numpy(zero_copy_only=False).astype(np.int64, copy=False),
        price,
        qty(),
        np.asarray(table["is_buyer_maker"].to_numpy(zero_copy_only=False), dtype=np.bool_),
    )


def book_tape_from_bronze(table: pa.Table) -> BestBidAskTape:
    def ints(name: str) -> npt.NDArray[np.int64]:
        out: npt.NDArray[np.int64] = table[name].to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        return out

    tape = BestBidAskTape(
        ts_event=ints("ts_event"),
        update_id=ints("update_id"),
        bid_price=decimal_mantissas(table["bid_price"]),
        bid_qty=decimal_mantissas(table["bid_qty"]),
        ask_price=decimal_mantissas(table["ask_price"]),
        ask_qty=decimal_mantissas(table["ask_qty"]),
    )
    # Sorted by update id; times can tie but must not go back (the as-of lookups need it).
    if len(tape) > 1 and bool(np.any(tape.ts_event[1:] < tape.ts_event[:-1])):
        raise DataError("bronze bookTicker times go back in update-id order")
    return tape


# --- frames → tables ---------------------------------------------------------------------------------
def _metadata(params: FeatureParams, symbol: str) -> dict[bytes, bytes]:
    return {
        META_HASH: schema_hash(params).encode(),
        META_PARAMS: json.dumps(params.to_json(), sort_keys=True).encode(),
        META_SYMBOL: symbol.encode(),
    }


def feature_table(frame: FeatureFrame, params: FeatureParams, symbol: str) -> pa.Table:
    """Silver ``features_1s``."""
    if frame.names != params.names:
        raise DataError("feature frame columns do not match the params' schema")
    arrays = [pa.array(frame.ts_sec, pa.int64())] + [pa.array(np.ascontiguousarray(c)) for c in frame.columns]
    # Never null (an unknown value is NaN): REQUIRED columns skip definition levels, half the write time.
    fields = [pa.field("ts_sec", pa.int64(), nullable=False)]
    fields += [pa.field(n, pa.float64(), nullable=False) for n in frame.names]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=_metadata(params, symbol)))


def gold_table(frame: FeatureFrame, y: F64, label_mid: str, params: FeatureParams, symbol: str) -> pa.Table:
    """Gold ``features_labeled``: silver columns, ``y`` and ``label_mid``."""
    silver = feature_table(frame, params, symbol)
    mid_col = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(len(frame), dtype=np.int8)), pa.array([label_mid], pa.string())
    )
    table = silver.append_column(pa.field("y", pa.float64(), nullable=False), pa.array(y, pa.float64()))
    table = table.append_column(pa.field("label_mid", mid_col.type, nullable=False), mid_col)
    meta = dict(silver.schema.metadata or {})
    meta[META_LABEL_MID] = label_mid.encode()
    return table.replace_schema_metadata(meta)


def frame_from_table(table: pa.Table) -> FeatureFrame:
    """Read back a silver/gold table's features (every float column except ``y``) as a frame."""
    names = tuple(n for n in table.column_names if n not in ("ts_sec", "y", "label_mid"))
    columns = np.empty((len(names), table.num_rows), dtype=np.float64)
    for j, n in enumerate(names):
        columns[j] = table[n].to_numpy(zero_copy_only=False)
    return FeatureFrame(table["ts_sec"].to_numpy(zero_copy_only=False).astype(np.int64), columns, names)


def params_from_table(table: pa.Table) -> FeatureParams:
    meta = table.schema.metadata or {}
    if META_PARAMS not in meta:
        raise DataError("feature table has no btcpipe.feature_params metadata")
    return FeatureParams.from_json(json.loads(meta[META_PARAMS]))


# --- labels ------------------------------------------------------------------------------------------
def label_mid_series(trades: TradeTape, book: BestBidAskTape | None) -> tuple[str, npt.NDArray[np.int64], F64]:
    """The mid the label uses: best bid/ask when there is a book history, else the last-trade proxy."""
    if book is not None and len(book):
        ts, mid = labels.mid_from_best_bid_asks(book, STD_EXPONENT)
        return LABEL_MID_BEST_BID_ASK, ts, mid
    ts, mid = labels.mid_from_trades(trades, STD_EXPONENT)
    return LABEL_MID_TRADE, ts, mid


def label_mid_from_arrays(trades: TradeArrays, book: BestBidAskTape | None) -> tuple[str, npt.NDArray[np.int64], F64]:
    """``label_mid_series`` for trades already as floats: the last-trade proxy is their price array itself
    (the same ``to_float_array`` floats ``labels.mid_from_trades`` computes from the mantissas)."""
    if book is not None and len(book):
        ts, mid = labels.mid_from_best_bid_asks(book, STD_EXPONENT)
        return LABEL_MID_BEST_BID_ASK, ts, mid
    return LABEL_MID_TRADE, trades.ts_event, trades.price


def label_rows(
    ts_sec: npt.NDArray[np.int64], mid_ts: npt.NDArray[np.int64], mid: F64, data_end_us: int | None = None
) -> tuple[F64, int]:
    """``labels.forward_log_return`` at each row time, and how many leading rows keep a label.

    Rows are in time order, so the rows whose horizon stays inside the data are a prefix.
    """
    y = labels.forward_log_return(ts_sec, mid_ts, mid, labels.LABEL_HORIZON_US, data_end_us=data_end_us)
    end = data_end_us if data_end_us is not None else (int(mid_ts[-1]) if mid_ts.shape[0] else None)
    n_keep = 0 if end is None else int(np.searchsorted(ts_sec, end - labels.LABEL_HORIZON_US, side="right"))
    return y, n_keep

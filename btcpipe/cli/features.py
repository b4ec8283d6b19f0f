"""``btcpipe features``: build 1-second features (silver) and labeled rows (gold) from bronze, show the schema."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import click

from btcpipe.cli.wiring.bounds import finite
from btcpipe.cli.wiring.engines import engine_options
from btcpipe.domain.errors import BtcpipeError
from btcpipe.domain.time import day_of, parse_time

EXIT_FAILED = 1
DEFAULT_WORKERS = 2  # a day's build has two independent branches at a time (see features.day_build.build_day)


def parse_day(text: str) -> dt.date:
    """A ``--start``/``--end`` value's UTC day (shared by the commands that take days)."""
    try:
        return day_of(parse_time(text))
    except ValueError as exc:
        raise click.BadParameter(f"not a date or time: {text!r}") from exc


def load_params(path: Path) -> Any:
    """``FeatureParams`` from a params JSON or schema document, refused as a bad parameter when unreadable."""
    from btcpipe.features.spec import FeatureParams

    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"cannot read feature params from {path}: {exc}") from exc
    try:
        return FeatureParams.from_json(doc)
    except BtcpipeError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.group("features")
def cli() -> None:
    """Build the schema-v1 feature rows (docs/FEATURES.md) and inspect the schema."""


@cli.command("build")
@click.option("--lake", "lake_uri", envvar="BTCPIPE_LAKE", default="lake", show_default=True, show_envvar=True,
              help="Lake root: a directory or s3://bucket/prefix.")
@click.option("--endpoint-url", envvar="BTCPIPE_S3_ENDPOINT_URL", default=None, show_envvar=True,
              help="S3 endpoint (e.g. a local moto_server); default: AWS.")
@click.option("--symbol", default="BTCUSDT", show_default=True, help="Instrument symbol.")
@click.option("--symbols", default=None, help="Several symbols, comma-separated (instead of --symbol).")
@click.option("--start", required=True, help="First day (ISO date/time or epoch ms/µs; its UTC day is used).")
@click.option("--end", required=True, help="Last day, inclusive (ISO date/time or epoch ms/µs).")
@click.option("--params", "params_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Feature params JSON (or a model's schema_v1.json) instead of fitting them.")
@click.option("--train-fraction", type=finite(0.0, 1.0, min_open=True), default=0.7, show_default=True,
              help="Fit params on this earliest share of the span (the training split).")
@click.option("--write-params", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the schema document (params and hash) to this JSON file (one symbol only).")
@click.option("--workers", type=click.IntRange(1, 64), default=DEFAULT_WORKERS, show_default=True,
              help="Threads per day (conversions, label and writes side by side); 1 runs everything in turn.")
@engine_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def build(  # noqa: PLR0917 - click passes every option positionally
    lake_uri: str, endpoint_url: str | None, symbol: str, symbols: str | None, start: str, end: str,
    params_file: Path | None, train_fraction: float, write_params: Path | None, workers: int, engine: str,
    jobs: int | None, ray_address: str | None, as_json: bool,
) -> None:
    """Read bronze trades (and bookTicker when every day has it) and write, per symbol and UTC day,
    silver/features_1s and gold/features_labeled.

    Each day warms up on the previous day's tail and labels its last rows from the next day's head, so
    days built one at a time equal days built together, and --engine threads|ray (days side by side, or
    spread over a Ray cluster) writes the same parts byte for byte as serial. Params (the trade-size 95th
    percentile) are fitted per symbol on the earliest --train-fraction of the span unless --params gives them.
    """
    from btcpipe.cli.wiring.engines import open_runner, split_symbols
    from btcpipe.engines.feature_build import build_partitions
    from btcpipe.features.spec import schema_document
    from btcpipe.lake.ref import LakeRef

    start_day, end_day = parse_day(start), parse_day(end)
    names = split_symbols(symbol, symbols)
    if write_params is not None and len(names) > 1:
        raise click.BadParameter("writes one symbol's schema document; build one symbol", param_hint="--write-params")
    params = load_params(params_file) if params_file else None
    lake = LakeRef(lake_uri, endpoint_url)
    try:
        runner = open_runner(engine, jobs=jobs, ray_address=ray_address)
        try:
            built = build_partitions(runner, lake, names, start_day, end_day, params=params,
                                     train_fraction=train_fraction, threads_per_day=workers)
        finally:
            runner.close()
    except BtcpipeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    summaries = []
    for one in built:
        doc = schema_document(one.params)
        if write_params is not None:
            write_params.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        days = [d.build for d in one.days]
        summaries.append({
            "symbol": one.symbol,
            "schema_hash": doc["hash"],
            "params": doc["params"],
            "days": [
                {"day": d.day.isoformat(), "trades": d.trades, "silver_rows": d.silver_rows,
                 "gold_rows": d.gold_rows, "label_mid": d.label_mid, "warmed_up": d.warmed_up,
                 "silver_parts": [f.path for f in p.silver], "gold_parts": [f.path for f in p.gold]}
                for d, p in zip(days, one.days, strict=True)
            ],
        })
        if not as_json:
            for d in days:
                click.echo(
                    f"{one.symbol}  {d.day}  trades {d.trades:>10,}  silver rows {d.silver_rows:>6,}  "
                    f"gold rows {d.gold_rows:>6,}  label mid {d.label_mid}"
                    + ("" if d.warmed_up else "  (no previous day: cold start)"),
                    err=True,
                )
            click.echo(f"{one.symbol}: built {len(days)} day(s); schema {doc['hash'][:16]}…; "
                       f"trade_size_p95 {one.params.trade_size_p95:g}; "
                       f"spread {'yes' if one.params.with_spread else 'no'}")
    if as_json:
        click.echo(json.dumps({"lake": lake.open().uri(), "engine": engine, "symbols": summaries}, indent=2))


@cli.command("schema")
@click.option("--params", "params_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Feature params JSON; without it, the definition with trade_size_p95 = 0.")
@click.option("--with-spread", is_flag=True, help="The schema variant with the optional 'spread' column.")
def schema(params_file: Path | None, with_spread: bool) -> None:
    """Print the schema_v1 document (names, dtypes, units, windows, params, hash) as JSON."""
    from btcpipe.features.spec import FeatureParams, schema_document

    params = load_params(params_file) if params_file else FeatureParams(0.0, with_spread)
    click.echo(json.dumps(schema_document(params), indent=2, sort_keys=True))

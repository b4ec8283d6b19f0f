"""``btcpipe lake``: list, check and compact the lake (a directory or ``s3://bucket/prefix``)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import click
import orjson

from btcpipe.domain.errors import BtcpipeError
from btcpipe.domain.time import iso, parse_time
from btcpipe.lake.schemas import BRONZE_SCHEMAS

EXIT_PROBLEM = 1  # an unknown gap, duplicates, time disorder, or no data at all
EXIT_INTEGRITY = 3  # a file contradicts its manifest (hash, rows, ranges), or a listed file is missing
EXIT_UNREADABLE = 4  # the lake or an input file could not be read at all

_lake_option = click.option(
    "--lake", "lake_uri", envvar="BTCPIPE_LAKE", default="lake", show_default=True, show_envvar=True,
    help="Lake root: a directory or s3://bucket/prefix.",
)
_endpoint_option = click.option(
    "--endpoint-url", envvar="BTCPIPE_S3_ENDPOINT_URL", default=None, show_envvar=True,
    help="S3 endpoint (e.g. a local moto_server); default: AWS.",
)


def _open(lake_uri: str, endpoint_url: str | None) -> Any:
    from btcpipe.lake.lake import Lake

    if "://" not in lake_uri and not Path(lake_uri).is_dir():
        _fail(f"no lake at {lake_uri} (not a directory)")
    try:
        return Lake.open(lake_uri, endpoint_url=endpoint_url)
    except BtcpipeError as exc:
        _fail(str(exc))


def _fail(message: str, code: int = EXIT_UNREADABLE) -> Any:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _time(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date, ISO time or epoch ms/µs", param_hint=name) from exc


@click.group()
def cli() -> None:
    """Inspect and check the lake: bronze (raw + typed), silver and gold partitions with manifests."""


@cli.command("check")
@_lake_option
@_endpoint_option
@click.option("--symbol", default="BTCUSDT", show_default=True)
@click.option("--kind", type=click.Choice(sorted(BRONZE_SCHEMAS)), default="trades", show_default=True)
@click.option("--start", default=None, help="Start (inclusive): ISO date/time or epoch ms/µs, UTC.")
@click.option("--end", default=None, help="End (exclusive): ISO date/time or epoch ms/µs, UTC.")
@click.option("--known-gaps", "known_gaps_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON or TOML file of known id gaps ({\"gaps\": [{\"first_id\", \"last_id\", \"symbol\", "
                   "\"kind\", \"note\"}]}); lake/known_gaps.json in the lake is always read too.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
def check_command(*, lake_uri: str, endpoint_url: str | None, symbol: str, kind: str, start: str | None,
                  end: str | None, known_gaps_file: Path | None, as_json: bool) -> None:
    """Completeness report per day: id gaps with their ranges, duplicates, share of seconds with data,
    time order, and manifest/sha256 consistency.

    Exit status: 0 all good; 1 an unknown gap, duplicates, time disorder, or no data; 3 a file contradicts
    its manifest; 4 the lake could not be read.
    """
    from btcpipe.lake.check import check_lake, parse_known_gaps

    start_us, end_us = _time(start, "--start"), _time(end, "--end")
    lake = _open(lake_uri, endpoint_url)
    try:
        known = parse_known_gaps(known_gaps_file.read_bytes(), str(known_gaps_file)) if known_gaps_file else []
        report = check_lake(lake, kind, symbol, start_us, end_us, known_gaps=known)
    except OSError as exc:
        _fail(f"cannot read {known_gaps_file}: {exc}")
    except BtcpipeError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        _print_report(report)
    if not report.integrity_ok:
        sys.exit(EXIT_INTEGRITY)
    if not report.ok:
        sys.exit(EXIT_PROBLEM)


def _console() -> Any:
    from rich.console import Console

    # Piped output (logs, CI) gets a wide page so tables are not cut to 80 columns.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _print_report(report: Any) -> None:
    from rich.table import Table

    console = _console()
    table = Table(title=f"lake check · {report.kind} · {report.symbol} · {report.lake}")
    for name in ("day", "rows", "first id", "last id", "gaps (known)", "missing ids", "dups", "seconds (span)",
                 "disorder", "files", "integrity", "ok"):
        table.add_column(name, justify="left" if name == "day" else "right")
    for day in report.days:
        table.add_row(
            day.day.isoformat(), f"{day.rows:,}", str(day.first_id or "-"), str(day.last_id or "-"),
            f"{len(day.gaps)} ({len(day.gaps) - len(day.unknown_gaps)})", f"{sum(g.missing for g in day.gaps):,}",
            str(day.duplicates), f"{day.coverage:.1%} ({day.span_coverage:.1%})", str(day.out_of_order), str(day.files),
            "ok" if not day.integrity_errors else f"{len(day.integrity_errors)} errors",
            "[green]yes[/]" if day.ok else "[red]NO[/]",
        )
    console.print(table)
    for day in report.days:
        for gap in day.gaps:
            state = "known" if gap.known else "UNKNOWN"
            console.print(f"  {day.day} gap {state}: ids {gap.first_missing}..{gap.last_missing} "
                          f"({gap.missing} missing) between {iso(gap.after_ts)} and {iso(gap.before_ts)}")
        if day.out_of_order:
            console.print(f"  {day.day} time goes backwards {day.out_of_order}× "
                          f"(first at id {day.first_out_of_order_id})")
        for error in day.integrity_errors:
            console.print(f"  {day.day} integrity: {error}")
        if day.orphans:
            console.print(f"  {day.day} {len(day.orphans)} orphan file(s) not in the manifest (ignored by readers)")
    if not report.has_data:
        console.print("no data in the lake for this kind, symbol and span")


@cli.command("ls")
@_lake_option
@_endpoint_option
@click.option("--layer", type=click.Choice(["bronze", "silver", "gold"]), default=None, help="Only this layer.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
def ls_command(*, lake_uri: str, endpoint_url: str | None, layer: str | None, as_json: bool) -> None:
    """List partitions (layer, dataset, symbol, date) with files, rows and id/time ranges."""
    from btcpipe.lake.manifest import MANIFEST_NAME, Manifest

    lake = _open(lake_uri, endpoint_url)
    rows: list[dict[str, Any]] = []
    try:
        for name in (layer,) if layer else ("bronze", "silver", "gold"):
            for key in lake.store.list(f"{name}/"):
                if key.endswith("/" + MANIFEST_NAME):
                    m = Manifest.from_bytes(lake.store.get(key), key)
                    rows.append({"layer": m.layer, "dataset": m.dataset, "symbol": m.symbol,
                                 "date": m.date.isoformat(), "files": m.totals.files, "rows": m.totals.rows,
                                 "raw": len(m.raw), "first_id": m.totals.first_id, "last_id": m.totals.last_id,
                                 "first_ts": m.totals.first_ts, "last_ts": m.totals.last_ts})
    except BtcpipeError as exc:
        _fail(str(exc))
    if as_json:
        for row in rows:
            click.echo(orjson.dumps(row).decode())
        return
    from rich.table import Table

    table = Table(title=f"lake {lake.uri()}")
    for col in ("layer", "dataset", "symbol", "date", "files", "raw", "rows", "first id", "last id", "first", "last"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["layer"], r["dataset"], r["symbol"], r["date"], str(r["files"]), str(r["raw"]),
                      f"{r['rows']:,}", str(r["first_id"] or "-"), str(r["last_id"] or "-"),
                      iso(r["first_ts"]) if r["first_ts"] is not None else "-",
                      iso(r["last_ts"]) if r["last_ts"] is not None else "-")
    _console().print(table)


@cli.command("compact")
@_lake_option
@_endpoint_option
@click.option("--symbol", default="BTCUSDT", show_default=True)
@click.option("--kind", type=click.Choice(sorted(BRONZE_SCHEMAS)), default="trades", show_default=True)
@click.option("--day", "days", multiple=True, type=click.DateTime(["%Y-%m-%d"]),
              help="Day to compact (repeatable); default: every day.")
def compact_command(*, lake_uri: str, endpoint_url: str | None, symbol: str, kind: str,
                    days: tuple[dt.datetime, ...]) -> None:
    """Merge each bronze hour's many small parts (one per REST page) into one part, atomically."""
    lake = _open(lake_uri, endpoint_url)
    try:
        chosen = [d.date() for d in days] or lake.bronze_days(kind, symbol)
        for day in chosen:
            result = lake.compact(kind, symbol, day)
            click.echo(f"{day} {kind} {symbol}: {result.files_before} → {result.files_after} files "
                       f"({result.hours_compacted} hours merged)")
    except BtcpipeError as exc:
        _fail(str(exc))

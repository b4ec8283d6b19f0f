"""``btcpipe backfill``: download history (REST pages or daily dumps) into the lake's bronze."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

import click
import orjson

from btcpipe.binance.weights import MAX_PAGE_WEIGHT
from btcpipe.cli.wiring.bounds import finite, positive
from btcpipe.cli.wiring.engines import engine_options, split_symbols
from btcpipe.cli.wiring.stopping import exit_status, grace_option, rest_client, start_shutdown
from btcpipe.domain.errors import BtcpipeError
from btcpipe.domain.time import day_of, iso, parse_time

DEFAULT_URLS = {"rest": "https://data-api.binance.vision", "dumps": "https://data.binance.vision"}


class _LogProgress:
    """Plain log lines (for pipes and files): at most one every ``every_s`` seconds, and the last."""

    def __init__(self, every_s: float = 5.0) -> None:
        import logging

        self._log = logging.getLogger("btcpipe.backfill.progress")
        self._every_s = every_s
        self._last = -float("inf")

    def __call__(self, p: Any) -> None:
        now = time.monotonic()
        if not p.done and now - self._last < self._every_s:
            return
        self._last = now
        rate = p.rows / p.elapsed_s if p.elapsed_s > 0 else 0.0
        eta = (p.elapsed_s / p.fraction - p.elapsed_s) if 0 < p.fraction < 1 else 0.0
        self._log.info(
            "backfill progress",
            extra={"kind": p.kind, "rows": p.rows, "pages": p.pages, "done_pct": round(100 * p.fraction, 1),
                   "rows_per_s": round(rate), "eta_s": round(eta, 1), "finished": p.done},
        )

    def __enter__(self) -> _LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _BarProgress:
    """A rich progress bar on a terminal: share of the span covered, rows, rate, ETA."""

    def __init__(self, title: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[rows]:>12,} rows"),
            TextColumn("{task.fields[rate]:>9,.0f} rows/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task = self._progress.add_task(title, total=1000, rows=0, rate=0.0)

    def __call__(self, p: Any) -> None:
        rate = p.rows / p.elapsed_s if p.elapsed_s > 0 else 0.0
        self._progress.update(self._task, completed=int(1000 * p.fraction), rows=p.rows, rate=rate)

    def __enter__(self) -> _BarProgress:
        self._progress.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._progress.stop()


@click.command(name="backfill")
@click.option("--symbol", default="BTCUSDT", show_default=True, help="Binance symbol, upper case.")
@click.option("--symbols", default=None,
              help="Dumps only: several symbols, comma-separated; one task per (symbol, day) on --engine.")
@click.option("--kind", type=click.Choice(["trades", "aggTrades", "klines"]), default="trades", show_default=True,
              help="What to download: raw trades (the feature source), aggTrades, or klines.")
@click.option("--source", type=click.Choice(["rest", "dumps"]), default="rest", show_default=True,
              help="REST pages (any span, paced by request weight) or daily dump zips (whole UTC days).")
@click.option("--start", required=True, help="Span start (inclusive): ISO date/datetime (UTC) or epoch ms/µs.")
@click.option("--end", required=True, help="Span end (exclusive): ISO date/datetime (UTC) or epoch ms/µs.")
@click.option("--base-url", default=None,
              help="Exchange URL. Default: https://data-api.binance.vision (rest), https://data.binance.vision "
                   "(dumps). Point it at `btcpipe exchange serve` for the local exchange.")
@click.option("--lake", "lake_uri", required=True, help="Lake root: a local directory or s3://bucket/prefix.")
@click.option("--s3-endpoint", default=None, help="S3 endpoint URL (e.g. a moto_server), for s3:// lakes.")
@click.option("--interval", default="1m", show_default=True, help="Kline interval (klines only).")
@click.option("--weight-limit", type=click.IntRange(1, 1_000_000), default=None,
              help="The exchange's request-weight limit per window (REST; default: config [exchange] weight_limit, "
                   "6000).")
@click.option("--weight-share", type=finite(0, 1, min_open=True), default=None,
              help="Share of the weight limit the live path may use before waiting for the window to roll; the "
                   "backfill stops --live-reserve short of it (default: config [exchange] weight_budget_share, 0.8).")
@click.option("--weight-window", type=positive(3600), default=60.0, show_default=True,
              help="Length of the exchange's weight window in seconds.")
@click.option("--live-reserve", type=finite(0, 1, max_open=True), default=None,
              help="Share of the weight limit the backfill leaves unused, for the live path's depth snapshots and "
                   "gap fills (also in other processes on the same IP: the server's used-weight header counts all; "
                   "default: config [exchange] live_reserve_share, 0.2).")
@click.option("--page-limit", type=click.IntRange(1, 1000), default=1000, show_default=True,
              help="Rows per REST page (max 1000).")
@click.option("--max-retries", type=click.IntRange(0, 100), default=8, show_default=True,
              help="Retries of one request on 5xx, timeouts, dropped connections and malformed bodies.")
@click.option("--compact/--no-compact", default=True, show_default=True,
              help="Merge each touched hour's bronze parts into one at the end.")
@click.option("--progress", "progress_mode", type=click.Choice(["auto", "bar", "log", "none"]), default="auto",
              show_default=True, help="Progress display: a bar on a terminal, log lines otherwise.")
@engine_options
@grace_option
def cli(
    *,
    symbol: str,
    symbols: str | None,
    engine: str,
    jobs: int | None,
    ray_address: str | None,
    kind: str,
    source: str,
    start: str,
    end: str,
    base_url: str | None,
    lake_uri: str,
    s3_endpoint: str | None,
    interval: str,
    weight_limit: int | None,
    weight_share: float | None,
    weight_window: float,
    live_reserve: float | None,
    page_limit: int,
    max_retries: int,
    compact: bool,
    progress_mode: str,
    grace_s: float | None,
) -> None:
    """Download BTCUSDT-style history into the lake's bronze layer, resumably.

    REST finds the first id of the span, pages forward by fromId and writes each page to bronze as it
    arrives, so a killed run picks up where it stopped. Requests are paced by X-MBX-USED-WEIGHT-1M; 429/418
    wait Retry-After; 5xx, timeouts and truncated bodies are retried with backoff. Dumps download whole UTC
    days, verify the sha256 against .CHECKSUM and write nothing from a file that fails. Prints the result as
    JSON on stdout.

    With --symbols or --engine threads|ray (dumps only), each (symbol, day) is a task of its own: verified
    and written on its own, run side by side or on a Ray cluster, and safe to retry. The JSON is then
    {"engine", "results": [one result per task]}.

    SIGTERM/SIGINT stop it within --grace seconds: a pending request or weight-window wait is given up, every
    page received is in bronze, the result says "stopped", and the exit status is 128 + the signal number.
    Run the same command again to resume.

    \b
    Example:
      btcpipe backfill --kind trades --start 2025-01-01 --end 2025-01-01T01:00 --lake ./lake
    """
    from btcpipe.binance.dumps import DumpsClient
    from btcpipe.binance.rest import BinanceRestClient
    from btcpipe.binance.weights import BULK
    from btcpipe.cli.wiring.config import load_config
    from btcpipe.lake.lake import Lake
    from btcpipe.services.backfill import backfill

    try:
        start_us, end_us = parse_time(start), parse_time(end)
    except ValueError as exc:
        raise click.BadParameter(f"cannot read the time: {exc}") from exc
    if end_us <= start_us:
        raise click.BadParameter(f"--end {iso(end_us)} must be after --start {iso(start_us)}")
    try:
        config = load_config()
    except BtcpipeError as exc:
        raise click.ClickException(f"backfill failed: {exc}") from exc
    cfg = config.exchange
    limit = cfg.weight_limit if weight_limit is None else weight_limit
    share = cfg.weight_budget_share if weight_share is None else weight_share
    reserve = cfg.live_reserve_share if live_reserve is None else live_reserve
    if source == "rest" and int(limit * share) - int(limit * reserve) < MAX_PAGE_WEIGHT:
        raise click.BadParameter(
            f"{limit} × (--weight-share {share} − --live-reserve {reserve}) is below one request's weight "
            f"({MAX_PAGE_WEIGHT}): the backfill would send one request per window", param_hint="--weight-limit")
    url = base_url or DEFAULT_URLS[source]
    if symbols is not None or engine != "serial":
        if source != "dumps":
            raise click.BadParameter("--symbols and --engine spread dump days; REST pages run in one process",
                                     param_hint="--source")
        _backfill_days(split_symbols(symbol, symbols), kind, start_us, end_us, url=url, lake_uri=lake_uri,
                       s3_endpoint=s3_endpoint, engine=engine, jobs=jobs, ray_address=ray_address,
                       max_retries=max_retries, compact=compact)
        return
    mode = progress_mode
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "log"
    title = f"{symbol} {kind} ({source})"
    display: _BarProgress | _LogProgress | None = (
        _BarProgress(title) if mode == "bar" else _LogProgress() if mode == "log" else None
    )
    try:
        shutdown = start_shutdown(config, grace_s)
        lake = Lake.open(lake_uri, endpoint_url=s3_endpoint)
        client: BinanceRestClient | DumpsClient
        if source == "rest":
            client = rest_client(config, url, priority=BULK, shutdown=shutdown, weight_limit=limit,
                                 weight_budget_share=share, live_reserve_share=reserve,
                                 weight_window_s=weight_window, max_retries=max_retries)
        else:
            client = DumpsClient(url, max_retries=max_retries)
        with client:
            if display is not None:
                with display:
                    result = backfill(client, lake, symbol=symbol.upper(), kind=kind, start_us=start_us,
                                      end_us=end_us, source=source, progress=display, interval=interval,
                                      page_limit=page_limit, compact=compact, should_stop=shutdown.is_set)
            else:
                result = backfill(client, lake, symbol=symbol.upper(), kind=kind, start_us=start_us, end_us=end_us,
                                  source=source, interval=interval, page_limit=page_limit, compact=compact,
                                  should_stop=shutdown.is_set)
    except (BtcpipeError, ValueError) as exc:
        raise click.ClickException(f"backfill failed: {exc}") from exc
    if result.stopped is not None:
        shutdown.note_unfinished("the rest of the span", resume_after_id=result.last_id)
    out = result.to_dict() | {"shutdown": shutdown.finished().to_dict()}
    click.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    if result.stopped is not None:
        sys.exit(exit_status(shutdown))


def _backfill_days(
    symbols: list[str], kind: str, start_us: int, end_us: int, *, url: str, lake_uri: str,
    s3_endpoint: str | None, engine: str, jobs: int | None, ray_address: str | None, max_retries: int, compact: bool,
) -> None:
    """The dump days of ``[start_us, end_us)`` (whole UTC days) for every symbol, one task each."""
    from btcpipe.cli.wiring.engines import open_runner
    from btcpipe.lake.ref import LakeRef
    from btcpipe.services.backfill_days import backfill_dump_days

    try:
        runner = open_runner(engine, jobs=jobs, ray_address=ray_address)
        try:
            results = backfill_dump_days(
                runner, LakeRef(lake_uri, s3_endpoint), url, kind=kind, symbols=[s.upper() for s in symbols],
                start_day=day_of(start_us), end_day=day_of(end_us - 1), max_retries=max_retries, compact=compact,
            )
        finally:
            runner.close()
    except (BtcpipeError, ValueError) as exc:
        raise click.ClickException(f"backfill failed: {exc}") from exc
    doc = {"engine": engine, "results": [r.to_dict() for r in results]}
    click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())

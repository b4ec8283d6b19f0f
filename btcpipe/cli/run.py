"""``btcpipe run``: the whole pipeline on this machine — exchange, backfill, check, features, train, promote,
live ingestor → processor → inference, and a report; ``btcpipe report RUN_DIR`` rebuilds that report."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import sys
from contextlib import ExitStack
from pathlib import Path

import click

from btcpipe.cli.sim import preset_option
from btcpipe.cli.wiring.bounds import SEED
from btcpipe.cli.wiring.stopping import grace_option, start_shutdown
from btcpipe.domain.errors import BtcpipeError

EXIT_FAILED = 1
EXIT_USAGE = 2


def _default_out_dir() -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("var") / "run" / stamp


@click.command("run")
@click.option("--history", default="2h", show_default=True,
              help="History to backfill over REST and train on (e.g. 2h, 90m, 20m; at most 48h).")
@click.option("--duration", default="2m", show_default=True,
              help="How long the live part runs (e.g. 2m, 30s; at most 24h).")
@click.option("--recording", "recordings", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Serve this recording of Binance's JSON streams (repeat for several files, in order) "
                   "instead of the simulator; it is shifted in time so that its last --duration plays live.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the simulator and of training.")
@preset_option
@click.option("--symbol", default="BTCUSDT", show_default=True, help="Symbol (the simulator makes BTCUSDT).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory for the report and the lake (default: var/run/<UTC timestamp>).")
@click.option("--lake", "lake_uri", default=None,
              help="Lake root (directory or s3://bucket/prefix); default: <out>/lake, or an S3 bucket on the "
                   "started moto_server with --services.")
@click.option("--epochs", type=click.IntRange(1, 1000), default=30, show_default=True,
              help="Most training epochs (early stopping may end sooner).")
@click.option("--model-name", default=None, help="Model name in the registry (default: config [model] name).")
@click.option("--services", is_flag=True,
              help="Run on real servers: Kinesis bus and S3 lake on moto_server, online store on redis-server.")
@click.option("--start-servers/--use-running", default=True, show_default=True,
              help="With --services: start redis-server and moto_server on free loopback ports, or use the ones "
                   "the config names ([store] redis_url, [bus] kinesis_endpoint, [lake] s3_endpoint).")
@click.option("--exchange", "exchange_kind", type=click.Choice(["local", "binance"]), default="local",
              show_default=True, help="local: the built-in exchange; binance: Binance's real endpoints (internet).")
@click.option("--allow-network", is_flag=True, help="Required with --exchange binance: allow internet access.")
@click.option("--offline-only", is_flag=True, help="Stop after promoting the model (no live part).")
@click.option("--view", type=click.Choice(["auto", "rich", "log"]), default="auto", show_default=True,
              help="Live terminal view on a TTY, plain log lines otherwise.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="BTCPIPE_CONFIG", show_envvar=True,
              help="TOML config file (BTCPIPE__SECTION__KEY env vars override it).")
@grace_option
def cli(  # noqa: PLR0917 - one parameter per click option
    history: str, duration: str, recordings: tuple[Path, ...], seed: int, preset: str, symbol: str,
    out_dir: Path | None,
    lake_uri: str | None, epochs: int, model_name: str | None, services: bool, start_servers: bool,
    exchange_kind: str, allow_network: bool, offline_only: bool, view: str, config_path: Path | None,
    grace_s: float | None,
) -> None:
    """Run the whole pipeline on this machine, with no servers and no internet by default.

    \b
    1. exchange  simulate a BTCUSDT market whose history ends now (or shift --recording so it plays live)
                 and serve it on the built-in Binance-compatible exchange (REST + SBE/JSON WebSockets);
    2. backfill  download --history of raw trades over REST into the lake's bronze;
    3. check     the lake check (no id gap, no duplicate, time order, manifests) must pass;
    4. features  silver 1-s features and gold labeled rows;
    5. train     the MLP (seeded, early stopping), exported to ONNX and registered;
    6. promote   the new version becomes production;
    7. live      ingestor (SBE) → bus → processor → online store → inference, once a second, for --duration,
                 with a live view (prediction, realized return, hit rate, per-hop latency, feature age);
    8. report    report.html with plots, summary.json and predictions.csv in the run directory.

    Prints where the report is. Exits 0 on success; on failure it names the stage that failed, still writes
    the summary, and exits 1. SIGTERM/SIGINT end the stage in progress (pending REST requests are given up,
    the live services flush what they hold), write the summary and exit within --grace seconds.
    """
    from btcpipe.cli.wiring.config import load_config
    from btcpipe.cli.wiring.run import MAX_LIVE_S, RunAdapters, RunOptions, parse_duration
    from btcpipe.run.orchestrator import RunPlan, run_pipeline
    from btcpipe.run.report import write_report
    from btcpipe.run.view import RichRunView, make_view

    try:
        config = load_config(config_path)
        history_s = parse_duration(history, key="--history")
        duration_s = parse_duration(duration, key="--duration", max_s=MAX_LIVE_S)
    except BtcpipeError as exc:
        raise click.UsageError(str(exc)) from exc
    out = out_dir or _default_out_dir()
    options = RunOptions(
        history_s=history_s, duration_s=duration_s, seed=seed, symbol=symbol.upper(), recordings=recordings,
        out_dir=out, lake_uri=lake_uri, services=services, start_servers=start_servers, exchange=exchange_kind,
        allow_network=allow_network, config=config, preset=preset,
    )
    plan = RunPlan(out_dir=out, history_s=history_s, duration_s=duration_s, seed=seed,
                   model_name=model_name or config.model.name, epochs=epochs, live=not offline_only)
    shutdown = start_shutdown(config, grace_s, signals=False)

    def on_signal(signum: int, frame: object) -> None:
        first = not shutdown.is_set()
        shutdown.request(signal.Signals(signum).name)
        if first:  # ends the stage in progress, as Ctrl-C does; the summary says where the run got to
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    observer = make_view(view, is_tty=sys.stderr.isatty())
    # One line per request or bronze part would drown the run's own lines (the stage summaries keep the counts).
    for noisy in ("httpx", "btcpipe.lake.lake"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if isinstance(observer, RichRunView) and not os.environ.get("BTCPIPE_LOG_LEVEL"):
        # The terminal view says what happens; the services' INFO lines would tear its live panel apart.
        logging.getLogger().setLevel(logging.WARNING)
    with ExitStack() as stack:
        try:
            wiring = RunAdapters(options, stack, observer=observer, model_name=plan.model_name, shutdown=shutdown)
        except BtcpipeError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        # A stopping run writes its summary and page without plots: drawing them could outlast the grace period.
        result = run_pipeline(plan, wiring, observer,
                              write_report=lambda r: write_report(r, out, with_plots=not shutdown.is_set()))
    shutdown.finished()
    report = result.stage("report")
    if report is not None and report.ok:
        click.echo(f"report: {report.summary.get('html')}")
        click.echo(f"summary: {report.summary.get('summary')}")
    if not result.ok:
        click.echo(f"error: {result.error}", err=True)
        sys.exit(EXIT_FAILED)


@click.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def report_cli(run_dir: Path) -> None:
    """Rebuild RUN_DIR/report.html (and its PNG plots) from RUN_DIR/summary.json and predictions.csv.

    Useful after upgrading btcpipe, or to read a run copied from another machine.
    """
    from btcpipe.run.report import rebuild_report

    try:
        paths = rebuild_report(run_dir)
    except BtcpipeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"report: {paths['html']}")

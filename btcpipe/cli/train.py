"""``btcpipe train``: read gold rows from the lake, train the MLP, export it and register a new version."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from btcpipe.cli.wiring.bounds import SEED, finite
from btcpipe.domain.errors import BtcpipeError
from btcpipe.domain.time import iso, parse_time


@click.command("train")
@click.option("--lake", "lake_uri", required=True, help="Lake root: a local directory or s3://bucket/prefix.")
@click.option("--s3-endpoint", default=None, help="S3 endpoint URL (e.g. a moto_server), for s3:// lakes.")
@click.option("--symbol", default="BTCUSDT", show_default=True, help="Symbol whose gold features to train on.")
@click.option("--start", required=True, help="First second (inclusive): ISO date/datetime (UTC) or epoch ms/µs.")
@click.option("--end", required=True, help="End (exclusive): ISO date/datetime (UTC) or epoch ms/µs.")
@click.option("--name", required=True, help="Model name in the registry (models/<name>/<version>/).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of every random choice in training.")
@click.option("--epochs", type=click.IntRange(1, 10_000), default=40, show_default=True,
              help="Most epochs (early stopping may end sooner).")
@click.option("--patience", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="Epochs without a better val loss to stop.")
@click.option("--batch-size", type=click.IntRange(1, 1 << 20), default=1024, show_default=True,
              help="Rows per optimiser step.")
@click.option("--learning-rate", type=finite(0, 10, min_open=True), default=1e-3, show_default=True,
              help="Adam learning rate.")
@click.option("--promote", is_flag=True, help="Point the production alias at the new version.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Also write the four artifact files into this directory.")
@click.option("--track/--no-track", "track", default=None,
              help="Log the run to MLflow (the tracking extra); default: [tracking] enabled in the config.")
@click.option("--tracking-uri", default=None, help="MLflow tracking URI (default: [tracking] uri, else ./mlruns).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Config file ([tracking]); default $BTCPIPE_CONFIG.")
@click.option("--progress", "progress_mode", type=click.Choice(["auto", "bar", "log", "none"]), default="auto",
              show_default=True, help="Progress display: a bar on a terminal, log lines otherwise.")
def cli(
    *,
    lake_uri: str, s3_endpoint: str | None, symbol: str, start: str, end: str, name: str, seed: int, epochs: int,
    patience: int, batch_size: int, learning_rate: float, promote: bool, out_dir: str | None, progress_mode: str,
    track: bool | None, tracking_uri: str | None, config_path: Path | None,
) -> None:
    """Train the 10-s return MLP on gold rows of [START, END) and register it as a new version.

    The rows are split by time into train/val/test (70/15/15) with a purge gap longer than the label
    horizon; the scaler is fitted on train only. Prints the new version and its test metrics as JSON.
    With --track (or [tracking] enabled) the run is also logged to MLflow: parameters, data span, per-epoch
    curves, the evaluation table, the ONNX model and its schema. The registry stays the source of truth.
    """
    from btcpipe.cli.wiring.config import load_config
    from btcpipe.lake.lake import Lake
    from btcpipe.model.gold import load_gold
    from btcpipe.model.progress import LogReporter, RichReporter, SilentReporter, TrainingReporter, default_reporter
    from btcpipe.model.registry import ModelRegistry
    from btcpipe.model.train import TrainConfig
    from btcpipe.model.training_run import train_from_rows

    try:
        start_us, end_us = parse_time(start), parse_time(end)
    except ValueError as exc:
        raise click.BadParameter(f"cannot read the time: {exc}") from exc
    if end_us <= start_us:
        raise click.BadParameter(f"--end {iso(end_us)} must be after --start {iso(start_us)}")
    reporters: dict[str, type[TrainingReporter]] = {"bar": RichReporter, "log": LogReporter, "none": SilentReporter}
    reporter = default_reporter() if progress_mode == "auto" else reporters[progress_mode]()
    tracker = None
    try:
        tracking = load_config(config_path).tracking
        if track if track is not None else tracking.enabled:
            from btcpipe.infra.tracking import MlflowTracker

            tracker = MlflowTracker(tracking_uri or tracking.uri, tracking.experiment)
    except BtcpipeError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        config = TrainConfig(seed=seed, max_epochs=epochs, patience=patience, batch_size=batch_size,
                             learning_rate=learning_rate)
        lake = Lake.open(lake_uri, endpoint_url=s3_endpoint)
        gold = load_gold(lake, symbol, start_us, end_us)
        run = train_from_rows(gold.rows, gold.params, symbol=symbol, config=config, reporter=reporter)
        registry = ModelRegistry(lake.store)
        version = registry.register(name, run.artifacts)
        if promote:
            registry.promote(name, version)
        if out_dir:
            run.artifacts.write_directory(out_dir)
    except BtcpipeError as exc:
        raise click.ClickException(f"training failed: {exc}") from exc
    tracked: dict[str, str] | None = None
    if tracker is not None:
        from btcpipe.model.training_run import training_record

        record = training_record(run, name=name, version=version, symbol=symbol,
                                 registry_uri=lake.store.uri(f"models/{name}/{version}"))
        try:
            tracked = {"uri": tracker.uri, "experiment": tracker.experiment, "run_id": tracker.log_training(record)}
        except BtcpipeError as exc:
            # The model is registered (the source of truth); say what was not tracked and fail the command.
            raise click.ClickException(f"model {name} {version} is registered, but tracking failed: {exc}") from exc
    summary = {
        "name": name, "version": version, "promoted": promote, "uri": lake.store.uri(f"models/{name}/{version}"),
        "rows": {"dropped_incomplete": run.dropped_rows, "train": len(run.split.train), "val": len(run.split.val),
                 "test": len(run.split.test)},
        "best_epoch": run.trained.best_epoch, "uncertainty": run.artifacts.manifest.get("uncertainty"),
        "test": run.artifacts.manifest.get("metrics", {}).get("model"),
        "baselines": run.artifacts.manifest.get("metrics", {}).get("baselines"),
        "tracking": tracked,
    }
    click.echo(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())

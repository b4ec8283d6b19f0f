"""``btcpipe flink``: live features on Apache Flink — the processor's symbol state in a PyFlink job.

pyflink lives in ``.venv-flink`` (``make flink-venv``); these commands run in btcpipe's venv and start
the job there as a subprocess. ``btcpipe flink encode`` turns a recording into the job's input (base64
bus payloads, one per line); ``btcpipe flink run`` runs the job over a file (bounded) or a directory
it watches for new files (``--follow``, until stopped). docs/SCALE.md says when to pick Flink.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import click

from btcpipe.domain.errors import BtcpipeError

EXIT_FAILED = 1


@click.group("flink")
def cli() -> None:
    """Live features on Apache Flink (in its own venv: make flink-venv); docs/SCALE.md."""


@cli.command("encode")
@click.option("--recording", "recordings", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Recording(s) of Binance JSON streams (repeat for contiguous files, in order).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File of base64 bus payloads, one per line (the job's input).")
@click.option("--no-best-bid-ask", is_flag=True, help="Trades only.")
def encode(recordings: tuple[Path, ...], output: Path, no_best_bid_ask: bool) -> None:
    """Write a recording's trades and best bid/ask as bus payloads in exchange time."""
    from btcpipe.run.flink_parity import write_payloads
    from btcpipe.services.replay import tape_from_recording

    try:
        n = write_payloads(tape_from_recording(list(recordings)), output, with_best_bid_ask=not no_best_bid_ask)
    except BtcpipeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(json.dumps({"payloads": n, "output": str(output)}))


@cli.command("run")
@click.option("--input", "input_path", type=click.Path(exists=True, path_type=Path), required=True,
              help="A payload file (bounded), or a directory watched for new files with --follow.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Feature rows, one JSON line each (values exact, base64 float64).")
@click.option("--params", "params_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Feature params (a model's schema_v1.json or params JSON).")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("flink-work"),
              show_default=True, help="Checkpoints, the job's log and its params file.")
@click.option("--follow", is_flag=True, help="Watch --input (a directory) for new payload files; run until Ctrl-C.")
@click.option("--lateness-ms", type=click.IntRange(0, 600_000), default=0, show_default=True,
              help="The watermark's bounded out-of-orderness (events later than this are counted late).")
@click.option("--parallelism", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--checkpoint-ms", type=click.IntRange(0, 3_600_000), default=0, show_default=True,
              help="Checkpoint interval (0: none); checkpoints go to WORK_DIR/checkpoints.")
@click.option("--redis-url", default="", help="Also put rows in this Redis online store (features:{symbol}:{ts}).")
def run(  # noqa: PLR0917 - click passes every option
    input_path: Path, output: Path, params_file: Path, work_dir: Path, follow: bool, lateness_ms: int,
    parallelism: int, checkpoint_ms: int, redis_url: str,
) -> None:
    """Run the Flink job: payloads → key_by(symbol) → the symbol state in managed state → rows."""
    from btcpipe.cli.wiring.live import load_params
    from btcpipe.engines.flink.launch import JobOptions, run_job, start_job

    try:
        params = load_params(params_file, None, "", "")
        options = JobOptions(input_path, output, params, work_dir.resolve(), follow=follow,
                             out_of_orderness_ms=lateness_ms, parallelism=parallelism,
                             checkpoint_ms=checkpoint_ms or (1000 if follow else 0), redis_url=redis_url)
        if not follow:
            click.echo(json.dumps(run_job(options)))
            return
        proc = start_job(options)
        click.echo(f"Flink job running (pid {proc.pid}); rows → {output}; log {work_dir / 'job.log'}; Ctrl-C stops it",
                   err=True)
        try:
            proc.wait()
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    except BtcpipeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)

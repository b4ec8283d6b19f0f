"""``btcpipe parity``: prove the live path's feature rows equal the batch builder's, every value."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from btcpipe.cli.wiring.bounds import SEED, finite
from btcpipe.domain.errors import BtcpipeError

EXIT_DIFFERENT = 1
EXIT_FAILED = 2


@click.command("parity")
@click.option("--recording", "recordings", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Recording(s) of Binance JSON streams to replay (repeat for contiguous files, in order).")
@click.option("--simulate", "sim_seconds", type=click.IntRange(60, 86_400), default=None,
              help="Instead of a recording, a simulated tape of this many seconds.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Simulator seed (with --simulate).")
@click.option("--params", "params_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Feature params (schema_v1.json or params JSON); default: fitted on the tape itself.")
@click.option("--speed", type=finite(1.0, 1e6), default=20.0, show_default=True,
              help="Replay speed of the exchange clock (× real time).")
@click.option("--lateness-ms", type=click.IntRange(0, 600_000), default=None,
              help="Processor lateness in exchange time (default: 200 ms of wall time = 200 × speed).")
@click.option("--timeout", "timeout_s", type=finite(1.0, 86_400), default=600.0, show_default=True,
              help="Give up on the live run after this many wall seconds.")
@click.option("--engine", type=click.Choice(["processor", "flink"]), default="processor", show_default=True,
              help="processor: the whole live path on loopback; flink: the PyFlink job (in .venv-flink) over "
                   "the tape's bus payloads (make flink-venv).")
@click.option("--parallelism", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Flink parallelism of the keyed operator (with --engine flink).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole comparison as JSON (else a summary).")
def cli(  # noqa: PLR0917 - click passes every option
    recordings: tuple[Path, ...], sim_seconds: int | None, seed: int, params_file: Path | None, speed: float,
    lateness_ms: int | None, timeout_s: float, engine: str, parallelism: int, as_json: bool,
) -> None:
    """Replay a recording (or a simulated tape) through local exchange → SBE WebSocket → ingestor → bus →
    processor → online store, build the same span with the batch builder, and compare every row and
    every value. Prints the rows compared, rows missing on either side and the largest absolute
    difference per feature; warm-up rows (without their whole 60 s lookback on the live side) are
    listed apart with the reason. Exit status 0 only when every compared value is equal (1 otherwise,
    2 when the run itself failed). ``--engine flink`` replays the tape's bus payloads through the Flink
    job instead (bounded file source; the batch side is computed here) with the same verdict.
    """
    from btcpipe.cli.wiring.live import load_params
    from btcpipe.run.parity import run_parity
    from btcpipe.services.replay import tape_from_recording

    if bool(recordings) == (sim_seconds is not None):
        raise click.UsageError("give either --recording FILE... or --simulate SECONDS")
    params = load_params(params_file, None, "", "") if params_file is not None else None
    try:
        if recordings:
            tape = tape_from_recording(list(recordings))
        else:
            from btcpipe.market.simulator import SimConfig, simulate

            tape = simulate(SimConfig(seed=seed, duration_s=sim_seconds or 3600))
        if engine == "flink":
            from btcpipe.run.flink_parity import run_flink_parity

            report = run_flink_parity(tape, params, parallelism=parallelism, timeout_s=timeout_s)
        else:
            report = run_parity(tape, params, speed=speed, lateness_ms=lateness_ms, timeout_s=timeout_s)
    except BtcpipeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    doc = report.to_dict()
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        worst = {k: v for k, v in report.max_abs_diff.items() if v}
        click.echo(
            f"{'PARITY OK' if report.ok else 'PARITY FAILED'}: {report.rows_compared} rows compared "
            f"({report.compared_from} → {report.compared_to}), {report.rows_different} different, "
            f"{report.rows_missing_online} missing online, {report.rows_missing_offline} missing offline; "
            f"{report.warmup.get('rows', 0)} warm-up rows not compared"
            + (f"; max |diff| {worst}" if worst else "")
        )
    sys.exit(0 if report.ok else EXIT_DIFFERENT)

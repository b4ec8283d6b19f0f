"""``btcpipe report RUN_DIR``: rebuild a run's ``report.html`` and plots from its ``summary.json``."""

from __future__ import annotations

from pathlib import Path

import click

from btcpipe.domain.errors import BtcpipeError


@click.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def cli(run_dir: Path) -> None:
    """Rebuild RUN_DIR/report.html (and its PNG plots) from RUN_DIR/summary.json and predictions.csv.

    Useful after upgrading btcpipe, or to read a run copied from another machine.
    """
    from btcpipe.run.report import rebuild_report

    try:
        paths = rebuild_report(run_dir)
    except BtcpipeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"report: {paths['html']}")

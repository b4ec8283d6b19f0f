"""Entry point. Sub-commands load lazily so ``btcpipe --help`` does not import torch or onnxruntime."""

from __future__ import annotations

import gc
import importlib
import importlib.util
import sys
from typing import Any

import click

from btcpipe import __version__

# name → ("module" whose `cli` is the click command or group, or "module:attribute"; its help line).
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("btcpipe.cli.run", "the whole pipeline on one machine: exchange, backfill, train, live"),
    "exchange": ("btcpipe.cli.exchange", "serve the local Binance-compatible exchange"),
    "sim": ("btcpipe.cli.sim", "market simulator: generate a tape, print the oracle"),
    "backfill": ("btcpipe.cli.backfill", "download history (REST or dumps) into the lake's bronze"),
    "lake": ("btcpipe.cli.lake", "inspect and check the lake"),
    "features": ("btcpipe.cli.features", "build 1-second features and labels (silver/gold)"),
    "train": ("btcpipe.cli.train", "train the MLP and register it"),
    "evaluate": ("btcpipe.cli.evaluate", "evaluate a model against baselines and the oracle"),
    "model": ("btcpipe.cli.model", "model registry: list, promote, rollback"),
    "ingest": ("btcpipe.cli.ingest", "live ingestor: exchange streams to the bus and bronze"),
    "process": ("btcpipe.cli.process", "live processor: bus events to 1-second features"),
    "infer": ("btcpipe.cli.infer", "live inference: features to predictions"),
    "replay": ("btcpipe.cli.replay", "replay a recording or bronze span onto the bus"),
    "parity": ("btcpipe.cli.parity", "prove online features equal offline features"),
    "cluster": ("btcpipe.cli.scale.cluster", "a local multi-node Ray cluster on loopback (--engine ray)"),
    "flink": ("btcpipe.cli.scale.flink", "live features on Apache Flink (its own venv: make flink-venv)"),
    "feast": ("btcpipe.cli.scale.feast", "write a Feast feature repo over the lake's silver (optional wrapper)"),
    "report": ("btcpipe.cli.run:report_cli", "rebuild a run's report.html from its summary.json"),
}


class LazyGroup(click.Group):
    """The ``btcpipe`` command group: imports a command's module only when that command runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n, (target, _) in COMMANDS.items()
                      if importlib.util.find_spec(target.partition(":")[0]) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, _, attribute = entry[0].partition(":")  # "module" (its `cli`) or "module:attribute"
        if importlib.util.find_spec(module) is None:
            return None
        command = getattr(importlib.import_module(module), attribute or "cli")
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="btcpipe")
def cli() -> None:
    """btcpipe: 10-second-ahead BTCUSDT return prediction, trained offline, served live."""


# The ``service`` field of every log line: the same names the EMF dimensions and the alert rules use.
_SERVICE_NAMES = {"ingest": "ingestor", "process": "processor", "infer": "inference"}


def service_name(args: list[str]) -> str:
    """The service a command line runs (``btcpipe ingest ...`` → ``ingestor``), for the logs."""
    command = next((a for a in args if not a.startswith("-")), "")
    if command not in COMMANDS:
        return "btcpipe"
    return _SERVICE_NAMES.get(command, command)


def main(argv: list[str] | None = None) -> Any:
    from btcpipe.infra.logs import configure_logging

    args = argv if argv is not None else sys.argv[1:]
    configure_logging(service=service_name(args))
    try:
        return cli.main(args=args, prog_name="btcpipe")
    finally:
        # Everything is written and closed by now. The interpreter's last cyclic collection walks the whole heap
        # (seconds after `btcpipe run`, with torch, the tape and the lake tables loaded) and would eat into the
        # stop's grace period; frozen objects are left to the OS.
        gc.freeze()


if __name__ == "__main__":
    main()

"""Checks shared by the deploy tests: does a command line name commands and options the CLI has."""

from __future__ import annotations

import click

from btcpipe.cli.main import COMMANDS, cli


def cli_problems(argv: list[str]) -> list[str]:
    """Problems with a btcpipe command line: unknown (sub)command or options the command does not have."""
    if not argv or argv[0] not in COMMANDS:
        return [f"unknown command {argv[:1]}"]
    command = cli.get_command(click.Context(cli), argv[0])
    rest = argv[1:]
    while isinstance(command, click.Group):
        if not rest:
            return [f"{argv[0]} needs a sub-command"]
        command, rest = command.get_command(click.Context(command), rest[0]), rest[1:]
        if command is None:
            return [f"unknown sub-command in {argv}"]
    assert command is not None
    options = {opt for p in command.params for opt in p.opts}
    return [f"{argv[0]} has no option {arg}" for arg in rest if arg.startswith("--") and arg not in options]


# What an orchestrator's grace period must leave beyond btcpipe's own stop bound ([shutdown] grace_s): the
# interpreter's teardown and a loaded node.
STOP_MARGIN_S = 5.0


def grace_period_problem(where: str, grace_period_s: float, btcpipe_grace_s: float) -> str | None:
    """A deploy file's termination grace period that would SIGKILL btcpipe before its bounded stop is over."""
    needed = btcpipe_grace_s + STOP_MARGIN_S
    if grace_period_s < needed:
        return (f"{where}: grace period {grace_period_s:g} s < [shutdown] grace_s {btcpipe_grace_s:g} s"
                f" + {STOP_MARGIN_S:g} s")
    return None

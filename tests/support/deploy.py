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

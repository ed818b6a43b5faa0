"""The ``rail`` command: parse arguments, call the library, format the result, set the exit code.

Exit codes: 0 success / everything allowed; 1 a verdict against the input (blocked, tampered, below a lint
threshold); 2 usage or configuration errors.
"""

from __future__ import annotations

import sys

import click

from rail._version import __version__
from rail.errors import RailError


class _RailGroup(click.Group):
    """Turns every RailError into a one-paragraph message and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except RailError as exc:
            click.echo(f"rail: error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("rail: interrupted", err=True)
            sys.exit(130)


@click.group(cls=_RailGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rail")
def main() -> None:
    """Deploy BLOOM and BLOOMZ within the BigScience BLOOM RAIL License v1.0."""


def _register() -> None:
    from rail.cli import audit, bank, card, check, evaluate, generate, serve

    for module in (check, evaluate, bank, generate, serve, audit, card):
        for command in module.COMMANDS:
            main.add_command(command)


_register()

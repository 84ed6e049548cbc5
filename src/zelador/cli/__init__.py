"""`zelador` subcommands: parse, call, print."""

from zelador.cli.main import main

__all__ = ["main"]

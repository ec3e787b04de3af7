"""Subcommand: the registrable base of ``regimen`` commands, so a plugin can add its own."""

from __future__ import annotations

import argparse

from regimen.registry import Registrable


class Subcommand(Registrable):
    """One ``regimen NAME ...`` command. Register with ``@Subcommand.register("name")``.

    ``add_subparser`` adds the command's arguments and sets ``func`` (called with the parsed args; its return
    value is the exit status).
    """

    description: str = ""

    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        raise NotImplementedError  # abstract: every command defines its arguments


def add_common_arguments(subparser: argparse.ArgumentParser) -> None:
    """``-o/--overrides`` and ``--include-package``, which every command that reads a config accepts."""
    subparser.add_argument(
        "-o",
        "--overrides",
        default="",
        help="a JSON or Jsonnet object of config changes, e.g. '{\"trainer.num_epochs\": 3}'",
    )
    subparser.add_argument(
        "--include-package",
        action="append",
        default=[],
        metavar="PACKAGE",
        help="import this package and its submodules first, so its registered components can be used (repeatable)",
    )

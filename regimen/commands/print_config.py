"""The ``print-config`` command: evaluate an experiment file with its overrides and print the resolved JSON."""

from __future__ import annotations

import argparse
import json

from regimen.commands.subcommand import Subcommand, add_common_arguments
from regimen.registry import Params
from regimen.registry.params import ordered


@Subcommand.register("print-config")
class PrintConfig(Subcommand):
    """Print the config regimen would run: Jsonnet evaluated, ``std.extVar`` filled in, overrides applied."""

    description = "Evaluate an experiment file (Jsonnet or JSON) with its overrides and print the result."

    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        subparser = parser.add_parser("print-config", description=self.description, help=self.description)
        subparser.add_argument("param_path", help="the experiment file (.jsonnet or .json)")
        add_common_arguments(subparser)
        subparser.set_defaults(func=self.run)
        return subparser

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        params = Params.from_file(args.param_path, args.overrides)
        print(json.dumps(ordered(params.as_dict()), indent=4))
        return 0

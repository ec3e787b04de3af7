"""The ``describe`` command: one registered component's class, summary and every config key it reads."""

from __future__ import annotations

import argparse

from regimen.commands.list_components import component_bases
from regimen.commands.subcommand import Subcommand
from regimen.registry import ConfigurationError
from regimen.registry.introspection import describe_lines, match_name, registered_component


@Subcommand.register("describe")
class Describe(Subcommand):
    """Describe one registered component: its class, the first paragraph of its docstring, and each config key
    its registered constructor reads, with the key's type, default (or "required") and documentation.

    BASE and NAME are matched ignoring case, ``-`` and ``_`` (``regimen describe learning-rate-scheduler
    Linear-With-Warmup``), and a base's words may be abbreviated to their initials (``lr-scheduler``); an
    unknown one is a configuration error with the closest match and what exists.
    """

    description = "Show a registered component's config keys: type, default and documentation of each."

    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        subparser = parser.add_parser("describe", description=self.description, help=self.description)
        subparser.add_argument("base", help="the base class, e.g. Optimizer (see `regimen list`)")
        subparser.add_argument("name", help='the registered name, e.g. "adam", or a dotted import path')
        subparser.add_argument(
            "--include-package",
            action="append",
            default=[],
            metavar="PACKAGE",
            help="import this package and its submodules first, so that its components can be described (repeatable)",
        )
        subparser.set_defaults(func=self.run)
        return subparser

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        bases = component_bases()
        base = bases[match_name(args.base, list(bases), "base", abbreviations=True)]
        names = base.list_available()
        if "." in args.name and not base.is_registered(args.name):
            name = args.name  # an import path, resolved as a config's "type" would be
        else:
            try:
                name = match_name(args.name, names, f"{base.__name__} name")
            except ConfigurationError as error:
                hint = "if it is defined in your own package, load it with --include-package PACKAGE"
                raise ConfigurationError(f"{error}; {hint}") from None
        for line in describe_lines(registered_component(base, name)):
            print(line)
        return 0

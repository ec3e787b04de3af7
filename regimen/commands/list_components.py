"""The ``list`` command: every registrable base class and the names registered for it."""

from __future__ import annotations

import argparse
import inspect

from regimen.commands.subcommand import Subcommand
from regimen.registry import ConfigurationError, Registrable
from regimen.registry.errors import unknown_name_message


def component_bases() -> dict[str, type[Registrable]]:
    """Each base class that configs choose implementations of by ``type`` (commands excluded), by name, with the
    built-in components and everything imported so far (plugins, ``--include-package``) registered."""
    import regimen.experiment  # noqa: F401  (imports and so registers every built-in component)

    bases = {base.__name__: base for base in Registrable._registry if not issubclass(base, Subcommand)}
    return dict(sorted(bases.items()))


def summary(implementation: object, width: int = 100) -> str:
    """The first sentence of an implementation's docstring ("" without one), shortened to ``width`` characters."""
    paragraph = " ".join((inspect.getdoc(implementation) or "").strip().split("\n\n", 1)[0].split())
    sentence = paragraph.split(". ", 1)[0].rstrip(".")
    return sentence if len(sentence) <= width else sentence[: width - 3].rsplit(" ", 1)[0] + "..."


@Subcommand.register("list")
class ListComponents(Subcommand):
    """List the registrable base classes (Model, DatasetReader, Trainer, ...) with each name registered for them
    and the first line of its docstring; the default implementation (built when ``type`` is absent) is marked."""

    description = "List every registered component (models, readers, trainers, optimizers, ...) by base class."

    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        subparser = parser.add_parser("list", description=self.description, help=self.description)
        subparser.add_argument("base", nargs="?", help="only this base class (case-insensitive), e.g. Optimizer")
        subparser.add_argument(
            "--include-package",
            action="append",
            default=[],
            metavar="PACKAGE",
            help="import this package and its submodules first, so that its components are listed (repeatable)",
        )
        subparser.set_defaults(func=self.run)
        return subparser

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        bases = component_bases()
        if args.base is not None:
            chosen = {name: base for name, base in bases.items() if name.lower() == args.base.lower()}
            if not chosen:
                raise ConfigurationError(unknown_name_message("base", args.base, list(bases)))
            bases = chosen
        for name, base in bases.items():
            print(name)
            for registered in base.list_available():
                implementation, _ = Registrable._registry[base][registered]
                marker = " (default)" if registered == base.default_implementation else ""
                print(f"  {registered + marker:<32} {summary(implementation)}".rstrip())
        return 0

"""The ``best-params`` command: the best trial's hyper-parameter values of a study, as ``name=value`` pairs."""

from __future__ import annotations

import argparse

from regimen.commands.subcommand import Subcommand


def add_study_arguments(subparser: argparse.ArgumentParser) -> None:
    """``--study-name`` and ``--storage``, which name a study of ``regimen tune``."""
    subparser.add_argument("--study-name", help="the study's name (may be left out when the storage holds one study)")
    subparser.add_argument(
        "--storage",
        required=True,
        help="the study database's SQLAlchemy URL (sqlite:///runs/study/study.db), or the study directory",
    )


@Subcommand.register("best-params")
class BestParams(Subcommand):
    """Print the study's best hyper-parameter values on one line, ``lr=0.01 dropout=0.2`` (allennlp-optuna's
    format), e.g. to export them as environment variables for ``regimen train``."""

    description = "Print a study's best hyper-parameter values as name=value pairs."

    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        subparser = parser.add_parser("best-params", description=self.description, help=self.description)
        add_study_arguments(subparser)
        subparser.set_defaults(func=self.run)
        return subparser

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from regimen.tuning.results import best_values, load_study

        values = best_values(load_study(args.storage, args.study_name))
        print(" ".join(f"{name}={value}" for name, value in values.items()))
        return 0

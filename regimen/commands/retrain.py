"""The ``retrain`` command: train an experiment with the best hyper-parameter values a study found."""

from __future__ import annotations

import argparse
import logging

from regimen.commands.best_params import add_study_arguments
from regimen.commands.subcommand import Subcommand
from regimen.commands.train import Train, add_train_arguments

logger = logging.getLogger(__name__)


@Subcommand.register("retrain")
class Retrain(Subcommand):
    """Train the experiment as ``regimen train`` does (same arguments and exit status), with the study's best values
    as its external variables; the run's ``config.json`` holds them."""

    description = "Train an experiment with the best hyper-parameter values of a study (regimen tune)."

    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        subparser = parser.add_parser("retrain", description=self.description, help=self.description)
        add_train_arguments(subparser)
        add_study_arguments(subparser)
        subparser.set_defaults(func=self.run)
        return subparser

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from regimen.tuning.results import best_values, load_study
        from regimen.tuning.search_space import ext_vars

        study = load_study(args.storage, args.study_name)
        values = best_values(study)
        logger.info("retraining with trial %d's values: %s", study.best_trial.number, values)
        return Train.run(args, ext_vars(values))

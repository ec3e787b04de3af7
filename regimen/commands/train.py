"""The ``train`` command: ``regimen train experiment.jsonnet -s runs/exp1`` trains the experiment a file describes."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from regimen.commands.subcommand import Subcommand, add_common_arguments
from regimen.registry import ConfigurationError, Params
from regimen.registry.params import ordered

logger = logging.getLogger(__name__)


@Subcommand.register("train")
class Train(Subcommand):
    """Train a model: check the config and the serialization directory, build everything, train, save results.

    Exit status: 0 when training finished, 2 for a mistake in the config or the arguments (nothing is written
    then), 75 when a signal stopped training after saving a checkpoint (rerun with ``--recover`` to continue).
    """

    description = "Train a model from an experiment file (Jsonnet or JSON)."

    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        subparser = parser.add_parser("train", description=self.description, help=self.description)
        add_train_arguments(subparser)
        subparser.set_defaults(func=self.run)
        return subparser

    @staticmethod
    def run(args: argparse.Namespace, ext_vars: dict[str, str] | None = None) -> int:
        """Train as the arguments say; ``ext_vars`` are external variables of the experiment besides the
        environment's (``regimen retrain`` passes a study's best values)."""
        from regimen.run_directory import early_records

        with early_records():  # out.log gets every line from here on, also those before its directory exists
            return Train._run(args, ext_vars)

    @staticmethod
    def _run(args: argparse.Namespace, ext_vars: dict[str, str] | None) -> int:
        from regimen.experiment import check_experiment, run_experiment
        from regimen.models.archival import CONFIG_NAME
        from regimen.trainers.preemption import TrainingPreempted, ignore_stop_signals
        from regimen.trainers.progress import FILE_FRIENDLY_VARIABLE

        params = Params.from_file(args.param_path, args.overrides, ext_vars)
        if args.file_friendly_logging:  # how progress looks, not part of the experiment (config.json)
            os.environ[FILE_FRIENDLY_VARIABLE] = "1"  # the workers of a distributed run inherit it
        directory = Path(args.serialization_dir)
        experiment = check_experiment(params, directory, args.recover, args.force)
        if args.dry_run:
            experiment.build()
            print(json.dumps(ordered(params.as_dict()), indent=4))
            for line in experiment.describe():
                print(line)
            print(f"dry run: the config is valid; nothing was trained or written to {directory}")
            return 0
        try:
            metrics = run_experiment(experiment, params, directory, args.recover, args.force, args.node_rank)
        except TrainingPreempted as stop:
            again = "--recover" if (directory / CONFIG_NAME).is_file() else ""  # whether the run was started
            advice = f"regimen train {args.param_path} -s {directory} {again}".strip()
            logger.warning("%s; %s with: %s", stop, "continue" if again else "start it again", advice)
            return stop.exit_code
        except Exception as error:
            crash = hasattr(error, "regimen_where") and not isinstance(error, ConfigurationError)
            if crash:  # a crash while training: where, then its traceback (and out.log)
                logger.error(
                    "the run failed at %s with %s (its traceback follows); once fixed, continue it from its last "
                    "checkpoint with: regimen train %s -s %s --recover",
                    error.regimen_where, type(error).__name__, args.param_path, directory,
                )  # fmt: skip
            raise
        ignore_stop_signals()  # the run is finished; the command only exits
        if metrics:  # the other machines of a multi-node run have none
            print(json.dumps(metrics, indent=4))
        return 0


def add_train_arguments(subparser: argparse.ArgumentParser) -> None:
    """The arguments of ``regimen train`` (``regimen retrain`` takes them too)."""
    subparser.add_argument("param_path", help="the experiment file (.jsonnet or .json)")
    subparser.add_argument(
        "-s", "--serialization-dir", required=True, help="the directory for checkpoints, logs, metrics, archive"
    )
    group = subparser.add_mutually_exclusive_group()
    group.add_argument("-r", "--recover", action="store_true", help="continue the run in the serialization directory")
    group.add_argument("-f", "--force", action="store_true", help="replace the serialization directory if it exists")
    subparser.add_argument(
        "--node-rank", type=int, default=0, help="this machine's rank in a multi-node run (0 on the primary)"
    )
    subparser.add_argument(
        "--dry-run",
        action="store_true",
        help="build everything (read the data, the model, the trainer), print a summary and train nothing",
    )
    subparser.add_argument(
        "--file-friendly-logging",
        action="store_true",
        help="periodic plain progress lines instead of a progress bar (for logs that are files)",
    )
    add_common_arguments(subparser)

"""The ``tune`` command: ``regimen tune experiment.jsonnet hparams.json -s runs/study`` searches hyper-parameters."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from regimen.commands.subcommand import Subcommand, add_common_arguments

logger = logging.getLogger(__name__)


@Subcommand.register("tune")
class Tune(Subcommand):
    """Search hyper-parameters with Optuna, each trial an ordinary run in ``DIR/trial_<number>``.

    The arguments are allennlp-optuna's. Exit status: 0 when the study has its trials, 1 when every one failed, 2 for
    a mistake in the experiment, the hyper-parameter file, the Optuna config or the arguments (found before any
    trial runs, or when a trial's config proves wrong), 75 when a signal stopped it (the running trial saved a
    checkpoint; rerun with ``--skip-if-exists`` to resume it and go on).
    """

    description = "Search an experiment's hyper-parameters with Optuna: each trial trains in DIR/trial_<number>."

    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        subparser = parser.add_parser("tune", description=self.description, help=self.description)
        subparser.add_argument("param_path", help="the experiment file, reading each hyper-parameter with std.extVar")
        subparser.add_argument(
            "hparam_path",
            help='the search space: a JSON list like [{"type": "float", "attributes": {"name": "lr", "low": 1e-4, '
            '"high": 0.1, "log": true}}], each type a suggest_<type> of Optuna\'s trials',
        )
        subparser.add_argument(
            "-s", "--serialization-dir", required=True, help="the study directory: one trial_<number> run per trial"
        )
        subparser.add_argument(
            "--optuna-param-path",
            help='the sampler and pruner: {"sampler": {"type": "TPESampler", "attributes": {...}}, "pruner": ...}',
        )
        subparser.add_argument(
            "--study-name", help="the study's name in the storage (default: the study directory's name)"
        )
        subparser.add_argument(
            "--storage",
            help="an SQLAlchemy URL of the study database, shared by every process of the study "
            "(default: sqlite:///DIR/study.db)",
        )
        subparser.add_argument(
            "--n-trials",
            type=int,
            default=50,
            help="the number of trials the study should have, counting earlier and other processes' ones (50)",
        )
        subparser.add_argument(
            "--timeout", type=float, help="start no new trial after this many seconds (default: no limit)"
        )
        subparser.add_argument("--direction", choices=("minimize", "maximize"), default="minimize")
        subparser.add_argument(
            "--metrics", default="best_validation_loss", help="the key of each trial's metrics.json to optimize"
        )
        subparser.add_argument(
            "--skip-if-exists",
            action="store_true",
            help="continue the study of that name if it exists (resuming an interrupted trial first)",
        )
        add_common_arguments(subparser)
        subparser.set_defaults(func=self.run)
        return subparser

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from regimen.registry import ConfigurationError
        from regimen.trainers.preemption import PREEMPTION_EXIT_CODE
        from regimen.tuning.results import best_values
        from regimen.tuning.study import StudyInterrupted, TuneOptions, tune

        if args.n_trials < 1:
            raise ConfigurationError(f"must be at least 1, got {args.n_trials}", "--n-trials")
        options = TuneOptions(
            experiment=args.param_path,
            hparams=args.hparam_path,
            directory=Path(args.serialization_dir),
            study_name=args.study_name,
            storage=args.storage,
            n_trials=args.n_trials,
            timeout=args.timeout,
            direction=args.direction,
            metric=args.metrics,
            optuna_config=args.optuna_param_path,
            skip_if_exists=args.skip_if_exists,
            include_package=args.include_package,
            overrides=args.overrides,
        )
        try:
            study = tune(options)
        except StudyInterrupted as stop:
            logger.warning(
                "%s; continue it with the same command and --skip-if-exists (the interrupted trial resumes)", stop
            )
            return PREEMPTION_EXIT_CODE
        from optuna.trial import TrialState

        states = [trial.state.name.lower() for trial in study.trials]
        counts = ", ".join(f"{states.count(state)} {state}" for state in dict.fromkeys(sorted(states)))
        print(f"study {study.study_name}: {len(states)} trials ({counts}) in {options.directory}")
        if all(trial.state == TrialState.FAIL for trial in study.trials):
            print("regimen: every trial failed; each one's out.log in its trial_<number> directory says how")
            return 1

        if any(trial.state == TrialState.COMPLETE for trial in study.trials):
            best = study.best_trial
            print(f"best trial: {best.number} ({options.metric} = {best.value})")
            print(" ".join(f"{name}={value}" for name, value in best_values(study).items()))
        return 0

"""A hyper-parameter study: Optuna asks for trials, each trial is an ordinary ``regimen train`` run in its directory.

The study's state lives in Optuna's storage (an SQLite file inside the study directory by default); several
``regimen tune`` processes pointed at the same storage share it. Each trial runs as a ``regimen train`` subprocess
in ``DIR/trial_<number>``, with the suggested values as its external variables (``std.extVar('lr')``), so a trial
is exactly the run a user would start by hand: its own config.json, logs, checkpoints, metrics and archive.

Safety comes from what a run already has: a trial interrupted by a signal saves a checkpoint (exit 75) and stays
RUNNING in the study; whoever continues the study first resumes it in its own directory (``--recover``), then asks
for new trials. Which process runs a trial is decided by a lock on ``DIR/.trial_<number>.lock`` that the process
running it holds (its ``regimen train`` child too): a RUNNING trial whose lock is free was interrupted or its
process was killed, and is taken over.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regimen.registry import ConfigurationError, Params
from regimen.registry.params import write_json_atomically
from regimen.trainers.callbacks.optuna_pruner import (
    MONITOR_VARIABLE,
    PRUNED_NAME,
    PRUNER_VARIABLE,
    STORAGE_VARIABLE,
    STUDY_VARIABLE,
    TRIAL_ID_VARIABLE,
)
from regimen.trainers.preemption import PREEMPTION_EXIT_CODE, SIGNALS
from regimen.tuning.optuna_config import build, read_optuna_config
from regimen.tuning.search_space import Hyperparameter, ext_vars, read_search_space

logger = logging.getLogger(__name__)

STUDY_FILE = "tune.json"  # what a study directory holds about its study, for print-results
DATABASE_NAME = "study.db"  # the default storage, inside the study directory
_CONFIGURATION_EXIT_CODE = 2


@dataclass
class TuneOptions:
    """What ``regimen tune`` was asked to do (its command-line arguments)."""

    experiment: str
    hparams: str
    directory: Path
    study_name: str | None = None
    storage: str | None = None
    n_trials: int = 50
    timeout: float | None = None
    direction: str = "minimize"
    metric: str = "best_validation_loss"
    optuna_config: str | None = None
    skip_if_exists: bool = False
    include_package: list[str] = field(default_factory=list)
    overrides: str = ""


class StudyInterrupted(Exception):
    """A signal stopped the study; the running trial saved a checkpoint and is resumed by the next ``tune``."""


def default_storage(directory: Path) -> str:
    """The SQLite database inside a study directory, as an SQLAlchemy URL."""
    return f"sqlite:///{(directory / DATABASE_NAME).resolve()}"


def tune(options: TuneOptions) -> Any:
    """Check everything, then run trials until the study has ``n_trials`` trials or ``timeout`` has passed; returns
    the study. Raises ConfigurationError for any mistake (before a trial runs, or when a trial's config proves
    wrong) and StudyInterrupted when a signal stopped it."""
    space, optuna_config = check_tuning(options)
    directory = options.directory
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    storage = options.storage or default_storage(directory)
    name = options.study_name or directory.resolve().name
    try:
        study = _open_study(options, storage, name, optuna_config)
    except ConfigurationError:
        if created:  # a failed command leaves no directory behind
            shutil.rmtree(directory, ignore_errors=True)
        raise
    write_json_atomically(
        directory / STUDY_FILE,
        {"study_name": name, "storage": storage, "metric": options.metric, "direction": options.direction},
    )
    runner = _TrialRunner(options, space, study, storage, optuna_config.get("pruner"))
    deadline = None if options.timeout is None else time.monotonic() + options.timeout
    with runner.forwarding_signals():
        while not runner.stop_signal:
            if deadline is not None and time.monotonic() >= deadline:
                logger.info("--timeout: %s s have passed, no new trial starts", options.timeout)
                break
            if not runner.run_next():
                break
    if runner.stop_signal:
        raise StudyInterrupted(f"the study stopped on {signal.Signals(runner.stop_signal).name}")
    return study


def check_tuning(options: TuneOptions) -> tuple[list[Hyperparameter], dict[str, Any]]:
    """Every check that needs no trial: the HPARAMS file, the Optuna config, the directory, and the experiment
    itself, evaluated with a value of each hyper-parameter and checked as ``regimen train`` checks it."""
    from regimen.experiment import check_experiment

    space = read_search_space(options.hparams)
    optuna_config = read_optuna_config(options.optuna_config)
    directory = options.directory
    if directory.exists() and not directory.is_dir():
        raise ConfigurationError(f"study directory {directory} is a file", "--serialization-dir")
    if directory.is_dir() and any(directory.iterdir()) and not options.skip_if_exists:
        raise ConfigurationError(
            f"study directory {directory} already exists and is not empty: use --skip-if-exists to continue its "
            "study, or choose another directory",
            "--serialization-dir",
        )
    examples = ext_vars({parameter.name: parameter.example() for parameter in space})
    try:
        params = Params.from_file(options.experiment, options.overrides, ext_vars=examples)
    except ConfigurationError as error:
        missing = re.search(r"undefined external variable: (\w+)", str(error))
        if missing is None:
            raise
        raise ConfigurationError(
            f"the experiment reads std.extVar('{missing[1]}'), but {options.hparams} suggests no '{missing[1]}' "
            f"(it suggests {', '.join(sorted(examples))}): add it there, or set it in the environment",
            options.experiment,
        ) from None
    with tempfile.TemporaryDirectory() as scratch:  # a directory that is never written: only the config is checked
        check_experiment(params, Path(scratch) / "trial")
    return space, optuna_config


def _open_study(options: TuneOptions, storage: str, name: str, optuna_config: dict[str, Any]) -> Any:
    import optuna

    storage_object = open_storage(storage)
    existing = {summary.study_name: summary for summary in optuna.get_all_study_summaries(storage_object)}
    if name in existing and not options.skip_if_exists:
        raise ConfigurationError(
            f"a study named {name!r} already exists in {storage}: use --skip-if-exists to continue it, or another "
            "--study-name",
            "--study-name",
        )
    study = optuna.create_study(
        study_name=name,
        storage=storage_object,
        direction=options.direction,
        sampler=build(optuna_config.get("sampler"), "sampler"),
        pruner=build(optuna_config.get("pruner"), "pruner"),
        load_if_exists=True,
    )
    stored = study.direction.name.lower()
    if stored != options.direction:
        raise ConfigurationError(
            f"study {name!r} was started to {stored} its objective; give --direction {stored}", "--direction"
        )
    return study


def open_storage(url: str, attempts: int = 20) -> Any:
    """Optuna's storage at ``url``. Processes that start a study together race to create its tables; the one that
    loses gets an SQLAlchemy integrity or operational error and tries again once the winner is done."""
    import optuna
    import sqlalchemy.exc

    for attempt in range(1, attempts + 1):
        try:
            return optuna.storages.RDBStorage(url)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as error:
            failure: Exception = error
            if attempt < attempts:
                time.sleep(0.25)
                continue
        except Exception as error:  # SQLAlchemy's errors for a bad URL, a missing driver
            failure = error
        break
    raise ConfigurationError(f"cannot open the study storage {url}: {failure}", "--storage") from None


class _TrialRunner:
    """Runs the study's trials one at a time in ``regimen train`` subprocesses, and tells Optuna how each ended."""

    def __init__(
        self, options: TuneOptions, space: list[Hyperparameter], study: Any, storage: str, pruner: dict | None
    ) -> None:
        self.options = options
        self.space = space
        self.study = study
        self.storage = storage
        self.pruner = pruner
        self.stop_signal = 0  # the signal that asked the study to stop, once one has
        self._child: subprocess.Popen | None = None

    def run_next(self) -> bool:
        """Resume an interrupted trial, or else start a new one while the study has fewer than ``n_trials``;
        False when there is nothing left to run."""
        claimed = self._claim_interrupted()
        if claimed is not None:
            trial_id, number, values, lock = claimed
            logger.info("trial %d: resuming the interrupted run in %s", number, self._directory(number))
            self._run(trial_id, number, values, lock, resumed=True)
            return True
        if len(self.study.get_trials(deepcopy=False)) >= self.options.n_trials:
            return False
        trial = self.study.ask()
        lock = self._lock(trial.number, create=True)
        trial.set_user_attr("directory", str(self._directory(trial.number)))
        values = {parameter.name: parameter.suggest(trial) for parameter in self.space}
        logger.info("trial %d: %s", trial.number, _shown(values))
        self._run(trial._trial_id, trial.number, values, lock, resumed=False)
        return True

    # ---- one trial ------------------------------------------------------------------------------------------
    def _run(self, trial_id: int, number: int, values: dict[str, Any], lock: int, resumed: bool) -> None:
        from optuna.trial import TrialState

        directory = self._directory(number)
        returncode = self._train(trial_id, directory, values, lock, resumed)
        interrupted = returncode == PREEMPTION_EXIT_CODE or (self.stop_signal and returncode != 0)
        if interrupted or (resumed and returncode == _CONFIGURATION_EXIT_CODE):
            os.close(lock)  # the trial stays RUNNING; its free lock says that it may be taken over
            if interrupted:
                logger.warning("trial %d was interrupted; it resumes when the study continues", number)
                self.stop_signal = self.stop_signal or signal.SIGTERM
                return
            raise ConfigurationError(
                f"trial {number} cannot be resumed (above); it stays unfinished until the study continues with "
                "the experiment and overrides it was started with"
            )
        try:
            if returncode == _CONFIGURATION_EXIT_CODE:
                self.study.tell(number, state=TrialState.FAIL)
                raise ConfigurationError(
                    f"trial {number} stopped with a configuration error (above); every trial would fail, so the "
                    "study stops"
                )
            if returncode != 0:
                self.study.tell(number, state=TrialState.FAIL)
                logger.error("trial %d failed (exit status %d): see %s", number, returncode, directory / "out.log")
            elif (directory / PRUNED_NAME).is_file():
                self.study.tell(number, state=TrialState.PRUNED)
                marker = json.loads((directory / PRUNED_NAME).read_text())
                shown = (marker["epoch"], marker["monitor"], marker["value"])
                logger.info("trial %d was pruned after epoch %d (%s = %s)", number, *shown)
            else:
                value = self._objective(number, directory)
                self.study.tell(number, value)
                logger.info("trial %d finished: %s = %s", number, self.options.metric, value)
        finally:  # the trial is finished in the study: its lock is no longer needed
            (self.options.directory / f".trial_{number}.lock").unlink(missing_ok=True)
            os.close(lock)

    def _train(self, trial_id: int, directory: Path, values: dict[str, Any], lock: int, resumed: bool) -> int:
        """The trial's ``regimen train`` (``--recover`` when resuming), in its own session so that a terminal's
        Ctrl-C reaches it once, through this process; it gets SIGTERM (saves and stops) if this process dies."""
        command = [sys.executable, "-m", "regimen", "train", self.options.experiment, "-s", str(directory)]
        if resumed and (directory / "config.json").is_file():
            command.append("--recover")
        elif directory.exists():
            command.append("--force")  # a trial that died before its run began holds nothing worth keeping
        if self.options.overrides:
            command += ["-o", self.options.overrides]
        for package in self.options.include_package:
            command += ["--include-package", package]
        environment = {
            **os.environ,
            **ext_vars(values),
            STORAGE_VARIABLE: self.storage,
            STUDY_VARIABLE: self.study.study_name,
            TRIAL_ID_VARIABLE: str(trial_id),
            MONITOR_VARIABLE: self.options.metric,
        }
        if self.pruner is not None:
            environment[PRUNER_VARIABLE] = json.dumps(self.pruner)
        self._child = subprocess.Popen(
            command,
            env=environment,
            stdout=subprocess.DEVNULL,  # the run's metrics are in its metrics.json; its logs go to stderr
            start_new_session=True,
            pass_fds=(lock,),  # the child holds the trial's lock too, for as long as it lives
            preexec_fn=_die_with_parent,
        )
        try:
            return self._child.wait()
        finally:
            self._child = None

    def _objective(self, number: int, directory: Path) -> float:
        metrics = json.loads((directory / "metrics.json").read_text())
        value = metrics.get(self.options.metric)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            from optuna.trial import TrialState

            self.study.tell(number, state=TrialState.FAIL)
            numbers = sorted(key for key, v in metrics.items() if isinstance(v, (int, float)))
            raise ConfigurationError(
                f"{self.options.metric!r} is not a number in {directory / 'metrics.json'}; its metrics are "
                f"{', '.join(numbers)}",
                "--metrics",
            )
        return float(value)

    # ---- which process runs which trial -------------------------------------------------------------------------
    def _directory(self, number: int) -> Path:
        return self.options.directory / f"trial_{number}"

    def _lock(self, number: int, create: bool) -> int | None:
        """An open descriptor holding the trial's lock, or None when another process holds it (or, without
        ``create``, when this directory has no lock file for it: another machine's trial). A new lock file is
        locked before it appears under its name, so no one sees it unlocked."""
        path = self.options.directory / f".trial_{number}.lock"
        if create:
            descriptor, temporary = tempfile.mkstemp(dir=self.options.directory, prefix=".lock")
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.replace(temporary, path)
            return descriptor
        try:
            descriptor = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return None
        return descriptor

    def _claim_interrupted(self) -> tuple[int, int, dict[str, Any], int] | None:
        """A RUNNING trial of this directory whose lock is free, locked now for this process."""
        from optuna.trial import TrialState

        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            lock = self._lock(trial.number, create=False)
            if lock is None:
                continue
            # It may have finished between the listing and the lock.
            current = next(t for t in self.study.get_trials(deepcopy=False) if t.number == trial.number)
            if current.state != TrialState.RUNNING:
                os.close(lock)
                continue
            return current._trial_id, current.number, dict(current.params), lock
        return None

    # ---- signals ----------------------------------------------------------------------------------------------
    def forwarding_signals(self) -> _SignalForwarding:
        return _SignalForwarding(self)


class _SignalForwarding:
    """While open, SIGTERM, SIGUSR1 and SIGINT stop the study: each is passed on once to the running trial (which
    saves a checkpoint and exits 75) and no new trial starts."""

    def __init__(self, runner: _TrialRunner) -> None:
        self.runner = runner
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalForwarding:
        self.previous = {number: signal.signal(number, self._handle) for number in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame: Any) -> None:
        self.runner.stop_signal = number
        child = self.runner._child
        if child is not None and child.poll() is None:
            name = signal.Signals(number).name
            logger.warning("received %s: passing it to the running trial, which saves a checkpoint and stops", name)
            child.send_signal(number)


def _die_with_parent() -> None:
    """In the trial's process, before it starts: ask Linux to send it SIGTERM when ``regimen tune`` dies."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _shown(values: dict[str, Any]) -> str:
    return " ".join(f"{name}={value}" for name, value in values.items())

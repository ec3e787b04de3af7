"""Experiment: the top-level config of a run, turned into built objects (readers, loaders, model, trainer) and run."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy
import torch

from regimen.data import DataLoader, DatasetReader
from regimen.models import Model
from regimen.models.archival import BEST_WEIGHTS_NAME, RESERVED_NAMES, archive_model
from regimen.registry import ConfigurationError, Lazy, Params, Registrable
from regimen.registry.params import write_json_atomically
from regimen.run_directory import LOG_NAME, METRICS_NAME, check_run_directory, logging_to, prepare_run_directory
from regimen.trainers import Trainer
from regimen.trainers.evaluation import evaluate

logger = logging.getLogger(__name__)


class Experiment(Registrable):
    """Everything one config describes, built in the open and run.

    Constructing an experiment from its config checks the whole config and builds nothing with side effects;
    ``build()`` seeds the random generators and builds the data loaders, model and trainer (reading the data);
    ``run()`` builds if needed, trains and returns the final metrics. After ``build()``, ``model`` is the model
    and ``describe()`` summarises the data and the model (what ``regimen train --dry-run`` prints).
    Register a custom one with ``@Experiment.register("name")`` and select it with a top-level ``"type"``.
    """

    default_implementation = "default"
    model: Model | None = None
    include_in_archive: list[str] | None = None

    def build(self) -> None:
        raise NotImplementedError  # abstract

    def describe(self) -> list[str]:
        """Lines summarising the built experiment (dataset sizes, parameter counts)."""
        return []

    def run(self) -> dict[str, Any]:
        raise NotImplementedError  # abstract


@Experiment.register("default")
class TrainModel(Experiment):
    """Reads the data, builds the model and the trainer, trains, and evaluates on test data if asked.

    Registered as an `Experiment` with name "default" (used when the config has no top-level ``type``).

    Config keys (the top level of an experiment file):
    - `dataset_reader` (DatasetReader, required): reads the data files into instances.
    - `train_data_path` (str, required): the training data file.
    - `data_loader` (DataLoader, required): batches the training data (``{"batch_size": 32, "shuffle": true}``).
    - `model` (Model, required): the model to train.
    - `trainer` (Trainer, "gradient_descent"): how to train it.
    - `validation_dataset_reader` (DatasetReader, null: `dataset_reader`): reads the validation and test files.
    - `validation_data_path` (str, null): validation data; without it, training metrics pick the best epoch.
    - `validation_data_loader` (DataLoader, null: `data_loader`'s config): batches validation and test data.
    - `test_data_path` (str, null) and `evaluate_on_test` (bool, false): evaluate the final (best) model on test
      data; its metrics are reported with a ``test_`` prefix.
    - `random_seed` (int, 13370), `numpy_seed` (int, 1337), `pytorch_seed` (int, 133): seeds for Python's,
      NumPy's and torch's generators, set before anything is built; `random_seed` also orders the data. null
      leaves that generator unseeded.
    - `distributed` (object, null): run one worker per device (see the README).
    - `include_in_archive` (list[str], null): globs of files in the serialization directory to add to
      ``model.tar.gz``.

    ``serialization_dir`` is given by the command, not written in the config. Data files are checked to exist
    when the config is read.
    """

    def __init__(
        self,
        dataset_reader: DatasetReader,
        train_data_path: str,
        data_loader: Lazy[DataLoader],
        model: Lazy[Model],
        trainer: Lazy[Trainer] = Lazy(Trainer),
        validation_dataset_reader: DatasetReader | None = None,
        validation_data_path: str | None = None,
        validation_data_loader: Lazy[DataLoader] | None = None,
        test_data_path: str | None = None,
        evaluate_on_test: bool = False,
        random_seed: int | None = 13370,
        numpy_seed: int | None = 1337,
        pytorch_seed: int | None = 133,
        distributed: dict[str, Any] | None = None,
        include_in_archive: list[str] | None = None,
        serialization_dir: str | None = None,
    ) -> None:
        errors = [
            _missing_file(key, path)
            for key, path in (
                ("train_data_path", train_data_path),
                ("validation_data_path", validation_data_path),
                ("test_data_path", test_data_path),
            )
        ]
        if evaluate_on_test and test_data_path is None:
            errors.append(ConfigurationError("is true but there is no test_data_path", key="evaluate_on_test"))
        reserved = [pattern for pattern in include_in_archive or [] if pattern in RESERVED_NAMES]
        if reserved:
            errors.append(
                ConfigurationError(f"{reserved} would overwrite the archive's own files", key="include_in_archive")
            )
        errors = [error for error in errors if error is not None]
        if errors:
            raise ConfigurationError.combine(errors)
        self.dataset_reader = dataset_reader
        self.validation_dataset_reader = validation_dataset_reader or dataset_reader
        self.paths = {"train": train_data_path, "validation": validation_data_path, "test": test_data_path}
        self._data_loader = data_loader
        self._validation_data_loader = validation_data_loader or data_loader
        self._model = model
        self._trainer = trainer
        self.evaluate_on_test = evaluate_on_test
        self.seeds = (random_seed, numpy_seed, pytorch_seed)
        self.include_in_archive = include_in_archive
        self.serialization_dir = serialization_dir
        self.loaders: dict[str, DataLoader] = {}
        self.trainer: Trainer | None = None

    def build(self) -> None:
        """Seed, then build the data loaders, the model and the trainer (which reads the training data)."""
        if self.trainer is not None:
            return
        random_seed, numpy_seed, pytorch_seed = self.seeds
        seed_everything(random_seed, numpy_seed, pytorch_seed)
        for split, path in self.paths.items():
            if path is None or (split == "test" and not self.evaluate_on_test):
                continue
            lazy = self._data_loader if split == "train" else self._validation_data_loader
            reader = self.dataset_reader if split == "train" else self.validation_dataset_reader
            self.loaders[split] = lazy.construct(reader=reader, data_path=path, seed=random_seed or 0)
        self.model = self._model.construct()
        self.trainer = self._trainer.construct(
            model=self.model,
            data_loader=self.loaders["train"],
            validation_data_loader=self.loaders.get("validation"),
            serialization_dir=self.serialization_dir,
        )

    def describe(self) -> list[str]:
        lines = []
        for split, loader in self.loaders.items():
            instances = sum(1 for _ in loader.iter_instances())
            lines.append(f"{split} data: {instances} instances in {len(loader)} batches ({self.paths[split]})")
        parameters = list(self.model.parameters()) if self.model is not None else []
        total = sum(p.numel() for p in parameters)
        trainable = sum(p.numel() for p in parameters if p.requires_grad)
        lines.append(f"model: {type(self.model).__name__} with {total:,} parameters ({trainable:,} trainable)")
        return lines

    def run(self) -> dict[str, Any]:
        self.build()
        metrics = self.trainer.train()
        if "test" in self.loaders:
            logger.info("evaluating the best model on the test data (%s)", self.paths["test"])
            test_metrics = evaluate(self.model, self.loaders["test"], self.trainer.device)
            metrics.update({f"test_{name}": value for name, value in test_metrics.items()})
        return metrics


def seed_everything(random_seed: int | None, numpy_seed: int | None, pytorch_seed: int | None) -> None:
    """Seed Python's, NumPy's and torch's generators (CPU and every CUDA device); None leaves one alone."""
    if random_seed is not None:
        random.seed(random_seed)
    if numpy_seed is not None:
        numpy.random.seed(numpy_seed)
    if pytorch_seed is not None:
        torch.manual_seed(pytorch_seed)  # seeds every CUDA device too


def _missing_file(key: str, path: str | None) -> ConfigurationError | None:
    if path is None or Path(path).exists():
        return None
    return ConfigurationError(f"file not found: {path} (relative paths are read from {Path.cwd()})", key=key)


def train_model(
    params: Params, serialization_dir: str | Path, recover: bool = False, force: bool = False
) -> dict[str, Any]:
    """Build the experiment a config describes and run it in ``serialization_dir``; returns the final metrics."""
    experiment = build_experiment(params, serialization_dir, recover, force)
    return run_experiment(experiment, params, serialization_dir, recover, force)


def build_experiment(
    params: Params, serialization_dir: str | Path, recover: bool = False, force: bool = False
) -> Experiment:
    """Check the directory rules and the whole config, then build the experiment (reading its data).

    Every mistake, in the config or in how the directory would be used, raises ConfigurationError here, before
    anything is written (see ``check_run_directory`` for the rules).
    """
    directory = Path(serialization_dir)
    check_run_directory(directory, params, recover, force)
    experiment = Experiment.from_params(params.duplicate(), serialization_dir=str(directory))
    experiment.build()
    return experiment


def run_experiment(
    experiment: Experiment, params: Params, serialization_dir: str | Path, recover: bool = False, force: bool = False
) -> dict[str, Any]:
    """Prepare the directory, train, and write ``metrics.json`` and ``model.tar.gz``; returns the metrics.

    Writes ``config.json``, ``meta.json`` and ``out.log`` (a copy of the log) as well; the trainer writes the
    checkpoints, ``best.th`` and the per-epoch metrics.
    """
    directory = Path(serialization_dir)
    prepare_run_directory(directory, params, recover, force)
    with logging_to(directory / LOG_NAME):
        metrics = experiment.run()
        write_json_atomically(directory / METRICS_NAME, metrics)
        best = directory / BEST_WEIGHTS_NAME
        weights: Any = BEST_WEIGHTS_NAME if best.is_file() else experiment.model.state_dict()
        archive = archive_model(directory, weights, experiment.include_in_archive)
        logger.info("archived the model to %s", archive)
    return metrics

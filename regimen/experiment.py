"""Experiment: the top-level config of a run, turned into built objects (readers, loaders, model, trainer) and run."""

from __future__ import annotations

import importlib
import json
import logging
import os
import random
import sys
from pathlib import Path
from typing import Any

import numpy
import torch

from regimen.data import DataLoader, DatasetReader
from regimen.models import Model
from regimen.models.archival import BEST_WEIGHTS_NAME, RESERVED_NAMES, archive_model
from regimen.registry import ConfigurationError, FromParams, Lazy, Params, Registrable
from regimen.registry.params import write_json_atomically
from regimen.registry.values import check_positive
from regimen.run_directory import (
    LOG_NAME,
    METRICS_NAME,
    check_run_directory,
    logging_to,
    outcome_recorded,
    prepare_run_directory,
)
from regimen.trainers import Trainer
from regimen.trainers.distributed import (
    Distributed,
    WorkerFailed,
    find_free_port,
    from_torchrun_environment,
    init_process_group,
    spawn_workers,
)
from regimen.trainers.evaluation import evaluate
from regimen.trainers.preemption import (
    PREEMPTION_EXIT_CODE,
    SIGNALS,
    PreemptionWatcher,
    TrainingPreempted,
    ignore_stop_signals,
)
from regimen.trainers.sharding import DdpAccelerator, TorchDdpAccelerator

logger = logging.getLogger(__name__)
AFTER_TRAINING = "training is over: finishing the test evaluation, metrics.json and the archive, then exiting"


class DistributedConfig(FromParams):
    """The top-level `distributed` block: one worker process per device, on one machine or several.

    Config keys:
    - `cuda_devices` (list[int], required): the devices of the workers on each machine; `-1` entries are CPU
      workers (Gloo), device ids are GPUs (NCCL). At least two workers in all.
    - `num_nodes` (int, 1): machines; each runs the same command with its `--node-rank` (0 on the primary).
    - `primary_address` (str, "127.0.0.1") and `primary_port` (int, null: a free port; required with several
      machines): where the primary worker listens. AllenNLP's `master_address` / `master_port` are accepted.
    - `find_unused_parameters` (bool, false): passed to DistributedDataParallel, for models that leave some
      parameters out of a step's loss.
    - `ddp_accelerator` (DdpAccelerator, "torch"): how the workers share the model: "torch" (DDP, every worker
      a full copy; AllenNLP's place for `find_unused_parameters`) or "fsdp" (the model sharded with FSDP2, with
      sharded checkpoints; AllenNLP's "fairscale_fsdp" is read as it). See `regimen describe DdpAccelerator fsdp`.
    """

    def __init__(
        self,
        cuda_devices: list[int],
        num_nodes: int = 1,
        primary_address: str = "127.0.0.1",
        primary_port: int | None = None,
        master_address: str | None = None,
        master_port: int | None = None,
        find_unused_parameters: bool = False,
        ddp_accelerator: DdpAccelerator | None = None,
    ) -> None:
        check_positive(num_nodes=num_nodes)
        errors = []
        if len(cuda_devices) * num_nodes < 2:
            errors.append(
                ConfigurationError(
                    f"{cuda_devices} on {num_nodes} node{'s' if num_nodes > 1 else ''} is a single worker; list two "
                    "or more devices, or remove the distributed block to train in one process",
                    key="cuda_devices",
                )
            )
        if any(device < 0 for device in cuda_devices) and any(device >= 0 for device in cuda_devices):
            errors.append(ConfigurationError(f"mixes CPU (-1) and GPU ids: {cuda_devices}", key="cuda_devices"))
        gpus = [device for device in cuda_devices if device >= 0]
        if len(set(gpus)) != len(gpus):
            errors.append(ConfigurationError(f"lists a GPU twice: {cuda_devices}", key="cuda_devices"))
        if master_address is not None:
            primary_address = master_address
        if master_port is not None:
            primary_port = master_port
        if num_nodes > 1 and primary_port is None:
            errors.append(ConfigurationError("is required when num_nodes is above 1", key="primary_port"))
        if errors:
            raise ConfigurationError.combine(errors)
        self.cuda_devices = cuda_devices
        self.num_nodes = num_nodes
        self.primary_address = primary_address
        self.primary_port = primary_port
        if ddp_accelerator is None or isinstance(ddp_accelerator, TorchDdpAccelerator):
            unused = find_unused_parameters or (ddp_accelerator is not None and ddp_accelerator.find_unused_parameters)
            ddp_accelerator = TorchDdpAccelerator(unused)
        self.ddp_accelerator = ddp_accelerator

    @property
    def world_size(self) -> int:
        return self.num_nodes * len(self.cuda_devices)


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
    distributed: DistributedConfig | None = None  # the workers to start, for a distributed run

    def build(self, distributed: Distributed | None = None) -> None:
        """Build everything; ``distributed`` connects this worker to the others of a distributed run."""
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
    - `dataset_reader` (DatasetReader, required): reads the data into instances.
    - `train_data_path` (str, required): the training data, handed to the reader as written (a file, a URL, or
      whatever the reader reads: a directory, a glob, a dataset name).
    - `data_loader` (DataLoader, required): batches the training data (``{"batch_size": 32, "shuffle": true}``).
    - `model` (Model, required): the model to train.
    - `trainer` (Trainer, "gradient_descent"): how to train it.
    - `validation_dataset_reader` (DatasetReader, null: `dataset_reader`): reads the validation and test files.
    - `validation_data_path` (str or object, null): validation data; without it, training metrics pick the best
      epoch. An object of name -> path gives named validation sets (stable-ssl validates every non-train
      dataset): each is validated at every validation and reported as ``validation_<name>_<metric>`` and
      ``best_validation_<name>_<metric>``, and `trainer.validation_metric` names one set's metric
      (``"+hard_accuracy"``; a list sums several).
    - `validation_data_loader` (DataLoader, null: `data_loader`'s config without `shuffle`): batches validation
      and test data.
    - `test_data_path` (str, null) and `evaluate_on_test` (bool, false): evaluate the final (best) model on test
      data; its metrics are reported with a ``test_`` prefix.
    - `random_seed` (int, 13370), `numpy_seed` (int, 1337), `pytorch_seed` (int, 133): seeds for Python's,
      NumPy's and torch's generators, set before anything is built; `random_seed` also orders the data. null
      leaves that generator unseeded.
    - `distributed` (DistributedConfig, null): run one worker process per device (see `DistributedConfig`).
    - `include_in_archive` (list[str], null): globs of files in the serialization directory to add to
      ``model.tar.gz``.

    ``serialization_dir`` is given by the command, not written in the config. Each data path is checked by its
    reader's ``check_data_path`` when the config is read: for readers of local files (``csv``, ``jsonl``) a path
    that is neither an existing file nor a URL is an error naming the key, before anything is trained.
    """

    def __init__(
        self,
        dataset_reader: DatasetReader,
        train_data_path: str,
        data_loader: Lazy[DataLoader],
        model: Lazy[Model],
        trainer: Lazy[Trainer] = Lazy(Trainer),
        validation_dataset_reader: DatasetReader | None = None,
        validation_data_path: str | dict[str, str] | None = None,
        validation_data_loader: Lazy[DataLoader] | None = None,
        test_data_path: str | None = None,
        evaluate_on_test: bool = False,
        random_seed: int | None = 13370,
        numpy_seed: int | None = 1337,
        pytorch_seed: int | None = 133,
        distributed: DistributedConfig | None = None,
        include_in_archive: list[str] | None = None,
        serialization_dir: str | None = None,
    ) -> None:
        evaluation_reader = validation_dataset_reader or dataset_reader
        # "validation.<name>" for each named validation set, else "validation".
        paths: dict[str, Any] = {"train": train_data_path, "validation": validation_data_path, "test": test_data_path}
        errors = []
        if isinstance(validation_data_path, dict):
            del paths["validation"]
            paths.update({f"validation.{name}": path for name, path in validation_data_path.items()})
            errors += [_set_name_error(name) for name in validation_data_path] or [
                ConfigurationError("is empty: give a path, or name -> path for each set", key="validation_data_path")
            ]
        errors += [
            _data_path_error(_path_key(key), dataset_reader if key == "train" else evaluation_reader, path)
            for key, path in paths.items()
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
        self.paths = paths
        self._data_loader = data_loader
        self._validation_data_loader = validation_data_loader or _unshuffled(data_loader)
        self._model = model
        self._trainer = trainer
        self.evaluate_on_test = evaluate_on_test
        self.seeds = (random_seed, numpy_seed, pytorch_seed)
        self.include_in_archive = include_in_archive
        self.serialization_dir = serialization_dir
        self.distributed = distributed
        self.loaders: dict[str, DataLoader] = {}
        self.trainer: Trainer | None = None
        self._primary = True

    def build(self, distributed: Distributed | None = None) -> None:
        """Seed, then build the data loaders, the model and the trainer (which reads the training data)."""
        if self.trainer is not None:
            return
        self._primary = distributed is None or distributed.is_primary
        random_seed, numpy_seed, pytorch_seed = self.seeds
        seed_everything(random_seed, numpy_seed, pytorch_seed)
        for key, path in self.paths.items():
            if path is None or (key == "test" and not self.evaluate_on_test):
                continue
            lazy = self._data_loader if key == "train" else self._validation_data_loader
            reader = self.dataset_reader if key == "train" else self.validation_dataset_reader
            self.loaders[key] = lazy.construct(reader=reader, data_path=path, seed=random_seed or 0)
        self.model = self._model.construct()
        for key, loader in self.loaders.items():  # read now (the loaders keep it): a data mistake is shown at its key,
            _read_data(loader, _path_key(key))  # before anything is trained or written, the test data's too
        named_sets = {key.split(".", 1)[1]: loader for key, loader in self.loaders.items() if "." in key}
        self.trainer = self._trainer.construct(
            model=self.model,
            data_loader=self.loaders["train"],
            validation_data_loader=named_sets or self.loaders.get("validation"),
            test_data_loader=self.loaders.get("test"),
            serialization_dir=self.serialization_dir,
            distributed=distributed,
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
        metrics = self.trainer.train()  # the built-in trainer evaluates on the test data itself, before on_end
        tested = any(key.startswith("test_") for key in metrics)
        if "test" in self.loaders and self._primary and not tested:  # a trainer that takes no test_data_loader
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


def _read_data(loader: DataLoader, key: str) -> None:
    """Have ``loader`` read its data (``len`` counts its batches), placing a mistake in the data at ``key``: the
    reader's errors name ``file:line``, and would otherwise surface from whichever constructor first asked."""
    try:
        len(loader)
    except ConfigurationError as error:
        raise error.located(key) from None
    except ValueError as error:
        raise ConfigurationError(str(error), key) from error


def _unshuffled(loader: Lazy[DataLoader]) -> Lazy[DataLoader]:
    """``data_loader``'s config for the validation and test data when they have none of their own, without its
    ``shuffle``: evaluation needs no shuffling, and in file order it matches what ``regimen evaluate`` reports."""
    config = loader.params.as_dict()
    if not config.get("shuffle"):
        return loader
    return Lazy(loader.constructor, Params({**config, "shuffle": False}, loader.params.path), loader.constructor_extras)


def _path_key(key: str) -> str:
    """The config key of a data path: ``train_data_path``, ``validation_data_path.hard`` for a named set."""
    split, _, name = key.partition(".")
    return f"{split}_data_path" + (f".{name}" if name else "")


def _set_name_error(name: str) -> ConfigurationError | None:
    """Set names become parts of metric keys (``validation_hard_accuracy``): letters, digits and underscores."""
    if name.isidentifier():
        return None
    return ConfigurationError(
        "a set's name must be letters, digits and underscores", key=f"validation_data_path.{name}"
    )


def _data_path_error(key: str, reader: DatasetReader, path: str | None) -> ConfigurationError | None:
    """The reader's early error for the data path at ``key``, placed at that key; the reader owns the rule."""
    error = None if path is None else reader.check_data_path(path)
    return None if error is None else error.located(key)


def train_model(
    params: Params, serialization_dir: str | Path, recover: bool = False, force: bool = False, node_rank: int = 0
) -> dict[str, Any]:
    """What ``regimen train`` does: check, build and run the experiment a config describes; returns its metrics
    (on the primary machine of a distributed run; ``{}`` on the others)."""
    experiment = check_experiment(params, serialization_dir, recover, force)
    return run_experiment(experiment, params, serialization_dir, recover, force, node_rank)


def check_experiment(
    params: Params, serialization_dir: str | Path, recover: bool = False, force: bool = False
) -> Experiment:
    """The experiment a config describes, not built yet; checks the directory rules and the whole config.

    Every mistake, in the config or in how the directory would be used, raises ConfigurationError here, before
    anything is read or written (see ``check_run_directory`` for the rules).
    """
    directory = Path(serialization_dir)
    check_run_directory(directory, params, recover, force)
    return Experiment.from_params(params.duplicate(), serialization_dir=str(directory))


def run_experiment(
    experiment: Experiment,
    params: Params,
    serialization_dir: str | Path,
    recover: bool = False,
    force: bool = False,
    node_rank: int = 0,
) -> dict[str, Any]:
    """Build and run a checked experiment: in this process, one process per device (its `distributed` block),
    or as one worker of a job started by torchrun. Returns the metrics (``{}`` where this process has none).

    The directory is prepared (replaced with ``force``, ``config.json`` and ``meta.json`` written) only once
    every worker has built the experiment, so a mistake found while reading the data leaves it as it was.
    """
    directory = Path(serialization_dir)
    torchrun = from_torchrun_environment(experiment.distributed and experiment.distributed.ddp_accelerator.runtime)
    if torchrun is not None:
        with torchrun:
            return _run_worker(experiment, params, directory, recover, force, torchrun)
    plan = experiment.distributed
    if plan is None:
        return _run_worker(experiment, params, directory, recover, force, Distributed())
    port = plan.primary_port or find_free_port()
    arguments = (params.as_dict(), str(directory), recover, force, node_rank, port, Registrable.registering_modules())
    try:
        # A signal to this process alone (Kubernetes stops a container so) reaches every worker; one sent to the
        # whole job reaches them twice within moments, which their watchers take as one request.
        spawn_workers(_spawned_worker, arguments, len(plan.cuda_devices), forward_signals=SIGNALS)
    except WorkerFailed as failure:
        if failure.error_type == "ConfigurationError":
            raise ConfigurationError(f"worker {failure.rank}: {failure.message.split(': ', 1)[-1]}") from None
        if failure.exit_code == PREEMPTION_EXIT_CODE:
            raise TrainingPreempted(0, checkpoint_saved=True) from None
        if failure.exit_code is not None and -failure.exit_code in SIGNALS:  # before its watcher was up
            raise TrainingPreempted(-failure.exit_code, checkpoint_saved=False, before_training=True) from None
        raise
    metrics_file = directory / METRICS_NAME
    return json.loads(metrics_file.read_text()) if node_rank == 0 and metrics_file.is_file() else {}


def _spawned_worker(
    local_rank: int,
    config: dict[str, Any],
    directory: str,
    recover: bool,
    force: bool,
    node_rank: int,
    port: int,
    modules: list[str],
) -> None:
    """One worker process of a distributed run started by ``run_experiment``."""
    for module in modules:  # the parent's registry: built-ins, --include-package packages, plugins
        importlib.import_module(module)
    params = Params(config)
    experiment = Experiment.from_params(params.duplicate(), serialization_dir=directory)
    plan = experiment.distributed
    device_id = plan.cuda_devices[local_rank]
    device = torch.device("cpu") if device_id < 0 else torch.device("cuda", device_id)
    rank = node_rank * len(plan.cuda_devices) + local_rank
    _configure_worker_logging(rank)
    distributed = init_process_group(
        "gloo" if device_id < 0 else "nccl",
        rank=rank,
        world_size=plan.world_size,
        local_rank=local_rank,
        device=device,
        primary_address=plan.primary_address,
        primary_port=port,
        runtime=plan.ddp_accelerator.runtime,
    )
    with distributed:
        try:
            _run_worker(experiment, params, Path(directory), recover, force, distributed)
            ignore_stop_signals()  # the run's files are written; this worker only leaves
        except TrainingPreempted as stop:
            logger.warning("worker %d: %s", rank, stop)
            sys.exit(stop.exit_code)


def _run_worker(
    experiment: Experiment, params: Params, directory: Path, recover: bool, force: bool, distributed: Distributed
) -> dict[str, Any]:
    """Build, prepare the directory (the primary, once every worker has built), train, and save the results."""
    experiment.build(distributed)
    distributed.barrier()  # every worker has read its data and built its model
    if distributed.is_primary:
        prepare_run_directory(directory, params, recover, force)
    distributed.barrier()  # the directory is ready (a --force replacement is done) before anyone resumes from it
    log_name = LOG_NAME if distributed.world_size == 1 else f"out_worker{distributed.rank}.log"
    # A signal while the model is tested and archived (training is over) lets that finish: the run ends as usual.
    finishing = PreemptionWatcher(then=AFTER_TRAINING)
    with logging_to(directory / log_name), outcome_recorded(directory, distributed.is_primary), finishing:
        metrics = experiment.run()
        has_best = distributed.broadcast_object((directory / BEST_WEIGHTS_NAME).is_file())
        final = None if has_best else distributed.full_model_state(experiment.model)  # sharded: every worker's part
        if distributed.is_primary:
            write_json_atomically(directory / METRICS_NAME, metrics)
            weights: Any = BEST_WEIGHTS_NAME if has_best else final
            archive = archive_model(directory, weights, experiment.include_in_archive)
            logger.info("archived the model to %s", archive)
        distributed.barrier()  # the workers leave together, once the run's files are written
    return metrics if distributed.is_primary else {}


def _configure_worker_logging(rank: int) -> None:
    """A spawned worker logs like the command does; workers other than the primary only warnings to the console."""
    level = os.environ.get("REGIMEN_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s worker {rank} %(name)s: %(message)s")
    if rank != 0:
        for handler in logging.getLogger().handlers:
            handler.setLevel(logging.WARNING)

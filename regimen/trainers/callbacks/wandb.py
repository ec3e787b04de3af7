"""WandBCallback: logs a training run to Weights & Biases, as AllenNLP 2.10's `wandb` callback does."""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
from pathlib import Path
from typing import Any

import torch

from regimen.models.archival import CONFIG_NAME
from regimen.registry import ConfigurationError
from regimen.registry.errors import unknown_name_message
from regimen.registry.values import check_positive
from regimen.trainers.callbacks import log_writer
from regimen.trainers.callbacks.callback import TrainerCallback

logger = logging.getLogger(__name__)

# wandb.init arguments the callback sets itself, and why they cannot come from `wandb_kwargs`.
_SET_BY_THE_CALLBACK = {
    "project": "use the callback's own `project` key",
    "entity": "use the callback's own `entity` key",
    "group": "use the callback's own `group` key",
    "name": "use the callback's own `name` key",
    "notes": "use the callback's own `notes` key",
    "tags": "use the callback's own `tags` key",
    "dir": "the run's files go under the serialization directory",
    "config": "the run's config is the experiment's config.json",
    "id": "the run id is chosen by W&B and kept in checkpoints, so that --recover continues the same run",
}


@TrainerCallback.register("wandb")
class WandBCallback(TrainerCallback):
    """Logs a run's config, losses, metrics and parameter statistics to Weights & Biases.

    Registered as a `TrainerCallback` with name "wandb". Needs the wandb package: ``pip install regimen[wandb]``.
    Authenticate with ``WANDB_API_KEY`` or ``wandb login``; ``WANDB_MODE=offline`` logs without a network (upload
    later with ``wandb sync``). Only the primary worker of a distributed run logs.

    At the start of training it calls ``wandb.init`` with the experiment's ``config.json`` as the run's config
    and ``dir=<serialization_dir>`` (the run's files go to ``<serialization_dir>/wandb``). The step of every
    value is the number of optimizer steps taken. The W&B run id is kept in checkpoints, so a ``--recover``ed
    training continues the same W&B run (``resume="allow"``).

    Config keys:
    - `summary_interval` (int, 100): every this many optimizer steps, log ``train/batch_loss`` (the step's loss)
      and ``train/batch_loss_mov_avg`` (the mean of the last 100), ``train/batch_reg_loss`` and its
      ``_mov_avg`` when the model has a regularization penalty, and the statistics switched on below.
    - `distribution_interval` (int, null): every this many steps, log histograms ``parameter_histogram/<name>``,
      ``gradient_update/<name>`` (the norm of the step's update over the norm of the parameter), and
      ``activation_histogram/<module class>`` of the outputs of modules with ``should_log_activations = True``.
      Slow: it copies every parameter to the CPU before the step.
    - `batch_size_interval` (int, null): at every this many steps of an epoch, log ``train/batch_size`` (the
      step's instances) and ``train/mean_batch_size`` (over the epoch so far).
    - `should_log_parameter_statistics` (bool, true): at each summary, ``parameter_mean/<name>``,
      ``parameter_std/<name>``, ``gradient_mean/<name>`` and ``gradient_std/<name>`` of the step's gradients,
      and ``gradient_norm`` when the trainer measures it (its `grad_norm`).
    - `should_log_learning_rate` (bool, false): at each summary, ``learning_rate/<name>`` of every parameter.
    - `project`, `entity`, `group`, `name`, `notes` (str, null) and `tags` (list[str], null): the W&B project,
      user or team, run group, display name, description and tags (null: W&B's defaults).
    - `watch_model` (bool, true): ``wandb.watch(model)``, which logs gradient histograms every 1000 steps.
    - `files_to_save` (list[str], ["config.json", "out.log"]): files (or globs) of the serialization directory
      saved with the run (``wandb.save`` when training starts; a file that is not there then is not saved).
    - `wandb_kwargs` (dict, null): more arguments for ``wandb.init``, such as ``mode``, ``job_type`` or
      ``settings``; not those the keys above set, nor ``dir``, ``config`` or ``id``. Checked against the
      installed wandb's ``wandb.init`` when the callback is built.

    After each epoch it logs ``train/<metric>`` for every numeric training metric and, when the epoch validated,
    ``validation/<metric>`` for every validation metric, with ``epoch``, at the epoch's last step.
    """

    def __init__(
        self,
        serialization_dir: str | None = None,
        summary_interval: int = 100,
        distribution_interval: int | None = None,
        batch_size_interval: int | None = None,
        should_log_parameter_statistics: bool = True,
        should_log_learning_rate: bool = False,
        project: str | None = None,
        entity: str | None = None,
        group: str | None = None,
        name: str | None = None,
        notes: str | None = None,
        tags: list[str] | None = None,
        watch_model: bool = True,
        files_to_save: tuple[str, ...] = ("config.json", "out.log"),
        wandb_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(serialization_dir)
        check_positive(
            summary_interval=summary_interval,
            distribution_interval=distribution_interval,
            batch_size_interval=batch_size_interval,
        )
        for key in wandb_kwargs or {}:
            if key in _SET_BY_THE_CALLBACK:
                raise ConfigurationError(
                    f"is set by the callback: {_SET_BY_THE_CALLBACK[key]}", key=f"wandb_kwargs.{key}"
                )
        if importlib.util.find_spec("wandb") is None:
            raise ConfigurationError(
                '"wandb" needs the wandb package, which is not installed: pip install regimen[wandb] '
                "(or pip install wandb)",
                key="type",
            )
        if wandb_kwargs:
            _check_init_arguments(wandb_kwargs)
        self.summary_interval = summary_interval
        self.distribution_interval = distribution_interval
        self.batch_size_interval = batch_size_interval
        self.should_log_parameter_statistics = should_log_parameter_statistics
        self.should_log_learning_rate = should_log_learning_rate
        self.watch_model = watch_model
        self.files_to_save = tuple(files_to_save)
        self._init_arguments: dict[str, Any] = {
            "project": project,
            "entity": entity,
            "group": group,
            "name": name,
            "notes": notes,
            "tags": tags,
            **(wandb_kwargs or {}),
        }
        self._wandb: Any = None  # the module, once the run is started
        self._run: Any = None
        self._model: torch.nn.Module | None = None
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        # What continues through checkpoints: the run, the step count and the running values logged.
        self._run_id: str | None = None
        self._resuming = False
        self._step = 0
        self._losses = {"batch_loss": log_writer.LossWindow(), "batch_reg_loss": log_writer.LossWindow()}
        self._epoch_instances = 0
        self._before_step: dict[str, torch.Tensor] | None = None

    # ---- the hooks -----------------------------------------------------------------------------------------
    def on_start(self, trainer: Any, is_primary: bool = True, **kwargs: Any) -> None:
        if not is_primary:
            return
        import wandb  # imported here: the package is optional and slow to import (its presence is checked in __init__)

        self._wandb = wandb
        directory = Path(self.serialization_dir).resolve() if self.serialization_dir is not None else None
        arguments = dict(self._init_arguments)
        if self._resuming:
            arguments.setdefault("resume", "allow")
            arguments.setdefault("allow_val_change", True)  # --recover may raise trainer.num_epochs
        self._run = wandb.init(
            dir=str(directory) if directory is not None else None,
            config=_experiment_config(directory),
            id=self._run_id,
            **arguments,
        )
        self._run_id = self._run.id
        if directory is not None:
            for file in self.files_to_save:
                if not any(directory.glob(file)):  # wandb.save saves what exists now, and says nothing
                    logger.warning("files_to_save: %s is not in %s, so it is not saved with the run", file, directory)
                self._run.save(str(directory / file), base_path=str(directory))
        self._model = trainer.model
        if self.watch_model:
            self._run_or_module("watch")(self._model)
        if self.distribution_interval is not None:
            self._hook_activations(self._model)
            if log_writer.is_due(self._step + 1, self.distribution_interval):
                self._before_step = log_writer.parameter_snapshot(self._model)

    def on_batch(
        self,
        trainer: Any,
        batch_inputs: list[dict[str, Any]],
        batch_outputs: list[dict[str, Any]],
        batch_metrics: dict[str, Any],
        epoch: int,
        batch_number: int,
        is_training: bool,
        is_primary: bool = True,
        batch_grad_norm: float | None = None,
        **kwargs: Any,
    ) -> None:
        if self._run is None or not is_training:
            return
        self._step += 1
        values: dict[str, Any] = {}
        if log_writer.is_due(self._step, self.summary_interval):
            values.update(self._summary(trainer, batch_outputs, batch_grad_norm))
        if log_writer.is_due(self._step, self.distribution_interval):
            values.update(self._distributions(trainer.model))
        if batch_number <= 1:
            self._epoch_instances = 0
        if self.batch_size_interval is not None:
            instances = sum(log_writer.batch_size(batch) for batch in batch_inputs)
            self._epoch_instances += instances
            if log_writer.is_due(batch_number, self.batch_size_interval):
                values["train/batch_size"] = instances
                values["train/mean_batch_size"] = self._epoch_instances / batch_number
        if values:
            self._run.log(values, step=self._step)
        if log_writer.is_due(self._step + 1, self.distribution_interval):
            self._before_step = log_writer.parameter_snapshot(trainer.model)

    def on_epoch(
        self, trainer: Any, metrics: dict[str, Any], epoch: int, is_primary: bool = True, **kwargs: Any
    ) -> None:
        if self._run is None or epoch < 0:
            return
        train, validation = log_writer.split_epoch_metrics(metrics)
        values: dict[str, Any] = {f"train/{name}": value for name, value in train.items()}
        values.update({f"validation/{name}": value for name, value in validation.items()})
        self._run.log({**values, "epoch": epoch}, step=self._step)

    def on_end(
        self,
        trainer: Any,
        metrics: dict[str, Any] | None = None,
        epoch: int | None = None,
        is_primary: bool = True,
        **kwargs: Any,
    ) -> None:
        if self._run is None:
            return
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        if self.watch_model and self._model is not None:
            self._run_or_module("unwatch")(self._model)
        # A run that ended in an error (metrics is None) is marked failed, not finished.
        self._run.finish(exit_code=0 if metrics is not None else 1)
        self._run = self._model = self._before_step = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "run_id": self._run_id,
            "step": self._step,
            "loss_windows": {key: window.state_dict() for key, window in self._losses.items()},
            "epoch_instances": self._epoch_instances,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._run_id = state_dict["run_id"]
        self._resuming = self._run_id is not None
        self._step = state_dict["step"]
        for key, values in state_dict["loss_windows"].items():
            self._losses[key].load_state_dict(values)
        self._epoch_instances = state_dict["epoch_instances"]

    # ---- what is logged ------------------------------------------------------------------------------------
    def _summary(
        self, trainer: Any, batch_outputs: list[dict[str, Any]], batch_grad_norm: float | None
    ) -> dict[str, float]:
        values: dict[str, float] = {}
        if self.should_log_parameter_statistics:
            values.update(log_writer.parameter_statistics(trainer.model))
            if batch_grad_norm is not None:
                values["gradient_norm"] = float(batch_grad_norm)
        if self.should_log_learning_rate:
            values.update(log_writer.learning_rates(trainer.model, trainer.optimizer))
        for key, output_key in (("batch_loss", "loss"), ("batch_reg_loss", "reg_loss")):
            loss = log_writer.batch_loss(batch_outputs, output_key)
            if loss is not None:
                values[f"train/{key}"] = loss
                values[f"train/{key}_mov_avg"] = self._losses[key].add(loss)
        return values

    def _distributions(self, model: torch.nn.Module) -> dict[str, Any]:
        values: dict[str, Any] = {
            name: self._histogram(tensor) for name, tensor in log_writer.histogram_parameters(model).items()
        }
        if self._before_step is not None:  # none after a resume at a step that is due
            values.update(log_writer.update_ratios(self._before_step, model))
        self._before_step = None
        return values

    def _hook_activations(self, model: torch.nn.Module) -> None:
        """Log the outputs of modules marked ``should_log_activations`` in the forward passes of a due step."""

        def log_activations(module: torch.nn.Module, inputs: Any, outputs: Any) -> None:
            step = self._step + 1  # the step this forward pass belongs to
            if module.training and self._run is not None and log_writer.is_due(step, self.distribution_interval):
                tensors = log_writer.activation_tensors(outputs, str(module.__class__))
                self._run.log({name: self._histogram(tensor) for name, tensor in tensors.items()}, step=step)

        for module in model.modules():
            if getattr(module, "should_log_activations", False):
                self._hooks.append(module.register_forward_hook(log_activations))

    def _run_or_module(self, method: str) -> Any:
        """The run's own ``watch``/``unwatch`` where the installed wandb has them, else the module's (older
        versions), which act on the current run: this one."""
        return getattr(self._run, method, None) or getattr(self._wandb, method)

    def _histogram(self, tensor: torch.Tensor) -> Any:
        return self._wandb.Histogram(tensor.detach().float().cpu().numpy().flatten())


def _check_init_arguments(arguments: dict[str, Any]) -> None:
    """Each of ``arguments`` must be an argument of ``wandb.init`` (of the installed wandb)."""
    import wandb

    accepted = [name for name in inspect.signature(wandb.init).parameters if name not in _SET_BY_THE_CALLBACK]
    for key in arguments:
        if key not in accepted:
            message = unknown_name_message("wandb.init argument", key, accepted)
            raise ConfigurationError(message, key=f"wandb_kwargs.{key}")


def _experiment_config(directory: Path | None) -> dict[str, Any]:
    """The experiment's config as the command wrote it to the serialization directory ({} without one)."""
    if directory is None or not (directory / CONFIG_NAME).is_file():
        return {}
    return json.loads((directory / CONFIG_NAME).read_text())

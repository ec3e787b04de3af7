"""TensorBoardCallback: writes losses, metrics, learning rates and gradient norms as tensorboard event files."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from regimen.trainers.callbacks.callback import TrainerCallback

logger = logging.getLogger(__name__)


@TrainerCallback.register("tensorboard")
class TensorBoardCallback(TrainerCallback):
    """Tensorboard logs under ``<serialization_dir>/log/train`` and ``log/validation``.

    Registered as a `TrainerCallback` with name "tensorboard". AllenNLP 1.x's `tensorboard_writer` trainer key
    is read as this callback.

    Config keys:
    - `summary_interval` (int, 100): write the batch loss, metrics and grad norm every this many optimizer steps.
    - `histogram_interval` (int, null): write parameter histograms every this many steps.
    - `batch_size_interval` (int, null): write the batch size every this many steps.
    - `should_log_parameter_statistics` (bool, true): parameter and gradient mean/std at each summary.
    - `should_log_learning_rate` (bool, true): the learning rate of each parameter group at each summary.

    Each validation writes the epoch's training metrics to ``train`` and validation metrics to ``validation``
    with the epoch as the step.
    """

    def __init__(
        self,
        serialization_dir: str | None = None,
        summary_interval: int = 100,
        histogram_interval: int | None = None,
        batch_size_interval: int | None = None,
        should_log_parameter_statistics: bool = True,
        should_log_learning_rate: bool = True,
    ) -> None:
        super().__init__(serialization_dir)
        self.summary_interval = summary_interval
        self.histogram_interval = histogram_interval
        self.batch_size_interval = batch_size_interval
        self.should_log_parameter_statistics = should_log_parameter_statistics
        self.should_log_learning_rate = should_log_learning_rate
        self._writers: dict[str, Any] = {}
        self._step = 0

    def on_start(self, trainer: Any, is_primary: bool = True, **kwargs: Any) -> None:
        if not is_primary or self.serialization_dir is None:
            return
        from torch.utils.tensorboard import SummaryWriter  # imported here: tensorboard is slow to import

        log = Path(self.serialization_dir) / "log"
        self._writers = {name: SummaryWriter(str(log / name)) for name in ("train", "validation")}

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
        if not self._writers or not is_training:
            return
        self._step += 1
        writer = self._writers["train"]
        if self._step % self.summary_interval == 0:
            loss = sum(float(output["loss"].detach()) for output in batch_outputs) / len(batch_outputs)
            writer.add_scalar("loss", loss, self._step)
            for name, value in batch_metrics.items():
                writer.add_scalar(f"running/{name}", value, self._step)
            if batch_grad_norm is not None:
                writer.add_scalar("gradient_norm", batch_grad_norm, self._step)
            if self.should_log_learning_rate:
                for index, group in enumerate(trainer.optimizer.param_groups):
                    writer.add_scalar(f"learning_rate/group{index}", group["lr"], self._step)
            if self.should_log_parameter_statistics:
                self._parameter_statistics(trainer.model, writer)
        if self.histogram_interval and self._step % self.histogram_interval == 0:
            for name, parameter in trainer.model.named_parameters():
                writer.add_histogram(f"parameter_histogram/{name}", parameter.detach().float().cpu(), self._step)
        if self.batch_size_interval and self._step % self.batch_size_interval == 0:
            sizes = [_batch_size(batch) for batch in batch_inputs]
            writer.add_scalar("batch_size", sum(sizes), self._step)

    def _parameter_statistics(self, model: torch.nn.Module, writer: Any) -> None:
        for name, parameter in model.named_parameters():
            if parameter.numel() > 1:
                writer.add_scalar(f"parameter_mean/{name}", parameter.detach().mean().item(), self._step)
                writer.add_scalar(f"parameter_std/{name}", parameter.detach().std().item(), self._step)
            if parameter.grad is not None and parameter.grad.numel() > 1:
                writer.add_scalar(f"gradient_mean/{name}", parameter.grad.mean().item(), self._step)

    def on_epoch(
        self, trainer: Any, metrics: dict[str, Any], epoch: int, is_primary: bool = True, **kwargs: Any
    ) -> None:
        if not self._writers or epoch < 0:
            return
        for prefix, writer_name in (("training_", "train"), ("validation_", "validation")):
            writer = self._writers[writer_name]
            for key, value in metrics.items():
                if key.startswith(prefix) and isinstance(value, (int, float)):
                    writer.add_scalar(f"epoch_metrics/{key.removeprefix(prefix)}", value, epoch)
            writer.flush()

    def on_end(
        self,
        trainer: Any,
        metrics: dict[str, Any] | None = None,
        epoch: int | None = None,
        is_primary: bool = True,
        **kwargs: Any,
    ) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def state_dict(self) -> dict[str, Any]:
        return {"step": self._step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._step = state_dict["step"]


def _batch_size(batch: dict[str, Any]) -> int:
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return value.shape[0]
        if isinstance(value, list):
            return len(value)
    return 0

"""TensorBoardCallback: writes losses, metrics, learning rates and gradient norms as tensorboard event files."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from regimen.registry import ConfigurationError
from regimen.registry.from_params import init_defaults
from regimen.trainers.callbacks import log_writer
from regimen.trainers.callbacks.callback import TrainerCallback

logger = logging.getLogger(__name__)


class TensorBoardWriterKeys:
    """AllenNLP 2.0-2.4's `tensorboard_writer` object inside the tensorboard callback: the callback's own keys one
    level down (`summary_interval`, `distribution_interval` / `histogram_interval`, `batch_size_interval`,
    `should_log_parameter_statistics`, `should_log_learning_rate`)."""

    def __init__(
        self,
        summary_interval: int | None = None,
        distribution_interval: int | None = None,
        histogram_interval: int | None = None,
        batch_size_interval: int | None = None,
        should_log_parameter_statistics: bool | None = None,
        should_log_learning_rate: bool | None = None,
    ) -> None:
        given = dict(locals())
        self.given = {name: value for name, value in given.items() if name != "self" and value is not None}


@TrainerCallback.register("tensorboard")
class TensorBoardCallback(TrainerCallback):
    """Tensorboard logs under ``<serialization_dir>/log/train`` and ``log/validation``.

    Registered as a `TrainerCallback` with name "tensorboard". AllenNLP 1.x's `tensorboard_writer` trainer key
    is read as this callback.

    Config keys:
    - `summary_interval` (int, 100): write the batch loss, metrics and grad norm every this many optimizer steps.
    - `distribution_interval` (int, null): write parameter histograms every this many steps (AllenNLP 2.x's
      name); `histogram_interval` (int, null) is AllenNLP 1.x's name for it (give one of the two).
    - `batch_size_interval` (int, null): write the batch size every this many steps.
    - `should_log_parameter_statistics` (bool, true): parameter and gradient mean/std at each summary
      (``parameter_mean/<name>``, ``parameter_std/<name>``; ``gradient_mean/<name>``, ``gradient_std/<name>``
      of the gradients of the step).
    - `should_log_learning_rate` (bool, true): the learning rate of each parameter group at each summary.
    - `tensorboard_writer` (object, null): AllenNLP 2.0-2.4 nested the keys above in it; they are read from there
      with a deprecation note (a key given in both places is a ConfigurationError).

    Each validation writes the epoch's training metrics to ``train`` and validation metrics to ``validation``
    with the epoch as the step.
    """

    def __init__(
        self,
        serialization_dir: str | None = None,
        summary_interval: int = 100,
        distribution_interval: int | None = None,
        histogram_interval: int | None = None,
        batch_size_interval: int | None = None,
        should_log_parameter_statistics: bool = True,
        should_log_learning_rate: bool = True,
        tensorboard_writer: TensorBoardWriterKeys | None = None,
    ) -> None:
        super().__init__(serialization_dir)
        if distribution_interval is not None and histogram_interval is not None:
            raise ConfigurationError(
                "and distribution_interval are one setting (AllenNLP 1.x's and 2.x's names); give only one",
                key="histogram_interval",
            )
        self.summary_interval = summary_interval
        self.histogram_interval = distribution_interval if distribution_interval is not None else histogram_interval
        self.batch_size_interval = batch_size_interval
        self.should_log_parameter_statistics = should_log_parameter_statistics
        self.should_log_learning_rate = should_log_learning_rate
        if tensorboard_writer is not None:
            self._read_nested_keys(tensorboard_writer.given)
        self._writers: dict[str, Any] = {}
        self._step = 0

    def _read_nested_keys(self, given: dict[str, Any]) -> None:
        """Take the keys AllenNLP 2.0-2.4 wrote in ``tensorboard_writer`` as this callback's own."""
        logger.warning(
            "callback tensorboard: tensorboard_writer is AllenNLP 2.0's place for its keys (%s): write them in the "
            "tensorboard callback itself",
            ", ".join(given),
        )
        defaults = init_defaults(TensorBoardCallback)
        for name, value in given.items():
            attribute = "histogram_interval" if name == "distribution_interval" else name
            if getattr(self, attribute) != defaults[name]:
                message = f"and {attribute} of the tensorboard callback are one setting; give only one"
                raise ConfigurationError(message, key=f"tensorboard_writer.{name}")
            setattr(self, attribute, value)

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
        if log_writer.is_due(self._step, self.summary_interval):
            writer.add_scalar("loss", log_writer.batch_loss(batch_outputs), self._step)
            for name, value in batch_metrics.items():
                writer.add_scalar(f"running/{name}", value, self._step)
            if batch_grad_norm is not None:
                writer.add_scalar("gradient_norm", batch_grad_norm, self._step)
            if self.should_log_learning_rate:
                for index, group in enumerate(trainer.optimizer.param_groups):
                    writer.add_scalar(f"learning_rate/group{index}", group["lr"], self._step)
            if self.should_log_parameter_statistics:
                for name, value in log_writer.parameter_statistics(trainer.model).items():
                    writer.add_scalar(name, value, self._step)
        if log_writer.is_due(self._step, self.histogram_interval):
            for name, values in log_writer.histogram_parameters(trainer.model).items():
                writer.add_histogram(name, values.float().cpu(), self._step)
        if log_writer.is_due(self._step, self.batch_size_interval):
            writer.add_scalar("batch_size", sum(log_writer.batch_size(batch) for batch in batch_inputs), self._step)

    def on_epoch(
        self, trainer: Any, metrics: dict[str, Any], epoch: int, is_primary: bool = True, **kwargs: Any
    ) -> None:
        if not self._writers or epoch < 0:
            return
        for values, writer_name in zip(log_writer.split_epoch_metrics(metrics), ("train", "validation")):
            writer = self._writers[writer_name]
            for name, value in values.items():
                writer.add_scalar(f"epoch_metrics/{name}", value, epoch)
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

"""TensorBoardMemoryUsageCallback: CPU and GPU memory per training batch, as tensorboard scalars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from regimen.trainers.callbacks.callback import TrainerCallback
from regimen.trainers.memory import peak_memory_mb


@TrainerCallback.register("tensorboard_memory_usage")
class TensorBoardMemoryUsageCallback(TrainerCallback):
    """Writes the peak CPU memory of this worker and the peak memory of each GPU after every optimizer step to
    ``<serialization_dir>/log/memory``. Slows training; meant for debugging.

    Registered as a `TrainerCallback` with name "tensorboard_memory_usage". Config keys: none.
    """

    def __init__(self, serialization_dir: str | None = None) -> None:
        super().__init__(serialization_dir)
        self._writer: Any = None
        self._step = 0

    def on_start(self, trainer: Any, is_primary: bool = True, **kwargs: Any) -> None:
        if is_primary and self.serialization_dir is not None:
            from torch.utils.tensorboard import SummaryWriter  # imported here: tensorboard is slow to import

            self._writer = SummaryWriter(str(Path(self.serialization_dir) / "log" / "memory"))

    def on_batch(
        self,
        trainer: Any,
        batch_inputs: Any,
        batch_outputs: Any,
        batch_metrics: Any,
        epoch: int,
        batch_number: int,
        is_training: bool,
        is_primary: bool = True,
        **kwargs: Any,
    ) -> None:
        if self._writer is None or not is_training:
            return
        self._step += 1
        for name, value in peak_memory_mb().items():
            self._writer.add_scalar(f"memory_usage/{name}", value, self._step)

    def on_end(
        self, trainer: Any, metrics: Any = None, epoch: Any = None, is_primary: bool = True, **kwargs: Any
    ) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

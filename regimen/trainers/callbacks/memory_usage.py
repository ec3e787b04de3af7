"""Memory usage per training step as tensorboard scalars: a TrainerCallback and AllenNLP 1.x's batch callback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from regimen.trainers.callbacks.callback import BatchCallback, TrainerCallback
from regimen.trainers.memory import peak_memory_mb


def _open_writer(serialization_dir: str) -> Any:
    from torch.utils.tensorboard import SummaryWriter  # imported here: tensorboard is slow to import

    return SummaryWriter(str(Path(serialization_dir) / "log" / "memory"))


def _write_memory_usage(writer: Any, step: int) -> None:
    for name, value in peak_memory_mb().items():
        writer.add_scalar(f"memory_usage/{name}", value, step)


@TrainerCallback.register("tensorboard_memory_usage")
class TensorBoardMemoryUsageCallback(TrainerCallback):
    """Writes the peak CPU memory of this worker and the peak memory of each GPU after every optimizer step to
    ``<serialization_dir>/log/memory`` (``memory_usage/peak_worker_0_memory_MB``,
    ``memory_usage/peak_gpu_<N>_memory_MB``; the step is the optimizer step, counted through resumes). Slows
    training; meant for debugging. Only the primary worker writes.

    Registered as a `TrainerCallback` with name "tensorboard_memory_usage". Config keys: none.
    """

    def __init__(self, serialization_dir: str | None = None) -> None:
        super().__init__(serialization_dir)
        self._writer: Any = None
        self._step = 0

    def on_start(self, trainer: Any, is_primary: bool = True, **kwargs: Any) -> None:
        if is_primary and self.serialization_dir is not None:
            self._writer = _open_writer(self.serialization_dir)

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
        _write_memory_usage(self._writer, self._step)

    def on_end(
        self, trainer: Any, metrics: Any = None, epoch: Any = None, is_primary: bool = True, **kwargs: Any
    ) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def state_dict(self) -> dict[str, Any]:
        return {"step": self._step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._step = state_dict.get("step", 0)  # checkpoints from before the step was kept hold {}


@BatchCallback.register("tensorboard-memory-usage")
class TensorBoardBatchMemoryUsage(BatchCallback):
    """AllenNLP 1.x's memory batch callback: the scalars of the `tensorboard_memory_usage` TrainerCallback, in
    ``<serialization_dir>/log/memory``, after every optimizer step, from the primary worker. Prefer that callback
    in new configs: a batch callback has no end hook, so this one flushes the file after every step, and its
    step count restarts at 1 when a run is resumed.

    Registered as a `BatchCallback` with name "tensorboard-memory-usage" (an entry of the trainer's
    `batch_callbacks`). Config keys: none besides the injected `serialization_dir`.
    """

    def __init__(self, serialization_dir: str | None = None) -> None:
        self.serialization_dir = serialization_dir
        self._writer: Any = None
        self._step = 0

    def __call__(
        self,
        trainer: Any,
        batch_inputs: list[dict[str, Any]],
        batch_outputs: list[dict[str, Any]],
        batch_metrics: dict[str, Any],
        epoch: int,
        batch_number: int,
        is_training: bool,
        is_primary: bool = True,
    ) -> None:
        if not is_training or not is_primary or self.serialization_dir is None:
            return
        if self._writer is None:
            self._writer = _open_writer(self.serialization_dir)
        self._step += 1
        _write_memory_usage(self._writer, self._step)
        self._writer.flush()

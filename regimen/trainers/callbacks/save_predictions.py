"""SavePredictionsCallback: each validation's per-instance outputs and targets, as JSON lines."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from regimen.trainers.callbacks.callback import TrainerCallback


@TrainerCallback.register("save_predictions")
class SavePredictionsCallback(TrainerCallback):
    """Writes ``<serialization_dir>/predictions/validation_epoch_<E>.jsonl``: one line per validation
    instance with the model's per-instance outputs, its target and its loss (when the model returns one).

    Registered as a `TrainerCallback` with name "save_predictions".

    Config keys:
    - `output_fields` (list[str], null): the output keys to write; null writes every output with one value per
      instance (tensors whose first dimension is the batch size).
    - `target_field` (str, "label"): the batch field written as ``target``.
    - `instance_loss_field` (str, "instance_loss"): an output holding one loss per instance, written as ``loss``.
    """

    def __init__(
        self,
        serialization_dir: str | None = None,
        output_fields: list[str] | None = None,
        target_field: str = "label",
        instance_loss_field: str = "instance_loss",
    ) -> None:
        super().__init__(serialization_dir)
        self.output_fields = output_fields
        self.target_field = target_field
        self.instance_loss_field = instance_loss_field
        self._lines: list[str] = []

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
        **kwargs: Any,
    ) -> None:
        if is_training or not is_primary or self.serialization_dir is None:
            return
        for inputs, outputs in zip(batch_inputs, batch_outputs):
            self._lines.extend(self._instances(inputs, outputs))

    def _instances(self, inputs: dict[str, Any], outputs: dict[str, Any]) -> list[str]:
        target = inputs.get(self.target_field)
        size = len(target) if target is not None else None
        fields = self.output_fields or [
            key for key, value in outputs.items() if isinstance(value, torch.Tensor) and value.dim() > 0
        ]
        columns = {key: _values(outputs[key]) for key in fields if key in outputs}
        size = size or (len(next(iter(columns.values()))) if columns else 0)
        lines = []
        for index in range(size):
            record: dict[str, Any] = {key: column[index] for key, column in columns.items() if len(column) == size}
            if target is not None:
                record["target"] = _values(target)[index]
            if self.instance_loss_field in outputs:
                record["loss"] = _values(outputs[self.instance_loss_field])[index]
            lines.append(json.dumps(record))
        return lines

    def on_epoch(
        self, trainer: Any, metrics: dict[str, Any], epoch: int, is_primary: bool = True, **kwargs: Any
    ) -> None:
        if epoch < 0 or not self._lines:
            return
        directory = Path(self.serialization_dir) / "predictions"
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"validation_epoch_{epoch}.jsonl"
        temporary = target.with_suffix(".jsonl.tmp")
        with open(temporary, "w") as file:
            file.write("\n".join(self._lines) + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
        self._lines = []


def _values(value: Any) -> list[Any]:
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().tolist() if value.is_floating_point() else value.detach().cpu().tolist()
    return list(value)

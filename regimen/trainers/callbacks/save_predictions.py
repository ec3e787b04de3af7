"""SavePredictionsCallback: each split's per-instance outputs, targets and file positions, as JSON lines."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from regimen.registry import ConfigurationError
from regimen.trainers.callbacks.callback import TrainerCallback


@TrainerCallback.register("save_predictions")
class SavePredictionsCallback(TrainerCallback):
    """Writes each split's per-instance outputs as JSON lines under ``<serialization_dir>/predictions/``:
    ``<split>_epoch_<E>.jsonl`` for each epoch (a validation split: each epoch that validated) and ``test.jsonl``
    once, after the test evaluation (autrainer's ``save_train/dev/test_outputs``, aitoolbox's ``predict_on_*``).

    Each line holds ``index`` (the instance's position in its data file, kept through shuffling, bucketing and
    sharding; lines are in that order), ``target``, ``loss`` (when the model gives one per instance), the model's
    per-instance outputs and, where the model defines AllenNLP's ``make_output_human_readable``, what that adds.
    A distributed run writes every instance exactly once, from the primary worker.

    Registered as a `TrainerCallback` with name "save_predictions".

    Config keys:
    - `splits` (list[str], ["validation"]): any of "training", "validation" (or a named validation set's name)
      and "test".
    - `output_fields` (list[str], null): the output keys to write; null writes every output with one value per
      instance (tensors whose first dimension is the batch size, and lists as long as the batch).
    - `target_field` (str, "label"): the batch field written as ``target``.
    - `instance_loss_field` (str, "instance_loss"): an output holding one loss per instance, written as ``loss``.
    """

    def __init__(
        self,
        serialization_dir: str | None = None,
        splits: list[str] | None = None,
        output_fields: list[str] | None = None,
        target_field: str = "label",
        instance_loss_field: str = "instance_loss",
    ) -> None:
        super().__init__(serialization_dir)
        self.splits = list(splits) if splits is not None else ["validation"]
        if not self.splits:
            raise ConfigurationError('is empty: name at least one of "training", "validation", "test"', key="splits")
        self.output_fields = output_fields
        self.target_field = target_field
        self.instance_loss_field = instance_loss_field
        self._records: dict[str, list[dict[str, Any]]] = {}

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
        split = kwargs.get("split", "training" if is_training else "validation")
        if split not in self.splits or self.serialization_dir is None:
            return
        for inputs, outputs in zip(batch_inputs, batch_outputs):
            self._records.setdefault(split, []).extend(self._instances(trainer, inputs, outputs))

    def on_epoch(
        self, trainer: Any, metrics: dict[str, Any], epoch: int, is_primary: bool = True, **kwargs: Any
    ) -> None:
        if epoch >= 0:
            for split in [s for s in self.splits if s != "test"]:
                self._write(trainer, split, f"{split}_epoch_{epoch}.jsonl", is_primary)

    def on_test_end(self, trainer: Any, metrics: dict[str, Any], **kwargs: Any) -> None:
        if "test" in self.splits:
            self._write(trainer, "test", "test.jsonl", getattr(trainer, "_primary", True))

    def _instances(self, trainer: Any, inputs: dict[str, Any], outputs: dict[str, Any]) -> list[dict[str, Any]]:
        target = inputs.get(self.target_field)
        indices = getattr(inputs, "indices", None)
        size = len(target) if target is not None else len(indices) if indices is not None else None
        readable = getattr(getattr(trainer, "model", None), "make_output_human_readable", None)
        if callable(readable):
            outputs = {**outputs, **readable(dict(outputs))}
        fields = self.output_fields or [key for key, value in outputs.items() if _per_instance(value, size)]
        columns = {key: _values(outputs[key]) for key in fields if key in outputs}
        size = size or (len(next(iter(columns.values()))) if columns else 0)
        records = []
        for row in range(size):
            record: dict[str, Any] = {"index": indices[row]} if indices is not None else {}
            record.update({key: column[row] for key, column in columns.items() if len(column) == size})
            if target is not None:
                record["target"] = _values(target)[row]
            if self.instance_loss_field in outputs:
                record["loss"] = _values(outputs[self.instance_loss_field])[row]
            records.append(record)
        return records

    def _write(self, trainer: Any, split: str, name: str, is_primary: bool) -> None:
        """Every worker's records of ``split`` (a collective in a distributed run), each instance once, in file
        order, written atomically by the primary."""
        records = self._records.pop(split, [])
        distributed = getattr(trainer, "_dist", None)
        if distributed is not None and distributed.world_size > 1:
            gathered = distributed.gather_objects(records)
            records = [record for part in gathered or [] for record in part]
        if not is_primary or not records:
            return
        if all("index" in record for record in records):  # the tail of a sharded epoch may repeat instances
            records = sorted({record["index"]: record for record in records}.values(), key=lambda r: r["index"])
        directory = Path(self.serialization_dir) / "predictions"
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / name
        temporary = target.with_suffix(".jsonl.tmp")
        with open(temporary, "w") as file:
            file.write("".join(json.dumps(record) + "\n" for record in records))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)


def _per_instance(value: Any, size: int | None) -> bool:
    if isinstance(value, torch.Tensor):
        return value.dim() > 0 and (size is None or value.shape[0] == size)
    return isinstance(value, list) and size is not None and len(value) == size


def _values(value: Any) -> list[Any]:
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().tolist() if value.is_floating_point() else value.detach().cpu().tolist()
    return list(value)

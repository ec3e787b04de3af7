"""Evaluation: a trained model's loss and metrics over one dataset, and optionally its outputs per instance."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import torch

from regimen.data.collate import batch_size
from regimen.models import Model
from regimen.trainers.device_batches import batches_on_device
from regimen.trainers.loss_totals import LossTotals

logger = logging.getLogger(__name__)


def evaluate(
    model: Model,
    batches: Iterable[dict[str, Any]],
    device: torch.device,
    predictions_output_file: str | Path | None = None,
) -> dict[str, float]:
    """The model's loss per instance (when the data has labels) and its metrics over ``batches``, in eval mode.

    With ``predictions_output_file``, one JSON object per instance is written there: each output whose first
    dimension is the batch size, as a list (scalars such as the batch loss are left out).
    """
    model.eval()
    model.get_metrics(reset=True)  # start from clean counters whatever ran before
    totals = LossTotals()
    file: IO[str] | None = open(predictions_output_file, "w") if predictions_output_file else None
    try:
        with torch.inference_mode():
            for batch in batches_on_device(batches, device):
                output = sum_named_losses(dict(model(**batch)), model)
                totals.add(output, batch)
                if file is not None:
                    for instance in _per_instance(output, batch_size(batch)):
                        file.write(json.dumps(instance) + "\n")
    finally:
        if file is not None:
            file.close()
    return totals.metrics("", model, reset=True)


def sum_named_losses(output: dict[str, Any], model: Any = None) -> dict[str, Any]:
    """A model's output with its ``loss`` summed when it is a dict of named losses or a list (or tuple) of them,
    the terms kept as ``named_losses`` (a list's named ``0``, ``1``, ...), so they are logged as ``loss_<name>``.
    Any other ``loss`` than a tensor is a TypeError naming the model's class."""
    loss = output.get("loss")
    if isinstance(loss, dict):
        named = loss
    elif isinstance(loss, (list, tuple)):
        named = {str(index): term for index, term in enumerate(loss)}
    else:
        named = {"": loss} if loss is not None else {}
    wrong = {name: term for name, term in named.items() if not isinstance(term, torch.Tensor)}
    if loss is not None and not named:
        wrong = {"": loss}  # an empty dict or list: nothing to train on
    if wrong:
        name, term = next(iter(wrong.items()))
        where = f"'loss'[{name!r}]" if name else "'loss'"
        raise TypeError(
            f"{type(model).__name__}.forward returned {where} as {type(term).__name__} ({str(term)[:60]}); expected "
            "a tensor, a dict of named loss tensors, or a list of loss tensors"
        )
    if isinstance(loss, (dict, list, tuple)):
        output["named_losses"] = named
        output["loss"] = sum(named.values())
    return output


def _per_instance(output: dict[str, Any], batch_size: int | None) -> list[dict[str, Any]]:
    """Split a batch's outputs into one dict per instance, keeping the outputs that have one row per instance."""
    columns: dict[str, list[Any]] = {}
    for name, value in output.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch_size:
            columns[name] = value.detach().float().cpu().tolist() if value.is_floating_point() else value.tolist()
        elif isinstance(value, list) and len(value) == batch_size:
            columns[name] = value
    return [{name: values[row] for name, values in columns.items()} for row in range(batch_size or 0)]

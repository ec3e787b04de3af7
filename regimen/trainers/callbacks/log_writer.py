"""What AllenNLP's LogWriterCallback logs, computed once for the tensorboard and wandb callbacks.

Each function returns a dict of ``name -> value`` under AllenNLP's names (``parameter_mean/<parameter>``, ...);
the callbacks decide when to call them (their intervals) and where the values go.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from regimen.data.collate import batch_size as _instances

logger = logging.getLogger(__name__)


def is_due(step: int, interval: int | None) -> bool:
    """Whether something logged every ``interval`` optimizer steps is due at ``step`` (None: never)."""
    return interval is not None and step % interval == 0


def batch_loss(outputs: Iterable[Mapping[str, Any]], key: str = "loss") -> float | None:
    """The mean of ``key`` over the micro-batches of one optimizer step; None where no output has it."""
    values = [float(output[key].detach()) for output in outputs if output.get(key) is not None]
    return sum(values) / len(values) if values else None


def batch_size(batch: Mapping[str, Any]) -> int:
    """The number of instances in a batch: the first dimension of its first tensor (or the length of a list)."""
    return _instances(batch) or 0


def parameter_statistics(model: torch.nn.Module) -> dict[str, float]:
    """``parameter_mean/<name>`` and ``parameter_std/<name>`` of each parameter, and ``gradient_mean/<name>`` and
    ``gradient_std/<name>`` of each gradient the parameters hold (the values of a sparse one)."""
    statistics: dict[str, float] = {}
    for name, parameter in model.named_parameters():
        data = parameter.detach()
        if data.numel() > 0:
            statistics[f"parameter_mean/{name}"] = data.mean().item()
        if data.numel() > 1:
            statistics[f"parameter_std/{name}"] = data.std().item()
        grad = parameter.grad
        if grad is None:
            continue
        grad = grad._values() if grad.is_sparse else grad.detach()
        if grad.numel() == 0:
            logger.info("no gradient for %s, not logging its statistics", name)
            continue
        statistics[f"gradient_mean/{name}"] = grad.mean().item()
        if grad.numel() > 1:
            statistics[f"gradient_std/{name}"] = grad.std().item()
    return statistics


def learning_rates(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """``learning_rate/<name>`` for each parameter the optimizer updates: its group's rate (0 when frozen)."""
    names = {parameter: name for name, parameter in model.named_parameters()}
    rates: dict[str, float] = {}
    for group in optimizer.param_groups:
        if "lr" not in group:
            continue
        for parameter in group["params"]:
            if parameter in names:
                rates[f"learning_rate/{names[parameter]}"] = float(group["lr"]) * float(parameter.requires_grad)
    return rates


def histogram_parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``parameter_histogram/<name>`` of the parameters a model chooses with AllenNLP's
    ``get_parameters_for_histogram_logging()`` (1.x: ``..._tensorboard_logging()``); every parameter otherwise."""
    choose = getattr(model, "get_parameters_for_histogram_logging", None) or getattr(
        model, "get_parameters_for_histogram_tensorboard_logging", None
    )
    chosen = set(choose()) if choose is not None else None
    return {
        f"parameter_histogram/{name}": parameter.detach()
        for name, parameter in model.named_parameters()
        if chosen is None or name in chosen
    }


def parameter_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of every parameter, to measure the next step's update with `update_ratios`."""
    return {name: parameter.detach().cpu().clone() for name, parameter in model.named_parameters()}


def update_ratios(before: Mapping[str, torch.Tensor], model: torch.nn.Module) -> dict[str, float]:
    """``gradient_update/<name>``: the norm of the change since ``before`` over the norm of the parameter now
    (in float32, the denominator guarded by AllenNLP's ``tiny_value_of_dtype(float32)``, 1e-13)."""
    ratios: dict[str, float] = {}
    for name, parameter in model.named_parameters():
        if name not in before:
            continue
        now = parameter.detach().cpu().float()
        change = torch.linalg.vector_norm(before[name].float() - now)
        ratios[f"gradient_update/{name}"] = (change / (torch.linalg.vector_norm(now) + 1e-13)).item()
    return ratios


def activation_tensors(outputs: Any, name: str) -> dict[str, torch.Tensor]:
    """``activation_histogram/<name>`` of a module's output: a tensor, or each tensor of a tuple (``_<i>``) or a
    dict (``_<key>``); other outputs give nothing."""
    prefix = f"activation_histogram/{name}"
    if isinstance(outputs, torch.Tensor):
        return {prefix: outputs.detach()}
    if isinstance(outputs, (list, tuple)):
        items: Iterable[tuple[Any, Any]] = enumerate(outputs)
    elif isinstance(outputs, dict):
        items = outputs.items()
    else:
        return {}
    return {f"{prefix}_{key}": value.detach() for key, value in items if isinstance(value, torch.Tensor)}


def split_epoch_metrics(metrics: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """The numeric ``training_*`` and ``validation_*`` metrics of a validation, without their prefixes (the
    training ones without ``duration``, ``start_epoch``, ``epochs`` and memory, as AllenNLP logs them)."""
    train: dict[str, float] = {}
    validation: dict[str, float] = {}
    for key, value in metrics.items():
        if not isinstance(value, (int, float)):
            continue
        if key.startswith("training_"):
            name = key.removeprefix("training_")
            if name not in ("duration", "start_epoch", "epochs") and "_memory_MB" not in name:
                train[name] = value
        elif key.startswith("validation_"):
            validation[key.removeprefix("validation_")] = value
    return train, validation


class LossWindow:
    """The mean of the last ``size`` batch losses (AllenNLP's ``batch_loss_mov_avg``), kept through checkpoints."""

    def __init__(self, size: int = 100) -> None:
        self.size = size
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> float:
        """Add a batch loss; returns the mean of the window."""
        self._values.append(value)
        return sum(self._values) / len(self._values)

    def state_dict(self) -> list[float]:
        return list(self._values)

    def load_state_dict(self, values: list[float]) -> None:
        self._values = deque(values, maxlen=self.size)

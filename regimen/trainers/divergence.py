"""Divergence: the error for a training loss that stopped being finite, saying what the run knows of the cause."""

from __future__ import annotations

import inspect
from typing import Any

import torch


def divergence_error(
    value: float,
    where: str,
    optimizer: torch.optim.Optimizer,
    clipped: bool,
    float16: bool,
) -> ValueError:
    """The ValueError for a training loss that became ``value`` (nan or inf) ``where`` (epoch and batches).

    It states the optimizer and the learning rate it ran at, and whether that is the optimizer's own default (the
    config set none); advice follows from those facts: the data, a smaller learning rate (set one, where none was
    set), gradient clipping where there is none, bfloat16 where float16 mixed precision may overflow."""
    rates = list(dict.fromkeys(group.get("lr") for group in optimizer.param_groups))
    shown = ", ".join(f"{rate:g}" if isinstance(rate, (int, float)) else str(rate) for rate in rates)
    # The torch class a registered optimizer builds on (SGD, not regimen's wrapper of it).
    name = next((c.__name__ for c in type(optimizer).__mro__ if c.__module__.startswith("torch.")), "")
    name = name if name not in ("", "Optimizer") else type(optimizer).__name__
    default = _default_learning_rate(optimizer)
    if default is not inspect.Parameter.empty and all(rate == default for rate in rates):
        facts = f"{name} ran at lr {shown}, its default: the config sets no learning rate"
        advice = ["set a smaller trainer.optimizer.lr"]
    else:
        facts = f"{name} ran at lr {shown}"
        advice = ["lower trainer.optimizer.lr"]
    if not clipped:
        facts += ", gradients unclipped"
        advice.append("clip gradients with trainer.grad_norm")
    if float16:
        facts += ", float16 mixed precision"
        advice.append('use amp_dtype "bfloat16", which does not overflow as easily')
    return ValueError(
        f"the training loss became {value} {where}. {facts}. Check the data for NaN or inf values, "
        + ", ".join(advice[:-1])
        + (" or " if len(advice) > 1 else "")
        + advice[-1]
    )


def _default_learning_rate(optimizer: torch.optim.Optimizer) -> Any:
    """The ``lr`` default of the optimizer class's constructor (``inspect.Parameter.empty`` if it has none)."""
    try:
        parameter = inspect.signature(type(optimizer).__init__).parameters.get("lr")
    except (TypeError, ValueError):
        return inspect.Parameter.empty
    return inspect.Parameter.empty if parameter is None else parameter.default

"""Activation checkpointing: chosen submodules keep no activations for the backward pass and recompute them then.

The trainer's `activation_checkpointing` key names module classes (``["TransformerEncoderLayer"]``); each module of
those classes runs its forward under ``torch.utils.checkpoint.checkpoint`` (non-reentrant) while gradients are being
recorded. Peak memory drops by the activations inside those modules, at the cost of a second forward of each in the
backward pass; the loss and the gradients are those of the plain model (random operations such as dropout replay
the same random numbers). The modules' parameter names, and so checkpoints and archives, do not change.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from regimen.trainers.module_classes import check_class_names, class_name


def checkpoint_activations(model: torch.nn.Module, class_names: list[str]) -> int:
    """Make every submodule of ``model`` whose class is named in ``class_names`` recompute its activations in the
    backward pass; returns how many modules it changed. A name that matches no submodule is a ConfigurationError
    naming the model's module classes."""
    if not class_names:
        return 0
    check_class_names(model, class_names, "trainer.activation_checkpointing")
    names = set(class_names)
    changed = 0
    for module in model.modules():
        if class_name(module) in names and not getattr(module, "_regimen_checkpointed", False):
            module.forward = functools.partial(_checkpointed, module.forward)  # type: ignore[method-assign]
            module._regimen_checkpointed = True  # type: ignore[assignment]
            changed += 1
    return changed


def _checkpointed(forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    if not torch.is_grad_enabled():  # validation and inference keep nothing for a backward pass anyway
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)

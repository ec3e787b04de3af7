"""Modules chosen by class name in a config (FSDP's `shard_modules`, the trainer's `activation_checkpointing`)."""

from __future__ import annotations

import torch

from regimen.registry import ConfigurationError
from regimen.registry.errors import missing_names


def class_name(module: torch.nn.Module) -> str:
    """The name of ``module``'s class as its author wrote it: FSDP2 turns a sharded ``Linear`` into an instance
    of a generated ``FSDPLinear`` class, whose second base is the original class."""
    cls = type(module)
    if cls.__name__.startswith("FSDP") and len(cls.__bases__) == 2 and cls.__bases__[0].__name__ == "FSDPModule":
        cls = cls.__bases__[1]
    return cls.__name__


def check_class_names(model: torch.nn.Module, names: list[str], key: str) -> None:
    """Raise a ConfigurationError at ``key`` for each of ``names`` that is the class of no module of ``model``,
    listing the classes it has."""
    present = sorted({class_name(module) for module in model.modules()})
    unknown = sorted(set(names) - set(present))
    if unknown:
        raise ConfigurationError(
            f"no module of the model is a {missing_names(unknown, present)}; "
            f"the model's module classes: {', '.join(present)}",
            key,
        )

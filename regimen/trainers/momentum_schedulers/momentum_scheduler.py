"""MomentumScheduler: the base class of schedules for the optimizer's momentum (SGD's momentum, Adam's beta1)."""

from __future__ import annotations

from typing import Any

import torch

from regimen.registry import ConfigurationError, Registrable


class MomentumScheduler(Registrable):
    """Sets the momentum of every parameter group of an optimizer as training goes on.

    The momentum is the group's ``momentum`` (SGD, RMSprop) or, for the Adam family, the first of its ``betas``.
    Built by the trainer with ``optimizer`` injected. Same interface as LearningRateScheduler: ``step(metric)``
    after each validation, ``step_batch(n)`` before the ``n``-th optimizer step, ``get_values()``, and
    ``state_dict``/``load_state_dict`` that restore the momentum values themselves on resume.

    torch schedules momentum only inside OneCycleLR and CyclicLR, tied to their learning-rate cycles, so the
    momentum schedules are written here.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        for index, group in enumerate(optimizer.param_groups):
            if "momentum" not in group and "betas" not in group:
                raise ConfigurationError(
                    f"the optimizer ({type(optimizer).__name__}) has no momentum in parameter group {index}; "
                    "a momentum scheduler needs one with 'momentum' (SGD) or 'betas' (Adam)"
                )
        self.base_values = self.get_values()

    def step(self, metric: float | None = None) -> None:
        """After a validation (an epoch end), with the validation score, higher is better."""

    def step_batch(self, batch_num_total: int | None = None) -> None:
        """Before optimizer step number ``batch_num_total`` (from 1)."""

    def get_values(self) -> list[float]:
        """The current momentum of each parameter group."""
        return [
            float(group["momentum"] if "momentum" in group else group["betas"][0])
            for group in self.optimizer.param_groups
        ]

    def set_values(self, values: list[float]) -> None:
        """Write one momentum per parameter group."""
        groups = self.optimizer.param_groups
        if len(values) != len(groups):
            raise ValueError(f"{len(values)} momentum values for {len(groups)} parameter groups")
        for group, value in zip(groups, values):
            if "momentum" in group:
                group["momentum"] = value
            else:
                group["betas"] = (value, *tuple(group["betas"])[1:])

    def state_dict(self) -> dict[str, Any]:
        return {"base_values": list(self.base_values), "values": self.get_values()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_values = list(state["base_values"])
        self.set_values(state["values"])

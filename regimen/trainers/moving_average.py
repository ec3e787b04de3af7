"""MovingAverage: shadow copies of the model's parameters averaged over training, swapped in for evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from regimen.registry import ConfigurationError, Registrable


class MovingAverage(Registrable):
    """Keeps an average of each parameter (its shadow) over the optimizer steps.

    Built by the trainer with ``parameters`` (the model's named parameters) injected. ``apply(n)`` after the
    ``n``-th optimizer step updates the shadows; ``assign_average_value()`` puts the averages into the model and
    keeps the live values aside until ``restore()`` puts them back.

    ``state_dict()`` holds the shadows and the live values of the parameters (the live ones even while the
    averages are assigned), so a checkpoint whose model weights are the averages still resumes training from
    the live weights: ``load_state_dict`` restores the shadows and writes the live values into the parameters,
    so load it after the model's weights. (AllenNLP's state kept the parameter tensors of the saving process,
    and a resumed run went on from the averages.)

    The shadows follow the parameters to another device or dtype (the trainer moves the model after building
    this), checked on the first parameter at each call.
    """

    default_implementation = "exponential"

    def __init__(self, parameters: list[tuple[str, torch.nn.Parameter]]) -> None:
        names = [name for name, _ in parameters]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"parameter names must be unique, got {', '.join(duplicates)} more than once")
        self._names = names
        self._parameters = [parameter for _, parameter in parameters]
        self._shadows = [parameter.detach().clone() for parameter in self._parameters]
        self._backups: list[torch.Tensor] | None = None  # the live values while the averages are assigned
        self._assigned = False

    def apply(self, num_updates: int | None = None) -> None:
        """Update the shadows from the parameters after optimizer step number ``num_updates``."""
        raise NotImplementedError

    @torch.no_grad()
    def assign_average_value(self) -> None:
        """Put the averages into the parameters, keeping the live values until ``restore()``."""
        if self._assigned:
            raise RuntimeError("the averages are already assigned; call restore() before assigning them again")
        self._follow_parameters()
        if self._parameters:
            if self._backups is None:
                self._backups = [torch.empty_like(parameter) for parameter in self._parameters]
            torch._foreach_copy_(_local(self._backups), _local(self._parameters))
            torch._foreach_copy_(_local(self._parameters), _local(self._shadows))
        self._assigned = True

    @torch.no_grad()
    def restore(self) -> None:
        """Put the live values kept by ``assign_average_value()`` back into the parameters."""
        if not self._assigned:
            raise RuntimeError("restore() without assign_average_value(): the parameters already hold live values")
        if self._parameters and self._backups is not None:
            torch._foreach_copy_(_local(self._parameters), _local(self._backups))
        self._assigned = False

    def state_dict(self) -> dict[str, Any]:
        """Copies of the shadows and of the live parameter values, by parameter name."""
        live = self._backups if self._assigned and self._backups is not None else self._parameters
        return {
            "shadows": {name: shadow.detach().clone() for name, shadow in zip(self._names, self._shadows)},
            "parameters": {name: value.detach().clone() for name, value in zip(self._names, live)},
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the shadows and write the saved live values into the parameters (after loading the model)."""
        for key in ("shadows", "parameters"):
            if key not in state:
                raise ValueError(f"the moving-average state has no {key!r}; it was not written by regimen")
            _check_names(self._names, state[key], key)
        if self._assigned:
            raise RuntimeError("load_state_dict while the averages are assigned; call restore() first")
        self._follow_parameters()
        for name, shadow, parameter in zip(self._names, self._shadows, self._parameters):
            _check_shape(name, shadow, state["shadows"][name])
            shadow.copy_(state["shadows"][name])
            parameter.copy_(state["parameters"][name])

    def _follow_parameters(self) -> None:
        """Move the shadows to the parameters' device and dtype if the model has moved since they were made."""
        if not self._parameters:
            return
        first, shadow = self._parameters[0], self._shadows[0]
        if shadow.device != first.device or shadow.dtype != first.dtype:
            self._shadows = [s.to(device=p.device, dtype=p.dtype) for s, p in zip(self._shadows, self._parameters)]
            self._backups = None


@MovingAverage.register("exponential")
class ExponentialMovingAverage(MovingAverage):
    """An exponential moving average of the parameters: after each optimizer step,
    ``shadow = decay * shadow + (1 - decay) * parameter``.

    When the trainer passes the number of updates ``n`` (it does), the decay used is
    ``min(decay, (numerator + n) / (denominator + n))``, so early averages are not dominated by the initial
    weights (TensorFlow's ExponentialMovingAverage). The shadows are updated in place with one fused
    ``torch._foreach_lerp_`` over all parameters.

    Registered as a `MovingAverage` with name "exponential".

    - `decay` (float, 0.9999): the decay, and the upper bound of the decay when ``n`` is given; between 0 and 1.
    - `numerator` (float, 1.0), `denominator` (float, 10.0): the terms of the decay for ``n`` updates.
    """

    def __init__(
        self,
        parameters: list[tuple[str, torch.nn.Parameter]],
        decay: float = 0.9999,
        numerator: float = 1.0,
        denominator: float = 10.0,
    ) -> None:
        if not 0 <= decay <= 1:
            raise ConfigurationError(f"must be between 0 and 1, got {decay}", key="decay")
        if denominator <= 0:
            raise ConfigurationError(f"must be positive, got {denominator}", key="denominator")
        super().__init__(parameters)
        self._decay = decay
        self._numerator = numerator
        self._denominator = denominator

    def decay_at(self, num_updates: int | None) -> float:
        """The decay used for update number ``num_updates`` (the configured one when None)."""
        if num_updates is None:
            return self._decay
        return min(self._decay, (self._numerator + num_updates) / (self._denominator + num_updates))

    @torch.no_grad()
    def apply(self, num_updates: int | None = None) -> None:
        if self._assigned:
            raise RuntimeError("apply() while the averages are assigned; call restore() first")
        if not self._parameters:
            return
        self._follow_parameters()
        # shadow + (1 - decay) * (parameter - shadow) == decay * shadow + (1 - decay) * parameter
        torch._foreach_lerp_(_local(self._shadows), _local(self._parameters), 1.0 - self.decay_at(num_updates))


@contextmanager
def averaged_weights(moving_average: MovingAverage | None) -> Iterator[None]:
    """The moving-average weights in the model while the context is open (nothing without a moving average)."""
    if moving_average is None:
        yield
        return
    moving_average.assign_average_value()
    try:
        yield
    finally:
        moving_average.restore()


def _local(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors, with each DTensor (a parameter sharded with FSDP) as this worker's shard: the averages are
    elementwise, and a shadow is sharded as its parameter, so each worker updates its own shards."""
    return [tensor.to_local() if hasattr(tensor, "to_local") else tensor for tensor in tensors]


def _check_names(expected: list[str], saved: dict[str, Any], key: str) -> None:
    missing = [name for name in expected if name not in saved]
    unexpected = [name for name in saved if name not in set(expected)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected)}")
        raise ValueError(f"the moving-average {key} do not match the model's parameters: {'; '.join(parts)}")


def _check_shape(name: str, current: torch.Tensor, saved: torch.Tensor) -> None:
    if current.shape != saved.shape:
        raise ValueError(
            f"the moving average of {name} has shape {tuple(saved.shape)} in the state, {tuple(current.shape)} here"
        )

"""The "inverted_triangular" momentum schedule: down linearly, back up linearly, then flat."""

from __future__ import annotations

from typing import Any

import torch

from regimen.registry import ConfigurationError
from regimen.trainers.momentum_schedulers.momentum_scheduler import MomentumScheduler


@MomentumScheduler.register("inverted_triangular")
class InvertedTriangular(MomentumScheduler):
    """The momentum falls linearly from its starting value ``m`` to ``m / ratio`` over `cool_down` epochs, rises
    linearly back to ``m`` over `warm_up` epochs, and stays at ``m`` after that. Changes on `step` (epochs are
    calls of `step`, i.e. validations).

    After ``k`` epochs the momentum is ``m - (m - m / ratio) * k / cool_down`` for ``k <= cool_down``, then
    ``m / ratio + (m - m / ratio) * (k - cool_down) / warm_up`` for ``k <= cool_down + warm_up``.

    Registered as a `MomentumScheduler` with name "inverted_triangular".

    - `cool_down` (int, required): epochs over which the momentum falls.
    - `warm_up` (int, required): epochs over which it rises again.
    - `ratio` (float, 10): how much smaller the lowest momentum is than the starting one.
    - `last_epoch` (int, -1): accepted for AllenNLP configs; only -1 (a resumed run restores the schedule from
      its checkpoint).
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, cool_down: int, warm_up: int, ratio: float = 10, last_epoch: int = -1
    ) -> None:
        if last_epoch != -1:
            raise ConfigurationError(
                f"only -1 is supported, got {last_epoch}; a resumed run restores the schedule from its checkpoint",
                key="last_epoch",
            )
        for key, value in (("cool_down", cool_down), ("warm_up", warm_up)):
            if value < 0:
                raise ConfigurationError(f"must not be negative, got {value}", key=key)
        if ratio <= 0:
            raise ConfigurationError(f"must be positive, got {ratio}", key="ratio")
        super().__init__(optimizer)
        self.cool_down = cool_down
        self.warm_up = warm_up
        self.ratio = ratio
        self.epochs_done = 0

    def step(self, metric: float | None = None) -> None:
        self.epochs_done += 1
        self.set_values([self._momentum(base, self.epochs_done) for base in self.base_values])

    def _momentum(self, base: float, epochs: int) -> float:
        lowest = base / self.ratio
        if epochs <= self.cool_down:
            return base - (base - lowest) * epochs / self.cool_down
        if epochs <= self.cool_down + self.warm_up:
            return lowest + (base - lowest) * (epochs - self.cool_down) / self.warm_up
        return base

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "epochs_done": self.epochs_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epochs_done = state["epochs_done"]
        super().load_state_dict(state)

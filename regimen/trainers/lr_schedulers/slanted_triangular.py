"""The "slanted_triangular" schedule of ULMFiT, with gradual unfreezing and discriminative fine-tuning."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from regimen.registry import ConfigurationError
from regimen.trainers.lr_schedulers.learning_rate_scheduler import (
    LearningRateScheduler,
    TorchStepScheduler,
    check_last_epoch,
    check_positive,
    require_steps_per_epoch,
)

logger = logging.getLogger(__name__)


@LearningRateScheduler.register("slanted_triangular")
class SlantedTriangular(TorchStepScheduler):
    """ULMFiT's slanted triangle (https://arxiv.org/abs/1801.06146): the lr rises linearly from ``lr / ratio`` to
    ``lr`` over the first `cut_frac` of the optimizer steps, then falls linearly back to ``lr / ratio``.

    Over ``T`` steps with ``cut = floor(T * cut_frac)``, optimizer step ``t`` (from 1) uses
    ``lr * (1 + p * (ratio - 1)) / ratio`` with ``p = t / cut`` before the cut and
    ``p = 1 - (t - cut) / (T - cut)`` from it on, as AllenNLP computes it. With ``cut`` 0 (`cut_frac` 0, or
    ``T * cut_frac < 1``) there is no warm-up: the lr starts at ``lr`` and falls linearly, step ``t`` using
    ``p = 1 - t / T``. Changes on `step_batch`; `step` moves gradual unfreezing on. torch has no such schedule,
    so the triangle is a LambdaLR lambda.

    The optimizer's parameter groups that hold parameters are the layers, the first the bottom, the last the top
    (list them bottom first in the optimizer's `parameter_groups`; the default group of parameters no entry
    matches comes last, so it is the top, as a classifier head is; AllenNLP required it to be empty).
    With `gradual_unfreezing` only the top layer trains in the first epoch, the top two in the second, and so on
    (the others get ``requires_grad = False``); while layers are frozen each epoch runs its own triangle over
    ``num_steps_per_epoch`` steps, and once all train one triangle runs over the steps that remain. With
    `discriminative_fine_tuning` each layer's lr is `decay_factor` times the one above it. "Epochs" are calls of
    `step`, i.e. validations. Early stopping should usually be avoided with this schedule.

    Registered as a `LearningRateScheduler` with name "slanted_triangular".

    - `cut_frac` (float, 0.1): the fraction of the steps during which the lr rises; at least 0, below 1.
    - `ratio` (float, 32): how much smaller the lowest lr is than the highest.
    - `gradual_unfreezing` (bool, false): train the layers from the top down, one more each epoch.
    - `discriminative_fine_tuning` (bool, false): a smaller lr for each layer further down.
    - `decay_factor` (float, 0.38): the lr of a layer relative to the one above it.
    - `num_epochs` (int), `num_steps_per_epoch` (int): injected by the trainer; set them to override.
    - `last_epoch` (int, -1): accepted for AllenNLP configs; only -1.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        num_epochs: int,
        num_steps_per_epoch: int | None = None,
        cut_frac: float = 0.1,
        ratio: float = 32,
        last_epoch: int = -1,
        gradual_unfreezing: bool = False,
        discriminative_fine_tuning: bool = False,
        decay_factor: float = 0.38,
    ) -> None:
        check_last_epoch(last_epoch)
        check_positive(num_epochs=num_epochs, ratio=ratio, decay_factor=decay_factor)
        if not 0 <= cut_frac < 1:
            raise ConfigurationError(f"must be at least 0 and below 1, got {cut_frac}", key="cut_frac")
        self.num_epochs = num_epochs
        self.num_steps_per_epoch = require_steps_per_epoch(num_steps_per_epoch)
        self.cut_frac = cut_frac
        self.ratio = ratio
        self.gradual_unfreezing = gradual_unfreezing
        groups = optimizer.param_groups
        self._layers = [index for index, group in enumerate(groups) if group["params"]]  # bottom to top
        layer_options = {
            "gradual_unfreezing": gradual_unfreezing,
            "discriminative_fine_tuning": discriminative_fine_tuning,
        }
        for key, wanted in layer_options.items():
            if wanted and len(self._layers) < 2:
                raise ConfigurationError(
                    f"needs the optimizer's parameters in at least two parameter groups (layers, bottom first), "
                    f"got {len(self._layers)}",
                    key=key,
                )
        multipliers = [1.0] * len(groups)
        if discriminative_fine_tuning:
            for depth, index in enumerate(reversed(self._layers)):
                multipliers[index] = decay_factor**depth
        # The position of the schedule, in optimizer steps taken: where the current epoch began, and where the
        # last frozen epoch ended (None while layers are still frozen).
        self._epochs_done = 0
        self._epoch_start = 0
        self._unfrozen_at: int | None = None if gradual_unfreezing else 0
        super().__init__(optimizer, LambdaLR(optimizer, [self._factor(multiplier) for multiplier in multipliers]))
        if gradual_unfreezing:
            self._set_trainable_layers()

    def _factor(self, multiplier: float) -> Callable[[int], float]:
        return lambda step: multiplier * self._triangle(step)

    def _triangle(self, step: int) -> float:
        if self._unfrozen_at is None:
            start, length = self._epoch_start, self.num_steps_per_epoch
        else:
            start, length = self._unfrozen_at, self.num_epochs * self.num_steps_per_epoch - self._unfrozen_at
        length = max(length, 1)
        position = min(max(step - start, 0), length)
        cut = int(length * self.cut_frac)  # AllenNLP's; 0 means no warm-up (position < 0 never holds)
        # ULMFiT writes the fall as (t - cut) / (cut * (1 / cut_frac - 1)), which is (t - cut) / (T - cut) when
        # T * cut_frac is whole and otherwise overshoots below lr / ratio (to negative rates) by the end.
        rise = position / cut if position < cut else max(0.0, 1.0 - (position - cut) / max(length - cut, 1))
        return (1.0 + rise * (self.ratio - 1.0)) / self.ratio

    def step(self, metric: float | None = None) -> None:
        self._epochs_done += 1
        self._epoch_start = self.steps
        if self._unfrozen_at is None and self._epochs_done + 1 >= len(self._layers):
            self._unfrozen_at = self.steps
        if self.gradual_unfreezing:
            self._set_trainable_layers()

    def _set_trainable_layers(self) -> None:
        trainable = len(self._layers) if self._unfrozen_at is not None else self._epochs_done + 1
        for depth, index in enumerate(reversed(self._layers)):
            for parameter in self.optimizer.param_groups[index]["params"]:
                parameter.requires_grad_(depth < trainable)
        if trainable < len(self._layers):
            logger.info("gradual unfreezing: training the top %d of %d layers", trainable, len(self._layers))
        else:
            logger.info("gradual unfreezing: training all %d layers", len(self._layers))

    def state_dict(self) -> dict[str, Any]:
        position = {
            "epochs_done": self._epochs_done,
            "epoch_start": self._epoch_start,
            "unfrozen_at": self._unfrozen_at,
        }
        return {**super().state_dict(), **position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._epochs_done = state["epochs_done"]
        self._epoch_start = state["epoch_start"]
        self._unfrozen_at = state["unfrozen_at"]
        super().load_state_dict(state)
        if self.gradual_unfreezing:
            self._set_trainable_layers()

"""The "linear_with_warmup" schedule: a linear warm-up to the optimizer's lr, then a linear decay to 0."""

from __future__ import annotations

import torch

from regimen.trainers.lr_schedulers.learning_rate_scheduler import LearningRateScheduler
from regimen.trainers.lr_schedulers.polynomial_decay import PolynomialDecay


@LearningRateScheduler.register("linear_with_warmup")
class LinearWithWarmup(PolynomialDecay):
    """A linear warm-up over `warmup_steps` optimizer steps, then a linear decay to 0 at the last step.

    "polynomial_decay" with ``power = 1`` and ``end_learning_rate = 0``: with
    ``total = num_epochs * num_steps_per_epoch``, optimizer step ``n`` (from 1) uses ``lr * n / warmup_steps``
    during the warm-up, then ``lr * (total - n) / (total - warmup_steps)``. Changes on `step_batch`.

    Registered as a `LearningRateScheduler` with name "linear_with_warmup".

    - `warmup_steps` (int, 100): optimizer steps of warm-up.
    - `num_epochs` (int), `num_steps_per_epoch` (int): injected by the trainer; set them to override.
    - `last_epoch` (int, -1): accepted for AllenNLP configs; only -1.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        num_epochs: int,
        num_steps_per_epoch: int | None = None,
        warmup_steps: int = 100,
        last_epoch: int = -1,
    ) -> None:
        super().__init__(
            optimizer,
            num_epochs=num_epochs,
            num_steps_per_epoch=num_steps_per_epoch,
            power=1.0,
            warmup_steps=warmup_steps,
            end_learning_rate=0.0,
            last_epoch=last_epoch,
        )

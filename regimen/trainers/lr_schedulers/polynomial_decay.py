"""The "polynomial_decay" schedule: a linear warm-up, then a polynomial decay to an end learning rate."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from regimen.trainers.lr_schedulers.learning_rate_scheduler import (
    LearningRateScheduler,
    TorchStepScheduler,
    base_lr,
    check_last_epoch,
    check_non_negative,
    check_positive,
    require_steps_per_epoch,
)


@LearningRateScheduler.register("polynomial_decay")
class PolynomialDecay(TorchStepScheduler):
    """A linear warm-up over `warmup_steps` optimizer steps, then a polynomial decay to `end_learning_rate`.

    With ``total = num_epochs * num_steps_per_epoch``, optimizer step ``n`` (from 1) uses
    ``lr * n / warmup_steps`` during the warm-up, then
    ``(lr - end_learning_rate) * ((total - n) / (total - warmup_steps)) ** power + end_learning_rate``, and
    `end_learning_rate` from step ``total`` on. Changes on `step_batch`. Written as a LambdaLR lambda: torch's
    PolynomialLR has no warm-up and always decays to 0.

    Registered as a `LearningRateScheduler` with name "polynomial_decay".

    - `power` (float, 1.0): the degree of the polynomial.
    - `warmup_steps` (int, 0): optimizer steps of warm-up.
    - `end_learning_rate` (float, 0.0): the lr the decay ends at.
    - `num_epochs` (int), `num_steps_per_epoch` (int): injected by the trainer; set them to override.
    - `total_steps` (int, null): the ``total`` above, given directly instead of ``num_epochs *
      num_steps_per_epoch``. AllenNLP's docstring documents this key, but its constructor never took it (a config
      that sets it, such as allennlp-models' early bart_cnn_dm, failed there); regimen reads it as documented.
    - `last_epoch` (int, -1): accepted for AllenNLP configs; only -1.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        num_epochs: int,
        num_steps_per_epoch: int | None = None,
        power: float = 1.0,
        warmup_steps: int = 0,
        end_learning_rate: float = 0.0,
        total_steps: int | None = None,
        last_epoch: int = -1,
    ) -> None:
        check_last_epoch(last_epoch)
        check_positive(num_epochs=num_epochs, total_steps=total_steps)
        check_non_negative(warmup_steps=warmup_steps, end_learning_rate=end_learning_rate)
        total = total_steps if total_steps is not None else num_epochs * require_steps_per_epoch(num_steps_per_epoch)
        factors = [
            polynomial_factor(base_lr(group), total, power, warmup_steps, end_learning_rate)
            for group in optimizer.param_groups
        ]
        super().__init__(optimizer, LambdaLR(optimizer, factors))
        self.total_steps = total


def polynomial_factor(
    base: float, total: int, power: float, warmup_steps: int, end_lr: float
) -> Callable[[int], float]:
    """The multiple of the base lr at each optimizer step (LambdaLR multiplies, so ``end_lr`` is a fraction of it)."""
    end = end_lr / base if base else 0.0

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / warmup_steps
        if step >= total:
            return end
        remaining = ((total - step) / (total - warmup_steps)) ** power
        return remaining * (1.0 - end) + end

    return factor

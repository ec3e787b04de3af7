"""The "noam" schedule of "Attention Is All You Need": a linear warm-up, then decay with the inverse square root."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LRScheduler

from regimen.trainers.lr_schedulers.learning_rate_scheduler import (
    LearningRateScheduler,
    TorchStepScheduler,
    check_last_epoch,
    check_positive,
)


@LearningRateScheduler.register("noam")
class NoamLR(TorchStepScheduler):
    """The Transformer's schedule: optimizer step ``n`` (from 1) uses
    ``factor * model_size ** -0.5 * min(n ** -0.5, n * warmup_steps ** -1.5)``.

    The lr rises linearly for `warmup_steps` steps, then falls with ``1 / sqrt(n)``. As in AllenNLP the
    optimizer's own lr is ignored: `factor` scales the schedule. Changes on `step_batch`.

    Registered as a `LearningRateScheduler` with name "noam".

    - `model_size` (int, required): the hidden size of the model.
    - `warmup_steps` (int, required): optimizer steps of warm-up.
    - `factor` (float, 1.0): multiplies every learning rate.
    - `last_epoch` (int, -1): accepted for AllenNLP configs; only -1.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        model_size: int,
        warmup_steps: int,
        factor: float = 1.0,
        last_epoch: int = -1,
    ) -> None:
        check_last_epoch(last_epoch)
        check_positive(model_size=model_size, warmup_steps=warmup_steps)
        super().__init__(optimizer, _NoamSchedule(optimizer, model_size, warmup_steps, factor))


class _NoamSchedule(LRScheduler):
    """torch has no Noam schedule, and LambdaLR can only scale the optimizer's lr, which Noam ignores; so this is a
    closed-form LRScheduler of its own (torch keeps the step count and the state)."""

    def __init__(self, optimizer: torch.optim.Optimizer, model_size: int, warmup_steps: int, factor: float) -> None:
        self.model_size = model_size
        self.warmup_steps = warmup_steps
        self.factor = factor
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        step = max(self.last_epoch, 1)
        rate = self.factor * self.model_size**-0.5 * min(step**-0.5, step * self.warmup_steps**-1.5)
        return [rate for _ in self.optimizer.param_groups]

"""The "cosine" schedule: cosine annealing with warm restarts over epochs (SGDR), on torch's own class."""

from __future__ import annotations

import logging

import torch
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts

from regimen.registry import ConfigurationError
from regimen.trainers.lr_schedulers.learning_rate_scheduler import (
    LearningRateScheduler,
    TorchEpochScheduler,
    check_last_epoch,
    check_non_negative,
    check_positive,
)

logger = logging.getLogger(__name__)


@LearningRateScheduler.register("cosine")
class CosineWithRestarts(TorchEpochScheduler):
    """Cosine annealing with warm restarts (https://arxiv.org/abs/1608.03983), counted in epochs.

    Within a cycle of ``T`` epochs the lr after ``t`` epochs is
    ``eta_min + (base - eta_min) * (1 + cos(pi * t / T)) / 2``; at the end of a cycle it restarts at ``base``.
    The first cycle is `t_initial` epochs, each next one `t_mul` times longer, and ``base`` is multiplied by
    `eta_mul` at each restart. Changes on `step`. torch's CosineAnnealingWarmRestarts does the arithmetic; it
    has no `eta_mul`, which is applied to its base learning rates at each restart, and it needs a whole `t_mul`.
    Early stopping should usually be avoided with this schedule.

    Registered as a `LearningRateScheduler` with name "cosine".

    - `t_initial` (int, required): epochs in the first cycle.
    - `t_mul` (float, 1.0): how much longer each cycle is than the one before; a whole number.
    - `eta_min` (float, 0.0): the lowest lr.
    - `eta_mul` (float, 1.0): how the lr a cycle starts at changes at each restart.
    - `last_epoch` (int, -1): accepted for AllenNLP configs; only -1.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        t_initial: int,
        t_mul: float = 1.0,
        eta_min: float = 0.0,
        eta_mul: float = 1.0,
        last_epoch: int = -1,
    ) -> None:
        check_last_epoch(last_epoch)
        check_positive(t_initial=t_initial)
        check_non_negative(eta_min=eta_min)
        if t_mul < 1 or not float(t_mul).is_integer():
            raise ConfigurationError(
                f"must be a whole number of at least 1 (torch's CosineAnnealingWarmRestarts), got {t_mul}",
                key="t_mul",
            )
        if t_initial == 1 and t_mul == 1 and eta_mul == 1:
            logger.warning("cosine: t_initial = t_mul = eta_mul = 1 restarts every epoch, leaving the lr unchanged")
        scheduler = CosineAnnealingWarmRestarts(optimizer, T_0=t_initial, T_mult=int(t_mul), eta_min=eta_min)
        super().__init__(optimizer, scheduler)
        self.eta_mul = eta_mul

    def step(self, metric: float | None = None) -> None:
        scheduler = self.scheduler
        if self.eta_mul != 1.0 and scheduler.T_cur + 1 >= scheduler.T_i:  # this step restarts the cycle
            scheduler.base_lrs = [base * self.eta_mul for base in scheduler.base_lrs]
        super().step(metric)

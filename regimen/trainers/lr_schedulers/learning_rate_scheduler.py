"""LearningRateScheduler: the base class, its torch-backed helpers, and the schedules torch provides directly.

A scheduler has two clocks. ``step(metric)`` is called after each validation (once per epoch unless the trainer
validates every N steps) with the combined validation score, higher is better; epoch-based schedules move on
it. ``step_batch(n)`` is called before the ``n``-th optimizer step (``n`` counts from 1, AllenNLP's order: the
lr is set, then ``optimizer.step()`` uses it); step-based schedules move on it, so their warm-up and decay
lengths count optimizer steps.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch.optim.lr_scheduler import (
    ExponentialLR,
    LambdaLR,
    LRScheduler,
    MultiStepLR,
    ReduceLROnPlateau,
    StepLR,
)

from regimen.registry import ConfigurationError, Registrable
from regimen.registry.values import check_non_negative, check_positive

logger = logging.getLogger(__name__)

# torch expects ``scheduler.step()`` after ``optimizer.step()``; regimen (like AllenNLP) sets the lr of a step
# before taking it, which torch would report once per scheduler. The order is deliberate, so that one warning
# is silenced, and only around our own calls.
_ORDER_WARNING = r"Detected call of `lr_scheduler.step\(\)` before `optimizer.step\(\)`"


class LearningRateScheduler(Registrable):
    """Sets the learning rate of every parameter group of an optimizer as training goes on.

    Built by the trainer with ``optimizer``, ``num_epochs`` and ``num_steps_per_epoch`` injected (a value written
    in the config wins). ``step(metric)`` is called after each validation with the score where higher is better;
    ``step_batch(n)`` before the ``n``-th optimizer step (counting from 1). ``state_dict``/``load_state_dict``
    carry everything needed for a resumed run to continue the exact learning-rate sequence, including the
    learning rates themselves, so the order of loading the optimizer and the scheduler does not matter.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def step(self, metric: float | None = None) -> None:
        """After a validation (an epoch end), with the validation score, higher is better."""

    def step_batch(self, batch_num_total: int | None = None) -> None:
        """Before optimizer step number ``batch_num_total`` (from 1); None means the step after the last one."""

    def get_values(self) -> list[float]:
        """The current learning rate of each parameter group."""
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.get_values()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_param_group_values(self.optimizer, "lr", state["lr"])


class TorchScheduler(LearningRateScheduler):
    """A LearningRateScheduler that wraps a torch scheduler: torch does the arithmetic and keeps the state."""

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: LRScheduler) -> None:
        super().__init__(optimizer)
        self.scheduler = scheduler

    def _advance(self) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_ORDER_WARNING)
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
        super().load_state_dict(state)


class TorchEpochScheduler(TorchScheduler):
    """A torch scheduler advanced once per ``step()``."""

    def step(self, metric: float | None = None) -> None:
        self._advance()


class TorchStepScheduler(TorchScheduler):
    """A closed-form torch scheduler (LambdaLR and the like) placed at the optimizer step ``step_batch`` names.

    The step count is the torch scheduler's ``last_epoch``: ``step_batch(n)`` puts it at ``n`` and sets the lr
    it gives there, so the value depends only on ``n``, never on how many calls came before (a resumed run, or
    a combined schedule's phase, can start anywhere).
    """

    @property
    def steps(self) -> int:
        """The optimizer step the current learning rates are for (0 before the first ``step_batch``)."""
        return max(self.scheduler.last_epoch, 0)

    def step_batch(self, batch_num_total: int | None = None) -> None:
        target = self.steps + 1 if batch_num_total is None else batch_num_total
        self.scheduler.last_epoch = target - 1
        self._advance()


# ---- helpers shared by the schedulers --------------------------------------------------------------------------
def set_param_group_values(optimizer: torch.optim.Optimizer, field: str, values: Sequence[float]) -> None:
    """Write one value per parameter group into ``field``; a count that does not match is an error."""
    groups = optimizer.param_groups
    if len(values) != len(groups):
        raise ValueError(
            f"the state holds {len(values)} values of {field!r} but the optimizer has {len(groups)} groups"
        )
    for group, value in zip(groups, values):
        group[field] = value


def base_lr(group: dict[str, Any]) -> float:
    """The lr a torch scheduler built now takes as the group's base: ``initial_lr`` if set, else ``lr``."""
    return float(group.get("initial_lr", group["lr"]))


def check_last_epoch(last_epoch: int) -> None:
    """``last_epoch`` is accepted as AllenNLP configs write it (-1); any other value is an error.

    AllenNLP used it to start a schedule part-way through; regimen resumes schedules from the scheduler state in
    the checkpoint instead, which also restores the counters a bare epoch number cannot.
    """
    if last_epoch != -1:
        raise ConfigurationError(
            f"only -1 is supported, got {last_epoch}; a resumed run restores the schedule from its checkpoint",
            key="last_epoch",
        )


def require_steps_per_epoch(num_steps_per_epoch: int | None) -> int:
    """The number of optimizer steps per epoch, which step-based schedules need to know their length."""
    if num_steps_per_epoch is None:
        raise ConfigurationError(
            "this schedule needs the number of optimizer steps per epoch: the trainer passes it when the data "
            "loader has a length; otherwise set num_steps_per_epoch in the scheduler's config",
            key="num_steps_per_epoch",
        )
    if num_steps_per_epoch <= 0:
        raise ConfigurationError(f"must be a positive int, got {num_steps_per_epoch}", key="num_steps_per_epoch")
    return num_steps_per_epoch


def total_training_steps(
    num_training_steps: int | None, num_epochs: int | None, num_steps_per_epoch: int | None
) -> int:
    """``num_training_steps`` when the config gives it, else epochs times optimizer steps per epoch."""
    if num_training_steps is not None:
        check_positive(num_training_steps=num_training_steps)
        return num_training_steps
    if num_epochs is None:
        raise ConfigurationError(
            "this schedule needs num_training_steps, or num_epochs and num_steps_per_epoch (the trainer passes both)",
            key="num_training_steps",
        )
    return num_epochs * require_steps_per_epoch(num_steps_per_epoch)


# ---- the schedules torch (or a LambdaLR lambda) provides directly -----------------------------------------------
@LearningRateScheduler.register("constant")
class ConstantLearningRateScheduler(TorchStepScheduler):
    """The optimizer's learning rate, unchanged for the whole run.

    Registered as a `LearningRateScheduler` with name "constant".

    - `last_epoch` (int, -1): accepted for AllenNLP configs; only -1.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, last_epoch: int = -1) -> None:
        check_last_epoch(last_epoch)
        super().__init__(optimizer, LambdaLR(optimizer, _constant_factor))


def _constant_factor(step: int) -> float:
    return 1.0


@LearningRateScheduler.register("constant_with_warmup")
class ConstantWithWarmupLearningRateScheduler(TorchStepScheduler):
    """A linear warm-up from 0 to the optimizer's lr over `num_warmup_steps` optimizer steps, then constant.

    Optimizer step ``n`` (from 1) uses ``lr * min(1, n / num_warmup_steps)``. Changes on `step_batch`.

    Registered as a `LearningRateScheduler` with name "constant_with_warmup".

    - `num_warmup_steps` (int, required): optimizer steps of warm-up (AllenNLP counted them in epochs).
    - `last_epoch` (int, -1): accepted for AllenNLP configs; only -1.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, num_warmup_steps: int, last_epoch: int = -1) -> None:
        check_last_epoch(last_epoch)
        check_non_negative(num_warmup_steps=num_warmup_steps)

        def factor(step: int) -> float:
            return step / num_warmup_steps if step < num_warmup_steps else 1.0

        super().__init__(optimizer, LambdaLR(optimizer, factor))


@LearningRateScheduler.register("cosine_with_warmup")
class CosineWithWarmupLearningRateScheduler(TorchStepScheduler):
    """A linear warm-up over `num_warmup_steps` optimizer steps, then a cosine decay to 0 at the last step.

    After the warm-up, step ``n`` uses ``lr * 0.5 * (1 + cos(2 * pi * num_cycles * progress))`` where
    ``progress = (n - num_warmup_steps) / (num_training_steps - num_warmup_steps)``, floored at 0; the default
    half cycle falls from the optimizer's lr to 0. Changes on `step_batch`. Written as a LambdaLR lambda because
    step_batch places the schedule at an absolute step, which torch's chained CosineAnnealingLR + LinearLR
    (computing each value from the previous one) cannot.

    Registered as a `LearningRateScheduler` with name "cosine_with_warmup".

    - `num_warmup_steps` (int, required): optimizer steps of warm-up.
    - `num_training_steps` (int, null): optimizer steps in all; null: `num_epochs` x `num_steps_per_epoch`,
      which the trainer passes.
    - `num_cycles` (float, 0.5): cosine periods over the decay.
    - `num_epochs`, `num_steps_per_epoch` (int): injected by the trainer.
    - `last_epoch` (int, -1): accepted for AllenNLP configs; only -1.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        num_warmup_steps: int,
        num_training_steps: int | None = None,
        num_cycles: float = 0.5,
        num_epochs: int | None = None,
        num_steps_per_epoch: int | None = None,
        last_epoch: int = -1,
    ) -> None:
        check_last_epoch(last_epoch)
        check_non_negative(num_warmup_steps=num_warmup_steps)
        total = total_training_steps(num_training_steps, num_epochs, num_steps_per_epoch)

        def factor(step: int) -> float:
            if step < num_warmup_steps:
                return step / num_warmup_steps
            progress = (step - num_warmup_steps) / max(1, total - num_warmup_steps)
            return max(0.0, 0.5 * (1.0 + math.cos(2.0 * math.pi * num_cycles * progress)))

        super().__init__(optimizer, LambdaLR(optimizer, factor))


@LearningRateScheduler.register("cosine_hard_restarts_with_warmup")
class CosineHardRestartsWithWarmupLearningRateScheduler(TorchStepScheduler):
    """A linear warm-up, then `num_cycles` cosine decays from the optimizer's lr to 0, each restarting at the lr.

    After the warm-up, step ``n`` uses ``lr * 0.5 * (1 + cos(pi * ((num_cycles * progress) % 1)))`` with
    ``progress`` as in "cosine_with_warmup", and 0 once ``progress`` reaches 1. Changes on `step_batch`.
    Written as a LambdaLR lambda: torch's CosineAnnealingWarmRestarts has no warm-up and counts cycles in
    steps, not as a number of equal cycles over a fixed length.

    Registered as a `LearningRateScheduler` with name "cosine_hard_restarts_with_warmup".

    - `num_warmup_steps` (int, required): optimizer steps of warm-up.
    - `num_training_steps` (int, null): optimizer steps in all; null: `num_epochs` x `num_steps_per_epoch`.
    - `num_cycles` (int, 1): hard restarts over the decay.
    - `num_epochs`, `num_steps_per_epoch` (int): injected by the trainer.
    - `last_epoch` (int, -1): accepted for AllenNLP configs; only -1.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        num_warmup_steps: int,
        num_training_steps: int | None = None,
        num_cycles: int = 1,
        num_epochs: int | None = None,
        num_steps_per_epoch: int | None = None,
        last_epoch: int = -1,
    ) -> None:
        check_last_epoch(last_epoch)
        check_non_negative(num_warmup_steps=num_warmup_steps)
        check_positive(num_cycles=num_cycles)
        total = total_training_steps(num_training_steps, num_epochs, num_steps_per_epoch)

        def factor(step: int) -> float:
            if step < num_warmup_steps:
                return step / num_warmup_steps
            progress = (step - num_warmup_steps) / max(1, total - num_warmup_steps)
            if progress >= 1.0:
                return 0.0
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((num_cycles * progress) % 1.0))))

        super().__init__(optimizer, LambdaLR(optimizer, factor))


@LearningRateScheduler.register("step")
class StepLearningRateScheduler(TorchEpochScheduler):
    """Multiplies the learning rate by `gamma` every `step_size` epochs (torch's StepLR). Changes on `step`.

    Registered as a `LearningRateScheduler` with name "step".

    - `step_size` (int, required): epochs between reductions.
    - `gamma` (float, 0.1): the factor applied at each reduction.
    - `last_epoch` (int, -1): accepted for AllenNLP configs; only -1.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        check_last_epoch(last_epoch)
        check_positive(step_size=step_size)
        super().__init__(optimizer, StepLR(optimizer, step_size=step_size, gamma=gamma))


@LearningRateScheduler.register("multi_step")
class MultiStepLearningRateScheduler(TorchEpochScheduler):
    """Multiplies the learning rate by `gamma` after each epoch listed in `milestones` (torch's MultiStepLR).

    After ``k`` calls of `step` the lr is ``lr * gamma ** (number of milestones <= k)``. Changes on `step`.

    Registered as a `LearningRateScheduler` with name "multi_step".

    - `milestones` (list[int], required): epoch counts at which to reduce.
    - `gamma` (float, 0.1): the factor applied at each milestone.
    - `last_epoch` (int, -1): accepted for AllenNLP configs; only -1.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, milestones: list[int], gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        check_last_epoch(last_epoch)
        super().__init__(optimizer, MultiStepLR(optimizer, milestones=milestones, gamma=gamma))


@LearningRateScheduler.register("exponential")
class ExponentialLearningRateScheduler(TorchEpochScheduler):
    """Multiplies the learning rate by `gamma` after every epoch (torch's ExponentialLR). Changes on `step`.

    Registered as a `LearningRateScheduler` with name "exponential".

    - `gamma` (float, 0.1): the factor applied each epoch.
    - `last_epoch` (int, -1): accepted for AllenNLP configs; only -1.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, gamma: float = 0.1, last_epoch: int = -1) -> None:
        check_last_epoch(last_epoch)
        super().__init__(optimizer, ExponentialLR(optimizer, gamma=gamma))


@LearningRateScheduler.register("reduce_on_plateau")
class ReduceOnPlateauLearningRateScheduler(TorchEpochScheduler):
    """Multiplies the learning rate by `factor` when the validation score stops improving (torch's
    ReduceLROnPlateau). Changes on `step`, which must be given the score.

    The trainer passes the combined validation score, where higher is better, so the default `mode` is "max"
    (AllenNLP defaulted to "min", which with that score reduced the lr while the model improved). Write
    `mode: "min"` only when stepping the scheduler yourself with a loss.

    Registered as a `LearningRateScheduler` with name "reduce_on_plateau".

    - `mode` ("min" or "max", "max"): whether a higher or a lower score is an improvement.
    - `factor` (float, 0.1): the factor applied at each reduction; below 1.
    - `patience` (int, 10): validations without improvement tolerated; the lr drops at the next one.
    - `threshold` (float, 1e-4), `threshold_mode` ("rel" or "abs", "rel"): how much better counts as better.
    - `cooldown` (int, 0): validations to wait after a reduction before counting again.
    - `min_lr` (float or list[float], 0.0): the lowest lr, for all groups or per group.
    - `eps` (float, 1e-8): reductions smaller than this are skipped.
    - `verbose` (bool, false): log each reduction at INFO level (else DEBUG).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        mode: Literal["min", "max"] = "max",
        factor: float = 0.1,
        patience: int = 10,
        verbose: bool = False,
        threshold_mode: Literal["rel", "abs"] = "rel",
        threshold: float = 1e-4,
        cooldown: int = 0,
        min_lr: float | list[float] = 0.0,
        eps: float = 1e-8,
    ) -> None:
        if not 0 < factor < 1:
            raise ConfigurationError(f"must be between 0 and 1, got {factor}", key="factor")
        check_non_negative(patience=patience, cooldown=cooldown)
        if isinstance(min_lr, list) and len(min_lr) != len(optimizer.param_groups):
            raise ConfigurationError(
                f"gives {len(min_lr)} values but the optimizer has {len(optimizer.param_groups)} parameter groups",
                key="min_lr",
            )
        scheduler = ReduceLROnPlateau(
            optimizer,
            mode=mode,
            factor=factor,
            patience=patience,
            threshold=threshold,
            threshold_mode=threshold_mode,
            cooldown=cooldown,
            min_lr=min_lr,
            eps=eps,
        )
        super().__init__(optimizer, scheduler)
        self.verbose = verbose

    def step(self, metric: float | None = None) -> None:
        if metric is None:
            raise ConfigurationError(
                "reduce_on_plateau needs a validation score at each step; give the trainer validation data "
                "or choose a schedule that does not depend on a metric"
            )
        before = self.get_values()
        self.scheduler.step(metric)
        after = self.get_values()
        if after != before:
            level = logging.INFO if self.verbose else logging.DEBUG
            logger.log(level, "reduce_on_plateau: the score stopped improving; lr %s -> %s", before, after)

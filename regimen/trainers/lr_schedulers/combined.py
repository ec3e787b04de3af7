"""The "combined" schedule: several schedules one after another, each for a number of epochs."""

from __future__ import annotations

from typing import Any

import torch

from regimen.registry import ConfigurationError, Lazy
from regimen.trainers.lr_schedulers.learning_rate_scheduler import (
    LearningRateScheduler,
    check_last_epoch,
    set_param_group_values,
)


@LearningRateScheduler.register("combined")
class CombinedLearningRateScheduler(LearningRateScheduler):
    """Runs the schedules of `schedulers` one after another: each ``[epochs, scheduler]`` pair runs its scheduler
    for that many epochs (calls of `step`), then the next one takes over.

    Each scheduler is built when its turn comes, with ``num_epochs`` set to its own number of epochs, and starts
    from the learning rate of the previous one's last epoch (it becomes its base lr). Step-based schedulers
    count optimizer steps from the start of their own turn. After the last one, the lr stays where it ended.
    Changes on `step` and `step_batch`, as the current scheduler does. (AllenNLP also stepped a scheduler once
    at the epoch it took over, which put an epoch-based one an epoch ahead; here a new one starts at its start.)

    Registered as a `LearningRateScheduler` with name "combined".

    - `schedulers` (list of [int, LearningRateScheduler], required): the epochs and the config of each scheduler.
    - `num_steps_per_epoch` (int): injected by the trainer and passed to each scheduler; set it to override.
    - `last_epoch` (int, -1): accepted for AllenNLP configs; only -1.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        schedulers: list[tuple[int, Lazy[LearningRateScheduler]]],
        num_steps_per_epoch: int | None = None,
        last_epoch: int = -1,
    ) -> None:
        check_last_epoch(last_epoch)
        if not schedulers:
            raise ConfigurationError("give at least one [epochs, scheduler] pair", key="schedulers")
        for index, (epochs, _) in enumerate(schedulers):
            if epochs <= 0:
                raise ConfigurationError(
                    f"must be a positive number of epochs, got {epochs}", key=f"schedulers.{index}.0"
                )
        super().__init__(optimizer)
        self.schedulers = schedulers
        self.num_steps_per_epoch = num_steps_per_epoch
        # Where the run is: epochs done (calls of step), the last optimizer step seen, the scheduler whose turn it
        # is (len(schedulers) once all have run) and the optimizer step its turn began after.
        self._epochs_done = 0
        self._last_step = 0
        self._phase = 0
        self._phase_start_step = 0
        self.current: LearningRateScheduler | None = self._build(0)

    def _build(self, phase: int) -> LearningRateScheduler | None:
        if phase >= len(self.schedulers):
            return None
        for group in self.optimizer.param_groups:  # the new scheduler's base lr is the lr reached so far
            group["initial_lr"] = group["lr"]
        epochs, lazy = self.schedulers[phase]
        return lazy.construct(optimizer=self.optimizer, num_epochs=epochs, num_steps_per_epoch=self.num_steps_per_epoch)

    def _phase_end(self) -> int:
        """The number of epochs done when the current scheduler's turn ends."""
        return sum(epochs for epochs, _ in self.schedulers[: self._phase + 1])

    def step(self, metric: float | None = None) -> None:
        self._epochs_done += 1
        if self.current is None:
            return
        if self._epochs_done < self._phase_end():
            self.current.step(metric)
            return
        # The turn is over: the next scheduler starts from the lr of this one's last epoch (stepping this one
        # again would set an lr for an epoch that is not its own).
        self._phase += 1
        self._phase_start_step = self._last_step
        self.current = self._build(self._phase)

    def step_batch(self, batch_num_total: int | None = None) -> None:
        self._last_step = self._last_step + 1 if batch_num_total is None else batch_num_total
        if self.current is not None:
            self.current.step_batch(self._last_step - self._phase_start_step)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "epochs_done": self._epochs_done,
            "last_step": self._last_step,
            "phase": self._phase,
            "phase_start_step": self._phase_start_step,
            "current": None if self.current is None else self.current.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["phase"] != self._phase:
            set_param_group_values(self.optimizer, "lr", state["lr"])
            self._phase = state["phase"]
            self.current = self._build(self._phase)
        self._epochs_done = state["epochs_done"]
        self._last_step = state["last_step"]
        self._phase_start_step = state["phase_start_step"]
        if self.current is not None:
            self.current.load_state_dict(state["current"])
        super().load_state_dict(state)

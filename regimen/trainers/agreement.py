"""Agreement: when the workers of a run agree on the decisions that can differ between them."""

from __future__ import annotations

import time

from regimen.trainers.checkpointer import Checkpointer
from regimen.trainers.distributed import Distributed

_MOST_STEPS_BETWEEN = 1000


class Agreement:
    """Decides after each optimizer step whether a checkpoint is due and whether to stop, alike on every worker.

    A checkpoint due by batch count or at an epoch end is due on every worker at once and needs no collective.
    The primary's clock (``save_every_num_seconds``) and a signal that reached any one worker do need one: they
    are agreed at every epoch end and otherwise about every ``seconds``. At each agreement the primary says in
    how many steps the next one is (the steps it took in the last ``seconds``), so all workers agree at the same
    steps; a distributed step pays no collective (and, on GPUs, no device sync) in between. A single process
    decides at every step with no collective, so it acts on a signal after the step it arrives in.
    """

    def __init__(self, distributed: Distributed, seconds: float = 1.0) -> None:
        self._dist = distributed
        self._seconds = seconds
        self._next_step = 0  # the optimizer step after which the workers agree next
        self._last: tuple[float, int] | None = None  # (time, step) of the last agreement

    def decide(
        self, step: int, checkpointer: Checkpointer | None, batches_in_epoch: int, signalled: bool, epochs: int = 0
    ) -> tuple[bool, bool]:
        """``(checkpoint due, stop)`` after optimizer step ``step``, ``batches_in_epoch`` batches into the epoch
        (0 at the end of the ``epochs``-th); ``signalled`` says whether this worker was asked to stop."""

        def due_now(by_clock: bool) -> bool:
            return checkpointer is not None and checkpointer.is_due(batches_in_epoch, by_clock, step, epochs)

        if self._dist.world_size == 1:
            return due_now(True), signalled
        if batches_in_epoch > 0 and step < self._next_step:
            # Between agreements only what every worker decides alike: checkpoints due by batch or step count.
            return due_now(False), False
        due = due_now(True)
        (due_number, steps_to_next), stop = self._dist.agree([int(due), self._steps_to_next(step)], signalled)
        self._next_step = step + steps_to_next
        return due_number > 0, stop

    def _steps_to_next(self, step: int) -> int:
        """On the primary: the steps taken in about ``seconds``, from the pace since the last agreement."""
        now = time.monotonic()
        last, self._last = self._last, (now, step)
        if last is None or step <= last[1]:
            return 1
        seconds_per_step = max(now - last[0], 1e-9) / (step - last[1])
        return max(1, min(_MOST_STEPS_BETWEEN, int(self._seconds / seconds_per_step)))

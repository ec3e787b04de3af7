"""Pre-emption: stopping cleanly when a scheduler (SLURM, Kubernetes) or the user asks the run to stop."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType, TracebackType

logger = logging.getLogger(__name__)

# sysexits.h's EX_TEMPFAIL, "try again later": the run saved a checkpoint and can be recovered.
PREEMPTION_EXIT_CODE = 75
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
# A worker of a distributed run gets a signal sent to the whole job twice: from the sender and passed on by the
# launcher. Signals this soon after the first are that duplicate, not a user's second request.
DUPLICATE_WINDOW_S = 1.0


class TrainingPreempted(Exception):
    """``train()`` stopped on a signal after finishing its optimizer step and writing a checkpoint.

    A command exits with ``exit_code`` (75) so that a wrapper script can requeue the job and recover the run.
    """

    exit_code = PREEMPTION_EXIT_CODE

    def __init__(self, signal_number: int, checkpoint_saved: bool, before_training: bool = False) -> None:
        # 0: this worker got no signal itself; another worker of a distributed run did.
        name = signal.Signals(signal_number).name if signal_number else "another worker's signal"
        saved = "a checkpoint was saved" if checkpoint_saved else "checkpointing is off, nothing was saved"
        if before_training:
            super().__init__(f"stopped on {name} before training started; nothing was saved")
        else:
            super().__init__(f"training stopped on {name}; {saved}")
        self.signal_number = signal_number
        self.checkpoint_saved = checkpoint_saved


def ignore_stop_signals() -> None:
    """Ignore SIGTERM, SIGUSR1 and SIGINT from now on: for a process whose run is finished and that only exits,
    where a late signal must not turn a finished run into a killed one."""
    for number in SIGNALS:
        signal.signal(number, signal.SIG_IGN)


TRAINING = "finishing the current optimizer step, then saving a checkpoint and stopping"


class PreemptionWatcher:
    """While open, SIGTERM, SIGUSR1 and SIGINT set ``requested`` instead of killing the process; the training
    loop checks it after each optimizer step. A second signal, more than a second after the first, exits at once
    (checkpoints on disk stay whole, since every file is written atomically); within that second it is the same
    request delivered twice (to the job's process group and passed on by the launcher) and is ignored. Outside the
    main thread (where handlers cannot be set) it does nothing.

    Watchers nest: the outermost open one holds the handlers and the request, which every watcher opened inside
    it shares, so a signal that arrives after training (while the command evaluates and archives) is noted as
    well. ``then`` says, in the log line a signal gives, what happens next while this watcher is the innermost.
    """

    _open: list[PreemptionWatcher] = []  # the watchers open in this process, outermost first

    def __init__(self, then: str = TRAINING) -> None:
        self.then = then
        self._signal_number: int | None = None
        self._first_at = 0.0
        self._previous: dict[int, object] = {}

    @property
    def _holder(self) -> PreemptionWatcher:
        return self._open[0] if self._open else self

    @property
    def signal_number(self) -> int | None:
        """The signal that asked the run to stop, if one has."""
        return self._holder._signal_number

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    def __enter__(self) -> PreemptionWatcher:
        if threading.current_thread() is not threading.main_thread():
            return self
        if not self._open:
            self._signal_number = None
            self._previous = {number: signal.signal(number, self._handle) for number in SIGNALS}
        self._open.append(self)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self in self._open:
            self._open.remove(self)
        for number, handler in self._previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]
        self._previous = {}

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self._signal_number is not None:
            if time.monotonic() - self._first_at < DUPLICATE_WINDOW_S:
                return  # the first request, delivered again
            logger.error("second %s: exiting now", signal.Signals(number).name)
            os._exit(128 + number)
        self._signal_number, self._first_at = number, time.monotonic()
        then = self._open[-1].then if self._open else self.then
        logger.warning(
            "received %s: %s (send it again, a second later, to exit at once)", signal.Signals(number).name, then
        )

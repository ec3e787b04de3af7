"""BackgroundWriter: file work (fsync, rename) done on a thread while training goes on, one job at a time."""

from __future__ import annotations

import threading
from collections.abc import Callable


class BackgroundWriter:
    """Runs jobs on a background thread, one at a time, so that training goes on while the disk catches up.

    ``submit`` first waits for the job before it, then starts the new one and returns. An error in a job is
    raised by the next ``submit`` or ``wait``. Disabled, ``submit`` runs the job at once, in the calling thread.
    The thread is not a daemon: a process that ends while a job is under way finishes the job first.
    """

    def __init__(self, enabled: bool = True) -> None:
        self._enabled = enabled
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._what = ""

    def submit(self, write: Callable[[], None], what: str) -> None:
        """Start ``write`` (which writes ``what``, for error messages) after the previous write has finished."""
        self.wait()
        if not self._enabled:
            write()
            return
        self._what = what
        self._thread = threading.Thread(target=self._run, args=(write,), name="regimen-writer")
        self._thread.start()

    def wait(self) -> None:
        """Return once no write is under way; raise RuntimeError if the last one failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"writing {self._what} failed: {type(error).__name__}: {error}") from error

    def _run(self, write: Callable[[], None]) -> None:
        try:
            write()
        except BaseException as error:  # handed to the training thread, which raises it
            self._error = error

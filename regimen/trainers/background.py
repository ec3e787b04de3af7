"""BackgroundWriter: checkpoint files written on a thread while training goes on, one write at a time."""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from typing import Any

import torch

logger = logging.getLogger(__name__)


def snapshot(state: Any) -> Any:
    """A copy of ``state`` that later training cannot change: tensors copied to the CPU, the rest deep-copied.

    Containers keep their types and attributes (a state dict stays an OrderedDict with its ``_metadata``).
    Tensors that share their memory, such as tied weights, are copied once and stay shared in the copy.
    """
    copies: dict[tuple[Any, ...], torch.Tensor] = {}

    def copied(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            key = (value.device, value.data_ptr(), value.dtype, tuple(value.shape), value.stride())
            if key not in copies:
                copies[key] = value.detach().to("cpu", copy=True)
            return copies[key]
        if isinstance(value, dict):
            result = copy.copy(value)  # keeps the type and its attributes (a state dict's _metadata)
            for key, item in value.items():
                result[key] = copied(item)
            return result
        if type(value) in (list, tuple):
            return type(value)(copied(item) for item in value)
        return copy.deepcopy(value)

    return copied(state)


class BackgroundWriter:
    """Runs writes on a background thread, one at a time, so that training goes on while a file is written.

    ``submit`` first waits for the write before it (so at most one copy of a state waits to be written), then
    starts the new one and returns. An error in a write is raised by the next ``submit`` or ``wait``. Disabled,
    ``submit`` runs the write at once, in the calling thread. The thread is not a daemon: a process that ends
    while a write is under way finishes the write first.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._what = ""

    def submit(self, write: Callable[[], None], what: str) -> None:
        """Start ``write`` (which writes ``what``, for error messages) after the previous write has finished."""
        self.wait()
        if not self.enabled:
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

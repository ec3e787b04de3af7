"""Writing a run's files so that a crash cannot leave half of one: temporary file, fsync, rename; in the background.

Every file goes the same way. It is written to a temporary file in its own directory (``.NAME.<random>.tmp``),
made durable (fsync), renamed over its target (``os.replace``, atomic on POSIX and Windows), and the directory is
fsynced so the rename itself survives a power loss. Readers see the old file or the new one, never a mix.

Writing the temporary file (`write_temporary`) and putting it in place (`put_in_place`: the fsync, which waits
for the disk, and the renames) are separate steps, so the second can run on a `BackgroundWriter` thread while
training goes on.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def save_atomically(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` that a crash at any moment cannot leave half-written (see the module docstring).

    The temporary file is created with the umask's permissions, as ``torch.save`` would create ``path``.
    """
    target = Path(path)
    put_in_place(write_temporary(target, saving(obj)), target)


def saving(obj: Any) -> Callable[[IO[bytes]], None]:
    """What writes ``obj`` with ``torch.save``, for `write_temporary` and `BackgroundWriter.write`."""
    return lambda file: torch.save(obj, file)


def write_temporary(target: Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write`` with a new temporary file beside ``target`` open for writing; return the file's path.

    The file is not yet durable: `put_in_place` makes it so. If ``write`` fails, the file is removed.
    """
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        with os.fdopen(os.open(temporary, flags, 0o666), "wb") as file:
            write(file)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def link_temporary(target: Path, source: Path) -> Path | None:
    """A new temporary name beside ``target`` for the file ``source`` (a hard link: no bytes are copied), or
    None where the file system cannot link it (then write the file instead)."""
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    try:
        os.link(source, temporary)
    except OSError:  # no hard links here (some network and FUSE file systems), or source is gone
        return None
    return temporary


def put_in_place(temporary: Path, target: Path) -> None:
    """Make a written temporary file durable (fsync), rename it over ``target`` and make the rename durable."""
    try:
        _fsync(temporary, os.O_RDWR)  # Windows flushes only through a descriptor open for writing
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if os.name != "nt":  # a directory cannot be opened for fsync on Windows; NTFS journals the rename itself
        _fsync(target.parent, os.O_RDONLY)


def _fsync(path: Path, flags: int) -> None:
    descriptor = os.open(path, flags | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


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

    def write(self, target: Path, write: Callable[[IO[bytes]], Any]) -> None:
        """Write ``target`` atomically as the next job: ``write`` fills its temporary file on the writer thread, so
        it must write only data that no longer changes (a copy, a string)."""
        self.submit(lambda: put_in_place(write_temporary(target, write), target), str(target))

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

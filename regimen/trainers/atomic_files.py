"""Writing a run's files so that a crash cannot leave half of one: temporary file, fsync, rename; in the background.

Every file goes the same way. It is written to a temporary file in its own directory (``.NAME.<random>.tmp``),
made durable (fsync), renamed over its target (``os.replace``, atomic on POSIX and Windows), and the directory is
fsynced so the rename itself survives a power loss. Readers see the old file or the new one, never a mix.

Writing the temporary file (`write_temporary`) and putting it in place (`put_in_place`: the fsync, which waits
for the disk, and the renames) are separate steps, so the second can run on a `BackgroundWriter` thread while
training goes on.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import threading
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import torch

logger = logging.getLogger(__name__)


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
    temporary = _temporary_name(target)
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
    temporary = _temporary_name(target)
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


def put_directory_in_place(temporary: Path, target: Path) -> None:
    """Make a written temporary directory durable (every file in it, then the directory), rename it to ``target``
    (an older ``target`` is moved aside first and deleted afterwards) and make the rename durable."""
    for entry in temporary.iterdir():
        if entry.is_file():
            _fsync(entry, os.O_RDWR)
    if os.name != "nt":
        _fsync(temporary, os.O_RDONLY)
    older = None
    if target.exists():
        older = _temporary_name(target)
        os.replace(target, older)
    os.replace(temporary, target)
    if os.name != "nt":
        _fsync(target.parent, os.O_RDONLY)
    if older is not None:
        shutil.rmtree(older, ignore_errors=True)


# The first 8 of a temporary name's 16 hex digits: this process's own, so that removing the temporaries an
# interrupted process left need not wait for this process's writes still under way (see `made_here`).
_PROCESS_TOKEN = secrets.token_hex(4)


def _temporary_name(target: Path) -> Path:
    """``.NAME.<16 hex digits>.tmp`` beside ``target``: hidden, never a checkpoint's name, unique per write; the
    first 8 digits name this process, the other 8 the write."""
    return target.with_name(f".{target.name}.{_PROCESS_TOKEN}{secrets.token_hex(4)}.tmp")


def made_here(name: str) -> bool:
    """Whether the temporary file or directory called ``name`` was named by this process: a write of this process
    that may still be under way, never an interrupted process's leftover."""
    return name.endswith(".tmp") and name[-20:-12] == _PROCESS_TOKEN


def _fsync(path: Path, flags: int) -> None:
    descriptor = os.open(path, flags | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class BackgroundWriter:
    """Runs jobs in order on background threads, so that training goes on while the disk catches up.

    ``submit`` starts a job and returns at once. Jobs run one at a time, in the order they were submitted (each
    job's thread first waits for the one before it). With ``MAX_PENDING`` jobs under way, ``submit`` first waits
    for the oldest, so a disk that cannot keep up slows training down rather than letting work pile up.

    An error in a job is raised by the next ``submit`` or ``wait``, once the jobs submitted after it have been
    skipped: they are not run (a later job may rely on an earlier one, as a checkpoint linked to ``best.th``
    does), and their ``discard`` is called instead to remove what they would have put in place. Disabled,
    ``submit`` runs the job at once, in the calling thread. The threads are not daemons: a process that ends
    while a job is under way finishes it first.
    """

    MAX_PENDING = 4

    def __init__(self, enabled: bool = True) -> None:
        self._enabled = enabled
        self._threads: deque[threading.Thread] = deque()  # under way, oldest first
        self._failure: tuple[BaseException, str] | None = None  # the first job that failed, and what it wrote

    def submit(self, job: Callable[[], None], what: str, discard: Callable[[], None] | None = None) -> None:
        """Start ``job`` (which writes ``what``, for error messages) after the jobs before it; if one of those
        fails, ``discard`` is called instead of ``job``."""
        self._raise_failure()
        if not self._enabled:
            job()
            return
        while len(self._threads) >= self.MAX_PENDING:
            self._threads.popleft().join()
        self._raise_failure()
        previous = self._threads[-1] if self._threads else None
        thread = threading.Thread(target=self._run, args=(previous, job, what, discard), name="regimen-writer")
        self._threads.append(thread)
        thread.start()

    def write(self, target: Path, write: Callable[[IO[bytes]], Any]) -> None:
        """Write ``target`` atomically as the next job: ``write`` fills its temporary file on the writer thread, so
        it must write only data that no longer changes (a copy, a string)."""
        self.submit(lambda: put_in_place(write_temporary(target, write), target), str(target))

    def wait(self) -> None:
        """Return once every job submitted has finished; raise RuntimeError if one failed."""
        while self._threads:
            self._threads.popleft().join()
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is None:
            return
        while self._threads:  # every job after the failed one has seen the failure and been skipped
            self._threads.popleft().join()
        (error, what), self._failure = self._failure, None
        raise RuntimeError(f"writing {what} failed: {type(error).__name__}: {error}") from error

    def _run(
        self,
        previous: threading.Thread | None,
        job: Callable[[], None],
        what: str,
        discard: Callable[[], None] | None,
    ) -> None:
        if previous is not None:
            previous.join()
        if self._failure is not None:  # a job before this one failed
            if discard is not None:
                try:
                    discard()
                except OSError:
                    pass  # leftovers are removed at the next start
            return
        try:
            job()
        except BaseException as error:  # handed to the training thread, which raises it
            self._failure = (error, what)


def wait_for_writers(writers: Iterable[Any], quietly: bool = False) -> None:
    """Wait for each writer (anything with ``wait()``, None skipped) until its files are durable and in place.
    A failed write raises; with ``quietly`` (cleaning up after another error) it is only logged."""
    for writer in writers:
        try:
            if writer is not None:
                writer.wait()
        except Exception as error:
            if not quietly:
                raise
            logger.error("%s", error)

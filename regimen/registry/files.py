"""Temporary files for atomic writes that honour the umask, as files made with ``open()`` do."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def create_temporary(directory: str | os.PathLike, prefix: str, suffix: str = ".tmp") -> tuple[int, str]:
    """A new, empty file in ``directory`` opened for writing: ``(descriptor, path)``.

    Unlike ``tempfile.mkstemp`` (always ``-rw-------``) it gets the mode ``open()`` would give, 0o666 less the
    umask, so the file renamed into place from it is readable by whoever may read the directory's other files
    (colleagues on a shared filesystem, with umask 022)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        path = Path(directory) / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            return os.open(path, flags, 0o666), str(path)
        except FileExistsError:
            continue

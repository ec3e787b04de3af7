"""DatasetReader: the registered base class that turns a data file into instances (dicts of field name -> value)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from regimen.registry import ConfigurationError, Registrable

Instance = dict[str, Any]


class DatasetReader(Registrable):
    """Reads a data file into instances, lazily: ``read(path)`` yields one ``dict`` of field name -> value at a
    time, so a file larger than memory can be streamed.

    A subclass implements ``_read(path)``; ``read`` adds the ``max_instances`` limit on top, so every reader
    honours it the same way. The default implementation is ``"csv"``. Subclasses that take ``max_instances``
    pass it on with ``super().__init__(max_instances=max_instances)``.
    """

    default_implementation = "csv"

    def __init__(self, max_instances: int | None = None) -> None:
        error = max_instances_error(max_instances)
        if error is not None:
            raise error
        self.max_instances = max_instances

    def read(self, path: str) -> Iterator[Instance]:
        """The instances of the file at ``path``, read lazily, at most ``max_instances`` of them.

        Stopping early (or reaching ``max_instances``) closes the file at once rather than when the generator
        is garbage-collected.
        """
        instances = iter(self._read(path))
        try:
            yield from itertools.islice(instances, self.max_instances)
        finally:
            close = getattr(instances, "close", None)
            if close is not None:
                close()

    def _read(self, path: str) -> Iterable[Instance]:
        """Yield every instance of ``path``; the one method a reader must implement."""
        raise NotImplementedError(f"{type(self).__name__} must implement _read(path)")


def max_instances_error(max_instances: int | None) -> ConfigurationError | None:
    """The error for a bad ``max_instances``, for readers that report it together with their own mistakes."""
    if max_instances is not None and max_instances < 1:
        return ConfigurationError(f"must be a positive int or null, got {max_instances}", key="max_instances")
    return None


def open_data_file(path: str, newline: str | None = None) -> IO[str]:
    """Open a UTF-8 text data file (a byte-order mark is skipped); a missing file is a ConfigurationError naming it,
    since the path came from the config."""
    file_path = Path(path)
    if file_path.is_dir():
        raise ConfigurationError(f"data path is a directory, expected a file: {path}")
    if not file_path.is_file():
        raise ConfigurationError(f"data file not found: {path}")
    return open(file_path, encoding="utf-8-sig", newline=newline)

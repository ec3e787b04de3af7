"""DatasetReader: the registered base class that turns a data path into instances (dicts of field name -> value)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, ClassVar

from regimen.data.cached_files import cached_data_path, download_schemes, local_path, url_scheme
from regimen.registry import ConfigurationError, Registrable

Instance = dict[str, Any]


class DatasetReader(Registrable):
    """Reads a data path into instances, lazily: ``read(path)`` yields one ``dict`` of field name -> value at a
    time, so a dataset larger than memory can be streamed.

    A subclass implements ``_read(path)``; ``read`` adds the ``max_instances`` limit on top, so every reader
    honours it the same way. The default implementation is ``"csv"``. Subclasses that take ``max_instances``
    pass it on with ``super().__init__(max_instances=max_instances)``.

    The data path (``train_data_path``, ``validation_data_path``, ``test_data_path``, the input of
    ``regimen evaluate``) is the reader's to interpret and reaches ``_read`` as written: a file, a directory, a
    glob, a dataset name (``"digits:train"``), a database URI. Before anything is read or trained, the experiment
    and ``regimen evaluate`` ask the reader ``check_data_path(path)`` for an early, friendly error. A reader that
    reads one local file sets ``reads_local_files = True`` and opens the path with ``open_data_file`` (or resolves
    it with ``cached_data_path``): the check then wants an existing file, or a URL (``http(s)://``, ``s3://``,
    ``gs://``, ``hf://``, ``file://``), which is downloaded once into the cache ``$REGIMEN_CACHE_ROOT`` (default
    ``~/.cache/regimen``) and read from there afterwards, also when the server can no longer be reached. Other
    readers get no check unless they override ``check_data_path``.
    """

    default_implementation = "csv"
    reads_local_files: ClassVar[bool] = False
    """Whether ``_read(path)`` reads ``path`` as one local file or URL, so that the path can be checked early."""

    def __init__(self, max_instances: int | None = None) -> None:
        error = max_instances_error(max_instances)
        if error is not None:
            raise error
        self.max_instances = max_instances

    def read(self, path: str) -> Iterator[Instance]:
        """The instances at ``path``, read lazily, at most ``max_instances`` of them.

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

    def transform_instance(self, instance: Instance) -> Instance:
        """The instance made ready for batching, each time it is batched; the default returns it unchanged.

        The data loader calls this on every instance just before collating it: in its worker processes when
        ``num_workers`` is above 0, so CPU-heavy per-instance work (decoding an image, augmenting, tokenizing)
        runs in parallel there, and anew every epoch, so a random augmentation draws anew (in workers from
        generators seeded by the run's seed and the pass). What ``_read`` does is done once per read instead (once
        per run when the data is kept in memory). It gets a shallow copy of the instance: return the changed copy
        (or a new dict), and do not change the values in place, which the next epoch reads again. AllenNLP's
        readers did their per-instance indexing in ``apply_token_indexers`` the same way.
        """
        return instance

    def check_data_path(self, path: str) -> ConfigurationError | None:
        """The error for a data path this reader cannot read, found without reading it; None when it may do.

        The caller places the error at its key (``error.located("train_data_path")``). Without
        ``reads_local_files`` every path passes: only ``_read`` knows what it means. With it, a URL whose scheme
        can be downloaded passes without touching the network (a missing one is reported when it is read), and
        any other path must be an existing file. Override to check a path of your own kind early.
        """
        if not self.reads_local_files:
            return None
        reader = f"read by the {self.reader_name()}, which reads a local file or a URL"
        scheme = url_scheme(path)
        if scheme is not None and scheme != "file":
            supported = download_schemes()
            if scheme in supported:
                return None
            schemes = ", ".join(sorted(supported | {"file"}))
            return ConfigurationError(
                f'unsupported URL scheme "{scheme}": {path} ({reader} with a scheme of {schemes})'
            )
        local = Path(local_path(path))
        if local.is_dir():
            return ConfigurationError(f"is a directory, expected a file: {path} ({reader})")
        if not local.is_file():
            return ConfigurationError(f"file not found: {path} ({reader}; relative paths are read from {Path.cwd()})")
        return None

    def reader_name(self) -> str:
        """How messages name this reader: ``the "csv" reader``, or its class path when it is not registered."""
        cls = type(self)
        for name in DatasetReader.list_available():
            if DatasetReader.resolve_class_name(name)[0] is cls:
                return f'"{name}" reader'
        return f"{cls.__module__}.{cls.__qualname__} reader"


def max_instances_error(max_instances: int | None) -> ConfigurationError | None:
    """The error for a bad ``max_instances``, for readers that report it together with their own mistakes."""
    if max_instances is not None and max_instances < 1:
        return ConfigurationError(f"must be a positive int or null, got {max_instances}", key="max_instances")
    return None


def open_data_file(path: str, newline: str | None = None) -> IO[str]:
    """Open a UTF-8 text data file, or a URL's cached copy (see ``cached_data_path``; a byte-order mark is
    skipped); a missing file is a ConfigurationError naming it, since the path came from the config."""
    file_path = Path(cached_data_path(path))
    if file_path.is_dir():
        raise ConfigurationError(f"data path is a directory, expected a file: {path}")
    if not file_path.is_file():
        raise ConfigurationError(f"data file not found: {path}")
    return open(file_path, encoding="utf-8-sig", newline=newline)

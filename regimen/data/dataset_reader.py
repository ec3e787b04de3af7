"""DatasetReader: the registered base class that turns a data path into instances (dicts of field name -> value)."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, ClassVar

from regimen.registry import ConfigurationError, Registrable

Instance = dict[str, Any]

CACHE_ROOT_VARIABLE = "REGIMEN_CACHE_ROOT"
"""The environment variable naming the directory downloaded data files are cached in (default ``~/.cache/regimen``)."""

_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


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
            supported = _download_schemes()
            if scheme in supported:
                return None
            schemes = ", ".join(sorted(supported | {"file"}))
            return ConfigurationError(
                f'unsupported URL scheme "{scheme}": {path} ({reader} with a scheme of {schemes})'
            )
        local = Path(_local_path(path))
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


def url_scheme(path: str) -> str | None:
    """The scheme of a URL (``"https"`` for ``https://host/data.csv``), lower-cased; None for anything else."""
    match = _URL_SCHEME.match(path)
    return match.group(1).lower() if match else None


def data_cache_dir() -> Path:
    """Where downloaded data files are kept: ``$REGIMEN_CACHE_ROOT``, else ``~/.cache/regimen``."""
    return Path(os.environ.get(CACHE_ROOT_VARIABLE) or Path.home() / ".cache" / "regimen").expanduser()


def cached_data_path(path: str) -> str:
    """The local file to read for a data path: a local path as it is (``~`` expanded, ``file://`` removed), a URL
    downloaded into the cache (``data_cache_dir()``) on first use and the cached copy's path returned.

    Each call asks the server for the file's ETag and downloads it again only when that changed (never, from a
    server that sends none); when the server cannot be reached, the newest cached copy is used, as AllenNLP's
    ``cached_path`` does (through the same ``cached-path`` library, whose connection retries take about 30 s
    before it falls back). A URL that cannot be had is a ConfigurationError located at the URL
    (``https://host/x.csv: cannot download: ...``), since it is raised while reading, where no config key is known.
    Readers with ``reads_local_files`` call this through ``open_data_file``; others may call it for their URLs.
    """
    scheme = url_scheme(path)
    if scheme is None or scheme == "file":
        return _local_path(path)
    from cached_path import cached_path  # imported here: it pulls in requests and the cloud clients

    cache_dir = data_cache_dir()
    try:
        return str(cached_path(path, cache_dir=cache_dir, quiet=True))
    except FileNotFoundError:
        raise ConfigurationError("data file not found on the server", path) from None
    except Exception as error:  # the schemes' clients raise their own kinds (requests, botocore, huggingface_hub)
        raise ConfigurationError(_download_failure(path, error, cache_dir), path) from error


def open_data_file(path: str, newline: str | None = None) -> IO[str]:
    """Open a UTF-8 text data file, or a URL's cached copy (see ``cached_data_path``; a byte-order mark is
    skipped); a missing file is a ConfigurationError naming it, since the path came from the config."""
    file_path = Path(cached_data_path(path))
    if file_path.is_dir():
        raise ConfigurationError(f"data path is a directory, expected a file: {path}")
    if not file_path.is_file():
        raise ConfigurationError(f"data file not found: {path}")
    return open(file_path, encoding="utf-8-sig", newline=newline)


def _local_path(path: str) -> str:
    if url_scheme(path) == "file":
        path = path[len("file://") :]
    return os.path.expanduser(path)


def _download_schemes() -> set[str]:
    """The URL schemes ``cached_path`` downloads (http, https, s3, gs, hf, and whatever it gains)."""
    from cached_path.schemes import get_supported_schemes

    return set(get_supported_schemes())


def _download_failure(url: str, error: Exception, cache_dir: Path) -> str:
    """The message for a URL that could not be downloaded, saying whether a cached copy exists."""
    import requests
    from cached_path import find_latest_cached

    if isinstance(error, (requests.ConnectionError, requests.Timeout)):
        cause = error.args[0] if error.args else error
        reason = f"the server cannot be reached ({getattr(cause, 'reason', cause)})"
    else:
        reason = f"{type(error).__name__}: {error}"
    if find_latest_cached(url, cache_dir) is None:
        return (
            f"cannot download: {reason}; no copy is cached in {cache_dir} (set {CACHE_ROOT_VARIABLE} to use "
            "another cache); connect to the network, or point the data path at a local copy"
        )
    return f"cannot download: {reason}"

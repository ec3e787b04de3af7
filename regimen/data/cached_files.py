"""Data files by URL: a data path's local file, downloaded once into a cache with the cached-path library."""

from __future__ import annotations

import os
import re
from pathlib import Path

from regimen.registry import ConfigurationError

CACHE_ROOT_VARIABLE = "REGIMEN_CACHE_ROOT"
"""The environment variable naming the directory downloaded data files are cached in (default ``~/.cache/regimen``)."""

_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


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
        return local_path(path)
    from cached_path import cached_path  # imported here: it pulls in requests and the cloud clients

    cache_dir = data_cache_dir()
    try:
        return str(cached_path(path, cache_dir=cache_dir, quiet=True))
    except FileNotFoundError:
        raise ConfigurationError("data file not found on the server", path) from None
    except Exception as error:  # the schemes' clients raise their own kinds (requests, botocore, huggingface_hub)
        raise ConfigurationError(_download_failure(path, error, cache_dir), path) from error


def local_path(path: str) -> str:
    if url_scheme(path) == "file":
        path = path[len("file://") :]
    return os.path.expanduser(path)


def download_schemes() -> set[str]:
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

"""Data paths belong to the reader: ``check_data_path`` (the early check), ``cached_data_path`` (URLs downloaded
once into the cache) and the built-in readers reading a URL as they read a local file."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from regimen.data import CsvReader, DatasetReader, JsonLinesReader, cached_data_path, open_data_file
from regimen.data.cached_files import data_cache_dir
from regimen.registry import ConfigurationError
from tests.conftest import FIXTURES, ROOT

CLASSIFICATION = FIXTURES / "data" / "classification.csv"


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory and notes each request (method, path) on its server instead of logging it."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.server.requests.append((self.command, self.path))


@contextmanager
def serving(directory: Path) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A real HTTP server for ``directory`` on 127.0.0.1 (a free port), in a thread: yields its base URL and the
    list of requests it answers; stops (the port then refuses connections) on leaving the block."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(directory)))
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def cache_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("REGIMEN_CACHE_ROOT", str(root))
    return root


def plain(instances: list[dict]) -> list[dict]:
    return [
        {key: value.tolist() if isinstance(value, torch.Tensor) else value for key, value in i.items()}
        for i in instances
    ]


class NamedDatasets(DatasetReader):
    """A reader of dataset names, not files: it sets no ``reads_local_files``."""

    def _read(self, path: str):
        yield {"name": path}


class LinesReader(DatasetReader):
    """A user's reader of one local file, opting in to the early check."""

    reads_local_files = True

    def _read(self, path: str):
        with open_data_file(path) as file:
            yield from ({"line": line.strip()} for line in file)


def test_a_reader_of_local_files_accepts_an_existing_file_and_any_downloadable_url(tmp_path):
    reader = CsvReader()
    assert reader.check_data_path(str(CLASSIFICATION)) is None
    assert reader.check_data_path(f"file://{CLASSIFICATION}") is None
    for url in ("https://example.invalid/train.csv", "http://x/y.csv", "s3://bucket/a.csv", "gs://b/a.csv"):
        assert reader.check_data_path(url) is None, url  # not looked up until read: no network while checking
    assert JsonLinesReader().check_data_path("hf://datasets/someone/data/train.jsonl") is None


def test_a_missing_file_a_directory_or_an_unknown_scheme_is_an_error_naming_the_reader(tmp_path):
    missing = str(tmp_path / "missing.csv")
    assert str(CsvReader().check_data_path(missing)) == (
        f'file not found: {missing} (read by the "csv" reader, which reads a local file or a URL; '
        f"relative paths are read from {Path.cwd()})"
    )
    assert str(JsonLinesReader().check_data_path(str(tmp_path))) == (
        f'is a directory, expected a file: {tmp_path} (read by the "jsonl" reader, which reads a local file or a URL)'
    )
    message = str(CsvReader().check_data_path("ftp://host/train.csv"))
    assert message.startswith('unsupported URL scheme "ftp": ftp://host/train.csv (read by the "csv" reader, which ')
    assert "file, gs, hf, http, https" in message


def test_the_error_is_placed_at_the_key_the_caller_names(tmp_path):
    error = CsvReader().check_data_path("no/such.csv").located("validation_data_path")
    assert str(error).startswith('validation_data_path: file not found: no/such.csv (read by the "csv" reader')


def test_a_reader_that_does_not_read_local_files_accepts_any_path(tmp_path):
    reader = NamedDatasets()
    for path in ("digits:train", str(tmp_path), str(tmp_path / "*.csv"), "postgresql://db/table", "no/such.csv"):
        assert reader.check_data_path(path) is None, path
    assert list(reader.read("digits:train")) == [{"name": "digits:train"}]


def test_a_user_reader_that_opts_in_is_checked_and_named_by_its_class(tmp_path):
    error = LinesReader().check_data_path(str(tmp_path / "lines.txt"))
    assert str(error).startswith(f"file not found: {tmp_path / 'lines.txt'} (read by the {__name__}.LinesReader reader")
    (tmp_path / "lines.txt").write_text("a\nb\n")
    assert LinesReader().check_data_path(str(tmp_path / "lines.txt")) is None
    assert list(LinesReader().read(str(tmp_path / "lines.txt"))) == [{"line": "a"}, {"line": "b"}]


def test_a_local_path_is_returned_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cached_data_path("fixtures/data/classification.csv") == "fixtures/data/classification.csv"
    assert cached_data_path("~/train.csv") == str(tmp_path / "train.csv")
    assert cached_data_path(f"file://{CLASSIFICATION}") == str(CLASSIFICATION)
    assert cached_data_path("no/such/file.csv") == "no/such/file.csv"  # reported by whoever opens it


def test_the_cache_is_under_home_unless_regimen_cache_root_says_otherwise(tmp_path, monkeypatch):
    monkeypatch.delenv("REGIMEN_CACHE_ROOT", raising=False)
    assert data_cache_dir() == Path.home() / ".cache" / "regimen"
    monkeypatch.setenv("REGIMEN_CACHE_ROOT", str(tmp_path / "elsewhere"))
    assert data_cache_dir() == tmp_path / "elsewhere"


def test_a_url_is_downloaded_once_into_the_cache_and_read_like_the_local_file(tmp_path, cache_root):
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(CLASSIFICATION, served / "data.csv")
    with serving(served) as (base, requests):
        url = f"{base}/data.csv"
        first = plain(list(CsvReader().read(url)))
        second = plain(list(CsvReader(max_instances=2).read(url)))
        local = cached_data_path(url)
    assert first == plain(list(CsvReader().read(str(CLASSIFICATION))))
    assert second == first[:2]
    assert Path(local).parent == cache_root and Path(local).read_bytes() == CLASSIFICATION.read_bytes()
    # One download; every later read only asks whether the file changed.
    assert [method for method, _ in requests].count("GET") == 1
    assert [method for method, _ in requests].count("HEAD") == 3


def test_an_error_in_a_downloaded_file_names_the_url_and_line(tmp_path, cache_root):
    served = tmp_path / "served"
    served.mkdir()
    (served / "bad.csv").write_text("x,label\n1,0\noops,1\n")
    with serving(served) as (base, _):
        with pytest.raises(ValueError) as info:
            list(CsvReader().read(f"{base}/bad.csv"))
    assert str(info.value) == f"{base}/bad.csv:3: column \"x\": expected a number, got 'oops'"


def test_a_url_the_server_does_not_have_is_a_configuration_error_naming_it(tmp_path, cache_root):
    with serving(tmp_path) as (base, _):
        with pytest.raises(ConfigurationError) as info:
            list(JsonLinesReader().read(f"{base}/missing.jsonl"))
    assert str(info.value) == f"{base}/missing.jsonl: data file not found on the server"
    assert not any(cache_root.glob("*.jsonl*"))


def test_importing_regimen_does_not_import_cached_path():
    code = (
        "import sys, regimen, regimen.data, regimen.experiment, regimen.commands; print('cached_path' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"

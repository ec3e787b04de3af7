"""AllenNLP 2.10's data paths: the reader gets each path as written, and ``cached_path`` turns a URL into the local
path of its cached copy while leaving a local file alone. (The offline fallback of ``get_from_cache`` is pinned
through the CLI in tests/commands/test_data_paths_cli.py.)

Not supported: AllenNLP's ``DatasetReaderInput`` also allows a list or a dict of paths; regimen's data paths are
strings.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from regimen.data import DatasetReader, cached_data_path
from regimen.experiment import check_experiment
from regimen.registry import Params
from tests.conftest import FIXTURES
from tests.data.test_data_paths import serving


class RecordingReader(DatasetReader):
    """Yields a few two-feature instances for any path and notes the paths it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def _read(self, path: str):
        self.paths.append(path)
        for index in range(4):
            yield {"features": torch.tensor([float(index), 1.0]), "label": index % 2}


def test_the_experiment_hands_each_data_path_to_its_reader_as_written(tmp_path):
    """Pins allennlp/training/util.py ``data_loaders_from_params``: ``train_data_path``, ``validation_data_path``
    and ``test_data_path`` go unchanged to ``DataLoader.from_params(..., reader=..., data_path=...)``, the first to
    ``dataset_reader``, the others to ``validation_dataset_reader``; nothing checks that they are files."""
    reader = f"{__name__}.RecordingReader"
    params = Params(
        {
            "dataset_reader": {"type": reader},
            "validation_dataset_reader": {"type": reader},
            "train_data_path": "corpus:train",
            "validation_data_path": str(tmp_path / "shards" / "*.jsonl"),
            "test_data_path": "sqlite:///nowhere.db?table=test",
            "evaluate_on_test": True,
            "data_loader": {"batch_size": 2},
            "model": {"type": "mlp_classifier", "input_dim": 2, "num_classes": 2},
            "trainer": {"num_epochs": 1, "progress_bar": False, "cuda_device": -1},
        }
    )
    experiment = check_experiment(params, tmp_path / "run")
    experiment.build()
    for loader in experiment.loaders.values():
        len(loader)
    assert experiment.dataset_reader.paths == ["corpus:train"]
    assert experiment.validation_dataset_reader.paths == [
        str(tmp_path / "shards" / "*.jsonl"),
        "sqlite:///nowhere.db?table=test",
    ]


def test_read_gives_the_path_to__read_untouched():
    """Pins allennlp/data/dataset_readers/dataset_reader.py ``DatasetReader.read(file_path)``: it iterates
    ``self._read(file_path)`` with the path it was given, checking nothing itself."""
    reader = RecordingReader()
    assert len(list(reader.read("no such file, a name"))) == 4
    assert reader.paths == ["no such file, a name"]


def test_cached_path_leaves_a_local_file_alone_and_gives_a_url_its_cached_copy(tmp_path, monkeypatch):
    """Pins allennlp/common/file_utils.py ``cached_path``: an existing local path is returned as it is; an
    ``http(s)://`` URL is downloaded into the cache directory and the cached file's local path is returned, the
    same path on the next call."""
    monkeypatch.setenv("REGIMEN_CACHE_ROOT", str(tmp_path / "cache"))
    local = tmp_path / "train.csv"
    shutil.copy(FIXTURES / "data" / "classification.csv", local)
    assert cached_data_path(str(local)) == str(local)
    with serving(tmp_path) as (base, _):
        first = cached_data_path(f"{base}/train.csv")
        second = cached_data_path(f"{base}/train.csv")
    assert first == second and Path(first).parent == tmp_path / "cache"
    assert Path(first).read_bytes() == local.read_bytes()

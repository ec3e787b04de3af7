"""The ``torch_dataset`` and ``huggingface`` readers through ``regimen train``, as a user runs them: a user's
map-style and iterable Datasets and a local CSV loaded by ``datasets`` train the blobs experiment to exactly the
run the ``csv`` reader gives, with worker processes and shuffling, after a crash mid-epoch and ``--recover``, and
sharded over two Gloo workers; and the mistakes a user can make exit 2 naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.commands.test_train import stable
from tests.commands.test_train_distributed import final_weights
from tests.conftest import FIXTURES, ROOT, run_cli

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")
BLOBS = FIXTURES / "data" / "blobs"
SPLITS = {"train_data_path": "train", "validation_data_path": "validation", "test_data_path": "test"}

PLUGIN = '''
import csv
import os
from pathlib import Path

import torch
from PIL import Image

from regimen.models import MlpClassifier, Model


def read_rows(directory, split):
    """The rows of the blobs CSV of ``split``, parsed as the csv reader parses them."""
    with open(Path(directory) / f"{split}.csv", newline="") as file:
        rows = list(csv.reader(file))
    return [(torch.tensor([float(v) for v in row[:-1]], dtype=torch.float32), int(row[-1])) for row in rows[1:]]


class BlobsCsv(torch.utils.data.Dataset):
    """A user's map-style dataset: (features, label) pairs."""

    def __init__(self, directory: str, split: str) -> None:
        self.rows = read_rows(directory, split)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index]


class BlobsStream(torch.utils.data.IterableDataset):
    """A user's iterable dataset: the same pairs, as dicts."""

    def __init__(self, directory: str, split: str) -> None:
        self.directory, self.split = directory, split

    def __iter__(self):
        for features, label in read_rows(self.directory, self.split):
            yield {"features": features, "label": label}


def pictures(split: str):
    return [(Image.new("L", (4, 4)), 0)]


@Model.register("breaks_when_told")
class BreaksWhenTold(MlpClassifier):
    """mlp_classifier, crashing at the training batch $BREAK_AT_BATCH (counted over the whole run) when it is set."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.batches = 0

    def forward(self, features, label=None):
        if self.training:
            self.batches += 1
            if self.batches == int(os.environ.get("BREAK_AT_BATCH", 0)):
                raise RuntimeError("told to break")
        return super().forward(features, label)
'''


def torch_reader(dataset: str = "BlobsCsv") -> dict:
    return {
        "type": "torch_dataset",
        "dataset": f"reader_plugins.{dataset}",
        "kwargs": {"directory": str(BLOBS)},
        "data_path_argument": "split",
    }


def huggingface_reader(cache: Path) -> dict:
    return {
        "type": "huggingface",
        "path": "csv",
        "data_files": {split: str(BLOBS / f"{split}.csv") for split in ("train", "validation", "test")},
        "fields": {"features": ["x0", "x1", "x2", "x3"], "label": "label"},
        "cache_dir": str(cache),
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A directory with the plugin module, the datasets cache and home, and the runs."""
    directory = tmp_path_factory.mktemp("readers")
    (directory / "reader_plugins.py").write_text(PLUGIN)
    return directory


def train(work: Path, name: str, changes: dict, *extra: str, env: dict | None = None):
    environment = {
        "PYTHONPATH": f"{ROOT}:{work}",
        "HF_HOME": str(work / "hf_home"),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        **(env or {}),
    }
    arguments = ["train", CONFIG, "-s", str(work / name), "-o", json.dumps(changes), "--include-package"]
    return run_cli(*arguments, "reader_plugins", *extra, env=environment)


def assert_same_run(directory: Path, reference: Path) -> None:
    """The same metrics, epoch by epoch and at the end, and the same final weights, bit for bit."""
    assert stable(json.loads((directory / "metrics.json").read_text())) == stable(
        json.loads((reference / "metrics.json").read_text())
    )
    for epoch in range(3):
        name = f"metrics_epoch_{epoch}.json"
        assert json.loads((directory / name).read_text()) == json.loads((reference / name).read_text()), name
    final, expected = final_weights(directory), final_weights(reference)
    assert final.keys() == expected.keys() and all(torch.equal(final[key], expected[key]) for key in final)


@pytest.fixture(scope="module")
def csv_run(work) -> Path:
    """The blobs experiment as it is, read by the csv reader: what every other reader must reproduce."""
    result = train(work, "csv", {})
    assert result.returncode == 0, result.stderr
    return work / "csv"


def test_a_user_s_map_style_dataset_trains_mlp_classifier_to_the_csv_reader_s_run(work, csv_run):
    result = train(work, "map", {"dataset_reader": torch_reader(), **SPLITS})
    assert result.returncode == 0, result.stderr
    assert "read 400 instances from train" in (work / "map" / "out.log").read_text()
    metrics = json.loads((work / "map" / "metrics.json").read_text())
    assert metrics["best_validation_accuracy"] >= 0.9 and metrics["test_accuracy"] >= 0.9
    assert_same_run(work / "map", csv_run)


def test_an_iterable_dataset_read_with_two_worker_processes_gives_the_same_run(work, csv_run):
    changes = {"dataset_reader": torch_reader("BlobsStream"), "data_loader.num_workers": 2, **SPLITS}
    result = train(work, "iterable", changes)
    assert result.returncode == 0, result.stderr
    assert_same_run(work / "iterable", csv_run)


CRASH_MID_EPOCH = {
    "model.type": "breaks_when_told",
    "data_loader.num_workers": 2,
    "trainer.checkpointer": {"save_every_num_batches": 4},
}


@pytest.mark.parametrize("kind", ["torch_dataset", "huggingface"])
def test_a_crash_mid_epoch_and_recover_end_with_the_weights_of_an_uninterrupted_run(work, csv_run, kind):
    # 50 batches an epoch: the crash at batch 66 is in epoch 1, whose newest checkpoint is 12 batches into it.
    reader = torch_reader() if kind == "torch_dataset" else huggingface_reader(work / f"{kind}_cache")
    changes = {"dataset_reader": reader, **SPLITS, **CRASH_MID_EPOCH}
    crashed = train(work, kind, changes, env={"BREAK_AT_BATCH": "66"})
    assert crashed.returncode == 1 and "RuntimeError: told to break" in crashed.stderr
    assert "the run failed at epoch 1, batch 15 of training" in crashed.stderr
    result = train(work, kind, changes, "--recover")
    assert result.returncode == 0, result.stderr
    assert "resuming after 1 epochs and 12 batches" in (work / kind / "out.log").read_text()
    assert_same_run(work / kind, csv_run)


DISTRIBUTED = {"data_loader": {"batch_size": 8}, "model.dropout": 0.0, "trainer.num_epochs": 2}


@pytest.fixture(scope="module")
def one_process_batch_16(work) -> Path:
    result = train(work, "batch_16", {**DISTRIBUTED, "data_loader": {"batch_size": 16}})
    assert result.returncode == 0, result.stderr
    return work / "batch_16"


@pytest.mark.parametrize("kind", ["torch_dataset", "huggingface"])
def test_two_gloo_workers_each_read_their_shard(work, one_process_batch_16, kind):
    # No shuffling and no dropout: two workers with batches of 8 take the steps one process takes with 16.
    reader = torch_reader() if kind == "torch_dataset" else huggingface_reader(work / f"{kind}_distributed_cache")
    changes = {"dataset_reader": reader, **SPLITS, **DISTRIBUTED, "distributed": {"cuda_devices": [-1, -1]}}
    directory = f"{kind}_distributed"
    result = train(work, directory, changes)
    assert result.returncode == 0, result.stderr
    one, two = final_weights(one_process_batch_16), final_weights(work / directory)
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6)
    metrics = json.loads((work / directory / "metrics.json").read_text())
    expected = json.loads((one_process_batch_16 / "metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(expected["test_accuracy"], abs=1e-6)


MISTAKES = {
    "mistakes in building the readers, reported together": (
        {
            "dataset_reader": {**torch_reader(), "kwargs": {"directry": "x"}},
            "validation_dataset_reader": torch_reader("BlobCsv"),
            **SPLITS,
        },
        [
            "dataset_reader.kwargs.directry: reader_plugins.BlobsCsv takes no such argument: unknown argument "
            '"directry"; did you mean "directory"?',
            'validation_dataset_reader.dataset: "reader_plugins" has no attribute "BlobCsv" (did you mean '
            '"reader_plugins.BlobsCsv"?)',
        ],
    ),
    "an unknown split of the torch_dataset reader": (
        {
            "dataset_reader": {**torch_reader(), "data_path_argument": None, "splits": {"train": {"split": "train"}}},
            "train_data_path": "train",
            "validation_data_path": "validaton",
            "test_data_path": None,
            "evaluate_on_test": False,
        },
        [
            'validation_data_path: unknown split "validaton"; valid splits: train (the splits of the '
            '"torch_dataset" reader for reader_plugins.BlobsCsv)'
        ],
    ),
    "an unknown split of the huggingface reader": (
        {"dataset_reader": huggingface_reader(Path("unused")), **SPLITS, "test_data_path": "tset"},
        [
            'test_data_path: unknown split "tset"; did you mean "test"? valid splits: test, train, validation (of '
            'the HuggingFace dataset "csv")'  # sorted: jsonnet writes an object's keys in order
        ],
    ),
    "a column the file lacks": (
        {"dataset_reader": {**huggingface_reader(Path("unused")), "fields": {"label": "lable"}}, **SPLITS},
        ['train_data_path: the reader\'s fields name the column(s) "lable" (did you mean "label"?)'],
    ),
    "a PIL image left unconverted": (
        {"dataset_reader": {**torch_reader("pictures"), "kwargs": None}, **SPLITS},
        ['train_data_path: item 0 of reader_plugins.pictures(split="train"): the field "features" is a PIL image'],
    ),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_a_mistake_exits_2_naming_the_key_before_training(work, case):
    changes, messages = MISTAKES[case]
    if "huggingface" in json.dumps(changes):
        changes["dataset_reader"]["cache_dir"] = str(work / "hf_errors_cache")
    name = "mistake_" + case.replace(" ", "_").replace(",", "")
    result = train(work, name, changes)
    assert result.returncode == 2, result.stderr
    # The lines before are the datasets library's progress bars, where it prepared a split.
    assert "\nregimen: configuration error: " in "\n" + result.stderr and "Traceback" not in result.stderr
    for message in messages:
        assert message in result.stderr
    assert not (work / name).exists()

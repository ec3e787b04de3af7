"""Per-split outputs with instance indices (autrainer's ``save_train/dev/test_outputs``, aitoolbox's
``predict_on_*_set``), through ``regimen train``: a shuffled run's training, validation and test outputs,
each instance once with its position in its data file, in one process and across two workers."""

from __future__ import annotations

import csv
import json

import pytest

from tests.conftest import FIXTURES, run_cli

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")
BLOBS = FIXTURES / "data" / "blobs"


def labels(split: str) -> list[int]:
    with open(BLOBS / f"{split}.csv") as file:
        return [int(row["label"]) for row in csv.DictReader(file)]


@pytest.mark.parametrize("distributed", [None, {"cuda_devices": [-1, -1]}], ids=["one process", "two workers"])
def test_each_split_writes_every_instance_once_with_its_file_position(tmp_path, distributed):
    overrides = {
        "trainer.num_epochs": 2,
        "data_loader": {"batch_size": 24, "shuffle": True},  # 400 instances: uneven batches, shuffled
        "trainer.callbacks": [{"type": "save_predictions", "splits": ["training", "validation", "test"]}],
        "distributed": distributed,
    }
    result = run_cli("train", CONFIG, "-s", str(tmp_path / "run"), "-o", json.dumps(overrides))
    assert result.returncode == 0, result.stderr
    predictions = tmp_path / "run" / "predictions"
    assert sorted(path.name for path in predictions.iterdir()) == [
        "test.jsonl",
        "training_epoch_0.jsonl",
        "training_epoch_1.jsonl",
        "validation_epoch_0.jsonl",
        "validation_epoch_1.jsonl",
    ]
    for name, split in [("training_epoch_1", "train"), ("validation_epoch_0", "validation"), ("test", "test")]:
        records = [json.loads(line) for line in (predictions / f"{name}.jsonl").read_text().splitlines()]
        expected = labels(split)
        assert [record["index"] for record in records] == list(range(len(expected)))
        assert [record["target"] for record in records] == expected  # the index is the instance's own
        assert all(len(record["probs"]) == 2 for record in records)

"""Every trainer hook, in its place, through ``regimen train``: a run with validation and test data, recorded by a
plugin callback and by hooks a model and a reader define themselves (issue 14's table: autrainer's ``cb_on_*``,
stable-ssl's before/after hooks and AllenNLP 2.10's TrainerCallback, each at one regimen hook)."""

from __future__ import annotations

import json

from tests.conftest import FIXTURES, ROOT, run_cli

PLUGIN = """
import json
import os

import torch

from regimen.data import CsvReader, DatasetReader
from regimen.models import MlpClassifier, Model
from regimen.trainers.callbacks import TrainerCallback


def record(event):
    with open(os.environ["HOOKS_FILE"], "a") as file:
        file.write(json.dumps(event) + "\\n")


@TrainerCallback.register("record_every_hook")
class RecordEveryHook(TrainerCallback):
    def on_start(self, trainer, is_primary=True, **kwargs):
        record("start")

    def on_epoch_start(self, trainer, epoch, **kwargs):
        record(f"epoch start {epoch}")

    def on_batch_start(self, trainer, batch_inputs, epoch, batch_number, is_training, split="training", **kwargs):
        record(f"{split} batch start {batch_number}")

    def on_backward(self, trainer, batch_outputs, backward_called, **kwargs):
        record("backward")
        return False

    def on_batch(self, trainer, batch_inputs, batch_outputs, batch_metrics, epoch, batch_number, is_training,
                 is_primary=True, **kwargs):
        record(f"{kwargs['split']} batch {batch_number}")

    def on_loader_exhausted(self, trainer, epoch, **kwargs):
        record(f"exhausted {epoch}")

    def on_validation_start(self, trainer, epoch, **kwargs):
        record(f"validation start {epoch}")

    def on_validation_end(self, trainer, epoch, metrics, **kwargs):
        record(f"validation end {epoch} {sorted(metrics)}")

    def on_epoch(self, trainer, metrics, epoch, is_primary=True, **kwargs):
        record(f"epoch {epoch}")

    def on_test_start(self, trainer, **kwargs):
        record("test start")

    def on_test_end(self, trainer, metrics, **kwargs):
        record(f"test end {sorted(metrics)}")

    def on_end(self, trainer, metrics=None, epoch=None, is_primary=True, **kwargs):
        record(f"end {epoch} {'test_accuracy' in metrics}")


@Model.register("hooked_mlp")
class HookedMlp(MlpClassifier):
    def on_epoch_start(self, trainer, epoch, **kwargs):
        record(f"model: epoch start {epoch}")


@DatasetReader.register("hooked_csv")
class HookedCsv(CsvReader):
    def on_test_end(self, trainer, metrics, **kwargs):
        record("reader: test end")
"""


def test_every_hook_fires_once_in_its_place_with_validation_and_test_data(tmp_path):
    (tmp_path / "hooks_plugin.py").write_text(PLUGIN)
    hooks_file = tmp_path / "hooks.jsonl"
    overrides = {
        "trainer.num_epochs": 2,
        "trainer.callbacks": [{"type": "record_every_hook"}],
        "data_loader.batch_size": 200,  # 400 training instances: 2 steps per epoch
        "validation_data_loader": {"batch_size": 32},  # 64 instances: 2 batches
        "model.type": "hooked_mlp",
        "dataset_reader.type": "hooked_csv",
    }
    result = run_cli(
        "train", str(FIXTURES / "experiments" / "blobs.jsonnet"), "-s", str(tmp_path / "run"),
        "-o", json.dumps(overrides), "--include-package", "hooks_plugin",
        env={"PYTHONPATH": f"{ROOT}:{tmp_path}", "HOOKS_FILE": str(hooks_file)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in hooks_file.read_text().splitlines()]
    validation_keys = "['validation_accuracy', 'validation_loss']"
    test_batches = ["test batch start 1", "test batch 1", "test batch start 2", "test batch 2"]

    def epoch(number):
        return [
            f"epoch start {number}", f"model: epoch start {number}",
            "training batch start 1", "backward", "training batch 1",
            "training batch start 2", "backward", "training batch 2",
            f"exhausted {number}",
            f"validation start {number}",
            "validation batch start 1", "validation batch 1", "validation batch start 2", "validation batch 2",
            f"validation end {number} {validation_keys}",
            f"epoch {number}",
        ]  # fmt: skip

    assert events == [
        "start",
        *epoch(0),
        *epoch(1),
        "test start",
        *test_batches,
        "test end ['test_accuracy', 'test_loss']",
        "reader: test end",
        "end 1 True",
    ]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.8 and "test_loss" in metrics

"""One AllenNLP-style plugin package, as a user brings it: a reader of dataset names (not files), a model whose
metric exists only in eval mode, and a trainer subclass registered plainly. It trains through `regimen train`
and is evaluated through `regimen evaluate`, in subprocesses."""

from __future__ import annotations

import json

from tests.conftest import FIXTURES, ROOT, run_cli

PLUGIN = f'''
import csv
import json
from pathlib import Path

import torch

from regimen.data import DatasetReader
from regimen.models import Model
from regimen.trainers import GradientDescentTrainer, Trainer

BLOBS = Path({str(FIXTURES / "data" / "blobs")!r})


@DatasetReader.register("named_blobs")
class NamedBlobs(DatasetReader):
    """Reads "blobs:<split>": a dataset name, not a file."""

    def _read(self, path):
        name, _, split = path.partition(":")
        assert name == "blobs", path
        with open(BLOBS / f"{{split}}.csv") as file:
            for row in csv.DictReader(file):
                label = int(row.pop("label"))
                yield {{"features": torch.tensor([float(v) for v in row.values()]), "label": label}}


@Model.register("eval_only_accuracy")
class EvalOnlyAccuracy(Model):
    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(input_dim, 2)
        self.counts = [0, 0]

    def forward(self, features, label=None):
        logits = self.linear(features)
        output = {{"logits": logits}}
        if label is not None:
            output["loss"] = torch.nn.functional.cross_entropy(logits, label)
            if not self.training:
                self.counts[0] += int((logits.argmax(-1) == label).sum())
                self.counts[1] += label.numel()
        return output

    def get_metrics(self, reset=False):
        metrics = {{"eval_accuracy": self.counts[0] / self.counts[1]}} if not self.training and self.counts[1] else {{}}
        if reset:
            self.counts = [0, 0]
        return metrics


@Trainer.register("noting")
class NotingTrainer(GradientDescentTrainer):
    def train(self):
        metrics = super().train()
        noted = {{"lr": self.optimizer.param_groups[0]["lr"]}}
        Path(self._serialization_dir, "noted.json").write_text(json.dumps(noted))
        return metrics
'''

CONFIG = {
    "dataset_reader": {"type": "named_blobs"},
    "train_data_path": "blobs:train",
    "validation_data_path": "blobs:validation",
    "test_data_path": "blobs:test",
    "evaluate_on_test": True,
    "data_loader": {"batch_size": 16, "shuffle": True},
    "model": {"type": "eval_only_accuracy", "input_dim": 4},
    "trainer": {
        "type": "noting",
        "num_epochs": 3,
        "optimizer": {"type": "sgd", "lr": 0.5},
        "validation_metric": "+eval_accuracy",
        "progress_bar": False,
        "cuda_device": -1,
    },
}


def test_an_allennlp_style_plugin_package_trains_and_evaluates(tmp_path):
    """Pins allennlp/training/util.py `data_loaders_from_params` (each data path reaches the reader as given),
    allennlp/training/gradient_descent_trainer.py `_validation_loss` (metrics read in eval mode) and
    allennlp/commands/evaluate.py (the archived reader reads `input_file`), for one package holding all three; the
    plain `@Trainer.register` is regimen's deliberate difference (allennlp/common/registrable.py used __init__)."""
    (tmp_path / "user_plugins").mkdir()
    (tmp_path / "user_plugins" / "__init__.py").write_text(PLUGIN)
    (tmp_path / "experiment.json").write_text(json.dumps(CONFIG))
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}"}
    trained = run_cli(
        "train", "experiment.json", "-s", "run", "--include-package", "user_plugins", cwd=tmp_path, env=env
    )
    assert trained.returncode == 0, trained.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["best_validation_eval_accuracy"] > 0.8 and metrics["test_eval_accuracy"] > 0.8
    assert json.loads((tmp_path / "run" / "noted.json").read_text()) == {"lr": 0.5}  # the sgd block was built
    evaluated = run_cli(
        "evaluate", "run/model.tar.gz", "blobs:test", "--include-package", "user_plugins", cwd=tmp_path, env=env
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["eval_accuracy"] == metrics["test_eval_accuracy"]

"""torchmetrics metrics of a plugin model through ``regimen train``, as a user runs it: the reported numbers are
those of the whole data computed by hand, in one process and over two Gloo workers, and a run that crashed
mid-epoch recovers to the numbers of an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from scripts.fault_injection import write_blobs
from tests.commands.test_train_distributed import VOLATILE
from tests.conftest import ROOT, run_cli

PLUGIN = '''
import json
import os

import torch
import torchmetrics
from torchmetrics.classification import MulticlassAUROC, MulticlassF1Score, MulticlassPrecision, MulticlassRecall
from torchmetrics.regression import PearsonCorrCoef

from regimen.models import MlpClassifier, Model


@Model.register("scored_classifier")
class ScoredClassifier(MlpClassifier):
    """MlpClassifier's accuracy and more torchmetrics: a collection (precision and F1 share their sums, AUROC's
    lists are joined by "cat"), recall per class, Pearson's correlation (states reduced by none) and a maximum."""

    training_batches = 0

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.scores = torchmetrics.MetricCollection(
            {
                "precision": MulticlassPrecision(num_classes=2, average="macro"),
                "f1": MulticlassF1Score(num_classes=2, average="macro"),
                "auroc": MulticlassAUROC(num_classes=2),
            },
            prefix="macro_",
        )
        self.recall = MulticlassRecall(num_classes=2, average=None)
        self.pearson = PearsonCorrCoef()
        self.top_probability = torchmetrics.MaxMetric()

    def forward(self, features, label=None, **extra):
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        if self.training:
            ScoredClassifier.training_batches += 1
            crash = os.environ.get("CRASH_AT", "").split(":")  # rank:batch
            if crash != [""] and int(crash[0]) == rank and int(crash[1]) == ScoredClassifier.training_batches:
                raise RuntimeError("crash")
        output = super().forward(features, label)
        if label is not None:
            probs = output["probs"].detach()
            self.scores.update(probs, label)
            self.recall.update(probs, label)
            self.pearson.update(probs[:, 1], label.float())
            self.top_probability.update(probs.max(-1).values)
            if rank == 0:
                self.get_metrics()  # as the progress bar reads them, on the primary alone
            if os.environ.get("PREDICTIONS"):
                record = {"training": self.training, "logits": output["logits"].tolist(), "label": label.tolist()}
                with open(os.path.join(os.environ["PREDICTIONS"], f"rank{rank}.jsonl"), "a") as file:
                    file.write(json.dumps(record) + "\\n")
        return output
'''

TWO_WORKERS = {"distributed": {"cuda_devices": [-1, -1]}}


def config(data: Path, **changes: Any) -> str:
    experiment = {
        "random_seed": 1,
        "numpy_seed": 1,
        "pytorch_seed": 1,
        "dataset_reader": {"type": "csv", "label_column": "label"},
        "train_data_path": str(data / "train.csv"),
        "validation_data_path": str(data / "validation.csv"),
        "data_loader": {"batch_size": 8, "shuffle": True},
        "model": {"type": "scored_classifier", "input_dim": 4, "hidden_dims": [8], "num_classes": 2, "dropout": 0.1},
        "trainer": {
            "num_epochs": 2,
            "optimizer": {"type": "adam", "lr": 0.01},
            "validation_metric": "+macro_auroc",
            # 12 batches an epoch (6 per worker of two), checkpoints every 3 and none at an epoch's end: the newest
            # is always in the middle of an epoch.
            "checkpointer": {"save_every_num_batches": 3, "save_completed_epochs": False},
            "progress_bar": False,
            "cuda_device": -1,
        },
        **changes,
    }
    path = data / f"experiment_{len(list(data.glob('experiment_*')))}.json"
    path.write_text(json.dumps(experiment))
    return str(path)


def train(data: Path, directory: Path, *arguments: str, **environment: str) -> Any:
    return run_cli(
        "train", *arguments, "-s", str(directory), "--include-package", "scored_plugin",
        env={"PYTHONPATH": f"{ROOT}:{data}", **environment},
    )  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_blobs(root / "train.csv", 96, torch.Generator().manual_seed(1), dims=4, separation=0.7)
    write_blobs(root / "validation.csv", 48, torch.Generator().manual_seed(2), dims=4, separation=0.7)
    (root / "scored_plugin.py").write_text(PLUGIN)
    return root


def reference_run(data: Path, name: str, **changes: Any) -> Path:
    directory, predictions = data / name, data / f"{name}_predictions"
    predictions.mkdir()
    result = train(data, directory, config(data, **changes), PREDICTIONS=str(predictions))
    assert result.returncode == 0, result.stderr
    return directory


@pytest.fixture(scope="module")
def one_process(data) -> Path:
    return reference_run(data, "one_process")


@pytest.fixture(scope="module")
def two_workers(data) -> Path:
    return reference_run(data, "two_workers", **TWO_WORKERS)


def passes(predictions: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The logits and labels of each pass over the data (training epoch 0, validation 0, epoch 1, ...), every
    worker's batches together."""
    by_worker = []
    for path in sorted(predictions.glob("rank*.jsonl")):
        blocks: list[list[dict[str, Any]]] = []
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if not blocks or blocks[-1][0]["training"] != record["training"]:
                blocks.append([])
            blocks[-1].append(record)
        by_worker.append(blocks)
    assert len({len(blocks) for blocks in by_worker}) == 1
    return [
        (
            torch.tensor([row for worker in by_worker for record in worker[index] for row in record["logits"]]),
            torch.tensor([y for worker in by_worker for record in worker[index] for y in record["label"]]),
        )
        for index in range(len(by_worker[0]))
    ]


def by_hand(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Every metric of the plugin, in float64, from the logits and labels of a whole pass."""
    probs, predicted = logits.double().softmax(-1), logits.argmax(-1)
    hits = [((predicted == c) & (labels == c)).sum().item() for c in (0, 1)]
    predicted_as = [(predicted == c).sum().item() for c in (0, 1)]
    actual = [(labels == c).sum().item() for c in (0, 1)]
    aurocs = []
    for c in (0, 1):  # the chance that a positive scores above a negative, ties counting half
        positive, negative = probs[labels == c, c], probs[labels != c, c]
        above = (positive[:, None] > negative[None, :]).double() + 0.5 * (positive[:, None] == negative[None, :])
        aurocs.append(above.mean().item())
    return {
        "accuracy": (predicted == labels).sum().item() / len(labels),
        "macro_precision": sum(hits[c] / max(predicted_as[c], 1) for c in (0, 1)) / 2,
        "macro_f1": sum(2 * hits[c] / (predicted_as[c] + actual[c]) for c in (0, 1)) / 2,
        "macro_auroc": sum(aurocs) / 2,
        "recall_0": hits[0] / actual[0],
        "recall_1": hits[1] / actual[1],
        "pearson": torch.corrcoef(torch.stack([probs[:, 1], labels.double()]))[0, 1].item(),
        "top_probability": probs.max().item(),
    }


def assert_reported(metrics: dict[str, Any], prefix: str, wanted: dict[str, float]) -> None:
    reported = {
        name.removeprefix(prefix): value
        for name, value in metrics.items()
        if name.startswith(prefix) and name not in VOLATILE  # the run's duration and epochs
    }
    assert set(reported) == {*wanted, "loss"}
    assert reported["accuracy"] == wanted["accuracy"]  # counted in float64: exactly correct / total
    for name, value in wanted.items():
        assert reported[name] == pytest.approx(value, rel=1e-5, abs=1e-6), prefix + name


def assert_whole_data_by_hand(directory: Path, predictions: Path) -> None:
    training_0, validation_0, training_1, validation_1 = passes(predictions)
    assert len(training_0[1]) == 96 and len(validation_0[1]) == 48  # every instance, from every worker
    for epoch, (training, validation) in enumerate([(training_0, validation_0), (training_1, validation_1)]):
        metrics = json.loads((directory / f"metrics_epoch_{epoch}.json").read_text())
        assert_reported(metrics, "training_", by_hand(*training))
        assert_reported(metrics, "validation_", by_hand(*validation))
    final = json.loads((directory / "metrics.json").read_text())
    assert_reported(final, "training_", by_hand(*training_1))
    assert_reported(final, "validation_", by_hand(*validation_1))


def test_one_process_reports_the_metrics_of_each_epoch_and_validation_as_computed_by_hand(data, one_process):
    assert_whole_data_by_hand(one_process, data / "one_process_predictions")
    # `regimen evaluate` of the best weights on the validation data reports the best validation's metrics.
    evaluated = run_cli(
        "evaluate", str(one_process / "model.tar.gz"), str(data / "validation.csv"), "--include-package",
        "scored_plugin", env={"PYTHONPATH": f"{ROOT}:{data}"},
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    final, measured = json.loads((one_process / "metrics.json").read_text()), json.loads(evaluated.stdout)
    best = {name.removeprefix("best_validation_"): v for name, v in final.items() if name.startswith("best_valid")}
    assert measured["accuracy"] == best["accuracy"] and measured["macro_auroc"] == best["macro_auroc"]
    assert measured == pytest.approx(best, rel=1e-5)


def test_two_workers_report_the_metrics_of_the_whole_data_not_of_one_worker_s_share(data, two_workers):
    assert_whole_data_by_hand(two_workers, data / "two_workers_predictions")


def assert_same_metrics(directory: Path, reference: Path) -> None:
    for epoch in range(2):
        name = f"metrics_epoch_{epoch}.json"
        assert json.loads((directory / name).read_text()) == json.loads((reference / name).read_text()), name
    recovered, expected = (json.loads((path / "metrics.json").read_text()) for path in (directory, reference))
    assert {k: v for k, v in recovered.items() if k not in VOLATILE} == {
        k: v for k, v in expected.items() if k not in VOLATILE
    }


@pytest.mark.parametrize(
    ("workers", "crash_at", "resumed_at"),
    [
        ("one process", "0:19", "resuming after 1 epochs and 6 batches"),  # epoch 1's batch 7; saved after 6
        ("two workers", "1:11", "resuming after 1 epochs and 3 batches"),  # worker 1's batch 5 of 6; saved after 3
    ],
)
def test_a_run_that_crashed_mid_epoch_recovers_to_the_metrics_of_an_uninterrupted_one(
    data, one_process, two_workers, tmp_path, workers, crash_at, resumed_at
):
    distributed = TWO_WORKERS if workers == "two workers" else {}
    experiment, directory = config(data, **distributed), tmp_path / "crashed"
    crashed = train(data, directory, experiment, CRASH_AT=crash_at)
    assert crashed.returncode == 1 and "RuntimeError: crash" in crashed.stderr, crashed.stderr
    assert not (directory / "metrics_epoch_1.json").exists()
    recovered = train(data, directory, experiment, "--recover")
    assert recovered.returncode == 0, recovered.stderr
    log = (directory / ("out_worker0.log" if distributed else "out.log")).read_text()
    assert resumed_at in log
    assert_same_metrics(directory, two_workers if distributed else one_process)

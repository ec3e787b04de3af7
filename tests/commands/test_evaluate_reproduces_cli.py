"""``regimen evaluate`` on a run's archive reproduces its ``metrics.json`` test metrics: validation and test data
batched with ``data_loader``'s config (no ``validation_data_loader``) are not shuffled, so both see the same batches
(with uneven batches a shuffled order changed the mean of the batch losses); and the loss is a mean per instance,
so another batch size gives the same loss (to float rounding), where AllenNLP's mean of batch means differs."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FIXTURES, run_cli

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")


def test_evaluate_on_the_archive_gives_the_runs_test_metrics(tmp_path):
    overrides = {"data_loader": {"batch_size": 24, "shuffle": True}}  # 64 test instances: batches of 24, 24, 16
    result = run_cli("train", CONFIG, "-s", str(tmp_path / "run"), "-o", json.dumps(overrides))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    evaluated = run_cli("evaluate", str(tmp_path / "run" / "model.tar.gz"), str(FIXTURES / "data/blobs/test.csv"))
    assert evaluated.returncode == 0, evaluated.stderr
    measured = json.loads(evaluated.stdout)
    assert measured == {"loss": metrics["test_loss"], "accuracy": metrics["test_accuracy"]}
    # Batches of 7 (nine of them and one of 1) against the run's 24, 24, 16: the same mean over the 64 instances.
    rebatched = run_cli("evaluate", str(tmp_path / "run" / "model.tar.gz"), str(FIXTURES / "data/blobs/test.csv"),
                        "--batch-size", "7")  # fmt: skip
    assert rebatched.returncode == 0, rebatched.stderr
    assert json.loads(rebatched.stdout)["loss"] == pytest.approx(metrics["test_loss"], rel=1e-6)

"""Named validation sets (stable-ssl validates every non-train dataset), through ``regimen train``: each set is
validated at every validation, reported under its name in the metrics files, tensorboard and print-results, and
``validation_metric`` names one set's metric."""

from __future__ import annotations

import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import FIXTURES, run_cli

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")
BLOBS = FIXTURES / "data" / "blobs"
SETS = {"easy": str(BLOBS / "validation.csv"), "hard": str(BLOBS / "test.csv")}


def train(tmp_path, overrides):
    return run_cli("train", CONFIG, "-s", str(tmp_path / "run"), "-o", json.dumps(overrides))


def test_each_named_set_is_validated_and_reported_under_its_name(tmp_path):
    overrides = {
        "validation_data_path": SETS,
        "trainer.validation_metric": "+hard_accuracy",
        "trainer.num_epochs": 3,
        "trainer.callbacks": ["tensorboard"],
    }
    result = train(tmp_path, overrides)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    epochs = [json.loads((run / f"metrics_epoch_{e}.json").read_text()) for e in range(3)]
    for metrics in epochs:
        for name in ("easy", "hard"):
            assert {f"validation_{name}_loss", f"validation_{name}_accuracy"} <= set(metrics)
            assert f"best_validation_{name}_accuracy" in metrics
        assert "validation_loss" not in metrics
    final = json.loads((run / "metrics.json").read_text())
    best = max(range(3), key=lambda e: (epochs[e]["validation_hard_accuracy"], -e))  # ties: the first is best
    assert final["best_epoch"] == best
    assert final["best_validation_hard_accuracy"] == epochs[best]["validation_hard_accuracy"]
    assert final["best_validation_easy_accuracy"] == epochs[best]["validation_easy_accuracy"]
    validation = EventAccumulator(str(run / "log" / "validation"))
    validation.Reload()
    assert {"epoch_metrics/hard_accuracy", "epoch_metrics/easy_loss"} <= set(validation.Tags()["scalars"])
    table = run_cli("print-results", str(run))
    assert "best_validation_easy_accuracy" in table.stdout and "best_validation_hard_accuracy" in table.stdout


def test_a_metric_of_no_set_and_a_bad_set_name_are_configuration_errors(tmp_path):
    result = train(tmp_path, {"validation_data_path": SETS, "trainer.validation_metric": "-loss"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "trainer.validation_metric: '-loss' is no set's metric: with named validation sets (easy, hard)" in (
        result.stderr
    )
    result = train(tmp_path, {"validation_data_path": {"hard set": SETS["hard"]}})
    assert "validation_data_path.hard set: a set's name must be letters, digits and underscores" in result.stderr
    result = train(tmp_path, {"validation_data_path": {"hard": "missing.csv"}})
    assert result.returncode == 2 and "validation_data_path.hard: " in result.stderr
    assert not (tmp_path / "run").exists()


def test_two_workers_validate_each_named_set_over_all_of_its_data(tmp_path):
    overrides = {
        "validation_data_path": SETS,
        "trainer.validation_metric": "+hard_accuracy",
        "trainer.num_epochs": 1,
        "trainer.callbacks": [{"type": "save_predictions", "splits": ["easy", "hard"]}],
        "distributed": {"cuda_devices": [-1, -1]},
    }
    result = train(tmp_path, overrides)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.5 < metrics["best_validation_hard_accuracy"] <= 1 and "validation_easy_loss" in metrics
    for name in ("easy", "hard"):  # each worker validated its shard; together, every instance once
        lines = (tmp_path / "run" / "predictions" / f"{name}_epoch_0.jsonl").read_text().splitlines()
        assert [json.loads(line)["index"] for line in lines] == list(range(64))

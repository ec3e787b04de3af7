"""``regimen evaluate`` and ``load_archive`` on a real trained run: metrics, predictions, archives and errors."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
import torch

from regimen.data import CsvReader
from regimen.models.archival import load_archive
from tests.conftest import FIXTURES, run_cli

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")
TEST_DATA = str(FIXTURES / "data" / "blobs" / "test.csv")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("runs") / "blobs"
    overrides = '{"include_in_archive": ["metrics_epoch_*.json"]}'
    result = run_cli("train", CONFIG, "-s", str(directory), "-o", overrides)
    assert result.returncode == 0, result.stderr
    return directory


def test_the_archive_holds_config_weights_meta_and_the_included_files(run):
    with tarfile.open(run / "model.tar.gz") as archive:
        names = set(archive.getnames())
    assert names == {"config.json", "meta.json", "weights.th"} | {f"metrics_epoch_{i}.json" for i in range(3)}


def test_evaluate_reproduces_the_test_metrics_and_writes_one_prediction_per_instance(run, tmp_path):
    output, predictions = tmp_path / "metrics.json", tmp_path / "predictions.jsonl"
    result = run_cli(
        "evaluate",
        str(run / "model.tar.gz"),
        TEST_DATA,
        "--output-file",
        str(output),
        "--predictions-output-file",
        str(predictions),
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads(output.read_text())
    assert json.loads(result.stdout) == metrics
    trained = json.loads((run / "metrics.json").read_text())
    assert metrics["accuracy"] == trained["test_accuracy"]
    assert metrics["loss"] == pytest.approx(trained["test_loss"], rel=1e-6)
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    labels = [instance["label"] for instance in CsvReader(label_column="label").read(TEST_DATA)]
    assert len(lines) == len(labels) == 64
    assert set(lines[0]) == {"logits", "probs"} and len(lines[0]["probs"]) == 2
    # The predictions are in file order: scoring them against the file's labels gives the reported accuracy.
    correct = sum(max(range(2), key=line["probs"].__getitem__) == label for line, label in zip(lines, labels))
    assert correct / len(labels) == metrics["accuracy"]


def test_a_run_directory_without_its_archive_is_evaluated_from_config_and_best_weights(run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "model.tar.gz").unlink()
    from_directory = run_cli("evaluate", str(copy), TEST_DATA, "--batch-size", "5")
    from_archive = run_cli("evaluate", str(run / "model.tar.gz"), TEST_DATA)
    assert from_directory.returncode == 0, from_directory.stderr
    assert json.loads(from_directory.stdout)["accuracy"] == json.loads(from_archive.stdout)["accuracy"]


def test_load_archive_gives_the_best_model_in_eval_mode(run):
    archive = load_archive(run / "model.tar.gz")
    assert not archive.model.training
    assert archive.config["trainer"]["num_epochs"] == 3 and archive.meta["command"][1] == "train"
    best = torch.load(run / "best.th", weights_only=True)
    for name, value in archive.model.state_dict().items():
        assert torch.equal(value, best[name]), name


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["no/such/model.tar.gz", TEST_DATA], "no/such/model.tar.gz: no such archive or run directory"),
        (["{run}/model.tar.gz", "no/such.csv"], 'input_file: file not found: no/such.csv (read by the "csv" reader'),
        (["{run}/config.json", TEST_DATA], "config.json: not a model archive"),
        (["{run}/model.tar.gz", TEST_DATA, "--batch-size", "0"], "--batch-size must be positive, got 0"),
        (
            ["{run}/model.tar.gz", TEST_DATA, "-o", '{"model.hiden_dims": [3]}'],
            'model.hiden_dims: unknown key "hiden_dims"; did you mean "hidden_dims"?',
        ),
    ],
)
def test_bad_evaluate_arguments_exit_2_with_one_message(run, arguments, message):
    result = run_cli("evaluate", *[argument.replace("{run}", str(run)) for argument in arguments])
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("regimen: configuration error:") and message in result.stderr
    assert "Traceback" not in result.stderr

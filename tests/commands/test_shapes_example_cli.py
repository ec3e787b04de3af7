"""The image example, as a user runs it: ``training_config/shapes.jsonnet`` trains a small CNN on the PNG images in
``data/shapes`` (read by ImageFolder through the ``torch_dataset`` reader) to an accuracy far above chance, and
its archive evaluates the test images to the same numbers."""

from __future__ import annotations

import json

from tests.conftest import ROOT, run_cli

CONFIG = str(ROOT / "training_config" / "shapes.jsonnet")
CHANCE = 0.25  # four classes, 20 test images each


def test_the_shapes_example_trains_a_cnn_well_above_chance_and_its_archive_evaluates_the_same(tmp_path):
    directory = tmp_path / "shapes"
    result = run_cli("train", CONFIG, "-s", str(directory))
    assert result.returncode == 0, result.stderr
    log = (directory / "out.log").read_text()
    assert "read 240 instances from data/shapes/train" in log and "read 80 instances from data/shapes/test" in log
    metrics = json.loads((directory / "metrics.json").read_text())
    assert metrics["training_epochs"] == 30
    assert metrics["best_validation_accuracy"] >= 0.8 and metrics["test_accuracy"] >= 3 * CHANCE
    evaluated = run_cli("evaluate", str(directory / "model.tar.gz"), "data/shapes/test")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["accuracy"] == metrics["test_accuracy"]

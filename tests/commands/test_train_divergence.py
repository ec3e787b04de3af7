"""A run whose training loss stops being finite, through `regimen train`: the message says what the run knows."""

from __future__ import annotations

import json

from tests.conftest import FIXTURES, run_cli

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")


def test_a_nan_in_the_data_stops_the_run_with_what_the_config_set(tmp_path):
    rows = (FIXTURES / "data" / "blobs" / "train.csv").read_text().splitlines()
    rows[20] = "nan,1.0,1.0,1.0,0"  # one bad value, as a broken export leaves it
    data = tmp_path / "train.csv"
    data.write_text("\n".join(rows) + "\n")
    # The config sets no learning rate: Adam's default is named, not "lower the learning rate" you never set.
    overrides = {"train_data_path": str(data), "trainer.optimizer": {"type": "adam"}, "evaluate_on_test": False}
    result = run_cli("train", CONFIG, "-s", str(tmp_path / "run"), "-o", json.dumps(overrides))
    assert result.returncode == 1
    assert "the training loss became nan at epoch 0" in result.stderr
    assert "Adam ran at lr 0.001, its default: the config sets no learning rate, gradients unclipped." in result.stderr
    assert "Check the data for NaN or inf values" in result.stderr
    log = (tmp_path / "run" / "out.log").read_text()  # the crash, with its traceback, is in the run's log
    assert "the run failed at epoch 0, batch " in log and "of training: the training loss became nan" in log
    assert "Traceback" in log

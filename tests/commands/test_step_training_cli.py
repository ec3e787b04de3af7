"""Step-based training done right, through ``regimen train`` (autrainer's ``training_type: step`` with
``eval_frequency`` and ``save_frequency``): the end of a run is always a validation point, and checkpoints can be
due by optimizer steps across epochs or every few epochs. The blobs data has 400 instances: with batches of 8, an
epoch is 50 optimizer steps."""

from __future__ import annotations

import json

from tests.conftest import FIXTURES, run_cli

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")


def train(tmp_path, overrides):
    result = run_cli("train", CONFIG, "-s", str(tmp_path / "run"), "-o", json.dumps(overrides))
    assert result.returncode == 0, result.stderr
    return tmp_path / "run"


def names(run, pattern):
    return sorted(path.name for path in run.glob(pattern))


def test_a_step_budget_validates_after_its_last_step(tmp_path):
    # 70 steps, validating every 30: at 30, 60, and at 70 where the run ends (not a multiple of 30).
    run = train(tmp_path, {"trainer.num_steps": 70, "trainer.validate_every_num_steps": 30})
    assert names(run, "metrics_step_*.json") == ["metrics_step_30.json", "metrics_step_60.json", "metrics_step_70.json"]
    last = json.loads((run / "metrics_step_70.json").read_text())
    assert "validation_loss" in last
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["validation_loss"] == last["validation_loss"]  # the final metrics are the last validation's


def test_an_epoch_interval_validates_the_last_epoch_too(tmp_path):
    run = train(tmp_path, {"trainer.num_epochs": 3, "trainer.validate_every_num_epochs": 2})
    validated = ["validation_loss" in json.loads((run / f"metrics_epoch_{e}.json").read_text()) for e in range(3)]
    assert validated == [False, True, True]


def test_step_checkpoints_count_optimizer_steps_across_epochs(tmp_path):
    keep_all = {"keep_most_recent_by_count": None, "save_completed_epochs": False}
    by_steps = train(tmp_path / "steps", {"trainer.num_steps": 70, "trainer.checkpointer": {
        **keep_all, "save_every_num_steps": 30}})  # fmt: skip
    assert names(by_steps, "model_state_*.th") == ["model_state_e0_b30.th", "model_state_e1_b10.th"]  # steps 30, 60
    by_batches = train(tmp_path / "batches", {"trainer.num_steps": 70, "trainer.checkpointer": {
        **keep_all, "save_every_num_batches": 30}})  # fmt: skip
    assert names(by_batches, "model_state_*.th") == ["model_state_e0_b30.th"]  # the count restarts each epoch


def test_epoch_checkpoints_every_few_epochs(tmp_path):
    run = train(tmp_path, {"trainer.num_epochs": 4, "trainer.checkpointer": {
        "keep_most_recent_by_count": None, "save_every_num_epochs": 2}})  # fmt: skip
    assert names(run, "model_state_*.th") == ["model_state_e2_b0.th", "model_state_e4_b0.th"]

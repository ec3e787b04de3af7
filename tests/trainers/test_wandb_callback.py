"""The `wandb` callback as a user runs it: ``regimen train`` in a subprocess with ``WANDB_MODE=offline``, the
offline run read back with ``wandb leet inspect --json`` (W&B's own reader of its ``.wandb`` log)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from regimen.models import Model
from regimen.registry import ConfigurationError, Params
from regimen.trainers import Trainer
from tests.conftest import FIXTURES, ROOT, run_cli

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")
# The parameters of blobs.jsonnet's model (an MLP with one hidden layer), as W&B keys name them.
PARAMETERS = {"network.0.weight", "network.0.bias", "network.3.weight", "network.3.bias"}
CALLBACK = {
    "type": "wandb",
    "summary_interval": 10,
    "distribution_interval": 25,
    "batch_size_interval": 20,
    "should_log_learning_rate": True,
    "project": "regimen-tests",
    "group": "blobs",
    "name": "blobs-offline",
    "notes": "a tiny run logged offline",
    "tags": ["tiny", "blobs"],
    "wandb_kwargs": {"job_type": "test"},
}
# 400 training instances in batches of 8: 50 optimizer steps an epoch.
OVERRIDES = {"trainer.num_epochs": 2, "trainer.grad_norm": True, "trainer.callbacks": [CALLBACK]}


def offline_environment(home: Path) -> dict[str, str]:
    """No network, no prompts, nothing written outside the test's directories."""
    return {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DISABLE_GIT": "true",
        "WANDB_DISABLE_CODE": "true",
        "WANDB_CONFIG_DIR": str(home / "config"),
        "WANDB_CACHE_DIR": str(home / "cache"),
        "WANDB_DATA_DIR": str(home / "data"),
    }


def records(run_directory: Path) -> list[dict[str, Any]]:
    """The records of an offline run's ``.wandb`` log, as W&B's CLI prints them."""
    command = [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_directory)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def history(run_records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The logged values of each step."""
    rows: dict[int, dict[str, Any]] = {}
    for record in run_records:
        if record["type"] == "history":
            rows.setdefault(record["history"]["step"]["num"], {}).update(record["history"]["item"])
    return rows


def steps_with(rows: dict[int, dict[str, Any]], key: str) -> list[int]:
    return sorted(step for step, values in rows.items() if key in values)


class Logged:
    """A run directory and the records of its two offline W&B runs (before and after ``--recover``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.runs = sorted((directory / "wandb").glob("offline-run-*"))
        self.first, self.second = (records(run) for run in self.runs)


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> Logged:
    """Two epochs logged offline, then a third after ``--recover`` (num_epochs raised to 3)."""
    home = tmp_path_factory.mktemp("wandb_home")
    directory = tmp_path_factory.mktemp("runs") / "blobs"
    environment = offline_environment(home)
    first = run_cli("train", CONFIG, "-s", str(directory), "-o", json.dumps(OVERRIDES), env=environment)
    assert first.returncode == 0, first.stderr
    assert len(list((directory / "wandb").glob("offline-run-*"))) == 1
    raised = json.dumps({**OVERRIDES, "trainer.num_epochs": 3})
    second = run_cli("train", CONFIG, "-s", str(directory), "-o", raised, "--recover", env=environment)
    assert second.returncode == 0, second.stderr
    return Logged(directory)


def run_record(run_records: list[dict[str, Any]]) -> dict[str, Any]:
    return next(record["run"] for record in run_records if record["type"] == "run")


def test_the_run_records_the_config_name_notes_group_tags_and_project(logged):
    run = run_record(logged.first)
    config = {key: value for key, value in run["config"]["update"].items() if key != "_wandb"}
    first_config = json.loads((logged.directory / "config.json").read_text())
    first_config["trainer"]["num_epochs"] = 2  # config.json now holds the recovered run's raised budget
    assert config == first_config
    assert (run["display_name"], run["notes"], run["run_group"]) == (
        "blobs-offline",
        "a tiny run logged offline",
        "blobs",
    )
    assert (run["tags"], run["project"], run["job_type"]) == (["tiny", "blobs"], "regimen-tests", "test")


def test_batch_statistics_are_logged_at_their_intervals_of_optimizer_steps(logged):
    rows = history(logged.first)
    assert steps_with(rows, "train/batch_loss") == list(range(10, 101, 10))
    assert steps_with(rows, "train/batch_loss_mov_avg") == list(range(10, 101, 10))
    assert rows[10]["train/batch_loss_mov_avg"] == pytest.approx(rows[10]["train/batch_loss"])  # one loss so far
    assert steps_with(rows, "gradient_norm") == list(range(10, 101, 10))
    assert {key.split("/", 1)[1] for key in rows[10] if key.startswith("parameter_mean/")} == PARAMETERS
    assert {key.split("/", 1)[1] for key in rows[10] if key.startswith("parameter_std/")} == PARAMETERS
    assert {rows[10][f"learning_rate/{name}"] for name in PARAMETERS} == {0.01}
    # batch_size_interval counts the steps of each epoch: its 20th and 40th.
    assert steps_with(rows, "train/batch_size") == [20, 40, 70, 90]
    assert rows[40]["train/batch_size"] == 8 and rows[40]["train/mean_batch_size"] == 8
    for name in PARAMETERS:
        assert steps_with(rows, f"gradient_update/{name}") == [25, 50, 75, 100]
        assert 0 < rows[25][f"gradient_update/{name}"] < 1
        assert steps_with(rows, f"parameter_histogram/{name}.bins") == [25, 50, 75, 100]


def test_each_epoch_logs_train_and_validation_metrics_with_the_epoch(logged):
    rows = history(logged.first)
    assert steps_with(rows, "epoch") == [50, 100]
    for epoch, step in ((0, 50), (1, 100)):
        written = json.loads((logged.directory / f"metrics_epoch_{epoch}.json").read_text())
        assert rows[step]["epoch"] == epoch
        assert rows[step]["train/accuracy"] == pytest.approx(written["training_accuracy"])
        assert rows[step]["train/loss"] == pytest.approx(written["training_loss"])
        assert rows[step]["validation/accuracy"] == pytest.approx(written["validation_accuracy"])
        assert rows[step]["validation/loss"] == pytest.approx(written["validation_loss"])
    assert not any(key.startswith(("train/best", "validation/best")) for key in rows[50])


def test_files_to_save_are_saved_with_the_run(logged):
    files = logged.runs[0] / "files"
    saved = [record["files"]["files"] for record in logged.first if record["type"] == "files"]
    assert {"config.json", "out.log"} <= {file["path"] for group in saved for file in group}
    assert (files / "config.json").read_text() == (logged.directory / "config.json").read_text()
    assert "epoch 1: accuracy" in (files / "out.log").read_text()


def test_recover_continues_the_same_wandb_run_from_the_checkpointed_step(logged):
    run_id = run_record(logged.first)["run_id"]
    assert run_record(logged.second)["run_id"] == run_id and logged.runs[1].name.endswith(run_id)
    rows = history(logged.second)
    assert steps_with(rows, "train/batch_loss") == list(range(110, 151, 10))
    assert steps_with(rows, "epoch") == [150] and rows[150]["epoch"] == 2
    # The moving average goes on over the losses logged before the recovery.
    losses = [history(logged.first)[step]["train/batch_loss"] for step in range(10, 101, 10)]
    losses.append(rows[110]["train/batch_loss"])
    assert rows[110]["train/batch_loss_mov_avg"] == pytest.approx(sum(losses) / len(losses))
    exits = [record["exit"].get("exit_code", 0) for record in logged.first + logged.second if record["type"] == "exit"]
    assert exits == [0, 0]


def test_without_the_wandb_package_the_callback_is_a_configuration_error_saying_what_to_install(tmp_path):
    # sys.modules[name] = None is Python's own way to make a module unimportable: wandb is as if not installed.
    hide = tmp_path / "hide_wandb"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['wandb'] = None\n")
    directory = tmp_path / "run"
    result = run_cli(
        "train",
        CONFIG,
        "-s",
        str(directory),
        "-o",
        json.dumps({"trainer.callbacks": ["wandb"]}),
        env={"PYTHONPATH": f"{hide}{os.pathsep}{ROOT}"},
    )
    assert result.returncode == 2
    assert (
        'trainer.callbacks.0.type: "wandb" needs the wandb package, which is not installed: '
        "pip install regimen[wandb] (or pip install wandb)" in result.stderr
    )
    assert not directory.exists()


@pytest.mark.parametrize(
    ("callback", "message"),
    [
        (
            {"type": "wandb", "wandb_kwargs": {"project": "x"}},
            "trainer.callbacks.0.wandb_kwargs.project: is set by the callback: use the callback's own `project` key",
        ),
        (
            {"type": "wandb", "wandb_kwargs": {"id": "abc"}},
            "trainer.callbacks.0.wandb_kwargs.id: is set by the callback: the run id is chosen by W&B and kept in "
            "checkpoints, so that --recover continues the same run",
        ),
        (
            {"type": "wandb", "wandb_kwargs": {"job_typ": "test"}},
            'trainer.callbacks.0.wandb_kwargs.job_typ: unknown wandb.init argument "job_typ"; did you mean "job_type"?',
        ),
        ({"type": "wandb", "summary_interval": 0}, "trainer.callbacks.0.summary_interval: must be positive, got 0"),
        ({"type": "wandb", "tags": "one"}, "trainer.callbacks.0.tags: expected"),
    ],
)
def test_bad_wandb_keys_are_configuration_errors_naming_the_key(callback, message):
    torch.manual_seed(0)
    model = Model.from_params(Params({"type": "mlp_classifier", "input_dim": 4, "num_classes": 2}))
    batches = [{"features": torch.randn(8, 4), "label": torch.randint(0, 2, (8,))}]
    with pytest.raises(ConfigurationError) as info:
        Trainer.from_params(
            Params({"num_epochs": 1, "cuda_device": -1, "callbacks": [callback]}, "trainer"),
            model=model,
            data_loader=batches,
        )
    assert any(str(error).startswith(message) for error in info.value.errors), str(info.value)

"""The `mlflow` callback as a user runs it: ``regimen train`` in a subprocess logging to a SQLite or a file store,
read back with MLflow's own client (``MlflowClient``): params, epoch metrics, learning rates, artifacts, tags,
``--recover`` continuing the same run, a bad URI refused before training, a store that breaks while training."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path
from typing import Any

import mlflow.tracking as mlflow_tracking
import pytest

from tests.conftest import FIXTURES, ROOT, run_cli

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")
# The runs start in a temporary directory (MLflow keeps a SQLite store's artifacts in ./mlruns), so the data
# paths, relative to the repository in blobs.jsonnet, are given whole.
DATA = {
    f"{split}_data_path": str(FIXTURES / "data" / "blobs" / f"{split}.csv") for split in ("train", "validation", "test")
}
# The learning rate halves after every epoch, so that each epoch's logged rate is a different number.
SCHEDULE = {"type": "step", "step_size": 1, "gamma": 0.5}


def train(directory: Path, callbacks: list[Any], *arguments: str, env: dict | None = None, **overrides: Any):
    config = {**DATA, "trainer.learning_rate_scheduler": SCHEDULE, "trainer.callbacks": callbacks, **overrides}
    return run_cli(
        "train", CONFIG, "-s", str(directory), "-o", json.dumps(config), *arguments, cwd=directory.parent, env=env
    )


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((metric.step, metric.value) for metric in client.get_metric_history(run_id, key))


def epoch_file(directory: Path, epoch: int) -> dict[str, Any]:
    return json.loads((directory / f"metrics_epoch_{epoch}.json").read_text())


SIGTERM_PLUGIN = """
import os
import signal

from regimen.trainers import TrainerCallback


@TrainerCallback.register("sigterm_at")
class SigtermAt(TrainerCallback):
    \"\"\"SIGTERM to this process after the given optimizer step of the run, as a scheduler pre-empting it.\"\"\"

    def __init__(self, step: int, serialization_dir=None):
        super().__init__(serialization_dir)
        self.step = step

    def on_batch(self, trainer, *args, **kwargs):
        if trainer._total_steps == self.step:  # the run's step count, which goes on after --recover
            os.kill(os.getpid(), signal.SIGTERM)
"""


class Logged:
    """A run directory logged to a SQLite store: stopped by SIGTERM in its second epoch, then ``--recover``ed
    with its budget raised to three epochs."""

    def __init__(self, directory: Path, uri: str, interrupted_status: str) -> None:
        self.directory = directory
        self.client = mlflow_tracking.MlflowClient(uri)
        self.experiment = self.client.get_experiment_by_name("regimen-tests")
        self.runs = self.client.search_runs([self.experiment.experiment_id])
        self.run = self.runs[0]
        self.run_id = self.run.info.run_id
        self.interrupted_status = interrupted_status

    def history(self, key: str) -> list[tuple[int, float]]:
        return history(self.client, self.run_id, key)

    def artifact(self, name: str) -> Path:
        return Path(self.client.download_artifacts(self.run_id, name, str(self.directory.parent / "downloads")))


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> Logged:
    base = tmp_path_factory.mktemp("mlflow_sqlite")
    (base / "sigterm_plugin.py").write_text(SIGTERM_PLUGIN)
    uri = f"sqlite:///{base / 'store' / 'mlflow.db'}"
    callback = {
        "type": "mlflow",
        "tracking_uri": uri,
        "experiment_name": "regimen-tests",
        "run_name": "blobs-sqlite",
        "tags": {"purpose": "tests", "data": "blobs"},
        "log_model": True,
    }
    # 50 optimizer steps an epoch: SIGTERM at the 60th stops the run in the middle of epoch 1.
    callbacks = [{"type": "sigterm_at", "step": 60}, callback]
    plugin = ("--include-package", "sigterm_plugin")
    env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{base}"}
    directory = base / "blobs"
    first = train(directory, callbacks, *plugin, env=env, **{"trainer.num_epochs": 2})
    assert first.returncode == 75, first.stderr
    client = mlflow_tracking.MlflowClient(uri)
    (interrupted,) = client.search_runs([client.get_experiment_by_name("regimen-tests").experiment_id])
    second = train(directory, callbacks, *plugin, "--recover", env=env, **{"trainer.num_epochs": 3})
    assert second.returncode == 0, second.stderr
    return Logged(directory, uri, interrupted.info.status)


def test_the_params_are_the_flattened_config_and_the_run_has_its_name_tags_and_experiment(logged):
    params = logged.run.data.params
    assert params["trainer.optimizer.lr"] == "0.01" and params["trainer.optimizer.type"] == "adam"
    assert params["model.hidden_dims"] == "[8]" and params["model.dropout"] == "0.1"
    assert params["trainer.learning_rate_scheduler.gamma"] == "0.5" and params["evaluate_on_test"] == "true"
    assert params["trainer.callbacks.0.type"] == "sigterm_at" and params["trainer.callbacks.1.tags.purpose"] == "tests"
    assert params["trainer.num_epochs"] == "2"  # MLflow keeps a param's first value; config.json has the new one
    assert logged.run.info.run_name == "blobs-sqlite"
    tags = logged.run.data.tags
    assert (tags["purpose"], tags["data"]) == ("tests", "blobs")
    assert tags["regimen.serialization_dir"] == str(logged.directory)
    assert json.loads(logged.artifact("config.json").read_text()) == json.loads(
        (logged.directory / "config.json").read_text()
    )


def test_each_epoch_logs_the_numbers_of_its_metrics_file_with_the_epoch_as_step(logged):
    epochs = [epoch_file(logged.directory, epoch) for epoch in range(3)]
    for key in ("training_loss", "training_accuracy", "validation_loss", "validation_accuracy"):
        assert logged.history(key) == [(epoch, pytest.approx(values[key])) for epoch, values in enumerate(epochs)]
    for key in ("best_validation_accuracy", "best_epoch", "epoch"):
        assert logged.history(key) == [(epoch, pytest.approx(values[key])) for epoch, values in enumerate(epochs)]


def test_each_epoch_logs_the_learning_rate_of_its_first_step(logged):
    # Epoch 1's rate was read before the interruption, in its first step, and kept in the checkpoint.
    assert logged.history("learning_rate/group0") == [(0, 0.01), (1, 0.005), (2, 0.0025)]


def test_the_final_metrics_and_the_model_archive_are_artifacts(logged):
    metrics = json.loads((logged.directory / "metrics.json").read_text())
    assert json.loads(logged.artifact("metrics.json").read_text()) == metrics
    assert logged.history("test_accuracy")[-1] == (2, pytest.approx(metrics["test_accuracy"]))
    with (
        tarfile.open(logged.artifact("model.tar.gz")) as logged_archive,
        tarfile.open(logged.directory / "model.tar.gz") as written,
    ):
        assert (
            sorted(logged_archive.getnames())
            == sorted(written.getnames())
            == ["config.json", "meta.json", "weights.th"]
        )
        for name in written.getnames():
            assert logged_archive.extractfile(name).read() == written.extractfile(name).read(), name
    assert {artifact.path for artifact in logged.client.list_artifacts(logged.run_id)} == {
        "config.json",
        "metrics.json",
        "model.tar.gz",
    }


def test_recover_continues_the_same_run_without_logging_a_step_twice(logged):
    assert logged.interrupted_status == "KILLED"  # stopped by a signal, to be recovered
    assert len(logged.runs) == 1 and logged.run.info.status == "FINISHED"
    assert [step for step, _ in logged.history("training_loss")] == [0, 1, 2]
    assert [step for step, _ in logged.history("learning_rate/group0")] == [0, 1, 2]
    assert [step for step, _ in logged.history("test_accuracy")] == [2]  # the interrupted invocation had none
    log = (logged.directory / "out.log").read_text()
    assert log.count(f"MLflow: logging to run {logged.run_id}") == 2
    assert "trainer.num_epochs (logged 2, now 3) keep the values logged before the recovery" in log


BREAKS_PLUGIN = '''
import os

from regimen.trainers import TrainerCallback


@TrainerCallback.register("move_away")
class MoveAway(TrainerCallback):
    """Moves a directory away after the given epoch, as a store deleted while training is."""

    def __init__(self, path: str, epoch: int, serialization_dir=None):
        super().__init__(serialization_dir)
        self.path, self.epoch = path, epoch

    def on_epoch(self, trainer, metrics, epoch, is_primary=True, **kwargs):
        if epoch == self.epoch:
            os.rename(self.path, self.path + ".moved")
'''


def test_a_file_store_deleted_while_training_is_one_warning_and_the_run_finishes_normally(tmp_path, monkeypatch):
    (tmp_path / "breaks_store.py").write_text(BREAKS_PLUGIN)
    store = tmp_path / "mlruns"
    callbacks = [
        {"type": "move_away", "path": str(store), "epoch": 1},  # before the mlflow callback: epoch 1 finds it gone
        {"type": "mlflow", "tracking_uri": str(store), "experiment_name": "file-store"},
    ]
    env = {"MLFLOW_ALLOW_FILE_STORE": "true", "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    directory = tmp_path / "run"
    result = train(directory, callbacks, "--include-package", "breaks_store", env=env, **{"trainer.num_epochs": 3})
    assert result.returncode == 0, result.stderr
    metrics = json.loads((directory / "metrics.json").read_text())
    assert metrics["training_epochs"] == 3 and (directory / "model.tar.gz").is_file()
    warnings = [line for line in (directory / "out.log").read_text().splitlines() if " WARNING " in line]
    assert len(warnings) == 1, warnings
    assert f"MLflow: logging epoch 1 failed at {store.as_uri()} (" in warnings[0]
    assert "nothing more of this training is logged to MLflow (run " in warnings[0]
    assert warnings[0].endswith(f"which goes on: its metrics are in {directory}")
    # What was logged before the store went away is in it, where it was moved to.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow_tracking.MlflowClient(Path(f"{store}.moved").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("file-store").experiment_id])
    assert run.data.params["trainer.num_epochs"] == "3" and run.info.run_name == "run"
    assert history(client, run.info.run_id, "training_loss") == [
        (0, pytest.approx(epoch_file(directory, 0)["training_loss"]))
    ]
    assert run.info.status == "RUNNING"  # nothing could end it


def test_a_bad_tracking_uri_exits_2_naming_the_key_and_nothing_is_trained_or_written(tmp_path):
    directory = tmp_path / "run"
    result = train(directory, ["console_logger", {"type": "mlflow", "tracking_uri": "ftp://example.com/runs"}])
    assert result.returncode == 2
    assert (
        'trainer.callbacks.1.tracking_uri: "ftp://example.com/runs" has the scheme "ftp", which MLflow tracking '
        "does not support; expected one of " in result.stderr
    )
    assert "epoch 0" not in result.stderr and not directory.exists()
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()


def test_without_the_mlflow_package_the_callback_is_a_configuration_error_saying_what_to_install(tmp_path):
    # sys.modules[name] = None is Python's own way to make a module unimportable: mlflow is as if not installed.
    hide = tmp_path / "hide_mlflow"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['mlflow'] = None\n")
    directory = tmp_path / "run"
    result = train(directory, ["mlflow"], env={"PYTHONPATH": f"{hide}{os.pathsep}{ROOT}"})
    assert result.returncode == 2
    assert (
        'trainer.callbacks.0.type: "mlflow" needs the mlflow package, which is not installed: '
        "pip install 'regimen[mlflow]' (or pip install mlflow)" in result.stderr
    )
    assert not directory.exists()

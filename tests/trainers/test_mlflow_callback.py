"""The `mlflow` callback in a trainer built in this process: its config errors (each naming its key, before
anything is trained), step validations, a server that is down, workers other than the primary. The runs of
``regimen train`` as a user starts them are in ``tests/commands/test_mlflow_cli.py``."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import mlflow.tracking as mlflow_tracking
import pytest

from regimen.registry import ConfigurationError
from regimen.trainers.callbacks.mlflow import MLflowCallback, flatten_config
from tests.trainers.test_gradient_descent import make_trainer


def build_with(callback: dict, **extras):
    return make_trainer({"num_epochs": 1, "callbacks": [callback]}, **extras)


def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "a_file"
    path.write_text("not a directory\n")
    return path


@pytest.mark.parametrize(
    ("callback", "message"),
    [
        (
            {"tracking_uri": "s3://bucket/runs"},
            'trainer.callbacks.0.tracking_uri: "s3://bucket/runs" has the scheme "s3", which MLflow tracking does '
            "not support; expected one of ",
        ),
        ({"tracking_uri": "http://:5000"}, 'trainer.callbacks.0.tracking_uri: "http://:5000" names no host'),
        ({"tracking_uri": "http://localhost:port"}, 'trainer.callbacks.0.tracking_uri: "http://localhost:port" is mal'),
        ({"tracking_uri": "sqlite:/x.db"}, 'trainer.callbacks.0.tracking_uri: "sqlite:/x.db" is malformed: write sql'),
        ({"tracking_uri": "sqlite://"}, 'trainer.callbacks.0.tracking_uri: "sqlite://" is an in-memory database'),
        ({"tracking_uri": "  "}, "trainer.callbacks.0.tracking_uri: is empty: give a tracking URI, or leave it out"),
        ({"tags": {"bad(name)": "x"}}, "trainer.callbacks.0.tags.bad(name): is not a tag name MLflow accepts"),
        ({"tags": {"team": 3}}, "trainer.callbacks.0.tags.team: expected"),
        ({"experiment_name": ""}, "trainer.callbacks.0.experiment_name: is empty"),
    ],
)
def test_bad_mlflow_keys_are_configuration_errors_naming_the_key(callback, message):
    with pytest.raises(ConfigurationError) as info:
        build_with({"type": "mlflow", **callback})
    assert any(str(error).startswith(message) for error in info.value.errors), str(info.value)


def test_a_local_store_that_cannot_be_created_is_an_error_naming_the_key(tmp_path, monkeypatch):
    blocker = a_file(tmp_path)
    with pytest.raises(ConfigurationError) as info:
        build_with({"type": "mlflow", "tracking_uri": f"sqlite:///{blocker}/runs/mlflow.db"})
    assert str(info.value) == (
        f'trainer.callbacks.0.tracking_uri: "sqlite:///{blocker}/runs/mlflow.db": it cannot be created: '
        f"{blocker} is a file, not a directory"
    )
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    with pytest.raises(ConfigurationError) as info:
        build_with({"type": "mlflow", "tracking_uri": str(blocker)})  # a path is a file store
    assert str(info.value) == (
        f'trainer.callbacks.0.tracking_uri: "{blocker.as_uri()}": {blocker} is a file, not a directory'
    )


def test_a_file_store_that_mlflow_refuses_is_an_error_saying_how_to_allow_it_or_what_to_use(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    store = tmp_path / "mlruns"
    with pytest.raises(ConfigurationError) as info:
        build_with({"type": "mlflow", "tracking_uri": f"file:{store}"})
    assert str(info.value) == (
        f'trainer.callbacks.0.tracking_uri: "file:{store}" is a file store, which this MLflow refuses unless '
        "MLFLOW_ALLOW_FILE_STORE=true (file stores are in maintenance mode): use a database, such as "
        f"sqlite:///{tmp_path / 'mlflow.db'}, or set MLFLOW_ALLOW_FILE_STORE=true"
    )
    assert not store.exists()  # checking created nothing


def test_the_default_tracking_uri_is_mlflows_from_its_variable_resolved_when_the_config_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///tracking/mlflow.db")
    assert MLflowCallback().tracking_uri == f"sqlite:///{tmp_path / 'tracking' / 'mlflow.db'}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert MLflowCallback().tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"  # MLflow 3's default
    assert (
        MLflowCallback(tracking_uri="sqlite:///x.db?timeout=5").tracking_uri == f"sqlite:///{tmp_path}/x.db?timeout=5"
    )
    assert not any(tmp_path.iterdir())  # building the callback wrote nothing


def test_the_config_is_flattened_to_params_as_error_messages_name_its_keys():
    config = {
        "model": {"type": "mlp", "hidden_dims": [8, 4], "dropout": 0.1, "extra": {}},
        "trainer": {"callbacks": ["console_logger", {"type": "mlflow", "log_model": True}], "patience": None},
        "optimizer": {"parameter_groups": [[["^bias"], {"weight_decay": 0}]]},
    }
    assert flatten_config(config) == {
        "model.type": "mlp",
        "model.hidden_dims": "[8, 4]",
        "model.dropout": "0.1",
        "model.extra": "{}",
        "trainer.callbacks.0": "console_logger",
        "trainer.callbacks.1.type": "mlflow",
        "trainer.callbacks.1.log_model": "true",
        "trainer.patience": "null",
        "optimizer.parameter_groups.0.0": '["^bias"]',
        "optimizer.parameter_groups.0.1.weight_decay": "0",
    }


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((metric.step, metric.value) for metric in client.get_metric_history(run_id, key))


def test_step_validations_are_logged_at_their_optimizer_step_and_epoch_metrics_at_their_epoch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a sqlite store keeps artifacts in ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    directory = tmp_path / "run"
    callback = {"type": "mlflow", "tracking_uri": uri, "experiment_name": "steps"}
    # 8 steps per epoch: epoch 0 validated at steps 4 and 8, epoch 1 (cut short by num_steps) at step 12.
    config = {"num_steps": 12, "validate_every_num_steps": 4, "callbacks": [callback]}
    # The command writes config.json; this one has more params than one MLflow call takes, and a long value.
    directory.mkdir()
    experiment = {"trainer": config, "notes": "x" * 7000, "many": {f"key{i}": i for i in range(250)}}
    (directory / "config.json").write_text(json.dumps(experiment))
    make_trainer(config, serialization_dir=str(directory)).train()
    client = mlflow_tracking.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("steps").experiment_id])
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    params = run.data.params  # the 250 of `many`, `notes` and the trainer's 5
    assert len(params) == 250 + 1 + 5 and params["many.key249"] == "249" and params["trainer.num_steps"] == "12"
    assert params["notes"] == "x" * 5997 + "..."  # MLflow keeps 6000 characters of a param
    for step in (4, 8, 12):
        written = json.loads((directory / f"metrics_step_{step}.json").read_text())
        assert dict(history(client, run.info.run_id, "validation_loss"))[step] == pytest.approx(
            written["validation_loss"]
        )
    assert [step for step, _ in history(client, run.info.run_id, "validation_accuracy")] == [4, 8, 12]
    epochs = [json.loads((directory / f"metrics_epoch_{i}.json").read_text()) for i in range(2)]
    assert history(client, run.info.run_id, "training_loss") == [
        (i, pytest.approx(epoch["training_loss"])) for i, epoch in enumerate(epochs)
    ]
    assert history(client, run.info.run_id, "best_validation_loss") == [
        (i, pytest.approx(epoch["best_validation_loss"])) for i, epoch in enumerate(epochs)
    ]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once it is closed


def test_a_server_that_is_down_is_one_warning_and_training_finishes(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own retries would take minutes
    uri = f"http://127.0.0.1:{closed_port()}"
    trainer = make_trainer(
        {"num_epochs": 3, "callbacks": [{"type": "mlflow", "tracking_uri": uri}]}, serialization_dir=str(tmp_path)
    )
    with caplog.at_level(logging.INFO):
        metrics = trainer.train()
    assert metrics["training_epochs"] == 3 and metrics["validation_accuracy"] > 0.9
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1, [record.getMessage() for record in warnings]
    message = warnings[0].getMessage()
    assert message.startswith(f"MLflow: starting the run failed at {uri} (MlflowException: API request to ")
    assert message.endswith(
        f"nothing more of this training is logged to MLflow (run not created), which goes on: its metrics are "
        f"in {tmp_path}"
    )


def test_only_the_primary_worker_logs(tmp_path):
    database = tmp_path / "mlflow.db"
    callback = MLflowCallback(serialization_dir=str(tmp_path), tracking_uri=f"sqlite:///{database}")
    callback.on_start(None, is_primary=False)
    callback.on_epoch(None, metrics={"training_loss": 1.0}, epoch=0, is_primary=False)
    callback.on_end(None, metrics={"training_loss": 1.0}, epoch=0, is_primary=False)
    assert not database.exists()  # the store was never opened

"""``regimen train`` as a user runs it, in a subprocess: the files of a run, the directory rules, recovery,
dry runs, overrides, plugins, and every kind of bad input exiting 2 with the directory left as it was."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT, run_cli

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")
# Metrics that legitimately differ between two runs of the same experiment.
VOLATILE = {
    "training_duration",
    "training_duration_this_run",
    "training_start_epoch",
    "training_epochs",
    "peak_worker_0_memory_MB",
}


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its content, to prove a failed command changed nothing."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def stable(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items() if key not in VOLATILE}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One complete three-epoch run, shared by the tests that only read it."""
    directory = tmp_path_factory.mktemp("runs") / "blobs"
    result = run_cli("train", CONFIG, "-s", str(directory))
    assert result.returncode == 0, result.stderr
    return directory


def test_a_run_writes_every_result_file_and_prints_its_metrics(finished_run):
    names = {p.name for p in finished_run.iterdir()}
    expected = {"config.json", "meta.json", "out.log", "metrics.json", "best.th", "model.tar.gz"}
    assert expected <= names
    assert {f"metrics_epoch_{i}.json" for i in range(3)} <= names
    assert any(name.startswith("model_state_e3") for name in names)
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.9 and metrics["best_validation_accuracy"] >= 0.9
    assert metrics["training_epochs"] == 3 and "test_loss" in metrics
    config = json.loads((finished_run / "config.json").read_text())
    assert config["trainer"]["num_epochs"] == 3 and next(iter(config)) == "dataset_reader"
    meta = json.loads((finished_run / "meta.json").read_text())
    assert meta["command"][:2] == ["regimen", "train"] and meta["torch_version"] and meta["regimen_version"]
    assert "epoch 2" in (finished_run / "out.log").read_text()


def test_an_existing_run_directory_is_refused_without_recover_or_force(finished_run):
    before = snapshot(finished_run)
    result = run_cli("train", CONFIG, "-s", str(finished_run))
    assert result.returncode == 2
    assert "already exists and is not empty: use --recover" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(finished_run) == before


def test_force_replaces_the_directory(tmp_path):
    directory = tmp_path / "run"
    directory.mkdir()
    (directory / "old_notes.txt").write_text("from another run")
    result = run_cli("train", CONFIG, "-s", str(directory), "--force", "-o", '{"trainer.num_epochs": 1}')
    assert result.returncode == 0, result.stderr
    assert not (directory / "old_notes.txt").exists() and (directory / "metrics.json").is_file()


def test_recover_and_force_together_are_refused(finished_run):
    result = run_cli("train", CONFIG, "-s", str(finished_run), "--recover", "--force")
    assert result.returncode == 2 and "not allowed with argument" in result.stderr


def test_recover_refuses_a_changed_config_listing_each_changed_key(finished_run):
    before = snapshot(finished_run)
    overrides = '{"trainer.optimizer.lr": 0.1, "data_loader.batch_size": 4, "trainer.patience": 2}'
    result = run_cli("train", CONFIG, "-s", str(finished_run), "--recover", "-o", overrides)
    assert result.returncode == 2
    assert "data_loader.batch_size: 8 -> 4" in result.stderr
    assert "trainer.optimizer.lr: 0.01 -> 0.1" in result.stderr
    assert "trainer.patience: (absent) -> 2" in result.stderr
    assert snapshot(finished_run) == before


def test_recover_without_a_run_to_recover_says_so(tmp_path):
    result = run_cli("train", CONFIG, "-s", str(tmp_path / "nothing"), "--recover")
    assert result.returncode == 2 and "does not exist, so there is no run to recover" in result.stderr
    assert "leave out --recover to start one" in result.stderr
    assert not (tmp_path / "nothing").exists()


def test_recover_on_a_directory_that_is_no_run_gives_advice_that_works(tmp_path):
    """Leaving out --recover would be refused (the directory is not empty), so the advice is --force."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not a run")
    result = run_cli("train", CONFIG, "-s", str(other), "--recover")
    assert result.returncode == 2 and "is not empty but holds no config.json, so it is no run to recover" in (
        result.stderr
    )
    assert "use --force to replace it" in result.stderr and "leave out --recover" not in result.stderr
    assert [path.name for path in other.iterdir()] == ["notes.txt"]


def test_raising_num_epochs_on_recover_continues_a_finished_run(tmp_path, finished_run):
    directory = tmp_path / "run"
    assert run_cli("train", CONFIG, "-s", str(directory), "-o", '{"trainer.num_epochs": 2}').returncode == 0
    result = run_cli("train", CONFIG, "-s", str(directory), "--recover")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((directory / "metrics.json").read_text())
    assert metrics["training_start_epoch"] == 2 and metrics["training_epochs"] == 1 and metrics["epoch"] == 2
    assert json.loads((directory / "config.json").read_text())["trainer"]["num_epochs"] == 3
    # Two epochs, then one more after recovery, is the same run as three epochs in one go.
    assert stable(metrics) == stable(json.loads((finished_run / "metrics.json").read_text()))
    assert len(json.loads((directory / "meta.json").read_text())["recoveries"]) == 1


def test_a_run_stopped_by_sigterm_exits_75_and_recovers_to_the_same_result(tmp_path):
    overrides = '{"trainer.num_epochs": 12}'
    reference = tmp_path / "reference"
    assert run_cli("train", CONFIG, "-s", str(reference), "-o", overrides).returncode == 0
    directory = tmp_path / "interrupted"
    command = [sys.executable, "-m", "regimen", "train", CONFIG, "-s", str(directory), "-o", overrides]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(directory.glob("model_state_e2_*.th")) and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 75, stderr
    assert "--recover" in stderr and not (directory / "metrics.json").exists()
    result = run_cli("train", CONFIG, "-s", str(directory), "-o", overrides, "--recover")
    assert result.returncode == 0, result.stderr
    recovered = json.loads((directory / "metrics.json").read_text())
    assert recovered["training_start_epoch"] >= 2
    assert stable(recovered) == stable(json.loads((reference / "metrics.json").read_text()))


def test_dry_run_reads_everything_prints_a_summary_and_writes_nothing(tmp_path):
    directory = tmp_path / "run"
    result = run_cli("train", CONFIG, "-s", str(directory), "--dry-run", "-o", '{"trainer.num_epochs": 7}')
    assert result.returncode == 0, result.stderr
    assert "train data: 400 instances in 50 batches" in result.stdout
    assert "validation data: 64 instances in 8 batches" in result.stdout
    assert "model: MlpClassifier with 58 parameters (58 trainable)" in result.stdout
    assert '"num_epochs": 7' in result.stdout
    assert not directory.exists()


def test_overrides_reach_the_run_and_its_config(tmp_path):
    directory = tmp_path / "run"
    overrides = '{"trainer.num_epochs": 1, "model.hidden_dims": [4]}'
    assert run_cli("train", CONFIG, "-s", str(directory), "-o", overrides).returncode == 0
    assert sorted(p.name for p in directory.glob("metrics_epoch_*.json")) == ["metrics_epoch_0.json"]
    assert json.loads((directory / "config.json").read_text())["model"]["hidden_dims"] == [4]


PLUGIN = """
import json
from pathlib import Path

import torch

from regimen.models import Model
from regimen.trainers import GradientDescentTrainer, Trainer


@Model.register("logistic")
class Logistic(Model):
    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(input_dim, 2)

    def forward(self, features, label=None):
        logits = self.linear(features.float())
        output = {"logits": logits}
        if label is not None:
            output["loss"] = torch.nn.functional.cross_entropy(logits, label)
        return output


@Trainer.register("announcing", constructor="from_partial_objects")
class Announcing(GradientDescentTrainer):
    def train(self):
        metrics = super().train()
        Path(self._serialization_dir, "announced.json").write_text(json.dumps({"epochs": metrics["training_epochs"]}))
        return metrics
"""


@pytest.mark.parametrize("loading", ["--include-package", ".regimen_plugins"])
def test_a_plugin_package_registers_a_model_and_a_trainer(tmp_path, loading):
    (tmp_path / "my_plugins").mkdir()
    (tmp_path / "my_plugins" / "__init__.py").write_text(PLUGIN)
    overrides = json.dumps(
        {
            "model": {"type": "logistic", "input_dim": 4},
            "trainer.type": "announcing",
            "trainer.num_epochs": 2,
            "trainer.validation_metric": "-loss",
            **{f"{split}_data_path": str(FIXTURES / "data" / "blobs" / f"{split}.csv") for split in ("train", "test")},
            "validation_data_path": str(FIXTURES / "data" / "blobs" / "validation.csv"),
        }
    )
    extra = ["--include-package", "my_plugins"] if loading == "--include-package" else []
    if loading == ".regimen_plugins":
        (tmp_path / ".regimen_plugins").write_text("my_plugins\n")
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}"}
    result = run_cli("train", CONFIG, "-s", "run", "-o", overrides, *extra, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "announced.json").read_text()) == {"epochs": 2}
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test_loss"] < 0.5


def test_an_unknown_plugin_package_is_a_configuration_error(tmp_path):
    result = run_cli("train", CONFIG, "-s", str(tmp_path / "run"), "--include-package", "no_such_plugins")
    assert result.returncode == 2
    assert 'cannot import plugin "no_such_plugins"' in result.stderr and "Traceback" not in result.stderr


BAD_INPUTS = {
    "missing config file": (["no/such/experiment.jsonnet"], "config file not found: no/such/experiment.jsonnet"),
    "jsonnet syntax error": ([str(FIXTURES / "registry" / "syntax_error.jsonnet")], "syntax_error.jsonnet:3:29"),
    "unknown type": (
        [CONFIG, "-o", '{"model.type": "mlp_clasifier"}'],
        'model.type: unknown Model type "mlp_clasifier"; did you mean "mlp_classifier"?',
    ),
    "misspelled key": (
        [CONFIG, "-o", '{"trainer.num_epoch": 2}'],
        'trainer.num_epoch: unknown key "num_epoch"; did you mean "num_epochs"?',
    ),
    "wrong type": ([CONFIG, "-o", '{"data_loader.batch_size": "8"}'], 'data_loader.batch_size: expected int, got "8"'),
    "bad override": ([CONFIG, "-o", '{"trainer.optimzer.lr": 1}'], "trainer.optimzer: override path does not exist"),
    "override syntax": ([CONFIG, "-o", '{"trainer.num_epochs": }'], "overrides"),
    "missing data file": (
        [CONFIG, "-o", '{"validation_data_path": "no/such.csv"}'],
        'validation_data_path: file not found: no/such.csv (read by the "csv" reader',
    ),
    "bad value": ([CONFIG, "-o", '{"model.dropout": 1.5}'], "model.dropout: must be in [0, 1), got 1.5"),
    "bad data row": (
        [CONFIG, "-o", json.dumps({"train_data_path": str(FIXTURES / "data" / "bad_value.csv")})],
        f"train_data_path: {FIXTURES / 'data' / 'bad_value.csv'}:3: column \"x2\": expected a number, got 'oops'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_naming_the_key_and_leaves_the_directory_as_it_was(case, finished_run):
    arguments, message = BAD_INPUTS[case]
    before = snapshot(finished_run)
    result = run_cli("train", *arguments, "-s", str(finished_run), "--force")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("regimen: configuration error:"), result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(finished_run) == before

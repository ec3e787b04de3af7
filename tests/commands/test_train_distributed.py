"""Distributed training through ``regimen train`` on CPU with two Gloo workers, as a user runs it: the same
weights as one worker with twice the batch, uneven data, a failing worker, pre-emption and recovery, torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.commands.test_train import VOLATILE as SINGLE_PROCESS_VOLATILE
from tests.conftest import FIXTURES, ROOT, run_cli

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")
TWO_WORKERS = {"distributed": {"cuda_devices": [-1, -1]}}
VOLATILE = {*SINGLE_PROCESS_VOLATILE, "peak_worker_1_memory_MB"}  # and the second worker's peak


def overrides(**changes) -> str:
    return json.dumps(changes)


def final_weights(directory: Path) -> dict[str, torch.Tensor]:
    newest = max(directory.glob("model_state_e*_b0.th"), key=lambda path: int(path.name.split("_e")[1].split("_")[0]))
    return torch.load(newest, weights_only=True)


def test_two_workers_with_batch_b_match_one_worker_with_batch_2b(tmp_path):
    # No shuffling and no dropout: both runs see the same 2b instances in each optimizer step.
    common = {"data_loader": {"batch_size": 16}, "model.dropout": 0.0, "trainer.num_epochs": 2}
    single = tmp_path / "single"
    assert run_cli("train", CONFIG, "-s", str(single), "-o", overrides(**common)).returncode == 0
    double = tmp_path / "double"
    changes = {**common, "data_loader": {"batch_size": 8}, **TWO_WORKERS}
    result = run_cli("train", CONFIG, "-s", str(double), "-o", overrides(**changes))
    assert result.returncode == 0, result.stderr
    one, two = final_weights(single), final_weights(double)
    assert set(one) == set(two) and not any(key.startswith("module.") for key in two)
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6)
    # The reported metrics are those of the whole data, not of one worker's half.
    single_metrics = json.loads((single / "metrics.json").read_text())
    double_metrics = json.loads((double / "metrics.json").read_text())
    for key in ("validation_accuracy", "test_accuracy", "validation_loss"):
        assert double_metrics[key] == pytest.approx(single_metrics[key], abs=1e-6), key
    # Counted while the weights change, training accuracy may differ by an instance whose logits tie within rounding.
    assert double_metrics["training_accuracy"] == pytest.approx(single_metrics["training_accuracy"], abs=1 / 400)
    assert {"out_worker0.log", "out_worker1.log"} <= {p.name for p in double.iterdir()}
    assert double_metrics["peak_worker_1_memory_MB"] > 0  # every worker's peak memory is reported


def test_uneven_data_does_not_hang_and_validation_counts_every_instance(tmp_path):
    changes = {
        "dataset_reader.max_instances": 390,  # 49 batches of 8: one worker gets half of the last batch
        "validation_data_loader": {"batch_size": 10},  # 7 validation batches for 2 workers
        "trainer.num_epochs": 2,
        **TWO_WORKERS,
    }
    directory = tmp_path / "run"
    result = run_cli("train", CONFIG, "-s", str(directory), "-o", overrides(**changes))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((directory / "metrics.json").read_text())
    evaluated = run_cli(
        "evaluate", str(directory / "model.tar.gz"), str(FIXTURES / "data" / "blobs" / "validation.csv")
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["accuracy"] == metrics["best_validation_accuracy"]


FAILING_PLUGIN = """
import torch
import torch.distributed

from regimen.models import Model, MlpClassifier


@Model.register("fails_on_worker_1")
class FailsOnWorker1(MlpClassifier):
    calls = 0

    def forward(self, **batch):
        FailsOnWorker1.calls += 1
        if self.training and torch.distributed.get_rank() == 1 and FailsOnWorker1.calls == 20:
            raise RuntimeError("boom on worker 1")
        return super().forward(**batch)
"""


def test_a_worker_that_raises_fails_the_job_fast_naming_its_rank(tmp_path):
    (tmp_path / "failing_plugin.py").write_text(FAILING_PLUGIN)
    changes = {"model.type": "fails_on_worker_1", "trainer.num_epochs": 50, **TWO_WORKERS}
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}"}
    start = time.monotonic()
    result = run_cli(
        "train", CONFIG, "-s", str(tmp_path / "run"), "-o", overrides(**changes), "--include-package",
        "failing_plugin", env=env,
    )  # fmt: skip
    assert result.returncode == 1
    assert "worker 1 failed: RuntimeError: boom on worker 1" in result.stderr
    assert time.monotonic() - start < 60


def test_a_config_mistake_found_by_the_workers_exits_2_and_leaves_the_directory_alone(tmp_path):
    directory = tmp_path / "run"
    directory.mkdir()
    (directory / "keep.txt").write_text("mine")
    changes = {"trainer.num_epochs": -1, **TWO_WORKERS}
    result = run_cli("train", CONFIG, "-s", str(directory), "--force", "-o", overrides(**changes))
    assert result.returncode == 2, result.stderr
    assert "trainer.num_epochs: must be positive, got -1" in result.stderr
    assert [p.name for p in directory.iterdir()] == ["keep.txt"]


def test_a_single_worker_distributed_block_is_refused():
    result = run_cli("train", CONFIG, "-s", "unused", "-o", overrides(distributed={"cuda_devices": [-1]}))
    assert result.returncode == 2
    assert "distributed.cuda_devices: [-1] on 1 node is a single worker" in result.stderr


def start_until_epoch_2(directory: Path, changes: str) -> subprocess.Popen:
    """``regimen train`` in its own session (so that a signal reaches every worker), once it has saved a checkpoint
    in epoch 2."""
    command = [sys.executable, "-m", "regimen", "train", CONFIG, "-s", str(directory), "-o", changes]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while not list(directory.glob("model_state_e2_*.th")) and time.monotonic() < deadline:
        time.sleep(0.02)
    return process


EIGHT_EPOCHS = {"trainer.num_epochs": 8}


@pytest.fixture(scope="module")
def eight_epochs(tmp_path_factory) -> Path:
    """An uninterrupted two-worker run of 8 epochs, for the interrupted ones to end equal to."""
    directory = tmp_path_factory.mktemp("reference") / "run"
    assert (
        run_cli("train", CONFIG, "-s", str(directory), "-o", overrides(**EIGHT_EPOCHS, **TWO_WORKERS)).returncode == 0
    )
    return directory


def assert_same_run(directory: Path, reference: Path) -> None:
    """``directory`` (recovered at least once after epoch 2) ended with the metrics and weights of ``reference``."""
    recovered = json.loads((directory / "metrics.json").read_text())
    expected = json.loads((reference / "metrics.json").read_text())
    assert recovered["training_start_epoch"] >= 2
    assert {k: v for k, v in recovered.items() if k not in VOLATILE} == {
        k: v for k, v in expected.items() if k not in VOLATILE
    }
    final, reference_final = final_weights(directory), final_weights(reference)
    assert all(torch.equal(final[name], reference_final[name]) for name in final)


@pytest.mark.parametrize("to_whom", ["the whole job", "the launcher alone"])
def test_sigterm_stops_both_workers_with_exit_75_and_recovery_is_exact(tmp_path, to_whom, eight_epochs):
    changes = overrides(**EIGHT_EPOCHS, **TWO_WORKERS)
    directory = tmp_path / "interrupted"
    process = start_until_epoch_2(directory, changes)
    if to_whom == "the whole job":
        os.killpg(process.pid, signal.SIGTERM)  # as Ctrl-C does: every process of the job gets it (the workers twice)
    else:
        os.kill(process.pid, signal.SIGTERM)  # as Kubernetes does: the container's main process alone
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 75, stderr
    assert stderr.count("received SIGTERM: finishing the current optimizer step") == 2  # each worker, once
    assert not (directory / "metrics.json").exists()
    result = run_cli("train", CONFIG, "-s", str(directory), "-o", changes, "--recover")
    assert result.returncode == 0, result.stderr
    assert_same_run(directory, eight_epochs)


def torchrun(directory: Path, *arguments: str) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "regimen", "train", CONFIG, "-s", str(directory), *arguments,
    ]  # fmt: skip


def test_sigterm_to_torchrun_s_agent_reaches_each_worker_once_and_recovery_is_exact(tmp_path, eight_epochs):
    # torchrun's agent passes SIGTERM (and SIGINT, SIGHUP, SIGQUIT) on to each worker's own session and gives them
    # its shutdown timeout (30 s) to stop; a worker saves its checkpoint and exits 75 within it.
    directory = tmp_path / "interrupted"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = torchrun(directory, "-o", overrides(**EIGHT_EPOCHS))
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(directory.glob("model_state_e2_*.th")) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGTERM)  # the agent alone: its workers run in sessions of their own
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0, stderr
    assert stderr.count("received SIGTERM: finishing the current optimizer step") == 2, stderr
    assert "Unable to shutdown process" not in stderr  # neither worker needed torchrun's SIGKILL
    assert not (directory / "metrics.json").exists()
    recovered = subprocess.run(
        torchrun(directory, "-o", overrides(**EIGHT_EPOCHS), "--recover"),
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert recovered.returncode == 0, recovered.stderr
    assert_same_run(directory, eight_epochs)


def test_a_run_killed_mid_epoch_recovers_with_every_worker_s_sums_for_that_epoch(tmp_path):
    # 50 batches of 8, 25 steps per worker and epoch; checkpoints every 2 batches and none at epoch ends, so the
    # newest checkpoint is always in the middle of an epoch.
    checkpointer = {"save_every_num_batches": 2, "save_completed_epochs": False}
    changes = overrides(**{"trainer.num_epochs": 30, "trainer.checkpointer": checkpointer, **TWO_WORKERS})
    reference = tmp_path / "reference"
    assert run_cli("train", CONFIG, "-s", str(reference), "-o", changes).returncode == 0
    directory = tmp_path / "killed"
    process = start_until_epoch_2(directory, changes)
    os.killpg(process.pid, signal.SIGKILL)  # no chance to save anything more
    process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL
    result = run_cli("train", CONFIG, "-s", str(directory), "-o", changes, "--recover")
    assert result.returncode == 0, result.stderr
    assert "resuming after 2 epochs" in (directory / "out_worker0.log").read_text()
    # The epoch resumed in its middle reports the loss and accuracy of both workers' batches, as without the kill.
    for epoch in range(30):
        name = f"metrics_epoch_{epoch}.json"
        assert json.loads((directory / name).read_text()) == json.loads((reference / name).read_text()), name
    best, reference_best = (torch.load(d / "best.th", weights_only=True) for d in (directory, reference))
    assert all(torch.equal(best[name], reference_best[name]) for name in best)


def test_a_two_worker_run_started_by_torchrun(tmp_path):
    directory = tmp_path / "run"
    command = torchrun(directory, "-o", '{"trainer.num_epochs": 2}')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((directory / "metrics.json").read_text())
    assert metrics["training_epochs"] == 2 and metrics["test_accuracy"] >= 0.9
    assert {"out_worker0.log", "out_worker1.log"} <= {p.name for p in directory.iterdir()}


def test_a_bad_data_row_in_a_torchrun_job_is_each_worker_s_exit_2_naming_the_row(tmp_path):
    # Found once the workers have joined their group (each reads its data then), and reported as without torchrun.
    directory = tmp_path / "run"
    bad = str(FIXTURES / "data" / "bad_value.csv")
    command = torchrun(directory, "-o", json.dumps({"test_data_path": bad}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert result.stderr.count("regimen: configuration error: test_data_path: ") == 2, result.stderr
    assert "bad_value.csv:3: column \"x2\": expected a number, got 'oops'" in result.stderr
    assert "exitcode  : 2" in result.stderr and "SIGABRT" not in result.stderr, result.stderr
    assert not directory.exists()


def test_a_two_worker_run_killed_mid_epoch_continues_in_one_process(tmp_path):
    # Checkpoints every 2 batches and none at epoch ends: the newest is in the middle of an epoch, 2 batches into
    # it for each worker, so 4 of the epoch's 50 batches are trained; one process starts the epoch at its batch 4.
    checkpointer = {"save_every_num_batches": 2, "save_completed_epochs": False}
    changes = {"trainer.num_epochs": 6, "trainer.checkpointer": checkpointer, "evaluate_on_test": False}
    directory = tmp_path / "moved"
    process = start_until_epoch_2(directory, overrides(**changes, **TWO_WORKERS))
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=120)
    one_process = overrides(**changes, distributed=None)
    result = run_cli("train", CONFIG, "-s", str(directory), "-o", one_process, "--recover")
    assert result.returncode == 0, result.stderr
    assert "--recover: the distributed block changed" in result.stderr and "bit-exactly" in result.stderr
    assert "the checkpoint was written by 2 worker(s), this run has 1: each starts the epoch at its batch" in (
        result.stderr
    )
    metrics = json.loads((directory / "metrics.json").read_text())
    assert metrics["training_start_epoch"] + metrics["training_epochs"] == 6 and metrics["epoch"] == 5
    assert metrics["best_validation_accuracy"] > 0.9
    # The config it continued with is the one recorded now: a later --recover in one process is the same run.
    assert json.loads((directory / "config.json").read_text())["distributed"] is None


PLAIN_COUNTS = '''
import torch

from regimen.models import MlpClassifier, Model


@Model.register("plain_counts")
class PlainCounts(MlpClassifier):
    """Keeps its accuracy counts in Python numbers, which nothing can sum over the workers."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.right = self.seen = 0

    def metric_state(self):
        return []

    def forward(self, features, label=None):
        output = super().forward(features, label)
        if label is not None:
            self.right += int((output["probs"].argmax(-1) == label).sum())
            self.seen += len(label)
        return output

    def get_metrics(self, reset=False):
        metrics = {"plain_accuracy": self.right / max(self.seen, 1)}
        if reset:
            self.right = self.seen = 0
        return metrics
'''


def test_metrics_that_nothing_reduces_across_workers_are_warned_about_once(tmp_path):
    (tmp_path / "plain_counts.py").write_text(PLAIN_COUNTS)
    model = {"type": "plain_counts", "input_dim": 4, "hidden_dims": [8], "num_classes": 2}
    changes = overrides(
        **{"model": model, "trainer.num_epochs": 2, "trainer.validation_metric": "+plain_accuracy", **TWO_WORKERS}
    )
    result = run_cli(
        "train", CONFIG, "-s", str(tmp_path / "run"), "-o", changes, "--include-package", "plain_counts",
        env={"PYTHONPATH": f"{ROOT}:{tmp_path}"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    warning = "PlainCounts's metrics differ across the 2 workers (plain_accuracy: ["
    assert result.stderr.count(warning) == 1 and "metric_state()" in result.stderr


SLOW_READER = """
import os
import time
from pathlib import Path

import torch

from regimen.data import CsvReader, DatasetReader


@DatasetReader.register("slow_csv")
class SlowCsv(CsvReader):
    def _read(self, path):
        if torch.distributed.is_initialized():  # in a worker, not in the launcher checking the config
            Path(os.environ["READING_MARKER"]).touch()
            time.sleep(5)
        yield from super()._read(path)
"""


def test_sigterm_to_the_launcher_while_the_workers_read_their_data_is_a_clean_stop(tmp_path):
    # No watcher is up before training: each worker dies of the signal the launcher passes on, which the launcher
    # reports as the stop it is (exit 75, no traceback), with advice that fits a run that never started.
    (tmp_path / "slow_reader.py").write_text(SLOW_READER)
    marker, directory = tmp_path / "reading", tmp_path / "run"
    command = [
        sys.executable, "-m", "regimen", "train", CONFIG, "-s", str(directory), "--include-package", "slow_reader",
        "-o", overrides(**TWO_WORKERS, **{"dataset_reader.type": "slow_csv"}),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{tmp_path}", "OMP_NUM_THREADS": "1", "READING_MARKER": str(marker)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 75, stderr
    assert "stopped on SIGTERM before training started; nothing was saved" in stderr
    assert f"start it again with: regimen train {CONFIG} -s {directory}\n" in stderr
    assert "Traceback" not in stderr
    assert not directory.exists()

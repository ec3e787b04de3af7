"""scripts/slurm_train.sbatch as SLURM runs it with ``--signal=B:USR1@90``: USR1 to the batch shell alone reaches
regimen, which saves and exits 75; the script requeues the job (a stub ``scontrol`` records the call) and the next
attempt continues the run with --recover, ending as an uninterrupted run does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests.commands.test_train import VOLATILE
from tests.commands.test_train_distributed import final_weights
from tests.conftest import FIXTURES, ROOT, run_cli

SCRIPT = ROOT / "scripts" / "slurm_train.sbatch"
CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")
EIGHT_EPOCHS = json.dumps({"trainer.num_epochs": 8})


def stub_scontrol(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A ``scontrol`` that records its arguments in the returned file, first on the PATH of the returned
    environment (which also finds this virtual environment's ``regimen``), as in a job with id 4242."""
    bin_directory = tmp_path / "bin"
    bin_directory.mkdir()
    calls = tmp_path / "scontrol_calls"
    (bin_directory / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_directory / "scontrol").chmod(0o755)
    path = f"{bin_directory}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SLURM_JOB_ID": "4242"}
    return calls, env


def test_usr1_to_the_batch_shell_requeues_and_the_next_attempt_recovers_exactly(tmp_path):
    calls, env = stub_scontrol(tmp_path)
    directory = tmp_path / "run"
    command = ["bash", str(SCRIPT), CONFIG, str(directory), "-o", EIGHT_EPOCHS]
    attempt = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(directory.glob("model_state_e2_*.th")) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(attempt.pid, signal.SIGUSR1)  # SLURM's B:USR1@90: the batch shell alone
    _, stderr = attempt.communicate(timeout=120)
    assert attempt.returncode == 0, stderr
    assert "received SIGUSR1: finishing the current optimizer step" in stderr
    assert calls.read_text().split() == ["requeue", "4242"]
    assert not (directory / "metrics.json").exists()

    requeued = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert requeued.returncode == 0, requeued.stderr
    assert calls.read_text().split() == ["requeue", "4242"]  # not requeued again: the run finished

    reference = tmp_path / "reference"
    assert run_cli("train", CONFIG, "-s", str(reference), "-o", EIGHT_EPOCHS).returncode == 0
    recovered = json.loads((directory / "metrics.json").read_text())
    expected = json.loads((reference / "metrics.json").read_text())
    assert recovered["training_start_epoch"] >= 2  # the second attempt continued the first
    assert {k: v for k, v in recovered.items() if k not in VOLATILE} == {
        k: v for k, v in expected.items() if k not in VOLATILE
    }
    final, reference_final = final_weights(directory), final_weights(reference)
    assert all(torch.equal(final[name], reference_final[name]) for name in final)


def test_a_failing_run_ends_the_job_with_its_status_and_no_requeue(tmp_path):
    calls, env = stub_scontrol(tmp_path)
    command = ["bash", str(SCRIPT), CONFIG, str(tmp_path / "run"), "-o", json.dumps({"trainer.num_epochz": 1})]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr  # a config mistake: regimen's status, not a requeue
    assert not calls.exists()

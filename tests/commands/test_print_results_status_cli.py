"""``print-results`` tells how each run stands, through the CLI: finished, running, preempted (a signal stopped it
with a checkpoint: ``--recover`` continues it), failed (with the error's first line) or stopped (killed)."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

from tests.commands.test_crash_cli import PLUGIN
from tests.conftest import FIXTURES, ROOT, run_cli

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")


def status(run) -> str:
    result = run_cli("print-results", str(run), "--csv")
    assert result.returncode == 0, result.stderr
    return next(csv.DictReader(io.StringIO(result.stdout)))["status"]


def start(run, epochs: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "regimen", "train", CONFIG, "-s", str(run), "-o",
               json.dumps({"trainer.num_epochs": epochs, "evaluate_on_test": False})]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for_epoch(run, epoch: int) -> None:
    deadline = time.monotonic() + 120
    while not (run / f"metrics_epoch_{epoch}.json").exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_each_way_a_run_ends_has_its_status(tmp_path):
    finished = tmp_path / "finished"
    assert run_cli("train", CONFIG, "-s", str(finished)).returncode == 0
    assert status(finished) == "finished"

    preempted = tmp_path / "preempted"
    process = start(preempted, 200)
    wait_for_epoch(preempted, 1)
    assert status(preempted).startswith("running (at epoch ")
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=120)
    assert process.returncode == 75
    assert status(preempted).startswith("preempted at epoch ")

    killed = tmp_path / "killed"
    process = start(killed, 200)
    wait_for_epoch(killed, 1)
    process.kill()
    process.communicate(timeout=120)
    assert status(killed).startswith("stopped at epoch ")

    (tmp_path / "breaks_plugin.py").write_text(PLUGIN)
    failed = tmp_path / "failed"
    model = {"type": "breaks_at", "split": "training", "batch": 3, "input_dim": 4, "hidden_dims": [8], "num_classes": 2}
    result = run_cli(
        "train", CONFIG, "-s", str(failed), "-o", json.dumps({"model": model}), "--include-package", "breaks_plugin",
        env={"PYTHONPATH": f"{ROOT}:{tmp_path}"},
    )  # fmt: skip
    assert result.returncode == 1
    assert status(failed) == "failed: RuntimeError: shapes do not match: a bug in my model"

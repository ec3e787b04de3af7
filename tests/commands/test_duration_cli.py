"""``training_duration`` adds up over every invocation of a run (a SLURM requeue recovers it), and
``training_duration_this_run`` is this invocation's alone."""

from __future__ import annotations

import json

from tests.conftest import FIXTURES, run_cli

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")


def seconds(text: str) -> float:
    hours, minutes, rest = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest)


def test_the_duration_of_a_recovered_run_counts_every_invocation(tmp_path):
    run = str(tmp_path / "run")
    first = run_cli("train", CONFIG, "-s", run, "-o", json.dumps({"trainer.num_epochs": 6}))
    assert first.returncode == 0, first.stderr
    before = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert before["training_duration"] == before["training_duration_this_run"]

    again = run_cli("train", CONFIG, "-s", run, "--recover", "-o", json.dumps({"trainer.num_epochs": 8}))
    assert again.returncode == 0, again.stderr
    after = json.loads((tmp_path / "run" / "metrics.json").read_text())
    total, this_run = seconds(after["training_duration"]), seconds(after["training_duration_this_run"])
    earlier = seconds(before["training_duration"])
    assert this_run < total and total >= this_run + 0.9 * earlier  # the first invocation's time is kept
    assert after["training_start_epoch"] == 6 and after["training_epochs"] == 2

"""A small run of scripts/fault_injection.py: SIGKILL training at random moments, recover, compare."""

from __future__ import annotations

import random

from scripts.fault_injection import identical, reference_run, trial, write_data


def test_training_killed_at_random_moments_recovers_bit_identical(tmp_path):
    write_data(tmp_path)
    duration = reference_run(tmp_path / "reference", tmp_path)
    corrupt, logs = trial(tmp_path / "trial", tmp_path, duration, kills=3, rng=random.Random(7))
    assert not corrupt, "a restart met a corrupt newest checkpoint"
    assert identical(tmp_path / "trial" / "final.th", tmp_path / "reference" / "final.th")
    assert any("resuming after" in log for log in logs[1:]), "no kill landed after a checkpoint was written"

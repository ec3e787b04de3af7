"""Progress in log files: ``--file-friendly-logging`` (and any stderr that is not a terminal) gives plain lines,
never ``\\r``-redrawn bar frames, and the flag is how the run looks, not part of its config."""

from __future__ import annotations

import json

from tests.conftest import FIXTURES, run_cli

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")
WITH_BAR = json.dumps({"trainer.progress_bar": True, "trainer.num_epochs": 2})


def test_the_flag_gives_plain_progress_lines_in_stderr_and_out_log(tmp_path):
    result = run_cli("train", CONFIG, "-s", str(tmp_path / "run"), "--file-friendly-logging", "-o", WITH_BAR)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr
    assert "epoch 1: 50/50 batches, training_loss=" in result.stderr
    assert "validation 1: 8/8 batches, loss=" in (tmp_path / "run" / "out.log").read_text()
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert "file_friendly_logging" not in config["trainer"]  # so --recover without the flag is the same run
    again = run_cli("train", CONFIG, "-s", str(tmp_path / "run"), "--recover", "-o", WITH_BAR)
    assert again.returncode == 0, again.stderr


def test_a_stderr_that_is_not_a_terminal_gets_plain_lines_too(tmp_path):
    result = run_cli("train", CONFIG, "-s", str(tmp_path / "run"), "-o", WITH_BAR)  # captured: not a terminal
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "epoch 0: 50/50 batches" in result.stderr

"""A stop signal that arrives once training is over (while the model is tested and archived) lets the run end as
usual: exit 0 with metrics.json and model.tar.gz, where it used to kill the process with neither."""

from __future__ import annotations

import json

from tests.conftest import FIXTURES, ROOT, run_cli

PLUGIN = """
import os
import signal
import time

from regimen.trainers.callbacks import TrainerCallback


@TrainerCallback.register("sigterm_at_test")
class SigtermAtTest(TrainerCallback):
    def on_test_start(self, trainer, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would, while the test data is evaluated
        time.sleep(0.1)  # the handler runs here
"""


def test_sigterm_during_the_test_evaluation_lets_the_run_finish(tmp_path):
    (tmp_path / "sigterm_plugin.py").write_text(PLUGIN)
    directory = tmp_path / "run"
    result = run_cli(
        "train", str(FIXTURES / "experiments" / "blobs.jsonnet"), "-s", str(directory),
        "-o", json.dumps({"trainer.callbacks": [{"type": "sigterm_at_test"}]}),
        "--include-package", "sigterm_plugin",
        env={"PYTHONPATH": f"{ROOT}:{tmp_path}"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "received SIGTERM: training is over: finishing the test evaluation" in result.stderr
    assert "test_accuracy" in json.loads((directory / "metrics.json").read_text())
    assert (directory / "model.tar.gz").is_file()
    assert json.loads((directory / "meta.json").read_text())["outcome"]["status"] == "finished"

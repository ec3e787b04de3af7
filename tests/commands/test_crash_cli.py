"""A crash in a user's own code, through ``regimen train``: it keeps its traceback (the user's bug to fix), but the
command says first, on one line, where in the run it happened and how to continue, and ``out.log`` has it all."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FIXTURES, ROOT, run_cli

PLUGIN = '''
import os

from regimen.models import MlpClassifier, Model


@Model.register("breaks_at")
class BreaksAt(MlpClassifier):
    """Raises on the forward pass of the given batch of the given split, as a bug in a model does."""

    def __init__(self, split: str, batch: int, **kwargs):
        super().__init__(**kwargs)
        self.split, self.batch, self.seen = split, batch, {"training": 0, "validation": 0}

    def forward(self, features, label=None):
        split = "training" if self.training else "validation"
        if split == self.split and self.seen[split] == self.batch:
            raise RuntimeError("shapes do not match: a bug in my model")
        self.seen[split] += 1
        return super().forward(features, label)
'''


@pytest.mark.parametrize(("split", "batch"), [("training", 3), ("validation", 1)])
def test_a_crash_says_where_first_keeps_its_traceback_and_lands_in_out_log(tmp_path, split, batch):
    (tmp_path / "breaks_plugin.py").write_text(PLUGIN)
    model = {"type": "breaks_at", "split": split, "batch": batch, "input_dim": 4, "hidden_dims": [8], "num_classes": 2}
    result = run_cli(
        "train", str(FIXTURES / "experiments" / "blobs.jsonnet"), "-s", str(tmp_path / "run"),
        "-o", json.dumps({"model": model}), "--include-package", "breaks_plugin",
        env={"PYTHONPATH": f"{ROOT}:{tmp_path}"},
    )  # fmt: skip
    assert result.returncode == 1
    where = f"the run failed at epoch 0, batch {batch} of {split} with RuntimeError (its traceback follows)"
    assert where in result.stderr and "--recover" in result.stderr.split(where)[1].splitlines()[0]
    assert result.stderr.index(where) < result.stderr.index("Traceback")  # said first
    assert "RuntimeError: shapes do not match: a bug in my model" in result.stderr
    log = (tmp_path / "run" / "out.log").read_text()
    assert f"the run failed at epoch 0, batch {batch} of {split}: shapes do not match" in log and "Traceback" in log
    # out.log starts with the command's first lines, logged before the run's directory existed.
    assert log.splitlines()[0].endswith("read 400 instances from fixtures/data/blobs/train.csv")

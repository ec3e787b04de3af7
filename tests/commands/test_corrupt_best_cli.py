"""A corrupt ``best.th`` on ``--recover``, through the CLI: a log line naming the file and what happens next, never
a traceback; rebuilt from the best epoch's checkpoint where that loads. With every checkpoint corrupt: exit 2, the
files named, and how to start over."""

from __future__ import annotations

import json

from tests.conftest import FIXTURES, run_cli

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")
KEEP_ALL = {"trainer.checkpointer": {"keep_most_recent_by_count": None}, "evaluate_on_test": False}


def train(run, epochs: int, *extra: str):
    return run_cli(
        "train", CONFIG, "-s", str(run), "-o", json.dumps({"trainer.num_epochs": epochs, **KEEP_ALL}), *extra
    )


def test_a_corrupt_best_th_is_rebuilt_from_the_best_epochs_checkpoint(tmp_path):
    run = tmp_path / "run"
    assert train(run, 3).returncode == 0
    best_epoch = json.loads((run / "metrics.json").read_text())["best_epoch"]
    (run / "best.th").unlink()  # a torn copy: the checkpoint that shared its file is intact
    (run / "best.th").write_bytes(b"\x00" * 100)
    result = train(run, 4, "--recover")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"cannot load {run / 'best.th'} (" in result.stderr
    assert f"rebuilt from {run / f'model_state_e{best_epoch + 1}_b0.th'}, the checkpoint of the best epoch" in (
        result.stderr
    )
    assert (run / "best.th.corrupt").is_file() and (run / "model.tar.gz").is_file()


def test_when_no_checkpoint_loads_recover_is_exit_2_naming_the_files(tmp_path):
    run = tmp_path / "run"
    assert train(run, 2).returncode == 0
    for path in [*run.glob("model_state_*.th"), run / "best.th"]:
        path.write_bytes(b"not a checkpoint")  # through the links too
    result = train(run, 3, "--recover")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--recover: none of the 2 checkpoints" in result.stderr and "model_state_e2_b0.th" in result.stderr
    assert "use --force to start the run over" in result.stderr

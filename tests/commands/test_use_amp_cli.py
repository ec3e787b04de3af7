"""``use_amp`` as an object of ``torch.amp.GradScaler`` arguments (aitoolbox's ``use_amp`` form), through the CLI."""

from __future__ import annotations

import json

import torch

from tests.conftest import FIXTURES, run_cli

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")


def test_the_object_turns_amp_on_and_reaches_the_grad_scaler(tmp_path):
    overrides = {
        "trainer.use_amp": {"init_scale": 1024, "growth_interval": 30},
        "trainer.amp_dtype": "float16",  # loss scaling is for float16 (on the CPU here)
        "trainer.num_epochs": 1,  # 50 steps: the scale grows once, after 30 steps without an overflow
    }
    result = run_cli("train", CONFIG, "-s", str(tmp_path / "run"), "-o", json.dumps(overrides))
    assert result.returncode == 0, result.stderr
    (state_file,) = (tmp_path / "run").glob("training_state_e1_b0.th")
    scaler = torch.load(state_file, weights_only=False)["precision"]["scaler"]
    assert scaler["growth_interval"] == 30 and scaler["scale"] == 2048.0  # 1024 grown once; torch's default 65536


def test_a_wrong_grad_scaler_argument_names_its_key(tmp_path):
    overrides = {"trainer.use_amp": {"init_scal": 1024}}
    result = run_cli("train", CONFIG, "-s", str(tmp_path / "run"), "-o", json.dumps(overrides))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert 'trainer.use_amp.init_scal: unknown GradScaler argument "init_scal"; did you mean "init_scale"?' in (
        result.stderr
    )
    wrong_type = {"trainer.use_amp": {"growth_interval": 1.5}}
    result = run_cli("train", CONFIG, "-s", str(tmp_path / "run"), "-o", json.dumps(wrong_type))
    assert result.returncode == 2 and "trainer.use_amp.growth_interval: expected int, got 1.5" in result.stderr

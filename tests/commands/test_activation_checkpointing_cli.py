"""``trainer.activation_checkpointing`` through ``regimen train``: the same losses and weights as without it
(dropout included: the recomputed forward replays the same random numbers), and a class name that no module has
is a configuration error before training."""

from __future__ import annotations

import json

import torch

from tests.commands.test_fsdp_cli import epoch_metrics
from tests.commands.test_train_distributed import CONFIG, final_weights
from tests.conftest import run_cli


def test_checkpointed_activations_give_the_same_losses_and_weights(tmp_path):
    runs = {}
    for name, classes in (("plain", []), ("checkpointed", ["Linear", "Dropout"])):
        directory = runs[name] = tmp_path / name
        config = {"trainer.num_epochs": 2, "trainer.activation_checkpointing": classes}
        result = run_cli("train", CONFIG, "-s", str(directory), "-o", json.dumps(config))
        assert result.returncode == 0, result.stderr
    assert epoch_metrics(runs["checkpointed"]) == epoch_metrics(runs["plain"])
    plain, checkpointed = final_weights(runs["plain"]), final_weights(runs["checkpointed"])
    assert plain.keys() == checkpointed.keys()  # the parameter names do not change
    assert all(torch.equal(plain[name], checkpointed[name]) for name in plain)


def test_a_class_no_module_has_is_a_configuration_error(tmp_path):
    config = {"trainer.activation_checkpointing": ["Linaer"]}
    result = run_cli("train", CONFIG, "-s", str(tmp_path / "run"), "-o", json.dumps(config))
    assert result.returncode == 2, result.stderr
    assert 'trainer.activation_checkpointing: no module of the model is a "Linaer" (did you mean "Linear"?)' in (
        result.stderr
    )
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()

"""A model sharded with FSDP2 on two CPU (Gloo) workers, through ``regimen train`` as a user runs it: sharded
checkpoints written with torch.distributed.checkpoint, bit-exact recovery on the same workers, recovery on three
workers and in one process (resharded), full weights in best.th and the archive, config mistakes before training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from tests.commands.test_train_distributed import VOLATILE
from tests.conftest import FIXTURES, run_cli

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")
FSDP = {"type": "fsdp", "shard_modules": ["Linear"]}
# Accumulation, clipping, a moving average and activation checkpointing, all with the model sharded.
COMMON = {
    "trainer.moving_average": {"decay": 0.9},
    "trainer.grad_norm": 1.0,
    "trainer.num_gradient_accumulation_steps": 2,
    "trainer.activation_checkpointing": ["Linear"],
}


def fsdp_run(directory: Path, epochs: int, *extra: str, workers: int = 2, **changes) -> None:
    distributed = {"cuda_devices": [-1] * workers, "ddp_accelerator": FSDP} if workers > 1 else None
    config = {**COMMON, "distributed": distributed, "trainer.num_epochs": epochs, **changes}
    result = run_cli("train", CONFIG, "-s", str(directory), "-o", json.dumps(config), *extra)
    assert result.returncode == 0, result.stderr


def sharded_weights(checkpoint: Path, tmp_path: Path) -> dict[str, torch.Tensor]:
    """The full model state saved in a sharded checkpoint, read back in this process with torch's own tool."""
    target = tmp_path / f"{checkpoint.parent.name}-{checkpoint.name}.pt"
    dcp_to_torch_save(str(checkpoint), str(target))
    return torch.load(target, weights_only=False)["model"]


def epoch_metrics(directory: Path) -> dict[str, dict]:
    return {
        path.name: {k: v for k, v in json.loads(path.read_text()).items() if k not in VOLATILE}
        for path in sorted(directory.glob("metrics_epoch_*.json"))
    }


@pytest.fixture(scope="module")
def four_epochs(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("fsdp") / "reference"
    fsdp_run(directory, 4)
    return directory


def test_each_worker_writes_its_shards_and_best_th_and_the_archive_hold_full_weights(four_epochs, tmp_path):
    names = sorted(path.name for path in four_epochs.iterdir())
    assert [name for name in names if name.startswith("model_state")] == [
        "model_state_e3_b0.dcp",
        "model_state_e4_b0.dcp",
    ]
    assert {"training_state_e3_b0.th", "training_state_e4_b0.th", "best.th", "model.tar.gz"} <= set(names)
    shards = sorted(path.name for path in (four_epochs / "model_state_e4_b0.dcp").iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"]  # one file per worker
    assert not [name for name in names if name.endswith(".tmp")]
    # best.th: the full weights of mlp_classifier (4 -> 8 -> 2), plain tensors as without sharding.
    best = torch.load(four_epochs / "best.th", weights_only=True)
    assert {name: tuple(value.shape) for name, value in best.items()} == {
        "network.0.weight": (8, 4), "network.0.bias": (8,), "network.3.weight": (2, 8), "network.3.bias": (2,),
    }  # fmt: skip
    metrics = json.loads((four_epochs / "metrics.json").read_text())
    assert metrics["best_validation_accuracy"] > 0.9
    evaluated = run_cli(
        "evaluate", str(four_epochs / "model.tar.gz"), str(FIXTURES / "data" / "blobs" / "validation.csv")
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["accuracy"] == metrics["best_validation_accuracy"]
    # The sharded checkpoint holds the same full weights the trainer validated: the final epoch's (averaged).
    final = sharded_weights(four_epochs / "model_state_e4_b0.dcp", tmp_path)
    assert set(final) == set(best)


def test_recovery_on_the_same_workers_is_bit_exact(four_epochs, tmp_path):
    directory = tmp_path / "resumed"
    fsdp_run(directory, 2)
    fsdp_run(directory, 4, "--recover")  # a raised epoch budget continues the run from its epoch-2 checkpoint
    assert "resuming after 2 epochs" in (directory / "out_worker0.log").read_text()
    assert epoch_metrics(directory) == epoch_metrics(four_epochs)
    final, reference = (sharded_weights(d / "model_state_e4_b0.dcp", tmp_path) for d in (directory, four_epochs))
    assert all(torch.equal(final[name], reference[name]) for name in reference)
    best, reference_best = (torch.load(d / "best.th", weights_only=True) for d in (directory, four_epochs))
    assert all(torch.equal(best[name], reference_best[name]) for name in reference_best)


@pytest.mark.parametrize("workers", [3, 1])
def test_a_sharded_checkpoint_resumes_on_another_number_of_workers(four_epochs, tmp_path, workers):
    directory = tmp_path / "moved"
    shutil.copytree(four_epochs, directory)
    (directory / "metrics.json").unlink()
    fsdp_run(directory, 6, "--recover", workers=workers)
    log = (directory / ("out_worker0.log" if workers > 1 else "out.log")).read_text()
    assert "resuming after 4 epochs" in log
    metrics = json.loads((directory / "metrics.json").read_text())
    assert metrics["training_start_epoch"] == 4 and metrics["training_epochs"] == 2
    assert metrics["validation_accuracy"] > 0.9  # it went on from the trained weights, not from scratch
    if workers > 1:
        shards = {path.name for path in (directory / "model_state_e6_b0.dcp").iterdir()}
        assert {"__0_0.distcp", "__1_0.distcp", "__2_0.distcp"} <= shards
    else:  # one process writes plain checkpoints, and has deleted the sharded ones it no longer keeps
        assert {p.name for p in directory.glob("model_state_*")} == {"model_state_e5_b0.th", "model_state_e6_b0.th"}


def test_fsdp_config_mistakes_exit_2_before_training(tmp_path):
    directory = tmp_path / "run"
    accelerator = {"type": "fsdp", "shard_modules": ["Linaer"]}
    config = {"distributed": {"cuda_devices": [-1, -1], "ddp_accelerator": accelerator}, "trainer.num_epochs": 1}
    result = run_cli("train", CONFIG, "-s", str(directory), "-o", json.dumps(config))
    assert result.returncode == 2, result.stderr
    assert "distributed.ddp_accelerator.shard_modules" in result.stderr
    assert 'no module of the model is a "Linaer" (did you mean "Linear"?)' in result.stderr
    assert "Traceback" not in result.stderr and not directory.exists()
    typo = {"distributed": {"cuda_devices": [-1, -1], "ddp_accelerator": {"type": "fsdp", "min_num_param": 10}}}
    result = run_cli("train", CONFIG, "-s", str(directory), "-o", json.dumps(typo))
    assert result.returncode == 2 and "distributed.ddp_accelerator.min_num_param: unknown key" in result.stderr
    assert 'did you mean "min_num_params"?' in result.stderr


def test_bfloat16_mixed_precision_on_the_whole_model_trains_and_archives_float32_weights(tmp_path):
    """The mixed precision of allennlp-models' t5_cnn_dm config, on the root module alone (no shard_modules): FSDP
    casts the inputs to bfloat16 and the built-in model takes them in its first layer's dtype."""
    directory = tmp_path / "run"
    accelerator = {"type": "fsdp", "mixed_precision": {"param_dtype": "bfloat16", "reduce_dtype": "float32"}}
    config = {"distributed": {"cuda_devices": [-1, -1], "ddp_accelerator": accelerator}, "trainer.num_epochs": 2}
    result = run_cli("train", CONFIG, "-s", str(directory), "-o", json.dumps(config))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((directory / "metrics.json").read_text())
    assert metrics["best_validation_accuracy"] > 0.9
    weights = torch.load(directory / "best.th", weights_only=True)
    assert {value.dtype for value in weights.values() if value.is_floating_point()} == {torch.float32}

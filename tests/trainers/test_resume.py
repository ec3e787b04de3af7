"""Resume: a run interrupted and continued from its checkpoints ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from regimen.data import DataLoader
from regimen.data.readers import CsvReader
from regimen.models import Model
from regimen.registry import Params
from regimen.trainers import Trainer, TrainerCallback
from scripts.fault_injection import write_blobs

VOLATILE = {
    "training_duration",
    "training_duration_this_run",
    "peak_worker_0_memory_MB",
    "training_start_epoch",
    "training_epochs",
}

CONFIG = {
    "num_epochs": 4,
    "patience": 3,
    "validation_metric": "+accuracy",
    "num_gradient_accumulation_steps": 2,
    "optimizer": {"type": "adam", "lr": 0.01},
    "learning_rate_scheduler": {"type": "linear_with_warmup", "warmup_steps": 3},
    "moving_average": {"decay": 0.9},
    "checkpointer": {"save_every_num_batches": 4, "keep_most_recent_by_count": 3},
    "progress_bar": False,
    "cuda_device": -1,
}


class Interrupt(Exception):
    pass


class InterruptAtStep(TrainerCallback):
    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step
        self.seen = 0

    def on_batch(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        if args[5]:  # a training step
            self.seen += 1
            if self.seen == self.step:
                raise Interrupt()


def run(
    directory: Path,
    data: Path,
    model_seed: int = 0,
    interrupt_at: int | None = None,
    callback: Any = None,
    config: dict[str, Any] | None = None,
) -> tuple[Trainer, Any]:
    torch.manual_seed(model_seed)
    model = Model.from_params(
        {"type": "mlp_classifier", "input_dim": 4, "num_classes": 2, "hidden_dims": [16], "dropout": 0.3}
    )
    loaders = {
        name: DataLoader.from_params(
            Params({"batch_size": 8, "shuffle": True}, name),
            reader=CsvReader(),
            data_path=str(data / f"{name}.csv"),
            seed=5,
        )
        for name in ("train", "validation")
    }
    torch.manual_seed(1234)  # the training RNG: dropout masks come from it
    trainer = Trainer.from_params(
        Params({**CONFIG, **(config or {})}, "trainer"),
        model=model,
        data_loader=loaders["train"],
        validation_data_loader=loaders["validation"],
        serialization_dir=str(directory),
    )
    if interrupt_at is not None:
        trainer._callbacks.append(InterruptAtStep(interrupt_at))
    if callback is not None:
        trainer._callbacks.append(callback)
    try:
        return trainer, trainer.train()
    except Interrupt:
        return trainer, None


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_blobs(root / "train.csv", 64, torch.Generator().manual_seed(1), dims=4, separation=1.0)
    write_blobs(root / "validation.csv", 24, torch.Generator().manual_seed(2), dims=4, separation=1.0)
    return root


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data):
    directory = tmp_path_factory.mktemp("reference")
    trainer, metrics = run(directory, data)
    return directory, trainer, metrics


# 8 batches an epoch, 2 per optimizer step: step 5 is the first of epoch 1 (the newest checkpoint is the epoch
# boundary), step 7 is mid-epoch 1 (the newest checkpoint is 4 batches into it).
@pytest.mark.parametrize("interrupt_at", [5, 7], ids=["epoch-boundary", "mid-epoch"])
def test_an_interrupted_run_resumes_bit_identical(tmp_path, data, reference, interrupt_at):
    reference_dir, reference_trainer, reference_metrics = reference
    _, interrupted = run(tmp_path, data, interrupt_at=interrupt_at)
    assert interrupted is None
    # A fresh process would start with other weights and another RNG state: the checkpoint must restore both.
    torch.manual_seed(999)
    resumed_trainer, resumed_metrics = run(tmp_path, data, model_seed=77)
    for key, value in reference_trainer.model.state_dict().items():
        assert torch.equal(resumed_trainer.model.state_dict()[key], value), key
    assert {k: v for k, v in resumed_metrics.items() if k not in VOLATILE} == {
        k: v for k, v in reference_metrics.items() if k not in VOLATILE
    }
    for epoch in range(4):
        name = f"metrics_epoch_{epoch}.json"
        assert json.loads((tmp_path / name).read_text()) == json.loads((reference_dir / name).read_text()), name
    assert torch.equal(
        torch.load(tmp_path / "best.th", weights_only=True)["network.0.weight"],
        torch.load(reference_dir / "best.th", weights_only=True)["network.0.weight"],
    )


def test_a_run_validating_every_few_steps_resumes_with_the_epochs_earlier_validation(tmp_path, data):
    """4 steps an epoch, a validation every 3: epoch 1 (steps 5-8) validates at step 6 only, just before the
    checkpoint 4 batches into it; a run stopped at step 7 must still report that validation for epoch 1."""
    config = {"validate_every_num_steps": 3}
    reference_dir = tmp_path / "reference"
    run(reference_dir, data, config=config)
    _, interrupted = run(tmp_path / "resumed", data, interrupt_at=7, config=config)
    assert interrupted is None
    run(tmp_path / "resumed", data, model_seed=77, config=config)
    names = sorted(path.name for path in reference_dir.glob("metrics_*.json"))
    assert sorted(path.name for path in (tmp_path / "resumed").glob("metrics_*.json")) == names
    for name in names:
        resumed = json.loads((tmp_path / "resumed" / name).read_text())
        assert resumed == json.loads((reference_dir / name).read_text()), name
    assert "validation_accuracy" in json.loads((tmp_path / "resumed" / "metrics_epoch_1.json").read_text())


def test_a_resumed_moving_average_keeps_averaging_the_live_weights(tmp_path, data, reference):
    _, reference_trainer, _ = reference
    run(tmp_path, data, interrupt_at=7)
    resumed_trainer, _ = run(tmp_path, data, model_seed=77)
    averaged = resumed_trainer._moving_average
    expected = reference_trainer._moving_average
    for (name, shadow), (_, expected_shadow) in zip(averaged.state_dict().items(), expected.state_dict().items()):
        if isinstance(shadow, torch.Tensor):
            assert torch.equal(shadow, expected_shadow), name


def test_checkpoint_files_are_named_as_allennlp_names_them(reference):
    directory, _, _ = reference
    names = sorted(path.name for path in directory.glob("*_state_*.th"))
    assert names == [
        f"{kind}_state_e{e}_b{b}.th" for kind in ("model", "training") for e, b in [(3, 4), (3, 8), (4, 0)]
    ]
    assert (directory / "best.th").is_file()


def test_checkpointer_null_writes_no_checkpoints(tmp_path, data):
    CONFIG["checkpointer"], saved = None, CONFIG["checkpointer"]
    try:
        run(tmp_path, data)
    finally:
        CONFIG["checkpointer"] = saved
    assert not list(tmp_path.glob("*_state_*.th")) and (tmp_path / "best.th").is_file()

"""On CUDA the training step makes no host-device synchronisation: steps run under
``torch.cuda.set_sync_debug_mode("error")``, which raises at any operation that makes the host wait for the
device. Runs where a GPU is lent (``scripts/gpu_check.py`` runs it); skipped elsewhere.

Two reads are by design and outside the steps checked here: the loss is read for NaN every 50 steps (the epoch
here has 40), and float16 AMP's GradScaler (torch's) reads whether the step overflowed at every step, so the
AMP case uses bfloat16."""

from __future__ import annotations

import pytest
import torch

from regimen.data import CsvReader, DefaultDataLoader
from regimen.models import Model
from regimen.registry import Params
from regimen.trainers import Trainer
from regimen.trainers.callbacks import TrainerCallback
from tests.conftest import FIXTURES

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class TwoLayers(Model):
    """A model with nothing in it that reads a tensor back to the host (its metrics are none)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

    def forward(self, features, label):
        return {"loss": torch.nn.functional.cross_entropy(self.layers(features), label)}


class SyncsAreErrors(TrainerCallback):
    """From the end of the first step to the end of the epoch's last batch, a synchronising operation raises."""

    def __init__(self) -> None:
        super().__init__(None)
        self.steps_checked = 0

    def on_batch(self, trainer, batch_inputs, batch_outputs, batch_metrics, epoch, batch_number, is_training, **kwargs):
        if is_training:
            self.steps_checked += torch.cuda.get_sync_debug_mode() == 2
            torch.cuda.set_sync_debug_mode("error")

    def on_loader_exhausted(self, trainer, **kwargs):
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"grad_norm": 1.0, "grad_clipping": 5.0},
        {"num_gradient_accumulation_steps": 2, "moving_average": {"type": "exponential", "decay": 0.9}},
        {"use_amp": True, "amp_dtype": "bfloat16", "learning_rate_scheduler": {"type": "linear_with_warmup"}},
    ],
    ids=["plain", "clipped", "accumulated-averaged", "bf16-scheduled"],
)
def test_training_steps_make_no_host_device_synchronisation(config):
    loader = DefaultDataLoader(
        CsvReader(label_column="label"),
        str(FIXTURES / "data" / "blobs" / "train.csv"),
        batch_size=10,  # 40 steps: under the NaN check's 50
        shuffle=True,
        pin_memory=True,
    )
    watcher = SyncsAreErrors()
    trainer = Trainer.from_params(
        Params({"num_epochs": 1, "cuda_device": 0, "progress_bar": False, **config}, "trainer"),
        model=TwoLayers(),
        data_loader=loader,
    )
    trainer._callbacks.append(watcher)
    try:
        trainer.train()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert watcher.steps_checked == len(loader) // config.get("num_gradient_accumulation_steps", 1) - 1

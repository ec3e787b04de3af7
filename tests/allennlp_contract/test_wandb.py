"""What AllenNLP 2.10's `wandb` callback and its LogWriterCallback base promise, pinned on regimen's callback and
the helpers it shares with the tensorboard callback (regimen/trainers/callbacks/log_writer.py)."""

from __future__ import annotations

import inspect

import pytest
import torch

from regimen.registry import Params
from regimen.trainers.callbacks import TrainerCallback, WandBCallback, log_writer

# allennlp/training/callbacks/wandb.py, WandBCallback.__init__ (2.10): every key and its default.
ALLENNLP_WANDB_KEYS = {
    "summary_interval": 100,
    "distribution_interval": None,
    "batch_size_interval": None,
    "should_log_parameter_statistics": True,
    "should_log_learning_rate": False,
    "project": None,
    "entity": None,
    "group": None,
    "name": None,
    "notes": None,
    "tags": None,
    "watch_model": True,
    "files_to_save": ("config.json", "out.log"),
    "wandb_kwargs": None,
}


def test_the_wandb_callback_takes_every_allennlp_key_with_its_default():
    """Pins allennlp/training/callbacks/wandb.py: WandBCallback's constructor keys and defaults (the
    serialization directory is injected, as there)."""
    parameters = inspect.signature(WandBCallback).parameters
    assert {name: p.default for name, p in parameters.items() if name != "serialization_dir"} == ALLENNLP_WANDB_KEYS
    config = {
        "type": "wandb",
        "summary_interval": 5,
        "distribution_interval": 7,
        "batch_size_interval": 3,
        "should_log_parameter_statistics": False,
        "should_log_learning_rate": True,
        "project": "p",
        "entity": "e",
        "group": "g",
        "name": "n",
        "notes": "some notes",
        "tags": ["a", "b"],
        "watch_model": False,
        "files_to_save": ["config.json"],
        "wandb_kwargs": {"job_type": "train", "settings": {"console": "off"}},
    }
    callback = TrainerCallback.from_params(Params(config), serialization_dir="run")
    assert isinstance(callback, WandBCallback) and callback.files_to_save == ("config.json",)
    assert (callback.summary_interval, callback.distribution_interval, callback.batch_size_interval) == (5, 7, 3)


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)
        self.scale = torch.nn.Parameter(torch.tensor([2.0]))  # one element: a mean, and no std
        self.frozen = torch.nn.Parameter(torch.ones(2), requires_grad=False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return (self.linear(inputs) * self.scale + self.frozen).sum()


def test_parameter_statistics_and_learning_rates_have_log_writer_s_names_and_values():
    """Pins allennlp/training/callbacks/log_writer.py: _log_parameter_and_gradient_statistics (mean of every
    parameter, std of those with more than one element, the same of every gradient) and _log_learning_rates (the
    group's rate for each parameter by name, times requires_grad)."""
    torch.manual_seed(0)
    model = Tiny()
    model(torch.randn(4, 3)).backward()
    statistics = log_writer.parameter_statistics(model)
    weight, grad = model.linear.weight, model.linear.weight.grad
    assert statistics["parameter_mean/linear.weight"] == pytest.approx(weight.mean().item())
    assert statistics["parameter_std/linear.weight"] == pytest.approx(weight.std().item())
    assert statistics["gradient_mean/linear.weight"] == pytest.approx(grad.mean().item())
    assert statistics["gradient_std/linear.weight"] == pytest.approx(grad.std().item())
    assert statistics["parameter_mean/scale"] == 2.0 and "parameter_std/scale" not in statistics
    assert "gradient_mean/scale" in statistics and "gradient_std/scale" not in statistics
    assert "gradient_mean/frozen" not in statistics and "parameter_std/frozen" in statistics
    optimizer = torch.optim.SGD(
        [{"params": [model.linear.weight, model.linear.bias]}, {"params": [model.frozen]}], lr=0.1
    )
    optimizer.param_groups[1]["lr"] = 0.5
    rates = log_writer.learning_rates(model, optimizer)
    assert rates == {"learning_rate/linear.weight": 0.1, "learning_rate/linear.bias": 0.1, "learning_rate/frozen": 0.0}


def test_gradient_update_is_the_norm_of_the_update_over_the_norm_of_the_parameter():
    """Pins allennlp/training/callbacks/log_writer.py: _log_gradient_updates (``gradient_update/<name>``, the
    update's norm over the parameter's norm after the step), with the parameters copied before the step."""
    torch.manual_seed(0)
    model = Tiny()
    before = log_writer.parameter_snapshot(model)
    model(torch.randn(4, 3)).backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    ratios = log_writer.update_ratios(before, model)
    weight = model.linear.weight.detach()
    expected = (before["linear.weight"] - weight).norm() / weight.norm()
    assert ratios["gradient_update/linear.weight"] == pytest.approx(expected.item())
    assert ratios["gradient_update/frozen"] == 0.0
    assert set(ratios) == {f"gradient_update/{name}" for name, _ in model.named_parameters()}


def test_epoch_metrics_are_split_into_train_and_validation_as_allennlp_logs_them():
    """Pins allennlp/training/util.py get_train_and_validation_metrics (``training_``/``validation_`` prefixes
    removed, no ``duration``/``start_epoch``/``epochs``) and log_writer.py log_epoch (only numbers; no
    ``_memory_MB`` among the training ones), which the wandb callback logs as ``train/...`` and ``validation/...``."""
    metrics = {
        "training_loss": 0.5,
        "training_accuracy": 0.75,
        "training_duration": "00:00:01",
        "training_epochs": 2,
        "training_start_epoch": 0,
        "training_peak_worker_0_memory_MB": 100.0,
        "validation_loss": 0.25,
        "validation_note": "text",
        "best_validation_loss": 0.2,
        "best_epoch": 1,
        "epoch": 1,
    }
    train, validation = log_writer.split_epoch_metrics(metrics)
    assert train == {"loss": 0.5, "accuracy": 0.75}
    assert validation == {"loss": 0.25}


def test_the_batch_loss_moving_average_is_over_the_last_100_logged_losses():
    """Pins allennlp/training/callbacks/log_writer.py: log_batch's ``batch_loss_mov_avg``, the mean of the last
    ``batch_loss_moving_average_count`` (100, not a WandBCallback key) logged batch losses."""
    window = log_writer.LossWindow()
    means = [window.add(float(value)) for value in range(1, 151)]
    assert means[0] == 1.0 and means[99] == pytest.approx(50.5)
    assert means[-1] == pytest.approx(sum(range(51, 151)) / 100)


def test_activation_outputs_are_named_as_log_writer_names_them():
    """Pins allennlp/training/callbacks/log_writer.py: _log_activation_distribution (``activation_histogram/`` and
    the module's class; ``_<index>`` for each tensor of a tuple, ``_<key>`` of a dict; other values skipped)."""
    name = str(torch.nn.Linear)
    tensor = torch.ones(2)
    assert set(log_writer.activation_tensors(tensor, name)) == {f"activation_histogram/{name}"}
    assert set(log_writer.activation_tensors((tensor, 3, tensor), name)) == {
        f"activation_histogram/{name}_0",
        f"activation_histogram/{name}_2",
    }
    assert set(log_writer.activation_tensors({"a": tensor, "b": None}, name)) == {f"activation_histogram/{name}_a"}
    assert log_writer.activation_tensors("text", name) == {}

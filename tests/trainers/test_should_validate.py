"""ShouldValidateCallback, the backward callbacks and `should_stop`, in process: the rules behind the CLI tests."""

from __future__ import annotations

import pytest
import torch

from regimen.registry import ConfigurationError
from regimen.trainers.callbacks import (
    MixedPrecisionBackwardCallback,
    OnBackwardException,
    ShouldValidateCallback,
    TrainerCallback,
)
from tests.trainers.test_gradient_descent import make_trainer


def test_epochs_validate_from_validation_start_at_each_interval():
    callback = ShouldValidateCallback(validation_start=4, validation_interval=2)
    assert [epoch for epoch in range(10) if callback.should_validate(epoch)] == [4, 6, 8]
    assert all(ShouldValidateCallback().should_validate(epoch) for epoch in range(3))


def test_a_resumed_run_decides_for_the_epoch_it_resumes_in():
    """AllenNLP's on_start always decides for epoch 0, so a run resumed at epoch 3 with validation_start 2 would
    skip its first validation; regimen decides for the epoch the trainer is at."""
    trainer = make_trainer({"num_epochs": 5})
    callback = ShouldValidateCallback(validation_start=2)
    callback.on_start(trainer)
    assert trainer._should_validate_this_epoch is False
    trainer._epochs_completed = 3
    callback.on_start(trainer)
    assert trainer._should_validate_this_epoch is True


def test_bad_values_name_the_key():
    with pytest.raises(ConfigurationError, match="validation_interval: must be positive, got 0"):
        ShouldValidateCallback(validation_interval=0)
    with pytest.raises(ConfigurationError, match="validation_start: must not be negative, got -1"):
        ShouldValidateCallback(validation_start=-1)


def test_mixed_precision_backward_goes_through_the_scaler():
    """With float16 AMP the callback's backward is the scaler's: the gradients come out scaled until unscaled."""
    trainer = make_trainer({"num_epochs": 1, "use_amp": True, "amp_dtype": "float16"})
    assert trainer._scaler is trainer._precision.scaler and trainer._scaler is not None
    loss = (trainer.model.network[0].weight.float() ** 2).sum()
    MixedPrecisionBackwardCallback().on_backward(trainer, {"loss": loss}, False)
    scaled = trainer.model.network[0].weight.grad.clone()
    expected = 2 * trainer.model.network[0].weight.detach() * trainer._scaler.get_scale()
    assert torch.allclose(scaled, expected)
    with pytest.raises(OnBackwardException, match="was asked after another callback had run it"):
        MixedPrecisionBackwardCallback().on_backward(trainer, {"loss": loss}, True)


def test_a_callback_claiming_the_backward_after_another_is_an_error_even_if_it_does_not_check():
    class Careless(TrainerCallback):
        def on_backward(self, trainer, batch_outputs, backward_called, **kwargs):
            return True  # claims the backward pass without looking at backward_called

    trainer = make_trainer({"num_epochs": 1})
    trainer._callbacks += [Careless(), Careless()]
    with pytest.raises(OnBackwardException, match="Careless ran it after Careless had"):
        trainer.train()


def test_a_callback_setting_should_stop_ends_training_after_that_epoch(tmp_path):
    """Lightning's ``trainer.should_stop``: the run ends after the epoch, with its final metrics and best weights."""

    class StopAfterSecond(TrainerCallback):
        def on_epoch(self, trainer, metrics, epoch, is_primary=True, **kwargs):
            self.last_epoch = epoch
            if epoch == 1:
                trainer.should_stop = True

    callback = StopAfterSecond()
    trainer = make_trainer({"num_epochs": 6}, serialization_dir=str(tmp_path))
    trainer._callbacks.append(callback)
    metrics = trainer.train()
    assert callback.last_epoch == 1 and metrics["training_epochs"] == 2 and metrics["epoch"] == 1
    assert trainer.global_step == 16  # 8 steps per epoch
    assert "best_validation_loss" in metrics and (tmp_path / "best.th").is_file()

"""Backward callbacks: callbacks that run a training batch's backward pass in the trainer's place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regimen.trainers.callbacks.callback import TrainerCallback

if TYPE_CHECKING:
    from regimen.trainers.trainer import Trainer


class OnBackwardException(RuntimeError):
    """A second callback ran the backward pass of a batch whose backward pass a callback had already run (the
    graph is gone by then), as AllenNLP's ``OnBackwardException``."""

    def __init__(self, message: str = "") -> None:
        super().__init__(
            "the backward pass of this batch has already been run by a callback, so its graph is freed and "
            "backward cannot run again" + (f": {message}" if message else "")
        )


def backward_by_callbacks(trainer: Trainer, callbacks: list[TrainerCallback], batch_outputs: dict[str, Any]) -> bool:
    """Offer the backward pass to each callback in order, as AllenNLP 2.10's trainer does; True when one ran it.

    A callback that claims it after another did is an `OnBackwardException` naming both, also when the callback
    itself did not check ``backward_called``."""
    done_by: TrainerCallback | None = None
    for callback in callbacks:
        if callback.on_backward(trainer, batch_outputs, done_by is not None):
            if done_by is not None:
                raise OnBackwardException(f"{type(callback).__name__} ran it after {type(done_by).__name__} had")
            done_by = callback
    return done_by is not None


@TrainerCallback.register("mixed_precision_backward")
class MixedPrecisionBackwardCallback(TrainerCallback):
    """Runs each training batch's backward pass through the trainer's mixed-precision scaler (AllenNLP 2.10's
    callback of the same name; the trainer does the same by itself under `use_amp`, so this is for configs that
    name it, and for subclasses that add to the backward pass).

    Registered as a `TrainerCallback` with name "mixed_precision_backward".

    Config keys: none besides the injected `serialization_dir`.
    """

    def on_backward(self, trainer: Any, batch_outputs: dict[str, Any], backward_called: bool, **kwargs: Any) -> bool:
        if backward_called:
            raise OnBackwardException(f"{type(self).__name__} was asked after another callback had run it")
        trainer._precision.backward(batch_outputs["loss"], trainer.optimizer)
        return True

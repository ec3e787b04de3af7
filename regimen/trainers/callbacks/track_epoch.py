"""TrackEpochCallback: keeps ``model.epoch`` equal to the epoch being trained."""

from __future__ import annotations

from typing import Any

from regimen.trainers.callbacks.callback import TrainerCallback


@TrainerCallback.register("track_epoch")
class TrackEpochCallback(TrainerCallback):
    """Sets ``trainer.model.epoch`` to the current epoch (0 at the start, epoch + 1 after each validation),
    for models whose behaviour depends on it.

    Registered as a `TrainerCallback` with name "track_epoch". Config keys: none.
    """

    def on_start(self, trainer: Any, is_primary: bool = True, **kwargs: Any) -> None:
        trainer.model.epoch = getattr(trainer, "_epochs_completed", 0)

    def on_epoch(
        self, trainer: Any, metrics: dict[str, Any], epoch: int, is_primary: bool = True, **kwargs: Any
    ) -> None:
        trainer.model.epoch = epoch + 1

"""ShouldValidateCallback: which epochs end with a validation (AllenNLP 2.10's `should_validate_callback`)."""

from __future__ import annotations

from typing import Any

from regimen.registry.values import check_non_negative, check_positive
from regimen.trainers.callbacks.callback import TrainerCallback


@TrainerCallback.register("should_validate_callback")
class ShouldValidateCallback(TrainerCallback):
    """Validates only from epoch `validation_start` on, and then every `validation_interval` epochs.

    Registered as a `TrainerCallback` with name "should_validate_callback".

    Epoch ``e`` (counted from 0) validates when ``e >= validation_start`` and ``e % validation_interval == 0``,
    as in AllenNLP 2.10 (`validation_start: 4, validation_interval: 2` validates after epochs 4, 6, 8, ...). It
    sets the trainer's ``_should_validate_this_epoch``, which also gates `validate_every_num_steps` validations;
    the trainer's own `validate_every_num_epochs` applies as well. Unlike AllenNLP, whose ``on_start`` always
    decides for epoch 0, a resumed run decides for the epoch it resumes in, so it validates exactly as an
    uninterrupted run does.

    Config keys:
    - `validation_start` (int, null): the first epoch that may validate; null: from the first.
    - `validation_interval` (int, null): validate on epochs that are multiples of it; null: every epoch.
    """

    def __init__(
        self,
        serialization_dir: str | None = None,
        validation_start: int | None = None,
        validation_interval: int | None = None,
    ) -> None:
        super().__init__(serialization_dir)
        check_positive(validation_interval=validation_interval)
        check_non_negative(validation_start=validation_start)
        self.validation_start = validation_start
        self.validation_interval = validation_interval

    def should_validate(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (from 0) ends with a validation."""
        if self.validation_start is not None and epoch < self.validation_start:
            return False
        return self.validation_interval is None or epoch % self.validation_interval == 0

    def on_start(self, trainer: Any, is_primary: bool = True, **kwargs: Any) -> None:
        trainer._should_validate_this_epoch = self.should_validate(getattr(trainer, "_epochs_completed", 0))

    def on_epoch(
        self, trainer: Any, metrics: dict[str, Any], epoch: int, is_primary: bool = True, **kwargs: Any
    ) -> None:
        trainer._should_validate_this_epoch = self.should_validate(epoch + 1)

    def on_end(
        self,
        trainer: Any,
        metrics: dict[str, Any] | None = None,
        epoch: int | None = None,
        is_primary: bool = True,
        **kwargs: Any,
    ) -> None:
        trainer._should_validate_this_epoch = self.should_validate(getattr(trainer, "_epochs_completed", 0))

"""TrainerCallback: code called by the trainer at named points (start, each batch, each validation, end)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regimen.registry import Registrable

if TYPE_CHECKING:
    from regimen.trainers.trainer import Trainer


class TrainerCallback(Registrable):
    """The base of trainer callbacks: override the hooks you need; each is a plain method called directly.

    The lifecycle is AllenNLP 2.10's: ``on_start`` once (also when resuming); for each training batch
    ``on_backward`` in place of the backward pass (return True when you did it yourself); ``on_batch`` after
    every training optimizer step and every validation batch; ``on_epoch`` after **every** epoch, validated or
    not (its metrics have ``validation_*`` keys only when that epoch validated); ``on_end`` once, always, also
    after an exception (then ``metrics`` is None). ``state_dict``/``load_state_dict`` carry a callback's state
    through checkpoints. (AllenNLP 1.x's ``epoch=-1`` call before training is made for 1.x epoch callbacks only.)

    Callbacks in a config take ``serialization_dir`` from the trainer.
    """

    def __init__(self, serialization_dir: str | None = None) -> None:
        self.serialization_dir = serialization_dir

    def on_start(self, trainer: Trainer, is_primary: bool = True, **kwargs: Any) -> None:
        """Before the first batch."""

    def on_backward(
        self, trainer: Trainer, batch_outputs: dict[str, Any], backward_called: bool, **kwargs: Any
    ) -> bool:
        """After a training batch's forward pass, in place of ``loss.backward()``: return True when this callback
        ran the backward pass itself. ``backward_called`` says an earlier callback already did; running it a second
        time is an error (raise `OnBackwardException`). ``batch_outputs["loss"]`` is the batch's share of the
        optimizer step's loss (divided by the batches of the step under gradient accumulation)."""
        return False

    def on_batch(
        self,
        trainer: Trainer,
        batch_inputs: list[dict[str, Any]],
        batch_outputs: list[dict[str, Any]],
        batch_metrics: dict[str, Any],
        epoch: int,
        batch_number: int,
        is_training: bool,
        is_primary: bool = True,
        batch_grad_norm: float | None = None,
        **kwargs: Any,
    ) -> None:
        """After an optimizer step (``is_training``, ``batch_number`` counts steps in the epoch) or a
        validation batch. ``batch_inputs``/``batch_outputs`` hold the micro-batches of the step."""

    def on_epoch(
        self, trainer: Trainer, metrics: dict[str, Any], epoch: int, is_primary: bool = True, **kwargs: Any
    ) -> None:
        """After each validation (and once with ``epoch=-1`` before training)."""

    def on_end(
        self,
        trainer: Trainer,
        metrics: dict[str, Any] | None = None,
        epoch: int | None = None,
        is_primary: bool = True,
        **kwargs: Any,
    ) -> None:
        """When training ends, however it ends; ``metrics`` is None after an exception."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass


class BatchCallback(Registrable):
    """AllenNLP 1.x batch callback: ``__call__(trainer, batch_inputs, batch_outputs, batch_metrics, epoch,
    batch_number, is_training, is_primary)`` after every training and validation batch. Prefer TrainerCallback."""

    def __call__(
        self,
        trainer: Trainer,
        batch_inputs: list[dict[str, Any]],
        batch_outputs: list[dict[str, Any]],
        batch_metrics: dict[str, Any],
        epoch: int,
        batch_number: int,
        is_training: bool,
        is_primary: bool = True,
    ) -> None:
        pass


class EpochCallback(Registrable):
    """AllenNLP 1.x epoch callback: ``__call__(trainer, metrics, epoch, is_primary)`` after every epoch and once
    with ``epoch=-1`` when training starts (also when it resumes, as in 1.x). Prefer TrainerCallback."""

    def __call__(self, trainer: Trainer, metrics: dict[str, Any], epoch: int, is_primary: bool = True) -> None:
        pass


class LegacyCallbacks(TrainerCallback):
    """Runs AllenNLP 1.x batch and epoch callbacks from the TrainerCallback hooks (not registered)."""

    def __init__(self, batch_callbacks: list[BatchCallback], epoch_callbacks: list[EpochCallback]) -> None:
        super().__init__()
        self.batch_callbacks = batch_callbacks
        self.epoch_callbacks = epoch_callbacks

    def on_batch(
        self,
        trainer,
        batch_inputs,
        batch_outputs,
        batch_metrics,
        epoch,
        batch_number,
        is_training,
        is_primary=True,
        batch_grad_norm=None,
        **kwargs,
    ) -> None:
        for callback in self.batch_callbacks:
            callback(trainer, batch_inputs, batch_outputs, batch_metrics, epoch, batch_number, is_training, is_primary)

    def on_start(self, trainer, is_primary=True, **kwargs) -> None:
        for callback in self.epoch_callbacks:
            callback(trainer, {}, -1, is_primary)

    def on_epoch(self, trainer, metrics, epoch, is_primary=True, **kwargs) -> None:
        for callback in self.epoch_callbacks:
            callback(trainer, metrics, epoch, is_primary)


def overriding(callbacks: list[TrainerCallback], hook: str) -> list[TrainerCallback]:
    """The callbacks whose class overrides ``hook``: the ones worth calling where a hook runs per batch."""
    default = getattr(TrainerCallback, hook)
    return [callback for callback in callbacks if getattr(type(callback), hook) is not default]


_HOOKS = ("on_start", "on_batch", "on_epoch", "on_end")


class ComponentHooks(TrainerCallback):
    """Calls the hook methods that other components (model, data loader, optimizer, scheduler) define.

    A component opts in by defining any of ``on_start``, ``on_batch``, ``on_epoch``, ``on_end`` with the
    TrainerCallback signature. Not registered: the trainer adds it when some component has a hook.
    """

    def __init__(self, components: list[Any]) -> None:
        super().__init__()
        self.components = [c for c in components if c is not None and any(hasattr(c, hook) for hook in _HOOKS)]

    def _call(self, hook: str, *args: Any, **kwargs: Any) -> None:
        for component in self.components:
            method = getattr(component, hook, None)
            if method is not None:
                method(*args, **kwargs)

    def on_start(self, *args: Any, **kwargs: Any) -> None:
        self._call("on_start", *args, **kwargs)

    def on_batch(self, *args: Any, **kwargs: Any) -> None:
        self._call("on_batch", *args, **kwargs)

    def on_epoch(self, *args: Any, **kwargs: Any) -> None:
        self._call("on_epoch", *args, **kwargs)

    def on_end(self, *args: Any, **kwargs: Any) -> None:
        self._call("on_end", *args, **kwargs)

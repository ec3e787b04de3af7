"""TrainerCallback: code called by the trainer at named points (start, each batch, each validation, end)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regimen.registry import Registrable

if TYPE_CHECKING:
    from regimen.trainers.trainer import Trainer


class TrainerCallback(Registrable):
    """The base of trainer callbacks: override the hooks you need; each is a plain method called directly.

    The hooks, in the order a run calls them (``HOOKS``; the README maps them to autrainer's, stable-ssl's and
    AllenNLP's names):

    - ``on_start`` once, before the first batch (also when a run resumes);
    - ``on_epoch_start`` as each epoch begins (also when a run resumes in the middle of one);
    - ``on_batch_start`` before each optimizer step's forward passes, each validation batch and each test batch;
    - ``on_backward`` in place of each training batch's backward pass (return True when you did it yourself);
    - ``on_batch`` after each optimizer step, validation batch and test batch (AllenNLP's arguments);
    - ``on_loader_exhausted`` when an epoch has used all its training batches (not when a step budget ends it);
    - ``on_validation_start`` / ``on_validation_end`` around each validation;
    - ``on_epoch`` after **every** epoch, validated or not (its metrics have ``validation_*`` keys only when that
      epoch validated);
    - ``on_test_start`` / ``on_test_end`` around the evaluation on the test data (``evaluate_on_test``), which runs
      after training with the best weights;
    - ``on_end`` once, always, also after an exception (then ``metrics`` is None); with test data its metrics hold
      the ``test_*`` keys.

    The batch hooks get ``split``: ``"training"``, ``"validation"`` (with named validation sets, the set's name)
    or ``"test"``. ``state_dict`` and
    ``load_state_dict`` carry a callback's state through checkpoints. (AllenNLP 1.x's ``epoch=-1`` call before
    training is made for 1.x epoch callbacks only.) Callbacks in a config take ``serialization_dir`` from the
    trainer.
    """

    def __init__(self, serialization_dir: str | None = None) -> None:
        self.serialization_dir = serialization_dir

    def on_start(self, trainer: Trainer, is_primary: bool = True, **kwargs: Any) -> None:
        """Before the first batch."""

    def on_epoch_start(self, trainer: Trainer, epoch: int, **kwargs: Any) -> None:
        """As an epoch begins."""

    def on_batch_start(
        self,
        trainer: Trainer,
        batch_inputs: list[dict[str, Any]],
        epoch: int,
        batch_number: int,
        is_training: bool,
        split: str = "training",
        **kwargs: Any,
    ) -> None:
        """Before the forward passes of an optimizer step (``batch_inputs`` holds its micro-batches; ``batch_number``
        is the one ``on_batch`` gets for it), or of one validation or test batch."""

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
        validation or test batch (``split`` says which). ``batch_inputs``/``batch_outputs`` hold the micro-batches
        of the step."""

    def on_loader_exhausted(self, trainer: Trainer, epoch: int, **kwargs: Any) -> None:
        """When the epoch's training batches are used up, before its validation."""

    def on_validation_start(self, trainer: Trainer, epoch: int, **kwargs: Any) -> None:
        """Before a validation."""

    def on_validation_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any], **kwargs: Any) -> None:
        """After a validation, with its ``validation_*`` metrics."""

    def on_epoch(
        self, trainer: Trainer, metrics: dict[str, Any], epoch: int, is_primary: bool = True, **kwargs: Any
    ) -> None:
        """After every epoch, with its metrics."""

    def on_test_start(self, trainer: Trainer, **kwargs: Any) -> None:
        """Before the evaluation on the test data."""

    def on_test_end(self, trainer: Trainer, metrics: dict[str, Any], **kwargs: Any) -> None:
        """After the evaluation on the test data, with its ``test_*`` metrics."""

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


# Every hook, in the order a run calls them; a seed trainer's hook is a row of the README's table, not a branch.
HOOKS = (
    "on_start",
    "on_epoch_start",
    "on_batch_start",
    "on_backward",
    "on_batch",
    "on_loader_exhausted",
    "on_validation_start",
    "on_validation_end",
    "on_epoch",
    "on_test_start",
    "on_test_end",
    "on_end",
)


def component_hooks(components: list[Any]) -> TrainerCallback | None:
    """A callback that calls the hooks that other components (model, dataset readers, data loaders, optimizer,
    schedulers, moving average) define, with the TrainerCallback signatures; None when none defines one.

    It overrides only the hooks some component has, so the per-batch ones cost nothing otherwise."""
    unique = {id(c): c for c in components if c is not None}.values()  # a reader may serve two loaders
    components = [c for c in unique if any(callable(getattr(c, h, None)) for h in HOOKS)]
    if not components:
        return None

    def calling(hook: str) -> Any:
        def call(self: TrainerCallback, *args: Any, **kwargs: Any) -> Any:
            results = [getattr(c, hook)(*args, **kwargs) for c in components if callable(getattr(c, hook, None))]
            return any(results) if hook == "on_backward" else None

        return call

    present = {hook: calling(hook) for hook in HOOKS if any(callable(getattr(c, hook, None)) for c in components)}
    hooks = type("ComponentHooks", (TrainerCallback,), present)()
    hooks.components = components
    return hooks


class HookDispatch:
    """The one way the trainer calls hooks: ``dispatch("on_epoch", trainer, ...)`` calls that hook of every
    callback whose class overrides it, in the callbacks' order (the others are no-ops, so skipping them is free)."""

    def __init__(self, callbacks: list[TrainerCallback]) -> None:
        self.by_hook = {hook: overriding(callbacks, hook) for hook in HOOKS}

    def __call__(self, hook: str, *args: Any, **kwargs: Any) -> None:
        for callback in self.by_hook[hook]:
            getattr(callback, hook)(*args, **kwargs)

    def wants(self, hook: str) -> bool:
        """Whether any callback overrides ``hook`` (so that the loop prepares its arguments only then)."""
        return bool(self.by_hook[hook])

"""Older AllenNLP trainer configs: 0.9's trainer-level keys and 1.x's callback keys, taken where they moved."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from regimen.registry import ConfigurationError, Lazy
from regimen.trainers.callbacks import TensorBoardCallback, TrainerCallback
from regimen.trainers.callbacks.callback import BatchCallback, EpochCallback, LegacyCallbacks

logger = logging.getLogger(__name__)


def _same(value: Any) -> Any:
    return value


# AllenNLP 0.9 key of the trainer -> (its key in the checkpointer, how its value reads there).
CHECKPOINTER_KEYS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    # 0.9 kept every checkpoint for a negative count; regimen always keeps the newest, so 0 keeps one.
    "num_serialized_models_to_keep": ("keep_most_recent_by_count", lambda count: None if count < 0 else max(count, 1)),
    "keep_serialized_model_every_num_seconds": ("keep_most_recent_by_age", _same),
    "model_save_interval": ("save_every_num_seconds", _same),
}
# AllenNLP 0.9 key of the trainer -> its key in the tensorboard callback (0.9 always wrote tensorboard logs).
TENSORBOARD_KEYS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "summary_interval": ("summary_interval", _same),
    "histogram_interval": ("histogram_interval", _same),
    "should_log_parameter_statistics": ("should_log_parameter_statistics", _same),
    "should_log_learning_rate": ("should_log_learning_rate", _same),
    "log_batch_size_period": ("batch_size_interval", _same),
}

# AllenNLP 2.x key of the trainer -> the key that replaced it (2.10 still reads the old one, deprecated).
RENAMED_KEYS = {"run_sanity_checks": "run_confidence_checks"}


def renamed_keys(given: dict[str, Any], kwargs: dict[str, Any]) -> None:
    """Put each old name of `RENAMED_KEYS` that ``given`` (the trainer's arguments) sets into ``kwargs`` under its
    new name, with one deprecation note; both names written is a ConfigurationError."""
    for old, new in RENAMED_KEYS.items():
        if given.get(old) is None:
            continue
        if new in kwargs:
            raise ConfigurationError(f"and {new} are one setting (its old and new name); give only {new}", key=old)
        logger.warning("trainer.%s is deprecated (AllenNLP 2.x): write it as trainer.%s", old, new)
        kwargs[new] = given[old]


def moved_keys(
    given: dict[str, Any], table: dict[str, tuple[str, Callable[[Any], Any]]], block: str, lazy: Lazy[Any] | None
) -> dict[str, Any]:
    """The keys of ``table`` that ``given`` (the trainer's arguments) sets, renamed for the trainer's ``block``,
    as extras for ``lazy`` (that block's config; None: the block is absent). Each logs one deprecation note naming
    the old and the new place. The same setting written in the block too, or a checkpointer switched off with null,
    is a ConfigurationError."""
    moved: dict[str, Any] = {}
    for old, (new, convert) in table.items():
        if given.get(old) is None:
            continue
        if lazy is None and block == "checkpointer":
            raise ConfigurationError(f"is AllenNLP 0.9's place for {block}.{new}, but {block} is null", key=old)
        if lazy is not None and new in lazy.params:
            raise ConfigurationError(f"and {block}.{new} are one setting; give only {block}.{new}", key=old)
        logger.warning(
            "trainer.%s is AllenNLP 0.9's place for this setting: write it as trainer.%s.%s", old, block, new
        )
        moved[new] = convert(given[old])
    return moved


def legacy_trainer_keys(
    given: dict[str, Any], checkpointer: Lazy[Any] | None, tensorboard_writer: Lazy[Any] | None, kwargs: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The extras for the checkpointer and the tensorboard writer from ``given`` (the trainer's arguments) by
    `moved_keys`; renamed keys go into ``kwargs`` (the trainer's other arguments) by `renamed_keys`."""
    renamed_keys(given, kwargs)
    return (
        moved_keys(given, CHECKPOINTER_KEYS, "checkpointer", checkpointer),
        moved_keys(given, TENSORBOARD_KEYS, "tensorboard_writer", tensorboard_writer),
    )


def gather_configured_callbacks(
    callbacks: list[Lazy[TrainerCallback]],
    batch_callbacks: list[BatchCallback],
    epoch_callbacks: list[EpochCallback],
    tensorboard_writer: Lazy[TensorBoardCallback] | None,
    tensorboard_keys: dict[str, Any],
    serialization_dir: str | None,
) -> list[TrainerCallback]:
    """The trainer's callbacks from every era's keys: 2.x ``callbacks``; 1.x ``batch_callbacks``,
    ``epoch_callbacks`` and ``tensorboard_writer``; 0.9's trainer-level tensorboard keys (``tensorboard_keys``,
    already renamed by `moved_keys`), which configure ``tensorboard_writer`` or else a tensorboard callback."""
    callbacks = list(callbacks)
    if tensorboard_writer is not None:
        logger.warning("trainer.tensorboard_writer is deprecated: write it as a 'tensorboard' entry of callbacks")
    elif tensorboard_keys:
        tensorboard_writer = Lazy(TensorBoardCallback)
    built = [callback.construct(serialization_dir=serialization_dir) for callback in callbacks]
    if tensorboard_writer is not None:
        built.append(tensorboard_writer.construct(serialization_dir=serialization_dir, **tensorboard_keys))
    if batch_callbacks or epoch_callbacks:
        built.append(LegacyCallbacks(batch_callbacks, epoch_callbacks))
    return built

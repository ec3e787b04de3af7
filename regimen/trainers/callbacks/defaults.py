"""The callbacks a trainer runs: the configured ones, the defaults it adds, and its components' own hooks."""

from __future__ import annotations

import logging
from typing import Any

from regimen.trainers.callbacks.callback import TrainerCallback, component_hooks
from regimen.trainers.callbacks.confidence_checks import ConfidenceChecksCallback
from regimen.trainers.callbacks.console_logger import ConsoleLoggerCallback

logger = logging.getLogger(__name__)


def gather_callbacks(
    callbacks: list[TrainerCallback],
    serialization_dir: str | None,
    components: list[Any],
    console_logger: bool = True,
    confidence_checks: bool = True,
) -> list[TrainerCallback]:
    """``callbacks`` in order, with a `ConsoleLoggerCallback` first (``console_logger``) and a
    `ConfidenceChecksCallback` last (``confidence_checks``) unless one is there already, and then a
    callback for the hooks that ``components`` (model, readers, data loaders, optimizer, ...) define."""
    gathered = list(callbacks)
    if console_logger and not any(isinstance(c, ConsoleLoggerCallback) for c in gathered):
        gathered.insert(0, ConsoleLoggerCallback(serialization_dir))
    if confidence_checks and not any(isinstance(c, ConfidenceChecksCallback) for c in gathered):
        gathered.append(ConfidenceChecksCallback(serialization_dir))
    hooks = component_hooks(components)
    if hooks is not None:
        gathered.append(hooks)
    logger.info("callbacks: %s", ", ".join(type(c).__name__ for c in gathered) or "none")
    return gathered

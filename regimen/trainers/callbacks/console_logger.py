"""ConsoleLoggerCallback: logs each validation's training and validation metrics side by side."""

from __future__ import annotations

import logging
from typing import Any

from regimen.trainers.callbacks.callback import TrainerCallback

logger = logging.getLogger(__name__)


@TrainerCallback.register("console_logger")
class ConsoleLoggerCallback(TrainerCallback):
    """Logs a table of the metrics after each validation (training next to validation values).

    Registered as a `TrainerCallback` with name "console_logger". On by default
    (`enable_default_callbacks`).

    Config keys: none besides the injected `serialization_dir`.
    """

    def on_epoch(
        self, trainer: Any, metrics: dict[str, Any], epoch: int, is_primary: bool = True, **kwargs: Any
    ) -> None:
        if not is_primary or epoch < 0:
            return
        names = sorted(
            {key.removeprefix("training_") for key in metrics if key.startswith("training_")}
            | {key.removeprefix("validation_") for key in metrics if key.startswith("validation_")}
        )
        lines = [f"epoch {epoch}: {'metric':<24} {'training':>12} {'validation':>12}"]
        for name in names:
            train, valid = metrics.get(f"training_{name}"), metrics.get(f"validation_{name}")
            lines.append(f"epoch {epoch}: {name:<24} {_format(train):>12} {_format(valid):>12}")
        logger.info("\n".join(lines))


def _format(value: Any) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)

"""MetricTracker: which validation was best and whether patience has run out."""

from __future__ import annotations

from typing import Any

from regimen.registry import ConfigurationError


class MetricTracker:
    """Tracks the combined validation score across validations.

    ``metric_name`` is one ``"+name"``/``"-name"`` (higher/lower is better) or a list of them, combined by
    summing (lower-is-better ones negated), so the score is always higher-is-better. ``patience`` is the number
    of validations without strict improvement after which training stops (None: never).
    """

    def __init__(self, metric_name: str | list[str] = "-loss", patience: int | None = None) -> None:
        names = [metric_name] if isinstance(metric_name, str) else list(metric_name)
        if not names:
            raise ConfigurationError("needs at least one metric", key="validation_metric")
        for name in names:
            if not name or name[0] not in "+-":
                raise ConfigurationError(
                    f'"{name}" must start with "+" (higher is better) or "-" (lower is better), e.g. "-loss"',
                    key="validation_metric",
                )
        if patience is not None and patience <= 0:
            raise ConfigurationError(f"must be a positive int or null, got {patience}", key="patience")
        self.tracked = [(name[1:], 1.0 if name[0] == "+" else -1.0) for name in names]
        self.patience = patience
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_epoch_metrics: dict[str, Any] = {}
        self.epochs_with_no_improvement = 0
        self.current_score: float | None = None

    def combined_score(self, metrics: dict[str, Any]) -> float:
        """The higher-is-better sum of the tracked metrics; a metric the model did not produce is an error."""
        missing = [name for name, _ in self.tracked if name not in metrics]
        if missing:
            raise ConfigurationError(
                f"the model did not produce the metric {missing[0]!r}; it produced: {', '.join(sorted(metrics))}",
                key="validation_metric",
            )
        return sum(sign * float(metrics[name]) for name, sign in self.tracked)

    def add_metrics(self, metrics: dict[str, Any], epoch: int) -> None:
        """Record one validation's metrics."""
        score = self.combined_score(metrics)
        self.current_score = score
        if self.best_score is None or score > self.best_score:
            self.best_score = score
            self.best_epoch = epoch
            self.best_epoch_metrics = dict(metrics)
            self.epochs_with_no_improvement = 0
        else:
            self.epochs_with_no_improvement += 1

    def is_best_so_far(self) -> bool:
        """Whether the last validation added is the best (ties are not improvements)."""
        return self.epochs_with_no_improvement == 0 and self.current_score is not None

    def should_stop_early(self) -> bool:
        return self.patience is not None and self.epochs_with_no_improvement >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "best_epoch_metrics": self.best_epoch_metrics,
            "epochs_with_no_improvement": self.epochs_with_no_improvement,
            "current_score": self.current_score,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score = state["best_score"]
        self.best_epoch = state["best_epoch"]
        self.best_epoch_metrics = state["best_epoch_metrics"]
        self.epochs_with_no_improvement = state["epochs_with_no_improvement"]
        self.current_score = state["current_score"]


def check_set_metrics(validation_metric: str | list[str], sets: list[str]) -> None:
    """With named validation sets every metric is one set's (``"+hard_accuracy"``): raise naming the sets if not."""
    names = [validation_metric] if isinstance(validation_metric, str) else list(validation_metric)
    for name in names:
        bare = name[1:] if name[:1] in "+-" else name
        if not any(bare.startswith(f"{set_name}_") for set_name in sets):
            raise ConfigurationError(
                f"{name!r} is no set's metric: with named validation sets ({', '.join(sets)}) name one, e.g. "
                f'"-{sets[0]}_loss" or "+{sets[0]}_accuracy"',
                key="validation_metric",
            )

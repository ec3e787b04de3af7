"""Model: the base class of every trainable model, a ``torch.nn.Module`` that is also Registrable."""

from __future__ import annotations

import logging
import re
from typing import Any

import torch

from regimen.registry import Registrable

logger = logging.getLogger(__name__)


class Model(torch.nn.Module, Registrable):
    """A model regimen can train.

    ``forward(**batch)`` takes the fields of a collated batch as keyword arguments and returns a dict. When the
    batch holds labels, the dict holds ``"loss"``: a scalar tensor, or a dict of named scalar losses, which the
    trainer sums for the backward pass and reports one by one as ``loss_<name>``.

    ``get_metrics(reset)`` returns the metrics accumulated since the last reset (floats, e.g. accuracy);
    ``get_regularization_penalty()`` an optional scalar added to the training loss.

    ``metric_state()`` lists the tensors of sums and counts behind ``get_metrics``. In a distributed run the
    trainer sums them over the workers (in place) before it reads the metrics with ``reset=True``, so the metrics
    reported are those of the whole data; a model that keeps its counts elsewhere reports the primary's share.
    """

    def forward(self, **batch: Any) -> dict[str, Any]:  # pragma: no cover - every model defines it
        raise NotImplementedError  # abstract

    def get_metrics(self, reset: bool = False) -> dict[str, float]:
        """Metrics accumulated since the last reset; the default model has none."""
        return {}

    def metric_state(self) -> list[torch.Tensor]:
        """The tensors of sums and counts ``get_metrics`` is computed from (none by default)."""
        return []

    def get_regularization_penalty(self) -> torch.Tensor | None:
        """A scalar added to the training loss, or None (the default)."""
        return None


def freeze_parameters(model: torch.nn.Module, patterns: list[str]) -> None:
    """Stop training the parameters whose names match any of the regular expressions ``patterns`` (the trainer's
    ``no_grad``); a pattern that matches nothing is logged as a warning."""
    for pattern in patterns:
        matched = {name for name, _ in model.named_parameters() if re.search(pattern, name)}
        if not matched:
            logger.warning("no_grad: %r matches no parameter", pattern)
        for name, parameter in model.named_parameters():
            if name in matched:
                parameter.requires_grad_(False)

"""Model: the base class of every trainable model, a ``torch.nn.Module`` that is also Registrable."""

from __future__ import annotations

from typing import Any

import torch

from regimen.registry import Registrable


class Model(torch.nn.Module, Registrable):
    """A model regimen can train.

    ``forward(**batch)`` takes the fields of a collated batch as keyword arguments and returns a dict. When the
    batch holds labels, the dict holds ``"loss"``: a scalar tensor, or a dict of named scalar losses, which the
    trainer sums for the backward pass and reports one by one as ``loss_<name>``.

    ``get_metrics(reset)`` returns the metrics accumulated since the last reset (floats, e.g. accuracy);
    ``get_regularization_penalty()`` an optional scalar added to the training loss.
    """

    def forward(self, **batch: Any) -> dict[str, Any]:  # pragma: no cover - every model defines it
        raise NotImplementedError  # abstract

    def get_metrics(self, reset: bool = False) -> dict[str, float]:
        """Metrics accumulated since the last reset; the default model has none."""
        return {}

    def get_regularization_penalty(self) -> torch.Tensor | None:
        """A scalar added to the training loss, or None (the default)."""
        return None

"""MlpClassifier: a multi-layer perceptron over a vector of features, predicting one of N classes."""

from __future__ import annotations

from typing import Any, Literal

import torch

from regimen.models.model import Model, replace_metric_state
from regimen.registry import ConfigurationError

_ACTIVATIONS = {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "tanh": torch.nn.Tanh}


@Model.register("mlp_classifier")
class MlpClassifier(Model):
    """A feed-forward classifier: ``features`` (batch x input_dim floats) -> logits over ``num_classes``.

    Registered as a `Model` with name "mlp_classifier".

    Config keys:
    - `input_dim` (int, required): the number of input features.
    - `num_classes` (int, required): the number of classes; labels are ints in ``[0, num_classes)``.
    - `hidden_dims` (list[int], []): the width of each hidden layer.
    - `activation` ("relu" | "gelu" | "tanh", "relu"): the activation after each hidden layer.
    - `dropout` (float, 0.0): dropout after each hidden layer.

    Outputs ``logits``, ``probs`` and, with a ``label`` in the batch, ``loss`` (cross-entropy). Metric:
    ``accuracy``, the share of instances whose most probable class is their label: a ``torchmetrics.Accuracy``
    attribute, which the trainer reports, resets, reduces over workers and checkpoints (see `Model`). Weights saved
    before it was one hold its counts as ``_correct`` and ``_total``; they still load, the counts going to it.
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        hidden_dims: list[int] = (),  # type: ignore[assignment]
        activation: Literal["relu", "gelu", "tanh"] = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ConfigurationError(f"must be in [0, 1), got {dropout}", key="dropout")
        if num_classes < 2:
            raise ConfigurationError(f"must be at least 2, got {num_classes}", key="num_classes")
        layers: list[torch.nn.Module] = []
        width = input_dim
        for hidden in hidden_dims:
            # Identity for no dropout: the same layer indices (and state-dict keys), without dropout's work per step.
            drop = torch.nn.Dropout(dropout) if dropout > 0 else torch.nn.Identity()
            layers += [torch.nn.Linear(width, hidden), _ACTIVATIONS[activation](), drop]
            width = hidden
        layers.append(torch.nn.Linear(width, num_classes))
        self.network = torch.nn.Sequential(*layers)
        self.loss = torch.nn.CrossEntropyLoss()
        import torchmetrics  # here: importing it takes seconds, which commands that build no model need not pay

        # Counted in float64 (exact up to 2**53 instances), so that the accuracy is correct / total divided in
        # float64, as regimen computed it before; torchmetrics divides integer counts in float32. No validation of
        # the arguments: its checks wait for the device at every batch, and the loss already rejects bad labels.
        self.accuracy = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes, validate_args=False)
        self.accuracy.set_dtype(torch.float64)

    def forward(self, features: torch.Tensor, label: torch.Tensor | None = None, **extra: Any) -> dict[str, Any]:
        # In the first layer's dtype: float32, or the bfloat16 of a sharded model's mixed precision.
        logits = self.network(features.to(self.network[0].weight.dtype))
        output: dict[str, Any] = {"logits": logits, "probs": logits.softmax(-1)}
        if label is not None:
            output["loss"] = self.loss(logits, label)
            self.accuracy.update(logits.detach(), label)
        return output

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Weights saved before the accuracy was a torchmetrics metric hold its counts as the buffers _correct and
        # _total: not weights now, but the counts of a checkpoint saved mid-epoch, which the metric takes up.
        correct, total = state_dict.pop(f"{prefix}_correct", None), state_dict.pop(f"{prefix}_total", None)
        if correct is not None and total is not None:
            right, wrong = int(correct), int(total) - int(correct)
            # A multiclass micro accuracy's statistics: a wrong prediction is a false positive of one class and a
            # false negative of another; every other class is a true negative.
            counts = {"tp": right, "fp": wrong, "fn": wrong, "tn": right * (self.accuracy.num_classes - 1)}
            counts["tn"] += wrong * (self.accuracy.num_classes - 2)
            states = {name: torch.tensor([count], dtype=torch.float64) for name, count in counts.items()}
            replace_metric_state(self.accuracy, states, update_count=int(total > 0))
        super()._load_from_state_dict(state_dict, prefix, *args)

"""MlpClassifier: a multi-layer perceptron over a vector of features, predicting one of N classes."""

from __future__ import annotations

from typing import Any, Literal

import torch

from regimen.models.model import Model
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
    ``accuracy``.
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
        # Counts kept as tensors on the model's device, so no step waits for the device to report them; as
        # persistent buffers they are saved with the weights, so a run resumed mid-epoch reports the same metrics.
        self.register_buffer("_correct", torch.zeros((), dtype=torch.long), persistent=True)
        self.register_buffer("_total", torch.zeros((), dtype=torch.long), persistent=True)

    def forward(self, features: torch.Tensor, label: torch.Tensor | None = None, **extra: Any) -> dict[str, Any]:
        logits = self.network(features.float())
        output: dict[str, Any] = {"logits": logits, "probs": logits.softmax(-1)}
        if label is not None:
            output["loss"] = self.loss(logits, label)
            with torch.no_grad():
                self._correct += (logits.argmax(-1) == label).sum()
                self._total += label.numel()
        return output

    def metric_state(self) -> list[torch.Tensor]:
        return [self._correct, self._total]

    def get_metrics(self, reset: bool = False) -> dict[str, float]:
        total = int(self._total)
        metrics = {"accuracy": int(self._correct) / total if total else 0.0}
        if reset:
            self._correct.zero_()
            self._total.zero_()
        return metrics

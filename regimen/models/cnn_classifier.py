"""CnnClassifier: a small convolutional network over images, predicting one of N classes."""

from __future__ import annotations

from typing import Any, Literal

import torch

from regimen.models.model import Model
from regimen.registry import ConfigurationError


@Model.register("cnn_classifier")
class CnnClassifier(Model):
    """A convolutional image classifier: ``features`` (batch x channels x height x width floats) -> logits over
    ``num_classes``.

    Registered as a `Model` with name "cnn_classifier".

    One block per entry of ``channels``: a convolution with that many output channels (padded to keep the size),
    ReLU and 2x2 max pooling (rounding up, so a small image never shrinks below one pixel). Then each channel is
    pooled over the whole image (its maximum: whether a feature is anywhere in the image; or its mean), so any
    image size works, and a linear layer gives the logits. A batch of ``batch x height x width`` is taken as
    one-channel images.

    Config keys:
    - `in_channels` (int, required): channels of the input images (1 for grayscale, 3 for RGB).
    - `num_classes` (int, required): the number of classes; labels are ints in ``[0, num_classes)``.
    - `channels` (list[int], [16, 32]): the output channels of each convolutional block.
    - `kernel_size` (int, 3): the convolutions' kernel size, an odd number.
    - `pooling` ("max" | "avg", "max"): how each channel is pooled over the image before the linear layer.
    - `dropout` (float, 0.0): dropout before the final linear layer.

    Outputs ``logits``, ``probs`` and, with a ``label`` in the batch, ``loss`` (cross-entropy). Metric:
    ``accuracy``, the share of instances whose most probable class is their label: a ``torchmetrics.Accuracy``
    attribute, which the trainer reports, resets, reduces over workers and checkpoints (see `Model`).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: tuple[int, ...] = (16, 32),
        kernel_size: int = 3,
        pooling: Literal["max", "avg"] = "max",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        errors = []
        if in_channels < 1:
            errors.append(ConfigurationError(f"must be at least 1, got {in_channels}", key="in_channels"))
        if num_classes < 2:
            errors.append(ConfigurationError(f"must be at least 2, got {num_classes}", key="num_classes"))
        if not channels or any(width < 1 for width in channels):
            message = f"must be one or more positive ints, got {list(channels)}"
            errors.append(ConfigurationError(message, key="channels"))
        if kernel_size < 1 or kernel_size % 2 == 0:
            errors.append(ConfigurationError(f"must be a positive odd int, got {kernel_size}", key="kernel_size"))
        if not 0.0 <= dropout < 1.0:
            errors.append(ConfigurationError(f"must be in [0, 1), got {dropout}", key="dropout"))
        if errors:
            raise ConfigurationError.combine(errors)
        self.in_channels = in_channels
        self.pooling = pooling
        layers: list[torch.nn.Module] = []
        width = in_channels
        for out in channels:
            layers += [
                torch.nn.Conv2d(width, out, kernel_size, padding=kernel_size // 2),
                torch.nn.ReLU(),
                torch.nn.MaxPool2d(2, ceil_mode=True),
            ]
            width = out
        self.features = torch.nn.Sequential(*layers)
        # Identity for no dropout: the same state-dict keys, without dropout's work per step.
        self.dropout = torch.nn.Dropout(dropout) if dropout > 0 else torch.nn.Identity()
        self.classifier = torch.nn.Linear(width, num_classes)
        self.loss = torch.nn.CrossEntropyLoss()
        import torchmetrics  # here, as in mlp_classifier: commands that build no model need not pay its import

        # As in mlp_classifier: counted in float64, so the accuracy is correct / total divided in float64, and
        # without argument checks, which would wait for the device at every batch.
        self.accuracy = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes, validate_args=False)
        self.accuracy.set_dtype(torch.float64)

    def forward(self, features: torch.Tensor, label: torch.Tensor | None = None, **extra: Any) -> dict[str, Any]:
        images = features.to(self.features[0].weight.dtype)  # float32, or a sharded model's mixed precision
        if images.dim() == 3 and self.in_channels == 1:
            images = images.unsqueeze(1)
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"cnn_classifier: features of shape {tuple(features.shape)}; expected batch x {self.in_channels} "
                f"(in_channels) x height x width"
            )
        mapped = self.features(images).flatten(2)  # batch x channels x positions
        pooled = mapped.amax(dim=2) if self.pooling == "max" else mapped.mean(dim=2)
        logits = self.classifier(self.dropout(pooled))
        output: dict[str, Any] = {"logits": logits, "probs": logits.softmax(-1)}
        if label is not None:
            output["loss"] = self.loss(logits, label)
            self.accuracy.update(logits.detach(), label)
        return output

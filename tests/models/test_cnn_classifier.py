"""cnn_classifier: what it outputs for a batch of images, the metric it reports, and its config errors."""

from __future__ import annotations

import pytest
import torch

from regimen.models import CnnClassifier, Model
from regimen.registry import ConfigurationError, Params


def build(**config) -> CnnClassifier:
    return Model.from_params(Params({"type": "cnn_classifier", "in_channels": 1, "num_classes": 3, **config}, "model"))


def test_it_outputs_logits_probs_and_loss_and_reports_accuracy():
    torch.manual_seed(0)
    model = build(channels=[4, 8])
    assert isinstance(model, CnnClassifier)
    images, labels = torch.rand(5, 1, 12, 10), torch.tensor([0, 1, 2, 0, 1])
    output = model(features=images, label=labels)
    assert output["logits"].shape == output["probs"].shape == (5, 3) and output["loss"].dim() == 0
    output["loss"].backward()  # every weight gets a gradient
    assert all(parameter.grad is not None for parameter in model.parameters())
    correct = int((output["logits"].argmax(-1) == labels).sum())
    assert model.get_metrics(reset=True) == {"accuracy": pytest.approx(correct / 5)}
    assert model.get_metrics() == {}  # nothing counted since the reset


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_any_image_size_works_and_a_3d_batch_is_one_channel_images(pooling):
    model = build(channels=[4, 4, 4, 4], pooling=pooling, dropout=0.5)
    assert model(features=torch.rand(2, 3, 3))["logits"].shape == (2, 3)  # 3x3 pooled 4 times stays 1x1
    assert model(features=torch.rand(2, 1, 40, 7))["logits"].shape == (2, 3)


def test_images_with_the_wrong_number_of_channels_are_named():
    model = build(in_channels=3)
    with pytest.raises(ValueError) as info:
        model(features=torch.rand(2, 1, 8, 8))
    assert str(info.value) == (
        "cnn_classifier: features of shape (2, 1, 8, 8); expected batch x 3 (in_channels) x height x width"
    )


def test_every_bad_setting_is_reported_together():
    with pytest.raises(ConfigurationError) as info:
        build(in_channels=0, num_classes=1, channels=[8, 0], kernel_size=4, dropout=1.0)
    message = str(info.value)
    assert "model.in_channels: must be at least 1, got 0" in message
    assert "model.num_classes: must be at least 2, got 1" in message
    assert "model.channels: must be one or more positive ints, got [8, 0]" in message
    assert "model.kernel_size: must be a positive odd int, got 4" in message
    assert "model.dropout: must be in [0, 1), got 1.0" in message
    with pytest.raises(ConfigurationError, match=r"model.channels: must be one or more positive ints, got \[\]"):
        build(channels=[])

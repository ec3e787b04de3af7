"""checkpoint_activations: the chosen modules run their forward again in the backward pass, and only then."""

from __future__ import annotations

import pytest
import torch

from regimen.registry import ConfigurationError
from regimen.trainers.activation_checkpointing import checkpoint_activations


class Counted(torch.nn.Linear):
    calls = 0

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        Counted.calls += 1
        return torch.relu(super().forward(features))


def test_chosen_modules_recompute_their_forward_in_the_backward_pass_only_when_training():
    model = torch.nn.Sequential(Counted(3, 4), torch.nn.Linear(4, 1))
    expected = torch.autograd.grad(model(torch.ones(2, 3)).sum(), list(model.parameters()))
    assert checkpoint_activations(model, ["Counted"]) == 1
    assert checkpoint_activations(model, ["Counted"]) == 0  # applied once only
    Counted.calls = 0
    gradients = torch.autograd.grad(model(torch.ones(2, 3)).sum(), list(model.parameters()))
    assert Counted.calls == 2  # the forward, and its recomputation in the backward pass
    assert all(torch.equal(a, b) for a, b in zip(gradients, expected))
    Counted.calls = 0
    with torch.no_grad():
        model(torch.ones(2, 3))
    assert Counted.calls == 1  # nothing is kept for a backward pass that will not come
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]


def test_a_name_no_module_has_is_an_error_naming_the_classes():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4))
    with pytest.raises(ConfigurationError, match=r'"Lnear" \(did you mean "Linear"\?\).*Linear, Sequential'):
        checkpoint_activations(model, ["Lnear"])

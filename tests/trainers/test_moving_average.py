"""The exponential moving average: its arithmetic, swapping the averages in and out, and exact resume."""

from __future__ import annotations

import io

import pytest
import torch

from regimen.registry import ConfigurationError, Params
from regimen.trainers.moving_average import ExponentialMovingAverage, MovingAverage


def build(model: torch.nn.Module, config: dict | None = None) -> MovingAverage:
    params = Params(config or {}, "trainer.moving_average")
    return MovingAverage.from_params(params, parameters=list(model.named_parameters()))


def model_and_optimizer(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, average: MovingAverage, steps: range) -> None:
    """Real optimizer steps on fixed data, each followed by ``apply(step)`` as the trainer calls it."""
    for step in steps:
        generator = torch.Generator().manual_seed(step)
        inputs, targets = torch.randn(8, 3, generator=generator), torch.randn(8, 1, generator=generator)
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        average.apply(step)


def test_the_default_implementation_is_exponential_with_allennlp_defaults():
    average = build(torch.nn.Linear(2, 2))
    assert isinstance(average, ExponentialMovingAverage)
    assert average.decay_at(None) == 0.9999
    assert average.decay_at(1) == pytest.approx(2 / 11)  # min(0.9999, (1 + 1) / (10 + 1))
    assert average.decay_at(10**6) == 0.9999


def test_shadow_is_decay_times_shadow_plus_one_minus_decay_times_the_parameter():
    layer = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0]]))
    average = build(layer, {"decay": 0.9})
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, -2.0]]))
    average.apply()  # fixed decay 0.9
    expected = 0.9 * torch.tensor([[1.0, 2.0]]) + 0.1 * torch.tensor([[3.0, -2.0]])
    average.assign_average_value()
    assert torch.allclose(layer.weight, expected)
    average.restore()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, 0.0]]))
    average.apply(num_updates=1)  # min(0.9, 2 / 11) = 2 / 11
    expected = (2 / 11) * expected
    average.assign_average_value()
    assert torch.allclose(layer.weight, expected)


def test_assign_swaps_the_averages_in_and_restore_puts_the_live_values_back():
    model, optimizer = model_and_optimizer()
    average = build(model, {"decay": 0.5})
    train_steps(model, optimizer, average, range(1, 4))
    live = [p.detach().clone() for p in model.parameters()]
    shadows = average.state_dict()["shadows"]
    average.assign_average_value()
    assert all(torch.equal(p, shadows[name]) for name, p in model.named_parameters())
    assert not all(torch.equal(p, value) for p, value in zip(model.parameters(), live))
    average.restore()
    assert all(torch.equal(p, value) for p, value in zip(model.parameters(), live))


def test_assign_twice_or_restore_without_assign_is_refused():
    average = build(torch.nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="restore\\(\\) without assign_average_value\\(\\)"):
        average.restore()
    average.assign_average_value()
    with pytest.raises(RuntimeError, match="already assigned; call restore\\(\\) before"):
        average.assign_average_value()


def _save(*states: dict) -> list[dict]:
    buffer = io.BytesIO()
    torch.save(list(states), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("model_saved_with_averages", [False, True], ids=["live-model", "averaged-model"])
def test_a_moving_average_saved_mid_run_continues_exactly_as_the_uninterrupted_one(model_saved_with_averages):
    config = {"decay": 0.99}
    model, optimizer = model_and_optimizer()
    average = build(model, config)
    train_steps(model, optimizer, average, range(1, 11))

    model_a, optimizer_a = model_and_optimizer()
    average_a = build(model_a, config)
    train_steps(model_a, optimizer_a, average_a, range(1, 6))
    average_state = average_a.state_dict()
    if model_saved_with_averages:  # as the trainer's checkpoint does: the model's weights are the averages
        average_a.assign_average_value()
    model_state, optimizer_state, average_state = _save(model_a.state_dict(), optimizer_a.state_dict(), average_state)

    model_b, optimizer_b = model_and_optimizer(seed=1)  # a fresh process: different initial weights
    average_b = build(model_b, config)
    model_b.load_state_dict(model_state)
    optimizer_b.load_state_dict(optimizer_state)
    average_b.load_state_dict(average_state)
    train_steps(model_b, optimizer_b, average_b, range(6, 11))

    for (name, expected), resumed in zip(model.named_parameters(), model_b.parameters()):
        assert torch.equal(expected, resumed), name
    average.assign_average_value()
    average_b.assign_average_value()
    for (name, expected), resumed in zip(model.named_parameters(), model_b.parameters()):
        assert torch.equal(expected, resumed), name


def test_the_state_is_a_snapshot_of_the_live_values_even_while_the_averages_are_assigned():
    model, optimizer = model_and_optimizer()
    average = build(model, {"decay": 0.5})
    train_steps(model, optimizer, average, range(1, 3))
    live = {name: p.detach().clone() for name, p in model.named_parameters()}
    average.assign_average_value()
    state = average.state_dict()
    average.restore()
    train_steps(model, optimizer, average, range(3, 4))
    assert all(torch.equal(state["parameters"][name], value) for name, value in live.items())


def test_loading_a_state_for_other_parameters_is_an_error():
    average = build(torch.nn.Linear(2, 2))
    state = build(torch.nn.Linear(2, 2, bias=False)).state_dict()
    with pytest.raises(ValueError, match="do not match the model's parameters: missing bias"):
        average.load_state_dict(state)


def test_the_shadows_follow_the_model_when_it_is_moved_after_the_average_is_built():
    model, _ = model_and_optimizer()
    average = build(model, {"decay": 0.5})
    model.double()  # as the trainer moves the model to its device after building its components
    average.apply()
    average.assign_average_value()
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert average.state_dict()["shadows"]["0.weight"].dtype == torch.float64


def test_decay_must_be_between_zero_and_one():
    with pytest.raises(ConfigurationError, match=r"^trainer.moving_average.decay: must be between 0 and 1, got 1.5$"):
        build(torch.nn.Linear(2, 2), {"decay": 1.5})

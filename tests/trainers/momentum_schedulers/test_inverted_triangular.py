"""inverted_triangular: the momentum epoch by epoch, for SGD's momentum and Adam's beta1, and on resume."""

from __future__ import annotations

import pytest
import torch

from regimen.registry import ConfigurationError, Params
from regimen.trainers.momentum_schedulers import MomentumScheduler


def build(config: dict, optimizer: torch.optim.Optimizer) -> MomentumScheduler:
    return MomentumScheduler.from_params(Params(config, "trainer.momentum_scheduler"), optimizer=optimizer)


def sgd(momentum: float = 0.9) -> torch.optim.SGD:
    return torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1, momentum=momentum)


def momentum_after_each_epoch(scheduler: MomentumScheduler, epochs: int) -> list[float]:
    values = []
    for step in range(1, epochs + 1):
        scheduler.step_batch(step)  # does nothing: the schedule is counted in epochs
        scheduler.step(1.0)
        values.append(scheduler.get_values()[0])
    return values


CONFIG = {"type": "inverted_triangular", "cool_down": 2, "warm_up": 3, "ratio": 10}


def test_down_over_cool_down_epochs_up_over_warm_up_epochs_then_flat():
    optimizer = sgd(0.9)
    scheduler = build(CONFIG, optimizer)
    assert scheduler.get_values() == [0.9]
    # 0.9 down to 0.09 in 2 epochs, back up in 3 epochs of (0.9 - 0.09) / 3 = 0.27, then 0.9.
    expected = [0.495, 0.09, 0.36, 0.63, 0.9, 0.9, 0.9]
    assert momentum_after_each_epoch(scheduler, 7) == pytest.approx(expected)
    assert optimizer.param_groups[0]["momentum"] == pytest.approx(0.9)


def test_adam_has_its_first_beta_scheduled_and_its_second_kept():
    optimizer = torch.optim.Adam(torch.nn.Linear(2, 2).parameters(), betas=(0.8, 0.999))
    scheduler = build({"type": "inverted_triangular", "cool_down": 1, "warm_up": 1, "ratio": 4}, optimizer)
    assert momentum_after_each_epoch(scheduler, 3) == pytest.approx([0.2, 0.8, 0.8])
    scheduler = build({"type": "inverted_triangular", "cool_down": 1, "warm_up": 1, "ratio": 4}, optimizer)
    scheduler.step()
    assert optimizer.param_groups[0]["betas"] == pytest.approx((0.2, 0.999))


def test_a_resumed_run_continues_the_momentum_sequence():
    first_optimizer = sgd(0.9)
    first = build(CONFIG, first_optimizer)
    momentum_after_each_epoch(first, 3)
    state = first.state_dict()
    optimizer = sgd(0.9)
    second = build(CONFIG, optimizer)
    second.load_state_dict(state)
    assert second.get_values() == pytest.approx([0.36])
    assert momentum_after_each_epoch(second, 3) == pytest.approx([0.63, 0.9, 0.9])


def test_an_optimizer_without_momentum_is_a_configuration_error():
    optimizer = torch.optim.Adagrad(torch.nn.Linear(2, 2).parameters())
    with pytest.raises(
        ConfigurationError, match=r"^trainer.momentum_scheduler: the optimizer \(Adagrad\) has no momentum"
    ):
        build(CONFIG, optimizer)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"type": "inverted_triangular", "cool_down": -1, "warm_up": 1}, r"cool_down: must not be negative, got -1"),
        ({"type": "inverted_triangular", "cool_down": 1, "warm_up": 1, "ratio": 0}, r"ratio: must be positive, got 0"),
        ({"type": "inverted_triangular", "cool_down": 1}, r"warm_up: missing required key"),
        ({"type": "inverted_triangular", "cool_down": 1, "warm_up": 1, "last_epoch": 2}, r"last_epoch: only -1"),
    ],
)
def test_configuration_mistakes_name_the_key(config, message):
    with pytest.raises(ConfigurationError, match=rf"^trainer.momentum_scheduler.{message}"):
        build(config, sgd())

"""slanted_triangular: the triangle, discriminative fine-tuning and gradual unfreezing, step by step."""

from __future__ import annotations

import pytest
import torch

from regimen.registry import ConfigurationError
from tests.trainers.lr_schedulers.test_learning_rate_schedulers import build, make_sgd, run


def triangle(rise: float, ratio: float = 4.0) -> float:
    """The multiple of the lr at a point ``rise`` (0 at the bottom, 1 at the top) of the triangle."""
    return (1 + rise * (ratio - 1)) / ratio


def test_the_lr_rises_over_cut_frac_of_the_steps_then_falls_back_to_lr_over_ratio():
    config = {"type": "slanted_triangular", "cut_frac": 0.2, "ratio": 4}
    scheduler = build(config, make_sgd([1.0]), num_epochs=2, num_steps_per_epoch=5)
    assert scheduler.get_values() == [triangle(0.0)]  # before the first step
    # T = 10 steps, cut = 2: up over steps 1-2, down over steps 3-10.
    expected = [triangle(0.5), triangle(1.0)] + [triangle(1 - (step - 2) / 8) for step in range(3, 11)]
    assert run(scheduler, epochs=2, steps_per_epoch=5) == pytest.approx(expected)
    assert expected[-1] == triangle(0.0) == 0.25
    scheduler.step_batch(11)
    assert scheduler.get_values() == [0.25]


def test_discriminative_fine_tuning_gives_each_lower_layer_decay_factor_times_the_lr_above():
    config = {"type": "slanted_triangular", "cut_frac": 0.2, "ratio": 4, "discriminative_fine_tuning": True}
    scheduler = build(config, make_sgd([1.0, 1.0, 1.0]), num_epochs=2, num_steps_per_epoch=5)
    scheduler.step_batch(2)  # the top of the triangle
    assert scheduler.get_values() == pytest.approx([0.38**2, 0.38, 1.0])


def test_gradual_unfreezing_trains_one_more_layer_each_epoch_with_a_triangle_per_frozen_epoch():
    config = {"type": "slanted_triangular", "cut_frac": 0.25, "ratio": 4, "gradual_unfreezing": True}
    optimizer = make_sgd([1.0, 1.0, 1.0])  # three layers, bottom first
    scheduler = build(config, optimizer, num_epochs=4, num_steps_per_epoch=4)

    def trainable() -> list[bool]:
        return [all(p.requires_grad for p in group["params"]) for group in optimizer.param_groups]

    one_epoch = [triangle(1.0), triangle(2 / 3), triangle(1 / 3), triangle(0.0)]  # 4 steps, cut 1
    assert trainable() == [False, False, True]
    assert run(scheduler, epochs=1, steps_per_epoch=4) == pytest.approx(one_epoch)
    assert trainable() == [False, True, True]
    lrs = []
    for step in range(5, 9):
        scheduler.step_batch(step)
        lrs.append(scheduler.get_values()[0])
    assert lrs == pytest.approx(one_epoch)
    scheduler.step()
    assert trainable() == [True, True, True]
    # All layers train: one triangle over the 8 steps left (cut 2).
    lrs = []
    for step in range(9, 17):
        scheduler.step_batch(step)
        lrs.append(scheduler.get_values()[0])
    assert lrs == pytest.approx([triangle(0.5), triangle(1.0)] + [triangle(1 - k / 6) for k in range(1, 7)])


def test_gradual_unfreezing_is_restored_on_resume():
    config = {"type": "slanted_triangular", "gradual_unfreezing": True}
    first = build(config, make_sgd([1.0, 1.0, 1.0]), num_epochs=4, num_steps_per_epoch=4)
    run(first, epochs=1, steps_per_epoch=4)
    state = first.state_dict()
    optimizer = make_sgd([1.0, 1.0, 1.0])
    second = build(config, optimizer, num_epochs=4, num_steps_per_epoch=4)
    second.load_state_dict(state)
    assert [group["params"][0].requires_grad for group in optimizer.param_groups] == [False, True, True]


@pytest.mark.parametrize("key", ["gradual_unfreezing", "discriminative_fine_tuning"])
def test_layer_options_need_at_least_two_parameter_groups(key):
    with pytest.raises(ConfigurationError, match=rf"^trainer.learning_rate_scheduler.{key}: needs the optimizer's"):
        build({"type": "slanted_triangular", key: True}, make_sgd([1.0]))


def test_empty_parameter_groups_are_not_layers():
    layers = [torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)]
    groups = [{"params": layer.parameters()} for layer in layers] + [{"params": []}]  # AllenNLP's empty default
    optimizer = torch.optim.SGD(groups, lr=1.0)
    build({"type": "slanted_triangular", "gradual_unfreezing": True}, optimizer, num_epochs=2)
    assert [p.requires_grad for p in layers[0].parameters()] == [False, False]
    assert [p.requires_grad for p in layers[1].parameters()] == [True, True]


# The lr of steps 1..10 of a 10-step run with no warm-up (cut 0), lr 1 and ratio 4: (1 + (1 - t / 10) * 3) / 4.
NO_WARM_UP = [0.925, 0.85, 0.775, 0.7, 0.625, 0.55, 0.475, 0.4, 0.325, 0.25]


@pytest.mark.parametrize("cut_frac", [0.0, 0.05])  # 10 * 0.05 rounds down to a cut of 0 as well
def test_a_cut_of_zero_starts_at_the_peak_and_decays_linearly(cut_frac):
    config = {"type": "slanted_triangular", "cut_frac": cut_frac, "ratio": 4}
    scheduler = build(config, make_sgd([1.0]), num_epochs=2, num_steps_per_epoch=5)
    assert scheduler.get_values() == [1.0]  # before the first step: the peak
    assert run(scheduler, epochs=2, steps_per_epoch=5) == pytest.approx(NO_WARM_UP)


@pytest.mark.parametrize("cut_frac", [1.0, -0.1, 1.5])
def test_cut_frac_must_be_a_fraction_below_one(cut_frac):
    with pytest.raises(
        ConfigurationError,
        match=rf"^trainer.learning_rate_scheduler.cut_frac: must be at least 0 and below 1, got {cut_frac}$",
    ):
        build({"type": "slanted_triangular", "cut_frac": cut_frac}, make_sgd([1.0]))

"""The learning-rate schedules step by step, on real SGD optimizers, driven in the trainer's order."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import pytest
import torch

from regimen.registry import ConfigurationError, Params
from regimen.trainers.lr_schedulers import LearningRateScheduler


# ---- helpers (also used by the other scheduler test modules) ---------------------------------------------------
def make_sgd(lrs: Sequence[float] = (1.0,)) -> torch.optim.SGD:
    """SGD over one nn.Linear per parameter group, with the given learning rates."""
    layers = [torch.nn.Linear(2, 2) for _ in lrs]
    return torch.optim.SGD([{"params": layer.parameters(), "lr": lr} for layer, lr in zip(layers, lrs)])


def build(
    config: dict[str, Any] | str,
    optimizer: torch.optim.Optimizer,
    num_epochs: int | None = 2,
    num_steps_per_epoch: int | None = 3,
) -> LearningRateScheduler:
    """The scheduler as the trainer builds it: from its config, with the three extras injected."""
    params = Params({"type": config} if isinstance(config, str) else config, "trainer.learning_rate_scheduler")
    return LearningRateScheduler.from_params(
        params, optimizer=optimizer, num_epochs=num_epochs, num_steps_per_epoch=num_steps_per_epoch
    )


def run(
    scheduler: LearningRateScheduler,
    epochs: int,
    steps_per_epoch: int,
    metrics: Sequence[float] | None = None,
    group: int = 0,
) -> list[float]:
    """Drive ``scheduler`` as the trainer does; the lr of ``group`` that each optimizer step used.

    ``step_batch(n)`` before optimizer step ``n`` (from 1), then ``optimizer.step()``; ``step(score)`` after
    each epoch.
    """
    used = []
    step = 1
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            scheduler.step_batch(step)
            used.append(scheduler.get_values()[group])
            scheduler.optimizer.step()
            step += 1
        scheduler.step(metrics[epoch] if metrics is not None else 0.0)
    return used


def after_each_step(scheduler: LearningRateScheduler, metrics: Sequence[float]) -> list[float]:
    """The lr after each ``step(score)``, for epoch-based schedules."""
    values = []
    for metric in metrics:
        scheduler.step(metric)
        values.append(scheduler.get_values()[0])
    return values


def test_every_allennlp_name_is_registered():
    assert set(LearningRateScheduler.list_available()) >= {
        "constant",
        "constant_with_warmup",
        "linear_with_warmup",
        "cosine_with_warmup",
        "cosine_hard_restarts_with_warmup",
        "polynomial_decay",
        "step",
        "multi_step",
        "exponential",
        "reduce_on_plateau",
        "cosine",
        "noam",
        "slanted_triangular",
        "combined",
    }


# ---- step-based schedules: they move on step_batch ------------------------------------------------------------
def test_linear_with_warmup_over_two_epochs_of_three_steps():
    # total = 2 * 3 = 6 steps; warm-up n / 2 for n < 2, then (6 - n) / (6 - 2).
    scheduler = build({"type": "linear_with_warmup", "warmup_steps": 2}, make_sgd([1.0]))
    assert run(scheduler, epochs=2, steps_per_epoch=3) == [0.5, 1.0, 0.75, 0.5, 0.25, 0.0]


def test_step_batch_without_a_count_moves_one_step_per_call():
    scheduler = build({"type": "linear_with_warmup", "warmup_steps": 2}, make_sgd([0.1]))
    values = []
    for _ in range(6):
        scheduler.step_batch()
        values.append(scheduler.get_values()[0])
    assert values == pytest.approx([0.05, 0.1, 0.075, 0.05, 0.025, 0.0])


def test_the_learning_rate_set_by_step_batch_is_the_one_the_optimizer_step_uses():
    layer = torch.nn.Linear(1, 1, bias=False)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.2)
    scheduler = build({"type": "linear_with_warmup", "warmup_steps": 2}, optimizer, num_epochs=1, num_steps_per_epoch=4)
    moves = []
    for step in range(1, 5):
        before = layer.weight.detach().clone()
        layer.weight.sum().backward()  # gradient 1: SGD moves the weight by exactly -lr
        scheduler.step_batch(step)
        optimizer.step()
        optimizer.zero_grad()
        moves.append(float(before - layer.weight.detach()))
    assert moves == pytest.approx([0.1, 0.2, 0.1, 0.0])


def test_epoch_ends_do_not_move_a_step_based_schedule():
    scheduler = build({"type": "linear_with_warmup", "warmup_steps": 2}, make_sgd([1.0]))
    scheduler.step_batch(3)
    scheduler.step(5.0)
    scheduler.step(1.0)
    assert scheduler.get_values() == [0.75]


def test_polynomial_decay_warms_up_then_decays_to_the_end_learning_rate_per_group():
    config = {"type": "polynomial_decay", "warmup_steps": 2, "power": 2.0, "end_learning_rate": 0.1}
    optimizer = make_sgd([1.0, 0.5])
    scheduler = build(config, optimizer, num_epochs=2, num_steps_per_epoch=3)
    # ((6 - n) / 4) ** 2 * (lr - 0.1) + 0.1 after the warm-up; 0.1 from step 6 on.
    expected = [0.5, 1.0, 0.5625 * 0.9 + 0.1, 0.25 * 0.9 + 0.1, 0.0625 * 0.9 + 0.1, 0.1]
    assert run(scheduler, epochs=2, steps_per_epoch=3) == pytest.approx(expected)
    scheduler.step_batch(9)
    assert scheduler.get_values() == pytest.approx([0.1, 0.1])
    scheduler.step_batch(4)
    assert scheduler.get_values() == pytest.approx([0.25 * 0.9 + 0.1, 0.25 * 0.4 + 0.1])


def test_constant_and_constant_with_warmup():
    assert run(build("constant", make_sgd([0.3])), epochs=2, steps_per_epoch=2) == [0.3] * 4
    scheduler = build({"type": "constant_with_warmup", "num_warmup_steps": 4}, make_sgd([1.0]))
    assert run(scheduler, epochs=2, steps_per_epoch=3) == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_with_warmup_falls_to_zero_at_the_last_step():
    scheduler = build({"type": "cosine_with_warmup", "num_warmup_steps": 2}, make_sgd([1.0]))
    # total 6: after the warm-up 0.5 * (1 + cos(pi * (n - 2) / 4)).
    expected = [0.5, 1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4)), 0.0]
    assert run(scheduler, epochs=2, steps_per_epoch=3) == pytest.approx(expected, abs=1e-12)


def test_cosine_hard_restarts_with_warmup_restarts_num_cycles_times():
    config = {
        "type": "cosine_hard_restarts_with_warmup",
        "num_warmup_steps": 0,
        "num_training_steps": 8,
        "num_cycles": 2,
    }
    scheduler = build(config, make_sgd([1.0]), num_epochs=None, num_steps_per_epoch=None)
    high, mid, low = 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))
    assert run(scheduler, epochs=1, steps_per_epoch=9) == pytest.approx(
        [high, mid, low, 1.0, high, mid, low, 0.0, 0.0], abs=1e-12
    )


def test_noam_ignores_the_optimizer_learning_rate():
    scheduler = build({"type": "noam", "model_size": 4, "warmup_steps": 2, "factor": 2.0}, make_sgd([123.0]))
    # 2 * 4 ** -0.5 * min(n ** -0.5, n * 2 ** -1.5)
    expected = [2**-1.5, 2**-0.5, 3**-0.5, 4**-0.5]
    assert run(scheduler, epochs=1, steps_per_epoch=4) == pytest.approx(expected)


# ---- epoch-based schedules: they move on step ------------------------------------------------------------------
def test_step_multi_step_and_exponential_change_after_each_epoch_only():
    scheduler = build({"type": "step", "step_size": 2, "gamma": 0.5}, make_sgd([1.0]))
    scheduler.step_batch(1)
    assert scheduler.get_values() == [1.0]
    assert after_each_step(scheduler, [0.0] * 4) == [1.0, 0.5, 0.5, 0.25]
    scheduler = build({"type": "multi_step", "milestones": [1, 3], "gamma": 0.1}, make_sgd([1.0]))
    assert after_each_step(scheduler, [0.0] * 4) == pytest.approx([0.1, 0.1, 0.01, 0.01])
    scheduler = build({"type": "exponential", "gamma": 0.5}, make_sgd([1.0]))
    assert after_each_step(scheduler, [0.0] * 3) == [0.5, 0.25, 0.125]


def test_reduce_on_plateau_by_default_reduces_after_patience_validations_without_a_higher_score():
    scheduler = build({"type": "reduce_on_plateau", "patience": 1, "factor": 0.5}, make_sgd([1.0]))
    # 2 and 3 are improvements; after each, two scores that are not higher bring a reduction.
    scores = [1.0, 2.0, 2.0, 1.5, 3.0, 3.0, 3.0]
    assert after_each_step(scheduler, scores) == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]


def test_reduce_on_plateau_never_reduces_while_the_score_rises():
    for config in (
        {"type": "reduce_on_plateau", "patience": 0},
        {"type": "reduce_on_plateau", "mode": "max", "patience": 0},
    ):
        scheduler = build(config, make_sgd([1.0]))
        assert after_each_step(scheduler, [float(score) for score in range(10)]) == [1.0] * 10


def test_reduce_on_plateau_in_min_mode_reduces_when_the_value_rises():
    scheduler = build({"type": "reduce_on_plateau", "mode": "min", "patience": 0, "factor": 0.5}, make_sgd([1.0]))
    assert after_each_step(scheduler, [3.0, 2.0, 2.5, 1.0]) == [1.0, 1.0, 0.5, 0.5]


def test_reduce_on_plateau_accepts_every_allennlp_key():
    config = {
        "type": "reduce_on_plateau",
        "mode": "max",
        "factor": 0.5,
        "patience": 0,
        "threshold": 0.1,
        "threshold_mode": "abs",
        "cooldown": 1,
        "min_lr": 0.3,
        "eps": 1e-8,
        "verbose": True,
    }
    scheduler = build(config, make_sgd([1.0]))
    # +0.05 is not better by the absolute threshold 0.1; after a reduction one validation of cooldown; floor 0.3.
    assert after_each_step(scheduler, [1.0, 1.05, 1.05, 1.05, 1.05]) == [1.0, 0.5, 0.5, 0.3, 0.3]


def test_reduce_on_plateau_without_a_score_says_it_needs_validation_data():
    scheduler = build("reduce_on_plateau", make_sgd([1.0]))
    with pytest.raises(ConfigurationError, match="needs a validation score at each step; give the trainer validation"):
        scheduler.step(None)


def test_cosine_restarts_with_longer_cycles_and_a_lower_start():
    high, low = 0.5 * (1 + math.cos(math.pi / 4)), 0.5 * (1 + math.cos(3 * math.pi / 4))
    scheduler = build({"type": "cosine", "t_initial": 2, "t_mul": 2}, make_sgd([1.0]))
    assert after_each_step(scheduler, [0.0] * 6) == pytest.approx([0.5, 1.0, high, 0.5, low, 1.0])
    scheduler = build({"type": "cosine", "t_initial": 2, "t_mul": 2, "eta_mul": 0.5}, make_sgd([1.0]))
    assert after_each_step(scheduler, [0.0] * 6) == pytest.approx([0.5, 0.5, 0.5 * high, 0.25, 0.5 * low, 0.25])
    scheduler = build({"type": "cosine", "t_initial": 2, "eta_min": 0.2}, make_sgd([1.0]))
    assert after_each_step(scheduler, [0.0] * 3) == pytest.approx([0.6, 1.0, 0.6])


# ---- resuming ---------------------------------------------------------------------------------------------------
RESUMABLE = {
    "constant": "constant",
    "constant_with_warmup": {"type": "constant_with_warmup", "num_warmup_steps": 4},
    "linear_with_warmup": {"type": "linear_with_warmup", "warmup_steps": 4},
    "cosine_with_warmup": {"type": "cosine_with_warmup", "num_warmup_steps": 3},
    "cosine_hard_restarts_with_warmup": {
        "type": "cosine_hard_restarts_with_warmup",
        "num_warmup_steps": 2,
        "num_cycles": 3,
    },
    "polynomial_decay": {"type": "polynomial_decay", "warmup_steps": 3, "power": 2.0, "end_learning_rate": 0.01},
    "step": {"type": "step", "step_size": 2, "gamma": 0.5},
    "multi_step": {"type": "multi_step", "milestones": [2, 4], "gamma": 0.5},
    "exponential": {"type": "exponential", "gamma": 0.7},
    "reduce_on_plateau": {"type": "reduce_on_plateau", "patience": 0, "factor": 0.5},
    "cosine": {"type": "cosine", "t_initial": 2, "t_mul": 2, "eta_mul": 0.5},
    "noam": {"type": "noam", "model_size": 16, "warmup_steps": 4},
    "slanted_triangular": {"type": "slanted_triangular", "cut_frac": 0.25, "ratio": 8},
    "combined": {
        "type": "combined",
        "schedulers": [
            [2, {"type": "polynomial_decay", "warmup_steps": 2, "end_learning_rate": 0.1}],
            [2, {"type": "reduce_on_plateau", "patience": 0, "factor": 0.5}],
            [2, {"type": "cosine_with_warmup", "num_warmup_steps": 2}],
        ],
    },
}
SCORES = [1.0, 2.0, 2.0, 1.0, 0.5, 3.0]


def _trace(scheduler: LearningRateScheduler, steps: range) -> list[float]:
    """The lr of every optimizer step in ``steps``, three steps an epoch, a validation score after each epoch."""
    used = []
    for step in steps:
        scheduler.step_batch(step)
        used.append(scheduler.get_values()[0])
        scheduler.optimizer.step()
        if step % 3 == 0:
            scheduler.step(SCORES[step // 3 - 1])
    used.append(scheduler.get_values()[0])
    return used


@pytest.mark.parametrize("stop", [7, 10, 14])
@pytest.mark.parametrize("optimizer_first", [True, False], ids=["optimizer-first", "scheduler-first"])
@pytest.mark.parametrize("name", list(RESUMABLE))
def test_a_resumed_run_continues_the_exact_learning_rate_sequence(name, optimizer_first, stop):
    config = RESUMABLE[name]
    whole = _trace(build(config, make_sgd([0.5]), num_epochs=6), range(1, 19))

    first = build(config, make_sgd([0.5]), num_epochs=6)
    before = _trace(first, range(1, stop + 1))
    buffer = io.BytesIO()
    torch.save({"optimizer": first.optimizer.state_dict(), "scheduler": first.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    second = build(config, make_sgd([0.5]), num_epochs=6)
    if optimizer_first:
        second.optimizer.load_state_dict(saved["optimizer"])
        second.load_state_dict(saved["scheduler"])
    else:
        second.load_state_dict(saved["scheduler"])
        second.optimizer.load_state_dict(saved["optimizer"])
    assert second.get_values()[0] == before[-1]
    after = _trace(second, range(stop + 1, 19))
    assert before[:-1] + after == whole


# ---- configuration errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "extras", "message"),
    [
        (
            {"type": "linear_with_warmup"},
            {"num_steps_per_epoch": None},
            r"^trainer.learning_rate_scheduler.num_steps_per_epoch: this schedule needs the number of optimizer "
            r"steps per epoch",
        ),
        (
            {"type": "cosine_with_warmup", "num_warmup_steps": 1},
            {"num_epochs": None},
            r"^trainer.learning_rate_scheduler.num_training_steps: this schedule needs num_training_steps",
        ),
        (
            {"type": "step", "step_size": 1, "last_epoch": 3},
            {},
            r"^trainer.learning_rate_scheduler.last_epoch: only -1 is supported, got 3; a resumed run restores",
        ),
        (
            {"type": "linear_with_warmup", "warmup_step": 10},
            {},
            r'^trainer.learning_rate_scheduler.warmup_step: unknown key "warmup_step"; did you mean "warmup_steps"\?',
        ),
        (
            {"type": "reduce_on_plateau", "mode": "maximum"},
            {},
            r'^trainer.learning_rate_scheduler.mode: unknown value "maximum"',
        ),
        (
            {"type": "reduce_on_plateau", "factor": 2},
            {},
            r"^trainer.learning_rate_scheduler.factor: must be between 0 and 1, got 2",
        ),
        (
            {"type": "reduce_on_plateau", "min_lr": [0.1, 0.2]},
            {},
            r"^trainer.learning_rate_scheduler.min_lr: gives 2 values but the optimizer has 1 parameter groups",
        ),
        (
            {"type": "cosine", "t_initial": 2, "t_mul": 1.5},
            {},
            r"^trainer.learning_rate_scheduler.t_mul: must be a whole number of at least 1",
        ),
        (
            {"type": "noam", "model_size": 8},
            {},
            r"^trainer.learning_rate_scheduler.warmup_steps: missing required key",
        ),
        (
            {"type": "polynomial_decay", "warmup_steps": -1},
            {},
            r"^trainer.learning_rate_scheduler.warmup_steps: must not be negative, got -1",
        ),
        (
            {"type": "linear-with-warmup"},
            {},
            r'unknown LearningRateScheduler type "linear-with-warmup"; did you mean "linear_with_warmup"\?',
        ),
    ],
)
def test_configuration_mistakes_name_the_key(config, extras, message):
    arguments = {"num_epochs": 2, "num_steps_per_epoch": 3, **extras}
    with pytest.raises(ConfigurationError, match=message):
        build(config, make_sgd([1.0]), **arguments)


def test_values_written_in_the_config_win_over_the_injected_ones():
    config = {"type": "linear_with_warmup", "warmup_steps": 1, "num_epochs": 1, "num_steps_per_epoch": 2}
    scheduler = build(config, make_sgd([1.0]), num_epochs=10, num_steps_per_epoch=100)
    assert run(scheduler, epochs=1, steps_per_epoch=3) == [1.0, 0.0, 0.0]

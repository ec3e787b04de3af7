"""combined: schedulers one after another, each for its number of epochs."""

from __future__ import annotations

import pytest

from regimen.registry import ConfigurationError
from tests.trainers.lr_schedulers.test_learning_rate_schedulers import build, make_sgd, run

CONFIG = {
    "type": "combined",
    "schedulers": [
        [1, {"type": "polynomial_decay", "warmup_steps": 2, "end_learning_rate": 0.5}],
        [2, {"type": "exponential", "gamma": 0.5}],
        [1, {"type": "linear_with_warmup", "warmup_steps": 2}],
    ],
}


def test_each_scheduler_runs_for_its_epochs_starting_from_the_lr_the_previous_one_left():
    scheduler = build(CONFIG, make_sgd([1.0]), num_epochs=5, num_steps_per_epoch=4)
    used = run(scheduler, epochs=5, steps_per_epoch=4)
    # Epoch 0, polynomial_decay over 1 epoch of 4 steps: warm-up, then down to 0.5.
    assert used[0:4] == pytest.approx([0.5, 1.0, 0.75, 0.5])
    # Epochs 1-2, exponential from 0.5: halved after epoch 1 only (its turn ends with epoch 2).
    assert used[4:12] == pytest.approx([0.5] * 4 + [0.25] * 4)
    # Epoch 3, linear_with_warmup over its own 1 epoch from 0.25, counting its steps from 1.
    assert used[12:16] == pytest.approx([0.125, 0.25, 0.125, 0.0])
    # Epoch 4: past the last scheduler, the lr stays where it ended.
    assert used[16:20] == [0.0] * 4


def test_a_single_scheduler_behaves_as_it_does_alone():
    combined = build(
        {"type": "combined", "schedulers": [[2, {"type": "step", "step_size": 1, "gamma": 0.5}]]}, make_sgd()
    )
    alone = build({"type": "step", "step_size": 1, "gamma": 0.5}, make_sgd())
    assert run(combined, epochs=2, steps_per_epoch=2) == run(alone, epochs=2, steps_per_epoch=2) == [1.0, 1.0, 0.5, 0.5]


def test_mistakes_inside_a_scheduler_are_reported_with_their_path_when_the_config_is_read():
    config = {"type": "combined", "schedulers": [[1, "constant"], [1, {"type": "linear_with_warmup", "warmup": 3}]]}
    with pytest.raises(
        ConfigurationError, match=r"^trainer.learning_rate_scheduler.schedulers.1.1.warmup: unknown key"
    ):
        build(config, make_sgd())


@pytest.mark.parametrize(
    ("schedulers", "message"),
    [
        ([], r"^trainer.learning_rate_scheduler.schedulers: give at least one \[epochs, scheduler\] pair"),
        ([[0, "constant"]], r"^trainer.learning_rate_scheduler.schedulers.0.0: must be a positive number of epochs"),
    ],
)
def test_the_list_of_schedulers_is_checked(schedulers, message):
    with pytest.raises(ConfigurationError, match=message):
        build({"type": "combined", "schedulers": schedulers}, make_sgd())

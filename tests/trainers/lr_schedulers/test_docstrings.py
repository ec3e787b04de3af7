"""Every registered scheduler and moving average documents its name and every config key in its docstring."""

from __future__ import annotations

import inspect

import pytest

from regimen.registry import Registrable
from regimen.trainers.lr_schedulers import LearningRateScheduler
from regimen.trainers.momentum_schedulers import MomentumScheduler
from regimen.trainers.moving_average import MovingAverage

INJECTED = {"self", "optimizer", "num_epochs", "num_steps_per_epoch", "parameters"}


def _registered() -> list[tuple[type[Registrable], str, type]]:
    found = []
    for base in (LearningRateScheduler, MomentumScheduler, MovingAverage):
        for name in base.list_available():
            implementation, _ = base.resolve_class_name(name)
            if implementation.__module__.startswith("regimen."):
                found.append((base, name, implementation))
    return found


REGISTERED = _registered()


def test_the_three_bases_have_their_registered_implementations():
    names = {(base.__name__, name) for base, name, _ in REGISTERED}
    assert ("MomentumScheduler", "inverted_triangular") in names
    assert ("MovingAverage", "exponential") in names
    assert sum(base is LearningRateScheduler for base, _, _ in REGISTERED) == 14


@pytest.mark.parametrize(("base", "name", "implementation"), REGISTERED, ids=[name for _, name, _ in REGISTERED])
def test_the_docstring_names_the_registration_and_every_config_key(base, name, implementation):
    doc = inspect.getdoc(implementation) or ""
    assert f'Registered as a `{base.__name__}` with name "{name}".' in doc
    keys = [key for key in inspect.signature(implementation.__init__).parameters if key not in INJECTED]
    missing = [key for key in keys if f"`{key}`" not in doc]
    assert not missing, f"{implementation.__name__}'s docstring does not mention {missing}"

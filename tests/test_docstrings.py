"""Every built-in registered component's docstring is its user reference: it names its registration and
documents every config key its constructor reads."""

from __future__ import annotations

import inspect
import re

import pytest

import regimen.data
import regimen.models
import regimen.trainers  # noqa: F401  (importing registers the built-in components)
from regimen.registry import Registrable
from regimen.registry.from_params import constructor_parameters

# Values the caller injects rather than the user writing them in a config.
INJECTED = {
    "model",
    "model_parameters",
    "parameters",
    "optimizer",
    "num_epochs",
    "num_steps_per_epoch",
    "reader",
    "data_path",
    "seed",
    "serialization_dir",
    "data_loader",
    "validation_data_loader",
    "distributed",
    "local_rank",
    "world_size",
}

COMPONENTS = [
    (base, name, implementation, constructor)
    for base, registry in Registrable._registry.items()
    for name, (implementation, constructor) in registry.items()
    if base.__module__.startswith("regimen.") and implementation.__module__.startswith("regimen.")
]


def test_the_built_in_bases_are_all_checked():
    bases = {base.__name__ for base, *_ in COMPONENTS}
    assert bases >= {
        "Trainer",
        "TrainerCallback",
        "Optimizer",
        "LearningRateScheduler",
        "MomentumScheduler",
        "MovingAverage",
        "Model",
        "DataLoader",
        "DatasetReader",
        "BatchSampler",
    }


@pytest.mark.parametrize(
    ("base", "name", "implementation", "constructor"), COMPONENTS, ids=[f"{b.__name__}-{n}" for b, n, *_ in COMPONENTS]
)
def test_docstring_names_the_registration_and_every_config_key(base, name, implementation, constructor):
    doc = inspect.getdoc(implementation) or ""
    article = "an" if base.__name__[0] in "AEIOU" else "a"
    assert f'Registered as {article} `{base.__name__}` with name "{name}"' in doc
    callable_ = getattr(implementation, constructor) if constructor else implementation
    keys, _ = constructor_parameters(callable_, implementation)
    undocumented = [
        key
        for key in keys
        if key not in INJECTED and f"`{key}`" not in doc and not re.search(rf"^\s*{key}:", doc, re.MULTILINE)
    ]
    assert not undocumented, f"{implementation.__name__} does not document {undocumented}"

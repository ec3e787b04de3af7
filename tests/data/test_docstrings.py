"""Every registered data component documents its registered name and each config key with its default."""

from __future__ import annotations

import inspect
import json
import re

import pytest

import regimen.data  # noqa: F401  (registers the built-in components)
from regimen.data import BatchSampler, DataLoader, DatasetReader
from regimen.registry import Registrable

INJECTED = {"reader", "data_path", "seed"}

COMPONENTS = [
    (base, name, implementation)
    for base in (DatasetReader, BatchSampler, DataLoader)
    for name, (implementation, _) in Registrable._registry[base].items()
    if implementation.__module__.startswith("regimen.data")
]


def test_every_built_in_component_is_checked():
    names = {(base.__name__, name) for base, name, _ in COMPONENTS}
    assert names >= {
        ("DatasetReader", "csv"),
        ("DatasetReader", "jsonl"),
        ("BatchSampler", "bucket"),
        ("DataLoader", "default"),
        ("DataLoader", "multiprocess"),
    }


@pytest.mark.parametrize("base, name, implementation", COMPONENTS, ids=lambda value: getattr(value, "__name__", value))
def test_the_docstring_names_the_registration_and_every_key_with_its_default(base, name, implementation):
    doc = inspect.getdoc(implementation) or ""
    assert f'Registered as a `{base.__name__}` with name "{name}"' in doc
    for parameter in inspect.signature(implementation).parameters.values():
        if parameter.name in INJECTED:
            assert parameter.name in doc  # mentioned, though not a config key
            continue
        match = re.search(rf"^\s+{parameter.name}: (?P<type>[^=\n]+?)(?: = (?P<default>.+))?$", doc, re.MULTILINE)
        assert match, f"{implementation.__name__} does not document its config key {parameter.name}"
        if parameter.default is inspect.Parameter.empty:
            assert match["default"] is None, f"{parameter.name} is documented with a default it does not have"
        else:
            assert match["default"] == json.dumps(parameter.default), f"{parameter.name}'s documented default"

"""Field transforms for the readers of other libraries' datasets: functions a config names by dotted path, applied
to an instance's fields, and the check that no field is left a PIL image, which collate cannot batch."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from typing import Any

from regimen.data.dataset_reader import Instance
from regimen.registry import ConfigurationError
from regimen.registry.errors import did_you_mean

# Packages a dotted path commonly names that regimen installs as an extra.
_EXTRAS = {"torchvision": "torchvision", "PIL": "images", "datasets": "datasets"}


def import_dotted(name: str, key: str, what: str) -> Any:
    """The object ``name`` (``package.module.Name``, or ``package.module.Class.attribute``) names; a mistake is a
    ConfigurationError at ``key`` saying what ``what`` (``"a Dataset class"``) was expected to be."""
    parts = name.split(".")
    if len(parts) < 2 or not all(part.isidentifier() for part in parts):
        raise ConfigurationError(
            f'expected a dotted path to {what}, "package.module.Name", got {json.dumps(name)}', key=key
        )
    for end in range(len(parts) - 1, 0, -1):  # the longest importable prefix is the module
        module_name = ".".join(parts[:end])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            missing = error.name or ""
            if module_name == missing or module_name.startswith(missing + "."):
                continue  # that prefix is no module: a shorter one may be
            raise ConfigurationError(f'importing "{name}" failed: {error}{_install_hint(missing)}', key=key) from None
        except ImportError as error:
            raise ConfigurationError(f'importing "{name}" failed: {error}', key=key) from None
        break
    else:
        raise ConfigurationError(
            f'cannot import "{name}": there is no module "{parts[0]}"{_install_hint(parts[0])} (is it installed, '
            "or its folder on PYTHONPATH? a plugin package of your own is named with --include-package)",
            key=key,
        )
    found: Any = module
    for index in range(end, len(parts)):
        if not hasattr(found, parts[index]):
            owner = ".".join(parts[:index])
            suggestion = did_you_mean(parts[index], [n for n in dir(found) if not n.startswith("_")])
            hint = f' (did you mean "{owner}.{suggestion}"?)' if suggestion else ""
            raise ConfigurationError(f'"{owner}" has no attribute "{parts[index]}"{hint}', key=key)
        found = getattr(found, parts[index])
    return found


def kind_of(value: Any) -> str:
    """``"an int"``, ``"a dict"``: a value's type with its article, for messages."""
    name = type(value).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def _install_hint(module: str) -> str:
    extra = _EXTRAS.get(module.split(".")[0])
    return f" (pip install 'regimen[{extra}]')" if extra else ""


def resolve_transforms(
    transforms: dict[str, str] | None,
) -> tuple[dict[str, Callable[[Any], Any]], list[ConfigurationError]]:
    """The functions a ``transforms`` config names (field -> dotted path), and the mistakes found, each at its key
    (``transforms.features``), for the caller to report with its own."""
    functions: dict[str, Callable[[Any], Any]] = {}
    errors: list[ConfigurationError] = []
    for field, name in (transforms or {}).items():
        key = f"transforms.{field}"
        try:
            function = import_dotted(name, key, "a function")
        except ConfigurationError as error:
            errors.append(error)
            continue
        if not callable(function):
            message = f'"{name}" is {kind_of(function)}, not a function to call on the value'
            errors.append(ConfigurationError(message, key=key))
            continue
        functions[field] = function
    return functions, errors


def transformed(instance: Instance, transforms: dict[str, Callable[[Any], Any]], where: str) -> Instance:
    """``instance`` with each field of ``transforms`` replaced by its function's result; ValueError, naming
    ``where`` (``"item 3 of mypkg.Digits(split="train")"``), for a field the instance lacks or a PIL image left
    in any field."""
    for field, function in transforms.items():
        if field not in instance:
            raise ValueError(
                f'{where}: transforms names the field "{field}", which it does not have; its fields: '
                f"{', '.join(instance) or '(none)'}"
            )
        instance[field] = function(instance[field])
    image_module = sys.modules.get("PIL.Image")  # no image can be a PIL image unless Pillow is imported
    if image_module is not None:
        for field, value in instance.items():
            if isinstance(value, image_module.Image):
                raise ValueError(
                    f'{where}: the field "{field}" is a PIL image, which cannot be batched; convert it to a tensor '
                    f'with the reader\'s transforms, e.g. "transforms": {{"{field}": '
                    '"regimen.data.image_folder.image_to_tensor"} (a float tensor channels x height x width in '
                    "[0, 1]), or with the dataset's own transform argument"
                )
    return instance

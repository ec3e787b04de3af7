"""The search space of a study: allennlp-optuna's HPARAMS file, checked, suggested on a trial, passed as ext vars."""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regimen.registry import ConfigurationError


@dataclass(frozen=True)
class Hyperparameter:
    """One entry of the HPARAMS file: ``{"type": "float", "attributes": {"name": "lr", "low": ..., "high": ...}}``.

    ``type`` names the trial method ``suggest_<type>`` (``float``, ``int``, ``categorical``, and any other that the
    installed Optuna has); ``attributes`` are that method's keyword arguments.
    """

    type: str
    attributes: dict[str, Any]

    @property
    def name(self) -> str:
        return self.attributes["name"]

    def suggest(self, trial: Any) -> Any:
        """The value the trial's sampler picks (and Optuna records) for this hyper-parameter."""
        return getattr(trial, f"suggest_{self.type}")(**self.attributes)

    def example(self) -> Any:
        """A value inside the range (the low end, or the first choice), to check the experiment with."""
        if "choices" in self.attributes:
            return self.attributes["choices"][0]
        return self.attributes["low"]


def suggest_types() -> list[str]:
    """The ``type`` values the installed Optuna accepts: its ``Trial.suggest_<type>`` methods."""
    from optuna.trial import Trial

    return sorted(name.removeprefix("suggest_") for name in dir(Trial) if name.startswith("suggest_"))


def read_search_space(path: str | Path) -> list[Hyperparameter]:
    """The hyper-parameters of an HPARAMS file; every mistake in it (all of them at once) is a ConfigurationError
    naming ``FILE[index]`` and the key, before any trial runs."""
    from optuna.trial import Trial

    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"hyper-parameter file not found: {path}")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ConfigurationError(f"{path}: not JSON ({error})") from None
    if not isinstance(entries, list) or not entries:
        raise ConfigurationError(
            f'{path}: expected a non-empty JSON list like [{{"type": "float", "attributes": {{"name": "lr", '
            f'"low": 0.0001, "high": 0.1, "log": true}}}}]'
        )
    errors: list[ConfigurationError] = []
    space: list[Hyperparameter] = []
    types = suggest_types()
    for index, entry in enumerate(entries):
        where = f"{path}[{index}]"
        if not isinstance(entry, dict) or set(entry) - {"type", "attributes"} or "type" not in entry:
            errors.append(ConfigurationError('expected {"type": ..., "attributes": {...}}', where))
            continue
        kind, attributes = entry["type"], entry.get("attributes", {})
        if kind not in types:
            errors.append(ConfigurationError(f"unknown type {kind!r}; Optuna suggests {', '.join(types)}", where))
            continue
        if not isinstance(attributes, dict):
            errors.append(ConfigurationError("expected an object of keyword arguments", f"{where}.attributes"))
            continue
        problem = _attribute_problem(kind, attributes, getattr(Trial, f"suggest_{kind}"))
        if problem is not None:
            errors.append(ConfigurationError(problem, f"{where}.attributes"))
            continue
        space.append(Hyperparameter(kind, attributes))
    names = [parameter.name for parameter in space]
    for name in sorted({name for name in names if names.count(name) > 1}):
        errors.append(ConfigurationError(f"{name!r} is suggested {names.count(name)} times", str(path)))
    if errors:
        raise ConfigurationError.combine(errors)
    return space


def _attribute_problem(kind: str, attributes: dict[str, Any], method: Any) -> str | None:
    """What is wrong with one entry's attributes (None when nothing is): the method's signature and its ranges."""
    parameters = [name for name in inspect.signature(method).parameters if name != "self"]
    try:
        inspect.signature(method).bind(None, **attributes)
    except TypeError:
        unknown = sorted(set(attributes) - set(parameters))
        if unknown:
            return f"unknown attribute {unknown[0]!r}: suggest_{kind} takes {', '.join(parameters)}"
        missing = [name for name in parameters if name not in attributes]
        return f"missing {', '.join(repr(name) for name in missing)}: suggest_{kind} takes {', '.join(parameters)}"
    name = attributes.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        return f"'name' must be an identifier (the std.extVar the experiment reads), got {name!r}"
    if "choices" in attributes:
        choices = attributes["choices"]
        if not isinstance(choices, list) or not choices:
            return f"'choices' must be a non-empty list, got {choices!r}"
        return None
    low, high = attributes.get("low"), attributes.get("high")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high))
    if not numbers:
        return f"'low' and 'high' must be finite numbers, got {low!r} and {high!r}"
    if kind == "int" and not all(isinstance(value, int) for value in (low, high)):
        return f"suggest_int takes whole numbers, got low={low!r}, high={high!r}"
    if low > high:
        return f"low ({low}) is above high ({high})"
    if attributes.get("log") and low <= 0:
        return f"a log scale needs low > 0, got {low}"
    return None


def as_ext_var(value: Any) -> str:
    """A suggested value as the string ``std.extVar`` gives the experiment: text as it is (a categorical choice),
    everything else as JSON (so ``std.parseJson`` reads numbers, ``true``/``false`` and ``null``)."""
    return value if isinstance(value, str) else json.dumps(value)


def ext_vars(values: dict[str, Any]) -> dict[str, str]:
    """Every suggested value of a trial, as the external variables of its experiment."""
    return {name: as_ext_var(value) for name, value in values.items()}

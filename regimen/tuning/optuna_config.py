"""The Optuna config file of a study (``--optuna-param-path``): which sampler and which pruner, with their arguments."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from regimen.registry import ConfigurationError
from regimen.registry.errors import unknown_name_message

_SECTIONS = {"sampler": "samplers", "pruner": "pruners"}


def read_optuna_config(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """``{"sampler": {"type": "TPESampler", "attributes": {...}}, "pruner": {...}}``, each section optional, each
    checked against the class it names; allennlp-optuna's older ``keyword`` is read as ``attributes``. Returns the
    sections in that normal form (``{}`` without a file: Optuna's defaults, TPE and the median pruner)."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"Optuna config file not found: {path}", "--optuna-param-path")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ConfigurationError(f"{path}: not JSON ({error})") from None
    if not isinstance(config, dict):
        raise ConfigurationError(f'{path}: expected an object like {{"sampler": {{"type": "TPESampler"}}}}')
    errors = [
        ConfigurationError(unknown_name_message("section", key, list(_SECTIONS)), f"{path}: {key}")
        for key in config
        if key not in _SECTIONS
    ]
    normal: dict[str, dict[str, Any]] = {}
    for section in _SECTIONS:
        if section in config:
            try:
                normal[section] = _normal_section(config[section], section, f"{path}: {section}")
            except ConfigurationError as error:
                errors.append(error)
    if errors:
        raise ConfigurationError.combine(errors)
    return normal


def _normal_section(value: Any, section: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or "type" not in value or set(value) - {"type", "attributes", "keyword"}:
        raise ConfigurationError('expected {"type": CLASS, "attributes": {...}}', where)
    if "attributes" in value and "keyword" in value:
        raise ConfigurationError("give the arguments once, as 'attributes' ('keyword' is the older name)", where)
    attributes = value.get("attributes", value.get("keyword", {}))
    if not isinstance(attributes, dict):
        raise ConfigurationError("expected an object of keyword arguments", f"{where}.attributes")
    cls = _optuna_class(section, value["type"], where)
    try:
        inspect.signature(cls).bind(**attributes)
    except TypeError as error:
        accepted = ", ".join(inspect.signature(cls).parameters)
        raise ConfigurationError(f"{error}; {value['type']} takes {accepted}", f"{where}.attributes") from None
    return {"type": value["type"], "attributes": attributes}


def _optuna_class(section: str, name: Any, where: str) -> type:
    import optuna

    module = getattr(optuna, _SECTIONS[section])
    base = optuna.samplers.BaseSampler if section == "sampler" else optuna.pruners.BasePruner
    available = sorted(
        n for n in dir(module) if isinstance(getattr(module, n), type) and issubclass(getattr(module, n), base)
    )
    available = [n for n in available if not n.startswith("Base")]
    if name not in available:
        raise ConfigurationError(
            unknown_name_message(f"optuna.{_SECTIONS[section]} class", str(name), available), where
        )
    return getattr(module, name)


def build(section: dict[str, Any] | None, kind: str) -> Any:
    """The sampler or pruner a normal section describes (None without one: Optuna's default)."""
    if section is None:
        return None
    import optuna

    return getattr(getattr(optuna, _SECTIONS[kind]), section["type"])(**section["attributes"])

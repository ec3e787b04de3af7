"""Checking and converting the scalar values of a config (int, float, bool, str) with errors that name the path."""

from __future__ import annotations

from typing import Any

from regimen.registry.errors import ConfigurationError


def describe(value: Any) -> str:
    """A value as a user wrote it: strings quoted, containers by kind."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict) or hasattr(value, "as_dict"):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return repr(value)


def mismatch(expected: str, value: Any, path: str | None) -> ConfigurationError:
    """The ConfigurationError for a value of the wrong type, with a hint for numbers written as strings."""
    message = f"expected {expected}, got {describe(value)}"
    if isinstance(value, str) and expected in ("int", "float", "bool") and _parses_as_number_or_bool(value):
        message += " (a string; std.extVar gives strings, wrap it in std.parseJson(...))"
    return ConfigurationError(message, path)


def _parses_as_number_or_bool(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text in ("true", "false")
    return True


def to_int(value: Any, path: str | None = None) -> int:
    """An int; a float with no fractional part (``2.0``) is accepted, ``2.5``, bools and strings are not."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise mismatch("int", value, path)


def to_float(value: Any, path: str | None = None) -> float:
    """A float; ints are converted, bools and strings are not."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise mismatch("float", value, path)


def to_bool(value: Any, path: str | None = None) -> bool:
    """A bool; the strings ``"true"`` and ``"false"`` are accepted as AllenNLP accepted them."""
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise mismatch("bool", value, path)


def to_str(value: Any, path: str | None = None) -> str:
    """A string; numbers are not silently turned into strings."""
    if isinstance(value, str):
        return value
    raise mismatch("str", value, path)


def check_positive(**values: float | None) -> None:
    """Raise a ConfigurationError at the key of the first value that is not positive (None is allowed)."""
    for key, value in values.items():
        if value is not None and value <= 0:
            raise ConfigurationError(f"must be positive, got {value}", key=key)


def check_non_negative(**values: float | None) -> None:
    """Raise a ConfigurationError at the key of the first value that is negative (None is allowed)."""
    for key, value in values.items():
        if value is not None and value < 0:
            raise ConfigurationError(f"must not be negative, got {value}", key=key)

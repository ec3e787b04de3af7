"""Params: a configuration read from a Jsonnet file, as a mutable mapping that knows each value's key path."""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import _jsonnet

from regimen.registry.errors import ConfigurationError, join_path, unknown_name_message
from regimen.registry.files import create_temporary
from regimen.registry.values import to_bool, to_float, to_int

_NO_DEFAULT = object()

# Top-level keys of an experiment in the order a reader expects them; any other key follows alphabetically.
_TOP_LEVEL_ORDER = (
    "type",
    "dataset_reader",
    "validation_dataset_reader",
    "train_data_path",
    "validation_data_path",
    "test_data_path",
    "data_loader",
    "validation_data_loader",
    "model",
    "trainer",
)


class Params(MutableMapping[str, Any]):
    """A dict of configuration values that remembers where it sits in the whole config.

    ``params.path`` is the dotted key path of this dict (``"trainer.optimizer"``, ``""`` at the top), so every
    error raised about one of its values can say ``trainer.optimizer.lr: ...``. Nested dicts come back as
    ``Params`` with their own path, and lists come back with their dicts wrapped the same way
    (``trainer.callbacks.0``).
    """

    def __init__(self, params: Mapping[str, Any] | None = None, path: str = "") -> None:
        self.params: dict[str, Any] = dict(params) if params is not None else {}
        self.path = path

    # ---- reading a file -------------------------------------------------------------------------------
    @classmethod
    def from_file(
        cls,
        params_file: str | os.PathLike,
        overrides: str | Mapping[str, Any] = "",
        ext_vars: Mapping[str, str] | None = None,
    ) -> Params:
        """Evaluate a ``.jsonnet`` or ``.json`` file and apply ``overrides`` to it.

        Every environment variable is visible to ``std.extVar``; ``ext_vars`` win over them. ``import`` paths
        resolve relative to the file. ``overrides`` is a JSON or Jsonnet object (a string or a dict) whose
        dotted keys (``"trainer.optimizer.lr"``, ``"trainer.callbacks.0.type"``) patch one value and whose plain
        keys replace a whole subtree.
        """
        path = Path(params_file)
        if not path.is_file():
            raise ConfigurationError(f"config file not found: {path}")
        variables = {**os.environ, **(ext_vars or {})}
        try:
            text = _jsonnet.evaluate_file(str(path), ext_vars=variables)
        except RuntimeError as error:
            message = f"cannot evaluate {path}:\n{str(error).rstrip()}"
            missing = re.search(r"undefined external variable: (\w+)", message)
            if missing is not None:  # std.extVar reads the environment
                message += f"\nset it in the environment ({missing[1]}=... regimen ...), or search it with regimen tune"
            raise ConfigurationError(message) from None
        config = json.loads(text)
        if not isinstance(config, dict):
            raise ConfigurationError(f"{path} must evaluate to an object, got {type(config).__name__}")
        return cls(apply_overrides(config, parse_overrides(overrides, variables)))

    # ---- the mapping ----------------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key not in self.params:
            raise KeyError(key)
        return self._wrap(key, self.params[key])

    def __setitem__(self, key: str, value: Any) -> None:
        self.params[key] = value.as_dict() if isinstance(value, Params) else value

    def __delitem__(self, key: str) -> None:
        del self.params[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def __repr__(self) -> str:
        return f"Params({self.params!r}, path={self.path!r})"

    def path_of(self, key: str | int) -> str:
        """The full dotted path of ``key`` in this dict."""
        return join_path(self.path, key)

    def _wrap(self, key: str | int, value: Any) -> Any:
        """Dicts become Params and lists wrap their dicts, each knowing its path."""
        path = self.path_of(key)
        if isinstance(value, Params):
            return value
        if isinstance(value, dict):
            return Params(value, path)
        if isinstance(value, list):
            return [Params(path=path)._wrap(index, item) for index, item in enumerate(value)]
        return value

    # ---- popping typed values -------------------------------------------------------------------------
    def pop(self, key: str, default: Any = _NO_DEFAULT, keep_as_dict: bool = False) -> Any:  # type: ignore[override]
        """Remove ``key`` and return its value; a missing key without a default is a ConfigurationError."""
        if key not in self.params:
            if default is _NO_DEFAULT:
                raise ConfigurationError("missing required key", self.path_of(key))
            return default
        value = self.params.pop(key)
        return _unwrap(value) if keep_as_dict else self._wrap(key, value)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` (wrapped like ``pop``), or ``default`` when it is absent."""
        return self[key] if key in self.params else default

    def pop_int(self, key: str, default: Any = _NO_DEFAULT) -> int | None:
        """Pop an int; ``2.0`` is accepted as ``2``, ``2.5`` and ``"2"`` are errors naming the path."""
        value = self.pop(key, default)
        return None if value is None else to_int(value, self.path_of(key))

    def pop_float(self, key: str, default: Any = _NO_DEFAULT) -> float | None:
        """Pop a float; ints are converted."""
        value = self.pop(key, default)
        return None if value is None else to_float(value, self.path_of(key))

    def pop_bool(self, key: str, default: Any = _NO_DEFAULT) -> bool | None:
        """Pop a bool; ``true``/``false`` only (the strings ``"true"``/``"false"`` as well, as AllenNLP allows)."""
        value = self.pop(key, default)
        return None if value is None else to_bool(value, self.path_of(key))

    def pop_choice(self, key: str, choices: Sequence[Any], default_to_first_choice: bool = False) -> Any:
        """Pop a value that must be one of ``choices``; an absent key gives the first choice if allowed."""
        default = choices[0] if default_to_first_choice else _NO_DEFAULT
        value = self.pop(key, default)
        if value not in choices:
            names = [str(choice) for choice in choices]
            raise ConfigurationError(unknown_name_message("value", str(value), names), self.path_of(key))
        return value

    # ---- whole-dict operations ------------------------------------------------------------------------
    def assert_empty(self, owner: str, valid_keys: Sequence[str] = ()) -> None:
        """Raise if any key is left unconsumed: each one is named with its full path and a suggestion."""
        if not self.params:
            return
        errors = [
            ConfigurationError(unknown_name_message("key", key, list(valid_keys)) + f" (in {owner})", self.path_of(key))
            for key in self.params
        ]
        raise ConfigurationError.combine(errors)

    def as_dict(self) -> dict[str, Any]:
        """A deep copy of the values as plain dicts and lists."""
        return copy.deepcopy(_unwrap(self.params))

    def as_flat_dict(self) -> dict[str, Any]:
        """Every leaf under its dotted path, lists by index: ``{"trainer.optimizer.lr": 0.1, ...}``.

        Each key is also a valid override key, so ``Params.from_file(f, overrides=flat)`` round-trips.
        """
        flat: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict) and value:
                for key, item in value.items():
                    walk(join_path(prefix, key), item)
            elif isinstance(value, list) and value:
                for index, item in enumerate(value):
                    walk(join_path(prefix, index), item)
            else:
                flat[prefix] = value

        walk("", self.as_dict())
        return flat

    def duplicate(self) -> Params:
        """A deep copy at the same path; popping from it leaves this one untouched."""
        return Params(copy.deepcopy(self.params), self.path)

    def to_file(self, path: str | os.PathLike) -> None:
        """Write the config as JSON, ``type`` first and top-level keys in reading order, atomically."""
        write_json_atomically(path, ordered(self.as_dict()))


def _unwrap(value: Any) -> Any:
    if isinstance(value, Params):
        return {key: _unwrap(item) for key, item in value.params.items()}
    if isinstance(value, dict):
        return {key: _unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unwrap(item) for item in value]
    return value


def ordered(value: Any, top_level: bool = True) -> Any:
    """The same config with keys in a stable, readable order: ``type`` first, then reading order, then A-Z."""
    if isinstance(value, list):
        return [ordered(item, top_level=False) for item in value]
    if not isinstance(value, dict):
        return value
    preferred = _TOP_LEVEL_ORDER if top_level else ("type",)
    rank = {key: index for index, key in enumerate(preferred)}
    keys = sorted(value, key=lambda key: (rank.get(key, len(rank)), key))
    return {key: ordered(value[key], top_level=False) for key in keys}


def write_json_atomically(path: str | os.PathLike, value: Any) -> None:
    """Write ``value`` as indented JSON through a temporary file in the same directory, fsync, then rename."""
    target = Path(path)
    handle, temporary = create_temporary(target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(value, file, indent=4)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# ---- overrides -----------------------------------------------------------------------------------------
def parse_overrides(overrides: str | Mapping[str, Any], ext_vars: Mapping[str, str] | None = None) -> dict:
    """An overrides argument as a dict: a JSON or Jsonnet string is evaluated by the Jsonnet binding."""
    if isinstance(overrides, Mapping):
        return _unwrap(dict(overrides))
    if not overrides or not overrides.strip():
        return {}
    try:
        value = json.loads(_jsonnet.evaluate_snippet("overrides", overrides, ext_vars=dict(ext_vars or {})))
    except RuntimeError as error:
        raise ConfigurationError(f"overrides are not valid JSON or Jsonnet:\n{str(error).rstrip()}") from None
    if not isinstance(value, dict):
        raise ConfigurationError(f"overrides must be an object, got {type(value).__name__}: {overrides}")
    return value


def apply_overrides(config: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Patch ``config`` in place: a dotted key sets one value, a plain key replaces a subtree.

    Every container on a dotted path must exist (``trainer.optimzer.lr`` is an error naming
    ``trainer.optimzer``); the last key may be new in a dict, and is then checked like any other key when the
    config is built. List indexes must be in range.
    """
    errors = []
    for dotted, value in overrides.items():
        try:
            _set_path(config, dotted, copy.deepcopy(value))
        except ConfigurationError as error:
            errors.append(error)
    if errors:
        raise ConfigurationError.combine(errors)
    return config


def _set_path(config: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    container: Any = config
    walked = ""
    for position, key in enumerate(keys):
        last = position == len(keys) - 1
        here = join_path(walked, key)
        if isinstance(container, list):
            if not key.lstrip("-").isdigit() or not -len(container) <= int(key) < len(container):
                raise ConfigurationError(
                    f"override path does not exist: {walked} is a list of {len(container)}, "
                    f"{key!r} is not an index in it",
                    here,
                )
            index = int(key)
            if last:
                container[index] = value
            container = container[index]
        elif isinstance(container, dict):
            if last:
                container[key] = value
            elif key not in container:
                message = unknown_name_message("key", key, list(container))
                raise ConfigurationError(f"override path does not exist: {message}", here)
            else:
                container = container[key]
        else:
            raise ConfigurationError(
                f"override path does not exist: {walked} is a {type(container).__name__}, not an object", here
            )
        walked = here

"""The JSON Schema (draft 2020-12) of a config: what FromParams accepts, as editors and validators read it.

Each position a constructor annotation gives a component (``model: Model``) refers to one ``$defs`` entry for its
base: a ``oneOf`` over its registered implementations keyed by ``"type"``, plus the other forms FromParams takes
(a bare name string, a dotted import path). A key's schema follows its annotation as ``construct_arg`` converts
it, so a config regimen accepts is valid under the schema, and typos, wrong types and unknown names are not.
"""

from __future__ import annotations

import enum
import inspect
import pathlib
import types
from typing import Any, Literal, Union, get_args, get_origin

from regimen.registry.from_params import _DICT_ORIGINS, _LIST_ORIGINS, _SET_ORIGINS, FromParams, _has_own_from_params
from regimen.registry.introspection import (
    NOT_JSON,
    Component,
    ConfigKey,
    config_keys,
    first_paragraph,
    injected_keys,
    json_value,
    registered_component,
)
from regimen.registry.lazy import Lazy
from regimen.registry.registrable import Registrable

DRAFT = "https://json-schema.org/draft/2020-12/schema"
_EMPTY = inspect.Parameter.empty
_NONE = type(None)
_DOTTED = r"\."  # a "type" with a dot is an import path (``my_pkg.models.MyModel``), resolved when the config is read
# to_bool takes the strings "true" and "false" as AllenNLP did (what std.extVar gives).
_BOOLEAN = [True, False, "true", "false"]


def config_schema(root: type, title: str, description: str = "") -> dict[str, Any]:
    """The schema of a config that ``root.from_params`` reads (``Experiment`` for an experiment file)."""
    builder = _Builder()
    top = builder.annotation(root)
    schema: dict[str, Any] = {"$schema": DRAFT, "title": title}
    if description:
        schema["description"] = description
    schema.update(top)
    schema["$defs"] = dict(sorted(builder.defs.items()))
    return schema


class _Builder:
    """Builds the schemas of annotations, keeping one ``$defs`` entry per component base or config class."""

    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}
        self._names: dict[Any, str] = {}

    # ---- annotations ----------------------------------------------------------------------------------------
    def annotation(self, annotation: Any) -> dict[str, Any]:
        """The schema of a value ``construct_arg`` converts to ``annotation`` (a new dict each time)."""
        origin, args = get_origin(annotation), get_args(annotation)
        if annotation in (Any, _EMPTY, object):
            return {}
        if annotation is _NONE:
            return {"type": "null"}
        if origin is Union or origin is types.UnionType:
            members = [self.annotation(arg) for arg in args if arg is not _NONE]
            return union(members, nullable=_NONE in args)
        if origin is Literal:
            return {"enum": [json_value(arg) for arg in args if json_value(arg) is not NOT_JSON]}
        if origin is Lazy:  # the same config as the component itself; only an object (or a name) is accepted
            target = args[0] if args else Any
            return self.annotation(target) if target is not Any else {"type": "object"}
        if origin is not None:
            return self._collection(origin, args)
        if isinstance(annotation, type):
            return self._class(annotation)
        return {}

    def _collection(self, origin: Any, args: tuple) -> dict[str, Any]:
        if origin in _DICT_ORIGINS:
            schema: dict[str, Any] = {"type": "object"}
            key_type, value_type = args if len(args) == 2 else (str, Any)
            if key_type is int:
                schema["propertyNames"] = {"pattern": r"^\s*[-+]?[0-9]+\s*$"}
            items = self.annotation(value_type)
            if items:
                schema["additionalProperties"] = items
            return schema
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return _array(self.annotation(args[0]))
            if args:
                return {
                    "type": "array",
                    "prefixItems": [self.annotation(arg) for arg in args],
                    "minItems": len(args),
                    "maxItems": len(args),
                }
            return {"type": "array"}
        if origin in _LIST_ORIGINS or origin in _SET_ORIGINS:
            return _array(self.annotation(args[0]) if args else {})
        return {}  # FromParams cannot build it from a config; nothing to say about its shape

    def _class(self, annotation: type) -> dict[str, Any]:
        if annotation is bool:
            return {"enum": list(_BOOLEAN)}
        scalar = {int: "integer", float: "number", str: "string", dict: "object"}.get(annotation)
        if scalar is not None:
            return {"type": scalar}
        if annotation in (list, tuple, set, frozenset):
            return {"type": "array"}
        if issubclass(annotation, enum.Enum):
            values = [json_value(member.value) for member in annotation] + [member.name for member in annotation]
            return {"enum": list(dict.fromkeys(value for value in values if value is not NOT_JSON))}
        if issubclass(annotation, pathlib.PurePath):
            return {"type": "string"}
        if any(issubclass(kind, annotation) for kind in (str, int, float, bool, list, dict)):
            return {}  # a JSON value is already an instance of it
        if issubclass(annotation, FromParams) and _has_own_from_params(annotation):
            # its own from_params reads the config: only the shape _as_params accepts is known
            return {"type": ["object", "string"]} if hasattr(annotation, "list_available") else {"type": "object"}
        return {"$ref": f"#/$defs/{self._define(annotation)}"}

    # ---- $defs ----------------------------------------------------------------------------------------------
    def _define(self, cls: type) -> str:
        """The ``$defs`` name of ``cls``, its entry made on first use (recursion finds the name already there)."""
        if cls in self._names:
            return self._names[cls]
        name = cls.__name__
        if name in self.defs:  # two classes of one name (a plugin's): the qualified name tells them apart
            name = f"{cls.__module__}.{cls.__qualname__}"
        self._names[cls] = name
        self.defs[name] = {}
        if cls in Registrable._registry:
            self.defs[name] = self._component_base(cls)
        elif isinstance(cls, type) and issubclass(cls, Registrable) and Registrable in cls.__bases__:
            self.defs[name] = {  # _choose_implementation refuses every value
                "description": f"no {cls.__name__} implementations are registered",
                "not": {},
            }
        else:
            self.defs[name] = self._config_class(cls)
        return name

    def _component_base(self, base: type[Registrable]) -> dict[str, Any]:
        """A ``oneOf``: the name written alone, one branch per registered name, and one for any other ``type``
        (an import path, or else an unknown name).

        Each branch applies only where ``type`` chooses it (``if``/``then``, ``else: false``), so the branches
        exclude each other and a validator reports the mistakes of the branch the config chose, not why every
        other implementation does not fit.
        """
        names = base.list_available()
        components = [_component(base, name) for name in names]
        # A bare name builds the implementation from an empty config: only those without required keys.
        alone = [component.name for component in components if not any(key.required for key in component.keys)]
        branches: list[dict[str, Any]] = [
            {
                "type": "string",
                "description": f"a {base.__name__} that needs no keys, by its name, or an import path",
                **_dotted_or_one_of(alone),
            }
        ]
        branches += [self._implementation(component) for component in components]
        # Any other object: a "type" that is an import path; otherwise (an unknown name, or no "type" where the
        # base has no default) the error names what is missing or lists the registered names.
        registered = {"properties": {"type": {"enum": names}}, "required": ["type"]}
        if base.default_implementation in names:
            other = {"properties": {"type": {"not": {"enum": names}}}, "required": ["type"]}
        else:
            other = {"not": registered}
        branches.append(
            {
                "description": f"a {base.__name__} given by its import path; its keys are checked when it is built",
                "if": other,
                "then": {
                    "type": "object",
                    "properties": {"type": {"type": "string", **_dotted_or_one_of(names)}},
                    "required": ["type"],
                },
                "else": False,
            }
        )
        schema: dict[str, Any] = {"oneOf": branches}
        summary = first_paragraph(base)
        if summary:
            schema["description"] = summary
        return schema

    def _implementation(self, component: Component) -> dict[str, Any]:
        """``{"if": type is this name, "then": its keys, "else": false}``; the default's ``if`` also holds when
        ``type`` is absent."""
        type_key: dict[str, Any] = {"const": component.name}
        chosen: dict[str, Any] = {"properties": {"type": {"const": component.name}}}
        if component.is_default:
            type_key["description"] = f"optional: {component.name} is the default {component.base.__name__}"
        else:
            chosen["required"] = ["type"]
        keys = self._object(component.keys, component.passthrough or component.opaque, {"type": type_key})
        if not component.is_default:
            keys["required"] = ["type", *keys.get("required", [])]
        branch: dict[str, Any] = {"title": component.name}
        summary = first_paragraph(component.implementation) if component.implementation is not None else ""
        if summary:
            branch["description"] = summary
        branch.update({"if": chosen, "then": keys, "else": False})
        return branch

    def _config_class(self, cls: type) -> dict[str, Any]:
        """A class built from an object of its constructor's keys (a FromParams class that is no component base,
        or a plain class): ``DistributedConfig``, ``TensorBoardCallback`` as ``tensorboard_writer``."""
        try:
            keys, passthrough = config_keys(cls, cls, injected_keys(cls))
        except TypeError:  # annotations that cannot be read: the class is built anyway, its keys unchecked
            return {"type": "object"}
        schema = self._object(keys, passthrough, {})
        summary = first_paragraph(cls)
        return {"title": cls.__name__, **({"description": summary} if summary else {}), **schema}

    def _object(self, keys: tuple[ConfigKey, ...], open_: bool, properties: dict[str, Any]) -> dict[str, Any]:
        """An object of ``keys``: each typed, described and defaulted; required ones required; closed unless
        ``open_``. Injected keys are never required, and appear only where a config may override them with a
        plain value (``num_epochs`` of a scheduler), never where regimen passes an object (``model``)."""
        properties = dict(properties)
        required = []
        for key in keys:
            if key.injected and not _plain(key.annotation):
                continue
            schema = self.annotation(key.annotation)
            text = key.description
            if key.injected:
                text = "Supplied by regimen; a value written here overrides it." + (f" {text}" if text else "")
            if text:
                schema["description"] = text
            default = _EMPTY if isinstance(key.default, Lazy) else json_value(key.default)
            if default is not _EMPTY and default is not NOT_JSON:
                schema["default"] = default
            properties[key.name] = schema
            if key.required:
                required.append(key.name)
        schema = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        if not open_:
            schema["additionalProperties"] = False
        return schema


def _component(base: type[Registrable], name: str) -> Component:
    try:
        return registered_component(base, name)
    except TypeError:  # annotations that cannot be read (a bug in the class): its keys are not checked
        return Component(base, name, None, None, (), passthrough=True, opaque=True)


def union(members: list[dict[str, Any]], nullable: bool = False) -> dict[str, Any]:
    """The schema of a value matching any of ``members`` (or null): ``{"type": ["integer", "null"]}`` where the
    members are plain types, an ``anyOf`` otherwise; a member without constraints makes the union none."""
    if any(not member for member in members):
        return {}
    if nullable and len(members) == 1 and "type" in members[0] and "enum" not in members[0]:
        # keywords like items or properties apply to arrays or objects only, so null can join the type
        kinds = _as_list(members[0]["type"])
        return {**members[0], "type": [*kinds, "null"] if "null" not in kinds else kinds}
    flat: list[dict[str, Any]] = []
    for member in members:
        flat += member["anyOf"] if list(member) == ["anyOf"] else [member]
    if nullable:
        flat.append({"type": "null"})
    plain = [member for member in flat if list(member) == ["type"]]
    enums = [member for member in flat if list(member) == ["enum"]]
    rest = [member for member in flat if member not in plain and member not in enums]
    kinds = list(dict.fromkeys(kind for member in plain for kind in _as_list(member["type"])))
    values = [value for member in enums for value in member["enum"]]
    if kinds == ["null"] and values:  # a nullable enum: null is one more value
        kinds, values = [], [*values, None]
    merged: list[dict[str, Any]] = []
    if kinds:
        merged.append({"type": kinds[0] if len(kinds) == 1 else kinds})
    if values:
        merged.append({"enum": values})
    merged += rest
    return merged[0] if len(merged) == 1 else {"anyOf": merged}


def _dotted_or_one_of(names: list[str]) -> dict[str, Any]:
    """A string that is an import path (has a dot), or else one of ``names`` (which an error then lists)."""
    return {"if": {"pattern": _DOTTED}, "else": {"type": "string", "enum": names}}


def _as_list(kinds: str | list[str]) -> list[str]:
    return kinds if isinstance(kinds, list) else [kinds]


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items} if items else {"type": "array"}


def _plain(annotation: Any) -> bool:
    """Whether a value of ``annotation`` is plain JSON (numbers, strings, bools, null and lists or dicts of them),
    not a component or an object regimen builds."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation in (int, float, str, bool, _NONE):
        return True
    if origin is Literal:
        return True
    if origin is Union or origin is types.UnionType or origin in _LIST_ORIGINS or origin in _SET_ORIGINS:
        return all(_plain(arg) for arg in args)
    if origin is tuple or origin in _DICT_ORIGINS:
        return all(arg is Ellipsis or _plain(arg) for arg in args)
    return isinstance(annotation, type) and issubclass(annotation, (enum.Enum, pathlib.PurePath))

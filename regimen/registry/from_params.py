"""FromParams: building objects from a config by reading their constructors' type annotations."""

from __future__ import annotations

import collections.abc
import contextvars
import enum
import inspect
import pathlib
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from regimen.registry.errors import ConfigurationError, join_path, unknown_name_message
from regimen.registry.lazy import Lazy
from regimen.registry.params import Params, _unwrap
from regimen.registry.values import describe, mismatch, to_bool, to_float, to_int, to_str

T = TypeVar("T", bound="FromParams")

_EMPTY = inspect.Parameter.empty
_OMIT = object()  # a key the config leaves out: the constructor's own default applies
_UNBUILT = object()  # what a construction gives while a config is only being checked
# True while a Lazy's config is checked: everything is read and converted, no constructor is called, and a
# missing required key is allowed (``construct`` may still supply it).
_CHECKING = contextvars.ContextVar("regimen_checking_config", default=False)

_LIST_ORIGINS = (
    list,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Iterable,
    collections.abc.Collection,
)
_SET_ORIGINS = (set, frozenset, collections.abc.Set, collections.abc.MutableSet)
_DICT_ORIGINS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


class FromParams:
    """Mixin that gives a class ``from_params``: build it from a config by its constructor's signature.

    Each constructor parameter is read from the config key of the same name and converted according to its
    annotation (scalars, ``Optional``, unions, lists, tuples, sets, dicts, ``Literal``, enums, paths, nested
    FromParams classes, ``Lazy``). Keys nobody consumes, missing required keys and wrong types are
    ConfigurationErrors naming the key path; all the mistakes in one object are reported together.
    """

    @classmethod
    def from_params(
        cls: type[T],
        params: Params | dict[str, Any] | str | None,
        constructor_to_call: Callable[..., T] | None = None,
        constructor_to_inspect: Callable[..., T] | None = None,
        /,
        **extras: Any,
    ) -> T:
        """Build an instance from ``params``; ``extras`` are injected into any constructor, at any depth,
        that has a parameter of the same name the config does not set."""
        if params is None:
            return None  # type: ignore[return-value]
        params = _as_params(params, cls)
        if constructor_to_call is None:
            choice = cls._choose_implementation(params)
            if choice is not None:
                implementation, constructor_name = choice
                constructor = getattr(implementation, constructor_name) if constructor_name else implementation
                if isinstance(implementation, type) and issubclass(implementation, FromParams):
                    if _CHECKING.get() and _has_own_from_params(implementation):
                        return _UNBUILT
                    return implementation.from_params(params, constructor, constructor, **extras)
                return build(constructor, params, extras, owner=implementation)
        return build(constructor_to_call or cls, params, extras, owner=cls, inspect_=constructor_to_inspect)

    @classmethod
    def _choose_implementation(cls, params: Params) -> tuple[Any, str | None] | None:
        """Which registered implementation ``params`` asks for; None builds ``cls`` itself (Registrable overrides)."""
        return None


def _as_params(value: Any, owner: Any, path: str = "") -> Params:
    if isinstance(value, Params):
        return value
    if isinstance(value, dict):
        return Params(value, path)
    if isinstance(value, str) and hasattr(owner, "list_available"):
        return Params({"type": value}, path)
    raise mismatch(f"an object for {_name(owner)}", value, path or None)


# ---- building one object -----------------------------------------------------------------------------------
def build(
    constructor: Callable[..., Any],
    params: Params,
    extras: dict[str, Any],
    owner: Any = None,
    inspect_: Callable[..., Any] | None = None,
) -> Any:
    """Call ``constructor`` with arguments read from ``params`` by the signature of ``inspect_``.

    Works for FromParams classes, classmethod constructors and plain classes alike (a torch class registered
    under a base is built from its keyword arguments). Errors the constructor raises about its arguments
    (ConfigurationError, and TypeError/ValueError from classes that do not know about configs) come out as
    ConfigurationErrors at this object's path.
    """
    owner = owner if owner is not None else constructor
    kwargs = construct_kwargs(inspect_ or constructor, owner, params, extras)
    if _CHECKING.get():
        return _UNBUILT
    try:
        return constructor(**kwargs)
    except ConfigurationError as error:
        raise error.located(params.path) from None
    except (TypeError, ValueError) as error:
        raise ConfigurationError(f"{_name(owner)} rejected its configuration: {error}", params.path or None) from error


def construct_kwargs(
    constructor: Callable[..., Any], owner: Any, params: Params, extras: dict[str, Any]
) -> dict[str, Any]:
    """The keyword arguments for ``constructor``, taken from ``params``, which must be used up entirely."""
    parameters, passthrough = constructor_parameters(constructor, owner)
    kwargs: dict[str, Any] = {}
    errors: list[ConfigurationError] = []
    for name, (annotation, default) in parameters.items():
        try:
            value = _pop_argument(owner, name, annotation, default, params, extras)
        except ConfigurationError as error:
            errors.append(error)
            continue
        if value is not _OMIT:
            kwargs[name] = value
    if passthrough:
        kwargs.update({key: _unwrap(params.params.pop(key)) for key in list(params)})
    try:
        params.assert_empty(_name(owner), [name for name in parameters if name not in extras])
    except ConfigurationError as error:
        errors.append(error)
    if errors:
        raise ConfigurationError.combine(errors)
    return kwargs


def _pop_argument(owner: Any, name: str, annotation: Any, default: Any, params: Params, extras: dict[str, Any]) -> Any:
    path = params.path_of(name)
    if name not in params:
        if name in extras:
            return extras[name]
        if isinstance(default, Lazy):
            return default.at(Params(path=path), extras)
        if default is _EMPTY and not _CHECKING.get():
            raise ConfigurationError(f"missing required key ({_name(owner)} needs a {type_name(annotation)})", path)
        return _OMIT
    return construct_arg(annotation, params.pop(name), path, extras)


def init_defaults(cls: type) -> dict[str, Any]:
    """The defaults of ``cls.__init__``, read from its signature (so that they are written only once).

    An ``__init__`` taking ``**kwargs`` hands them to its superclass, so the first FromParams superclass's
    defaults are added (the subclass's own win), as ``constructor_parameters`` reads the config keys.
    """
    defaults: dict[str, Any] = {}
    owner: type | None = cls
    while owner is not None:
        parameters = inspect.signature(owner.__init__).parameters.values()
        for parameter in parameters:
            if parameter.default is not _EMPTY:
                defaults.setdefault(parameter.name, parameter.default)
        if not any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
            break
        owner = _first_from_params_superclass(owner)
    return defaults


def constructor_parameters(constructor: Callable[..., Any], owner: Any) -> tuple[dict[str, tuple[Any, Any]], bool]:
    """``{name: (annotation, default)}`` of a constructor, and whether it passes unknown keys through.

    A ``**kwargs`` parameter of ``__init__`` pulls in the parameters of the first FromParams superclass of
    ``owner``; ``**kwargs`` of a classmethod constructor pulls in ``owner.__init__``'s; a class that is not
    FromParams and takes ``**kwargs`` receives the remaining config keys as they are.
    """
    try:
        signature = inspect.signature(constructor)
    except (TypeError, ValueError):  # some classes implemented in C have no signature
        return {}, True
    hints = _type_hints(constructor, owner)
    parameters: dict[str, tuple[Any, Any]] = {}
    takes_kwargs = False
    for position, parameter in enumerate(signature.parameters.values()):
        if position == 0 and parameter.name == "self":
            continue
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            takes_kwargs = True
        elif parameter.kind is not inspect.Parameter.VAR_POSITIONAL:
            annotation = hints.get(parameter.name, Any)
            parameters[parameter.name] = (annotation, parameter.default)
    if not takes_kwargs:
        return parameters, False
    if isinstance(owner, type) and constructor is not owner and constructor is not owner.__init__:
        # A classmethod constructor (``from_partial_objects``) hands its ``**kwargs`` on to ``cls(...)``.
        inherited, passthrough = constructor_parameters(owner, owner)
        return {**inherited, **parameters}, passthrough
    superclass = _first_from_params_superclass(owner)
    if superclass is None:
        return parameters, True
    inherited, passthrough = constructor_parameters(superclass, superclass)
    return {**inherited, **parameters}, passthrough


def _first_from_params_superclass(owner: Any) -> type | None:
    if not isinstance(owner, type):
        return None
    for candidate in owner.__mro__[1:]:
        if issubclass(candidate, FromParams) and candidate.__init__ is not object.__init__:
            return candidate
    return None


def _type_hints(constructor: Callable[..., Any], owner: Any) -> dict[str, Any]:
    target = constructor.__init__ if isinstance(constructor, type) else constructor
    localns = {owner.__name__: owner} if isinstance(owner, type) else None
    try:
        return typing.get_type_hints(target, localns=localns)
    except Exception as error:  # an annotation that cannot be resolved is a bug in the class, not the config
        raise TypeError(f"cannot read the type annotations of {_name(owner)}: {error}") from error


def check_lazy(lazy: Lazy) -> None:
    """Read a Lazy's config now, so its mistakes are reported with everything else, before any work is done.

    Nothing is constructed; keys, types and ``type`` names are checked all the way down.
    """
    if _CHECKING.get():
        lazy.construct()
        return
    token = _CHECKING.set(True)
    try:
        lazy.construct()
    finally:
        _CHECKING.reset(token)


def _has_own_from_params(cls: type) -> bool:
    """A class with a hand-written ``from_params`` cannot be checked without running it."""
    return cls.from_params.__func__ is not FromParams.from_params.__func__  # type: ignore[attr-defined]


# ---- converting one value by its annotation ------------------------------------------------------------------
def construct_arg(annotation: Any, value: Any, path: str, extras: dict[str, Any]) -> Any:
    """Turn a config value into what ``annotation`` asks for, or raise a ConfigurationError at ``path``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is Any or annotation is _EMPTY or annotation is object:
        return _unwrap(value)
    if origin is Union or origin is types.UnionType:
        return _construct_union(annotation, args, value, path, extras)
    if value is None:
        if annotation is type(None):
            return None
        raise mismatch(type_name(annotation), value, path)
    if origin is Literal:
        if value in args:
            return value
        choices = [str(choice) for choice in args]
        raise ConfigurationError(unknown_name_message("value", str(describe(value)).strip('"'), choices), path)
    if origin is Lazy:
        target = args[0] if args else Any
        lazy = Lazy(target, _as_params(value, target, path), constructor_extras=extras)
        check_lazy(lazy)
        return lazy
    if origin is not None:
        return _construct_collection(origin, args, value, path, extras)
    if isinstance(annotation, type):
        return _construct_class(annotation, value, path, extras)
    return _unwrap(value)


def _construct_class(annotation: type, value: Any, path: str, extras: dict[str, Any]) -> Any:
    scalar = {bool: to_bool, int: to_int, float: to_float, str: to_str}.get(annotation)
    if scalar is not None:
        return scalar(value, path)
    if annotation in (list, tuple, set, frozenset, dict):
        return _construct_collection(annotation, (), value, path, extras)
    if issubclass(annotation, FromParams):
        if isinstance(value, annotation):
            return value
        if _CHECKING.get() and _has_own_from_params(annotation):
            return _UNBUILT
        return annotation.from_params(_as_params(value, annotation, path), **extras)
    if issubclass(annotation, enum.Enum):
        return _construct_enum(annotation, value, path)
    if issubclass(annotation, pathlib.PurePath):
        return annotation(to_str(value, path))
    if isinstance(value, annotation):
        return value
    if isinstance(value, Params):  # a plain class written as an object: built from its keyword arguments
        return build(annotation, value, extras)
    raise mismatch(annotation.__name__, value, path)


def _construct_enum(annotation: type[enum.Enum], value: Any, path: str) -> enum.Enum:
    for member in annotation:
        if member.value == value or member.name == value:
            return member
    choices = [str(member.value) for member in annotation]
    raise ConfigurationError(unknown_name_message("value", str(value), choices), path)


def _construct_union(annotation: Any, args: tuple, value: Any, path: str, extras: dict[str, Any]) -> Any:
    if value is None:
        if type(None) in args:
            return None
        raise mismatch(type_name(annotation), value, path)
    members = [arg for arg in args if arg is not type(None)]
    failures: list[ConfigurationError] = []
    for member in members:
        attempt = value.duplicate() if isinstance(value, Params) else value
        try:
            return construct_arg(member, attempt, path, extras)
        except ConfigurationError as error:
            failures.append(error)
    # A member that matched the value's shape and failed deeper down says more than "expected A or B".
    deeper = [error for error in failures if any(leaf.path not in (None, path) for leaf in error.errors)]
    if len(members) == 1 or len(deeper) == 1:
        raise (deeper or failures)[0]
    raise mismatch(type_name(annotation), value, path)


def _construct_collection(origin: Any, args: tuple, value: Any, path: str, extras: dict[str, Any]) -> Any:
    if origin in _DICT_ORIGINS:
        if not isinstance(value, Params):
            raise mismatch(type_name(origin if not args else dict[args]), value, path)  # type: ignore[index]
        key_type, value_type = args if len(args) == 2 else (str, Any)
        result = {}
        errors = []
        for key in list(value):
            try:
                converted_key = int(key) if key_type is int else key
                result[converted_key] = construct_arg(value_type, value.pop(key), value.path_of(key), extras)
            except ValueError:
                errors.append(ConfigurationError(f"expected an int key, got {describe(key)}", value.path_of(key)))
            except ConfigurationError as error:
                errors.append(error)
        if errors:
            raise ConfigurationError.combine(errors)
        return result
    if not isinstance(value, (list, tuple)):
        raise mismatch(type_name(origin[args] if args else origin), value, path)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            element_types = [args[0]] * len(value)
        elif args:
            if len(args) != len(value):
                raise ConfigurationError(f"expected a list of {len(args)} values, got {len(value)}", path)
            element_types = list(args)
        else:
            element_types = [Any] * len(value)
        return tuple(_construct_elements(element_types, value, path, extras))
    element_type = args[0] if args else Any
    elements = _construct_elements([element_type] * len(value), value, path, extras)
    if origin in _SET_ORIGINS:
        return set(elements) if origin is not frozenset else frozenset(elements)
    if origin in _LIST_ORIGINS:
        return elements
    raise ConfigurationError(f"cannot build a {type_name(origin)} from a config", path)


def _construct_elements(element_types: list, values: list | tuple, path: str, extras: dict[str, Any]) -> list:
    result = []
    errors = []
    for index, (element_type, item) in enumerate(zip(element_types, values)):
        try:
            result.append(construct_arg(element_type, item, join_path(path, index), extras))
        except ConfigurationError as error:
            errors.append(error)
    if errors:
        raise ConfigurationError.combine(errors)
    return result


# ---- names for messages --------------------------------------------------------------------------------------
def type_name(annotation: Any) -> str:
    """How an annotation reads in an error message: ``int``, ``float or null``, ``list[str]``, ``one of "a", "b"``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is Union or origin is types.UnionType:
        return " or ".join(type_name(arg) for arg in args)
    if origin is Literal:
        return "one of " + ", ".join(describe(arg) for arg in args)
    if origin is Lazy:
        return type_name(args[0]) if args else "object"
    if origin is not None:
        inner = ", ".join("..." if arg is Ellipsis else type_name(arg) for arg in args)
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{inner}]" if inner else base
    if isinstance(annotation, type):
        return annotation.__name__
    return "value" if annotation in (Any, _EMPTY) else str(annotation)


def _name(owner: Any) -> str:
    return getattr(owner, "__qualname__", None) or getattr(owner, "__name__", None) or repr(owner)

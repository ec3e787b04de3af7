"""Registrable: base classes that keep named implementations, chosen in a config by ``"type"``."""

from __future__ import annotations

import importlib
from collections import defaultdict
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from regimen.registry.errors import ConfigurationError, unknown_name_message
from regimen.registry.from_params import FromParams
from regimen.registry.params import Params
from regimen.registry.values import to_str

_T = TypeVar("_T")

_INIT = "__init__"  # ``register(name, constructor="__init__")``: build with __init__, inheriting nothing
_PLUGIN_HINT = (
    "if it is defined in your own package, load it with --include-package PACKAGE "
    "or list the module in a .regimen_plugins file"
)


class Registrable(FromParams):
    """A base class whose subclasses register under names: ``@Model.register("mlp_classifier")``.

    A config picks one with ``{"type": "mlp_classifier", ...}`` (or the bare string ``"mlp_classifier"``, or a
    dotted import path ``"my_pkg.models.MyModel"``); without ``type`` the base's ``default_implementation`` is
    built. Names are kept per base class.
    """

    # The registry is the one piece of module-level mutable state regimen has: base class -> name -> entry, the
    # entry holding the constructor as registered (None: inherited, see ``register``).
    _registry: ClassVar[dict[type, dict[str, tuple[Any, str | None]]]] = defaultdict(dict)
    # Names a base had once and lost: base class -> name -> (when it went, what to use instead).
    _removed: ClassVar[dict[type, dict[str, tuple[str, str]]]] = defaultdict(dict)
    default_implementation: ClassVar[str | None] = None

    @classmethod
    def register(cls, name: str, constructor: str | None = None, exist_ok: bool = False) -> Callable[[_T], _T]:
        """Decorator registering a class under ``name`` for this base.

        ``constructor`` names a classmethod to build it with instead of ``__init__`` (``"from_partial_objects"``).
        Without one, the class is built the way its nearest registered ancestor is: the first class of its MRO
        after itself that is registered for this base (under any name) gives its constructor, when all of its
        registrations agree on one and the subclass has it as a callable attribute; otherwise ``__init__``. So
        ``@Trainer.register("mine") class Mine(GradientDescentTrainer)`` reads the same config keys as
        "gradient_descent" (through ``from_partial_objects``, which builds the optimizer and calls
        ``cls(...)``, so an overridden ``__init__`` still runs and its extra keys are read through the
        classmethod's ``**kwargs``). ``constructor="__init__"`` builds with ``__init__`` regardless. AllenNLP
        built a subclass registered without a constructor through its ``__init__`` alone, which for a trainer
        passed the optimizer's config where a built optimizer belongs.

        The inheritance is looked up each time the name is resolved, not when it is registered, so it holds
        whichever of the two classes registers first and follows a parent re-registered with ``exist_ok``.

        Registering a name twice is an error unless ``exist_ok``. The class need not be a FromParams: a torch
        class registered here is built from its keyword arguments.
        """
        registry = Registrable._registry[cls]

        def add(subclass: _T) -> _T:
            if name in registry and not exist_ok:
                existing = registry[name][0]
                raise ConfigurationError(
                    f'cannot register {_qualified(subclass)} as {cls.__name__} "{name}": the name is already '
                    f"taken by {_qualified(existing)} (pass exist_ok=True to replace it)"
                )
            if constructor not in (None, _INIT) and not callable(getattr(subclass, constructor, None)):
                raise ConfigurationError(f"{_qualified(subclass)} has no constructor method {constructor!r}")
            registry[name] = (subclass, constructor)
            return subclass

        return add

    @staticmethod
    def registering_modules() -> list[str]:
        """The importable modules that registered a component (not ``__main__``), sorted: importing them in another
        process (a distributed worker) gives it the same registry."""
        modules = {
            getattr(entry, "__module__", None)
            for registry in Registrable._registry.values()
            for entry, _ in registry.values()
        }
        return sorted(module for module in modules if module and module != "__main__")

    @classmethod
    def list_available(cls) -> list[str]:
        """The registered names, the default implementation first."""
        names = list(Registrable._registry.get(cls, {}))
        default = cls.default_implementation
        if default is not None and default in names:
            names.remove(default)
            names.insert(0, default)
        return names

    @classmethod
    def is_registered(cls, name: str) -> bool:
        return name in Registrable._registry.get(cls, {})

    @classmethod
    def register_removed(cls, name: str, removed_in: str, replacement: str) -> None:
        """Declare ``name`` a type this base once had and lost, so that a config asking for it is told when it
        went and what replaced it instead of "unknown type".

        ``Trainer.register_removed("callback", "AllenNLP 1.0", 'use "gradient_descent" ...')`` makes
        ``"trainer": {"type": "callback"}`` fail with ``trainer.type: Trainer type "callback" was removed in
        AllenNLP 1.0: use "gradient_descent" ...``. A class registered under the name (a plugin bringing it
        back) wins; removed names are not listed by ``list_available``.
        """
        Registrable._removed[cls][name] = (removed_in, replacement)

    @classmethod
    def resolve_class_name(cls, name: str, path: str | None = None) -> tuple[Any, str | None]:
        """``(implementation, constructor method name or None for __init__)`` for a registered name or a dotted
        path; the constructor is the registered one, else the inherited one (see ``register``). A dotted class
        is built as its own registration for this base is, if it has one, else as its registered ancestor."""
        registry = Registrable._registry.get(cls, {})
        if name in registry:
            implementation, constructor = registry[name]
            return implementation, _effective_constructor(cls, implementation, constructor)
        if name in Registrable._removed.get(cls, {}):
            removed_in, replacement = Registrable._removed[cls][name]
            raise ConfigurationError(f'{cls.__name__} type "{name}" was removed in {removed_in}: {replacement}', path)
        if "." in name:
            implementation = _import_dotted(name, path)
            return implementation, _inherited_constructor(cls, implementation, include_self=True)
        message = unknown_name_message(f"{cls.__name__} type", name, cls.list_available())
        raise ConfigurationError(f"{message}; {_PLUGIN_HINT}", path)

    @classmethod
    def by_name(cls, name: str) -> Callable[..., Any]:
        """The callable that builds the implementation registered as ``name``."""
        implementation, constructor = cls.resolve_class_name(name)
        return getattr(implementation, constructor) if constructor else implementation

    @classmethod
    def _choose_implementation(cls, params: Params) -> tuple[Any, str | None] | None:
        if cls not in Registrable._registry:
            if Registrable in cls.__bases__:
                raise ConfigurationError(
                    f"no {cls.__name__} implementations are registered; {_PLUGIN_HINT}", params.path or None
                )
            return None
        path = params.path_of("type")
        if "type" in params:
            name = to_str(params.pop("type"), path)
        elif cls.default_implementation is not None:
            name = cls.default_implementation
        else:
            choices = ", ".join(cls.list_available())
            raise ConfigurationError(f"missing required key (choose a {cls.__name__} type: {choices})", path)
        return cls.resolve_class_name(name, path)


def _effective_constructor(base: type, implementation: Any, constructor: str | None) -> str | None:
    """The constructor a registration builds with: the one it names, else the inherited one (None: __init__)."""
    if constructor == _INIT:
        return None
    if constructor is not None:
        return constructor
    return _inherited_constructor(base, implementation)


def _inherited_constructor(base: type, implementation: Any, include_self: bool = False) -> str | None:
    """The constructor of the nearest class in ``implementation``'s MRO registered for ``base`` (after
    ``implementation`` itself unless ``include_self``), if its registrations agree on one that
    ``implementation`` has; None (``__init__``) otherwise."""
    if not isinstance(implementation, type):
        return None
    registry = Registrable._registry.get(base, {})
    for ancestor in implementation.__mro__[0 if include_self else 1 :]:
        declared = {constructor for registered, constructor in registry.values() if registered is ancestor}
        if not declared:
            continue
        # An ancestor registered without a constructor has the one it inherits itself; the MRO shrinks, so this ends.
        effective = {_effective_constructor(base, ancestor, constructor) for constructor in declared}
        if len(effective) != 1:  # registered with different constructors: nothing says which one a subclass wants
            return None
        (constructor,) = effective
        return constructor if constructor is None or callable(getattr(implementation, constructor, None)) else None
    return None


def _import_dotted(name: str, path: str | None) -> Any:
    module_name, _, attribute = name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigurationError(f'cannot import module "{module_name}" for type "{name}": {error}', path) from None
    if not hasattr(module, attribute):
        raise ConfigurationError(f'module "{module_name}" has no attribute "{attribute}"', path)
    return getattr(module, attribute)


def _qualified(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"

"""Lazy[T]: a component whose config is read now and which is built later, once its dependencies exist."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from regimen.registry.params import Params

T = TypeVar("T")


class Lazy(Generic[T]):
    """A deferred construction: ``Lazy[Optimizer]`` in a signature holds the optimizer's config until the
    caller has the model's parameters and calls ``construct(model_parameters=...)``.

    Each ``construct`` builds a new object from a fresh copy of the config. Keyword arguments given to
    ``construct`` override the extras stored when the Lazy was made; values written in the config win over
    both. ``x: Lazy[T] = Lazy(T)`` is a valid default: an absent key builds ``T`` from an empty config.
    """

    def __init__(
        self,
        constructor: type[T] | Callable[..., T],
        params: Params | Mapping[str, Any] | None = None,
        constructor_extras: Mapping[str, Any] | None = None,
    ) -> None:
        self.constructor = constructor
        self.params = params if isinstance(params, Params) else Params(params)
        self.constructor_extras = dict(constructor_extras or {})

    def construct(self, **kwargs: Any) -> T:
        """Build a new object; ``kwargs`` are injected where the constructor names them."""
        from regimen.registry.from_params import FromParams, build  # from_params imports this module

        extras = {**self.constructor_extras, **kwargs}
        params = self.params.duplicate()
        if isinstance(self.constructor, type) and issubclass(self.constructor, FromParams):
            return self.constructor.from_params(params, **extras)
        return build(self.constructor, params, extras)

    def at(self, params: Params, extras: Mapping[str, Any]) -> Lazy[T]:
        """This default placed in a config: the stored config at ``params.path``, with more extras."""
        placed = Params(self.params.as_dict(), params.path)
        return Lazy(self.constructor, placed, {**extras, **self.constructor_extras})

    def __repr__(self) -> str:
        name = getattr(self.constructor, "__name__", repr(self.constructor))
        return f"Lazy({name}, {self.params.as_dict()!r})"

"""Introspection: the config keys a registered component reads, with their types, defaults and docstring texts.

What ``regimen describe`` prints and ``regimen schema`` turns into a JSON Schema comes from here: the
constructor a registration builds with (``__init__`` or a named classmethod such as ``from_partial_objects``),
read by ``constructor_parameters`` exactly as FromParams reads it, less the keys regimen's own code supplies.
"""

from __future__ import annotations

import enum
import inspect
import json
import pathlib
import re
import textwrap
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from regimen.registry.errors import ConfigurationError, unknown_name_message
from regimen.registry.from_params import (
    _LIST_ORIGINS,
    _SET_ORIGINS,
    FromParams,
    _has_own_from_params,
    constructor_parameters,
)
from regimen.registry.lazy import Lazy
from regimen.registry.registrable import Registrable

_EMPTY = inspect.Parameter.empty
_NONE = type(None)

# ---- injected keys ---------------------------------------------------------------------------------------------
# The keys regimen's own code passes to constructors (``from_params(..., **extras)`` and ``Lazy.construct(...)``)
# instead of a user writing them, by the base class whose implementations receive them. Extras reach every depth
# below where they are given: ``Experiment.from_params(..., serialization_dir=...)`` (experiment.py) reaches every
# component, the trainer's extras (``Lazy[Trainer].construct(model=..., ...)`` in experiment.py) everything the
# trainer builds, the loader's (``reader``, ``data_path``, ``seed``) its batch sampler. The schedules and averages
# get theirs in ``GradientDescentTrainer.from_partial_objects`` and ``CombinedLearningRateScheduler``.
# A value written in the config wins over an injected one, so injected keys are never required.
_EVERYWHERE = frozenset({"serialization_dir"})
_TRAINER = _EVERYWHERE | {"model", "data_loader", "validation_data_loader", "test_data_loader", "distributed"}
_LOADER = _EVERYWHERE | {"reader", "data_path", "seed"}
INJECTED_KEYS: Mapping[str, frozenset[str]] = {
    "Experiment": _EVERYWHERE,
    "DatasetReader": _EVERYWHERE,
    "Model": _EVERYWHERE,
    "DataLoader": _LOADER,
    "BatchSampler": _LOADER,
    "Trainer": _TRAINER,
    "TrainerCallback": _TRAINER,
    "BatchCallback": _TRAINER,
    "EpochCallback": _TRAINER,
    "Checkpointer": _TRAINER,
    "Optimizer": _TRAINER | {"model_parameters"},
    "LearningRateScheduler": _TRAINER | {"optimizer", "num_epochs", "num_steps_per_epoch"},
    "MomentumScheduler": _TRAINER | {"optimizer"},
    "MovingAverage": _TRAINER | {"parameters"},
}
# Every name injected somewhere: for checks that do not know a component's position (tests/test_docstrings.py).
INJECTED: frozenset[str] = frozenset().union(*INJECTED_KEYS.values())


def injected_keys(owner: Any) -> frozenset[str]:
    """The injected keys of ``owner``, a base class or an implementation: those of its nearest registry base in
    the table above; a base regimen does not know (a plugin's own) gets only ``serialization_dir``."""
    for candidate in getattr(owner, "__mro__", ()):
        if candidate in Registrable._registry and candidate.__name__ in INJECTED_KEYS:
            return INJECTED_KEYS[candidate.__name__]
    return _EVERYWHERE


# ---- the keys of one constructor ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfigKey:
    """One key a constructor reads: its annotation, its default (``inspect.Parameter.empty``: none) and the text
    the docstrings give it; ``injected`` keys are supplied by regimen (a value in the config overrides them)."""

    name: str
    annotation: Any
    default: Any
    description: str
    injected: bool = False

    @property
    def required(self) -> bool:
        """Whether a config must give this key: no default and not supplied by regimen."""
        return self.default is _EMPTY and not self.injected


@dataclass(frozen=True)
class Component:
    """A registered implementation as a config sees it: where it is, how it is built, what keys it reads.

    ``passthrough``: unknown keys are handed on as keyword arguments (a ``**kwargs`` constructor of a class
    that is not FromParams, or one without a signature); ``opaque``: a hand-written ``from_params`` reads the
    config, so its keys cannot be known.
    """

    base: type
    name: str
    implementation: Any
    constructor_name: str | None
    keys: tuple[ConfigKey, ...]
    passthrough: bool
    opaque: bool = False

    @property
    def is_default(self) -> bool:
        """Whether a config without ``"type"`` builds this one."""
        return self.name == getattr(self.base, "default_implementation", None)


def registered_component(base: type[Registrable], name: str) -> Component:
    """The implementation registered (or, for a dotted path, importable) as ``name`` for ``base``, with the
    keys of the constructor its registration builds with."""
    implementation, constructor_name = base.resolve_class_name(name)
    constructor = getattr(implementation, constructor_name) if constructor_name else implementation
    if isinstance(implementation, type) and issubclass(implementation, FromParams):
        if _has_own_from_params(implementation):
            return Component(base, name, implementation, constructor_name, (), True, opaque=True)
    keys, passthrough = config_keys(constructor, implementation, injected_keys(base))
    return Component(base, name, implementation, constructor_name, keys, passthrough)


def config_keys(
    constructor: Callable[..., Any], owner: Any, injected: Iterable[str] = ()
) -> tuple[tuple[ConfigKey, ...], bool]:
    """The keys ``constructor`` reads for ``owner`` (as ``constructor_parameters`` finds them) with their
    docstring texts, and whether it passes unknown keys through."""
    parameters, passthrough = constructor_parameters(constructor, owner)
    injected = set(injected)
    texts = key_descriptions(_documents(constructor, owner), list(parameters))
    keys = tuple(
        ConfigKey(name, annotation, default, texts.get(name, ""), name in injected)
        for name, (annotation, default) in parameters.items()
    )
    return keys, passthrough


def _documents(constructor: Callable[..., Any], owner: Any) -> list[str]:
    """The docstrings that may document the keys, nearest first: the class, a classmethod constructor, then the
    classes it inherits from (a subclass registered without docs reads its parent's keys)."""
    documents = [inspect.getdoc(owner) or ""]
    if constructor is not owner:
        documents.append(inspect.getdoc(constructor) or "")
    for ancestor in getattr(owner, "__mro__", ())[1:]:
        if ancestor not in (object, FromParams, Registrable):
            documents.append(ancestor.__doc__ or "")
    return documents


# ---- docstring texts of keys -------------------------------------------------------------------------------------
_BULLET = re.compile(r"^(\s*)[-*] (.*)$")
_KEY_LINE = re.compile(r"^(\s*)([A-Za-z_]\w*): ?(.*)$")
_BACKTICKED = re.compile(r"`([A-Za-z_]\w*)`(\s*\()?")
# A bullet's lead: keys with their ``(type, default)``, joined by commas, "and", "or", "with" or "/".
_PARENTHESES = r"\((?:[^()]|\([^()]*\))*\)"
_LEAD = re.compile(rf"(?:`\w+`(?:\s*{_PARENTHESES})?(?:,\s*|\s+(?:and|or|with)\s+|\s*/\s*)?)+")


def key_descriptions(documents: str | Sequence[str], keys: Sequence[str]) -> dict[str, str]:
    """The text each docstring gives each of ``keys``; the first document that documents a key wins.

    Two styles are read. Bullets: ``- `lr` (float, 0.001): learning rate.`` (several keys may share one bullet's
    lead, ``- `numerator` (float, 1.0), `denominator` (float, 10.0): ...``, and get the text after its colon).
    Indented lines: ``lr: float = 0.001`` followed by more indented lines of text. A key named in a bullet's lead
    wins over one only mentioned inside another key's bullet.
    """
    if isinstance(documents, str):
        documents = [documents]
    found: dict[str, tuple[int, str]] = {}
    for document in documents:
        here: dict[str, tuple[int, str]] = {}
        for rank, name, text in _documented(inspect.cleandoc(document), set(keys)):
            if name not in here or rank < here[name][0]:
                here[name] = (rank, text)
        for name, entry in here.items():
            found.setdefault(name, entry)
    return {name: text for name, (_, text) in found.items()}


def _documented(doc: str, keys: set[str]) -> Iterable[tuple[int, str, str]]:
    """``(rank, key, text)`` for each place ``doc`` documents a key; rank 0 is a key's own entry."""
    lines = doc.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        bullet, key_line = _BULLET.match(line), _KEY_LINE.match(line)
        end = index + 1
        if bullet is not None or (key_line is not None and key_line[2] in keys):
            while end < len(lines) and lines[end].strip() and _indent(lines[end]) > _indent(line):
                end += 1
        continuation = [text.strip() for text in lines[index + 1 : end]]
        if bullet is not None:
            yield from _bullet_keys(" ".join([bullet[2], *continuation]), keys)
        elif continuation:  # ``key: type = default`` and its indented text
            yield 0, key_line[2], _clean(" ".join(continuation))
        index = end


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _bullet_keys(text: str, keys: set[str]) -> Iterable[tuple[int, str, str]]:
    """The keys of one bullet. Those of its lead (```a` (int, 1), `b` (int, 2):``) get the text after the
    colon; one only mentioned with a type further on gets its clause (up to the next ``;``); others the bullet."""
    lead = _LEAD.match(text)
    lead_end = lead.end() if lead is not None else 0
    after = text[lead_end:]
    own = _clean(after[1:]) if after.startswith(":") and after[1:].strip() else _clean(text)
    for match in _BACKTICKED.finditer(text):
        if match[1] not in keys:
            continue
        if match.start() < lead_end:
            yield 0, match[1], own
        elif match[2]:
            yield 1, match[1], _clean(_clause(text, match.start()))
        else:
            yield 2, match[1], _clean(text)


def _clause(text: str, start: int) -> str:
    """``text`` from ``start`` to the next ``;`` outside brackets and backticks (or the end)."""
    depth, quoted = 0, False
    for position in range(start, len(text)):
        char = text[position]
        if char == "`":
            quoted = not quoted
        elif quoted:
            continue
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(depth - 1, 0)
        elif char == ";" and depth == 0:
            return text[start:position]
    return text[start:]


def _clean(text: str) -> str:
    return " ".join(text.replace("``", "`").split())


# ---- readable types and defaults ---------------------------------------------------------------------------------
def readable_type(annotation: Any) -> str:
    """An annotation as a config's author reads it: ``int``, ``float | null``, ``"relu" | "gelu"``, ``list[int]``,
    ``[float, float]`` (a fixed-length tuple), ``dict[str, float]``; ``Lazy[Optimizer]`` is ``Optimizer``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is _NONE:
        return "null"
    if annotation in (Any, _EMPTY, object):
        return "any"
    if origin is Union or origin is types.UnionType:
        return " | ".join(readable_type(arg) for arg in args)
    if origin is Literal:
        return " | ".join(_json_text(arg) for arg in args)
    if origin is Lazy:
        return readable_type(args[0]) if args else "any"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list[{readable_type(args[0])}]"
        return "[" + ", ".join(readable_type(arg) for arg in args) + "]" if args else "list"
    if origin is not None:
        name = "dict" if _is_mapping(origin) else "list" if _is_sequence(origin) else getattr(origin, "__name__", "")
        return f"{name}[{', '.join(readable_type(arg) for arg in args)}]" if args else name or str(annotation)
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return " | ".join(_json_text(member.value) for member in annotation)
        if issubclass(annotation, pathlib.PurePath):
            return "str"
        if annotation in (tuple, set, frozenset):
            return "list"
        return annotation.__name__
    return str(annotation)


def _is_mapping(origin: Any) -> bool:
    return isinstance(origin, type) and issubclass(origin, Mapping)


def _is_sequence(origin: Any) -> bool:
    return origin in _LIST_ORIGINS or origin in _SET_ORIGINS


NOT_JSON = object()  # what json_value gives for a value JSON cannot hold


def json_value(value: Any) -> Any:
    """``value`` as JSON would hold it (tuples as lists, enums by value, paths as strings), or ``NOT_JSON``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value if value == value and value not in (float("inf"), float("-inf")) else NOT_JSON
    if isinstance(value, enum.Enum):
        return json_value(value.value)
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [json_value(item) for item in value]
        return NOT_JSON if any(item is NOT_JSON for item in items) else items
    if isinstance(value, dict):
        pairs = {str(key): json_value(item) for key, item in value.items()}
        return NOT_JSON if any(item is NOT_JSON for item in pairs.values()) else pairs
    return NOT_JSON


def readable_default(default: Any) -> str:
    """A default as a config would write it: ``null``, ``0.001``, ``"relu"``, ``[0.9, 0.999]``; a ``Lazy``
    default is the component it builds (``"adam"``, the base's default implementation); none is ``required``."""
    if default is _EMPTY:
        return "required"
    if isinstance(default, Lazy):
        config = default.params.as_dict()
        implementation = getattr(default.constructor, "default_implementation", None)
        if not config and implementation is not None:
            return _json_text(implementation)
        return _json_text(config)
    value = json_value(default)
    return repr(default) if value is NOT_JSON else _json_text(value)


def _json_text(value: Any) -> str:
    return json.dumps(value) if json_value(value) is not NOT_JSON else repr(value)


def first_paragraph(obj: Any) -> str:
    """The first paragraph of ``obj``'s docstring on one line ("" without one)."""
    doc = inspect.getdoc(obj) or ""
    return _clean(doc.strip().split("\n\n", 1)[0])


def qualified_name(obj: Any) -> str:
    """``module.Qualname`` of a class or function."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


# ---- finding a base or a name as a user types it ---------------------------------------------------------------
def _normal(text: str) -> str:
    return text.lower().replace("-", "").replace("_", "")


def match_name(query: str, candidates: Sequence[str], kind: str, abbreviations: bool = False) -> str:
    """The candidate ``query`` means, ignoring case, ``-`` and ``_`` (``linear-with-warmup``,
    ``LINEARWITHWARMUP``); with ``abbreviations`` a word may also be its initials (``lr-scheduler`` for
    ``LearningRateScheduler``). An unknown or ambiguous one is a ConfigurationError listing what exists."""
    if query in candidates:
        return query
    matches = [candidate for candidate in candidates if _normal(candidate) == _normal(query)]
    if not matches and abbreviations:
        matches = [candidate for candidate in candidates if _abbreviates(_words(query), _words(candidate))]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigurationError(f'{kind} "{query}" is ambiguous: it matches {", ".join(matches)}; write one exactly')
    raise ConfigurationError(unknown_name_message(kind, query, list(candidates)))


def _words(text: str) -> list[str]:
    """``LearningRateScheduler`` and ``learning-rate_scheduler`` both give ``["learning", "rate", "scheduler"]``."""
    return [word.lower() for word in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+", text)]


def _abbreviates(query: list[str], words: list[str]) -> bool:
    """Whether each query word is the next word, or the initials of the next few words, of ``words``."""
    if not query or not words:
        return not query and not words
    head, rest = query[0], query[1:]
    if head == words[0] and _abbreviates(rest, words[1:]):
        return True
    initials = "".join(word[0] for word in words[: len(head)])
    return len(head) > 1 and head == initials and _abbreviates(rest, words[len(head) :])


# ---- the description ``regimen describe`` prints -----------------------------------------------------------------
def describe_lines(component: Component, width: int = 100) -> list[str]:
    """The reference of one component: where it is, its first docstring paragraph, each key with its type,
    default and text, then the keys regimen supplies."""
    built = f" (built by {component.constructor_name})" if component.constructor_name else ""
    lines = [f'{component.base.__name__} "{component.name}": {qualified_name(component.implementation)}{built}']
    if component.is_default:
        lines.append(f'The default {component.base.__name__}: a config without "type" builds it.')
    summary = first_paragraph(component.implementation)
    if summary:
        lines += ["", *textwrap.wrap(summary, width)]
    lines.append("")
    if component.opaque:
        lines.append("Config keys: read by its own from_params, so they cannot be listed here; see its docstring.")
        return lines
    keys = [key for key in component.keys if not key.injected]
    lines.append("Config keys:" if keys else "Config keys: none.")
    for key in keys:
        default = "(required)" if key.required else f"= {readable_default(key.default)}"
        lines.append(f"  {key.name}: {readable_type(key.annotation)} {default}")
        text = key.description or "(not documented)"
        lines += textwrap.wrap(text, width, initial_indent=" " * 6, subsequent_indent=" " * 6)
    if component.passthrough:
        lines.append("  Any other key is passed on to the constructor as a keyword argument.")
    supplied = [key.name for key in component.keys if key.injected]
    if supplied:
        lines += ["", "Supplied by regimen, not written in the config: " + ", ".join(supplied) + "."]
    return lines

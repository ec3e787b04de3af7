"""Introspection and the JSON Schema: the keys a registration reads, their readable types, defaults and docstring
texts, and the schema of each annotation, checked against what FromParams itself accepts."""

from __future__ import annotations

import enum
import inspect
import pathlib
import subprocess
import sys
from typing import Any, Dict, List, Literal, Optional, Tuple, Union

import jsonschema
import pytest

from regimen.registry import ConfigurationError, FromParams, Lazy, Params, Registrable
from regimen.registry.introspection import (
    INJECTED,
    describe_lines,
    injected_keys,
    key_descriptions,
    match_name,
    readable_default,
    readable_type,
    registered_component,
)
from regimen.registry.schema import _Builder, config_schema, union
from tests.conftest import ROOT


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


# ---- a small registry of its own: a base with a default, one with a classmethod constructor, a nested base --------
class Gadget(Registrable):
    """A test base of gadgets."""

    default_implementation = "plain"


class Part(Registrable):
    """A test base without a default: every part names its type."""


@Part.register("bolt")
class Bolt(Part):
    """A bolt.

    Config keys:
        size: int
            The bolt's size in millimetres.
        finish: "matte" | "gloss" | null = null
            How it looks;
            null leaves it bare.
    """

    def __init__(self, size: int, finish: Literal["matte", "gloss"] | None = None) -> None:
        self.size, self.finish = size, finish


@Part.register("assembly")
class Assembly(Part):
    """Parts of parts: ``parts`` nests this base in itself.

    - `parts` (list[Part], required): what it is made of.
    """

    def __init__(self, parts: list[Part]) -> None:
        self.parts = parts


@Gadget.register("plain")
class PlainGadget(Gadget):
    """The plain gadget, built when a config has no type.

    Registered as a `Gadget` with name "plain".

    Config keys:
    - `count` (int, 1), `rate` (float, 0.5): how many, and how fast: the colon in (a: b) is no end.
    - `flag` (bool, false): a switch; `mode` ("min" | "max", "min") picks the direction.
    - `color` (Color, "red"): an enum, by value or name.
    """

    def __init__(
        self,
        count: int = 1,
        rate: float = 0.5,
        flag: bool = False,
        mode: Literal["min", "max"] = "min",
        color: Color = Color.RED,
        serialization_dir: str | None = None,
    ) -> None:
        self.count, self.rate, self.flag, self.mode, self.color = count, rate, flag, mode, color


@Gadget.register("built", constructor="from_parts")
class BuiltGadget(Gadget):
    """A gadget built by a classmethod that builds its part first.

    - `part` (Part, required): the part, built lazily.
    - `sizes` (list[int], []): sizes.
    - `pair` ([int, str], [0, ""]): a fixed pair; `table` (dict[str, float], null) maps names to weights.
    - `where` (str, "."): a path.
    """

    def __init__(self, part: Part, sizes: List[int] = (), pair: Tuple[int, str] = (0, "")) -> None:  # type: ignore[assignment]
        self.part, self.sizes, self.pair = part, sizes, pair

    @classmethod
    def from_parts(
        cls,
        part: Lazy[Part],
        table: Optional[Dict[str, float]] = None,
        where: pathlib.Path = pathlib.Path("."),
        **kwargs: Any,
    ) -> BuiltGadget:
        return cls(part=part.construct(), **kwargs)


class Holder(FromParams):
    """The root of the test configs: one gadget, maybe a second, and some plain values."""

    def __init__(
        self, gadget: Gadget, spare: Gadget | None = None, label: Union[int, str] = 0, anything: Any = None
    ) -> None:
        self.gadget, self.spare, self.label, self.anything = gadget, spare, label, anything


def _schema() -> dict:
    schema = config_schema(Holder, "test")
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def _regimen_accepts(config: Any) -> bool:
    try:
        Holder.from_params(Params(config))
    except ConfigurationError:
        return False
    return True


# ---- readable types and defaults ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (int, "int"),
        (Optional[float], "float | null"),
        (float | None, "float | null"),
        (Literal["relu", "gelu"], '"relu" | "gelu"'),
        (List[int], "list[int]"),
        (list[tuple[int, Part]], "list[[int, Part]]"),
        (tuple[float, ...], "list[float]"),
        (Dict[str, float], "dict[str, float]"),
        (Lazy[Part], "Part"),
        (Lazy[Part] | None, "Part | null"),
        (Color, '"red" | "blue"'),
        (pathlib.Path, "str"),
        (Any, "any"),
        (inspect.Parameter.empty, "any"),
    ],
)
def test_types_read_as_a_config_writes_them(annotation, expected):
    assert readable_type(annotation) == expected


@pytest.mark.parametrize(
    ("default", "expected"),
    [
        (inspect.Parameter.empty, "required"),
        (None, "null"),
        (False, "false"),
        (1e-08, "1e-08"),
        ("relu", '"relu"'),
        ((0.9, 0.999), "[0.9, 0.999]"),
        (Color.BLUE, '"blue"'),
        (pathlib.Path("runs"), '"runs"'),
        (Lazy(Gadget), '"plain"'),  # builds the base's default implementation
        (Lazy(Part, {"type": "bolt", "size": 3}), '{"type": "bolt", "size": 3}'),
    ],
)
def test_defaults_read_as_a_config_writes_them(default, expected):
    assert readable_default(default) == expected


# ---- docstring texts ---------------------------------------------------------------------------------------------
def test_both_docstring_styles_give_each_key_its_own_text():
    bullets = key_descriptions(inspect.getdoc(PlainGadget), ["count", "rate", "flag", "mode", "color"])
    assert bullets["count"] == bullets["rate"] == "how many, and how fast: the colon in (a: b) is no end."
    assert bullets["flag"] == 'a switch; `mode` ("min" | "max", "min") picks the direction.'
    assert bullets["mode"] == '`mode` ("min" | "max", "min") picks the direction.'  # its own clause
    assert bullets["color"] == "an enum, by value or name."
    indented = key_descriptions(inspect.getdoc(Bolt), ["size", "finish"])
    assert indented == {"size": "The bolt's size in millimetres.", "finish": "How it looks; null leaves it bare."}


def test_a_key_named_in_a_bullets_lead_wins_over_a_mention_and_the_nearest_document_wins():
    doc = "- `a` (int, 1): first; see `b`.\n- `b` (int, 2): second."
    assert key_descriptions(doc, ["a", "b"]) == {"a": "first; see `b`.", "b": "second."}
    parent, child = "- `a` (int): from the parent.", "- `a` (int): from the child."
    assert key_descriptions([child, parent], ["a"]) == {"a": "from the child."}
    assert key_descriptions("Words about `a` outside any bullet.", ["a"]) == {}


# ---- components ----------------------------------------------------------------------------------------------
def test_a_classmethod_registration_reads_its_own_keys_and_its_init_keys_through_kwargs():
    component = registered_component(Gadget, "built")
    assert component.constructor_name == "from_parts"
    keys = {key.name: key for key in component.keys}
    assert list(keys) == ["part", "sizes", "pair", "table", "where"]  # __init__'s `part` replaced by the Lazy one
    assert readable_type(keys["part"].annotation) == "Part" and keys["part"].required
    assert keys["table"].description == "`table` (dict[str, float], null) maps names to weights."
    assert not component.is_default and registered_component(Gadget, "plain").is_default


def test_injected_keys_are_never_required_and_are_listed_apart():
    component = registered_component(Gadget, "plain")
    serialization_dir = next(key for key in component.keys if key.name == "serialization_dir")
    assert serialization_dir.injected and not serialization_dir.required
    lines = describe_lines(component)
    assert lines[0] == f'Gadget "plain": {PlainGadget.__module__}.PlainGadget'
    assert "  count: int = 1" in lines and '  color: "red" | "blue" = "red"' in lines
    assert not any(line.startswith("  serialization_dir") for line in lines)
    assert lines[-1] == "Supplied by regimen, not written in the config: serialization_dir."
    assert INJECTED >= {"model_parameters", "optimizer", "num_epochs", "reader", "data_path", "serialization_dir"}
    assert injected_keys(Gadget) == {"serialization_dir"}  # a base regimen does not wire


def test_names_match_ignoring_case_dashes_and_underscores_and_unknown_ones_list_what_exists():
    names = ["linear_with_warmup", "cosine"]
    assert match_name("Linear-With-Warmup", names, "name") == "linear_with_warmup"
    assert match_name("COSINE", names, "name") == "cosine"
    with pytest.raises(ConfigurationError) as error:
        match_name("cosin", names, "LearningRateScheduler name")
    assert str(error.value) == (
        'unknown LearningRateScheduler name "cosin"; did you mean "cosine"? valid LearningRateScheduler names: '
        "linear_with_warmup, cosine"
    )
    with pytest.raises(ConfigurationError, match='"ab" is ambiguous: it matches a_b, a-b'):
        match_name("ab", ["a_b", "a-b"], "name")


def test_a_base_may_be_abbreviated_to_the_initials_of_its_words():
    bases = ["DataLoader", "DatasetReader", "LearningRateScheduler", "MomentumScheduler", "TrainerCallback"]
    for query in ("lr-scheduler", "LRScheduler", "learning_rate_scheduler", "learningratescheduler"):
        assert match_name(query, bases, "base", abbreviations=True) == "LearningRateScheduler"
    assert match_name("dr", bases, "base", abbreviations=True) == "DatasetReader"
    with pytest.raises(ConfigurationError, match='unknown base "scheduler"'):  # a word alone is no abbreviation
        match_name("scheduler", bases, "base", abbreviations=True)
    with pytest.raises(ConfigurationError, match='unknown name "lww"'):  # names are not abbreviated
        match_name("lww", ["linear_with_warmup"], "name")


# ---- the schema of each annotation ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (str, {"type": "string"}),
        (bool, {"enum": [True, False, "true", "false"]}),  # to_bool takes "true"/"false" as AllenNLP did
        (Optional[int], {"type": ["integer", "null"]}),
        (Optional[bool], {"enum": [True, False, "true", "false", None]}),
        (Literal["min", "max"], {"enum": ["min", "max"]}),
        (Color, {"enum": ["red", "blue", "RED", "BLUE"]}),
        (pathlib.Path, {"type": "string"}),
        (List[int], {"type": "array", "items": {"type": "integer"}}),
        (tuple[float, ...], {"type": "array", "items": {"type": "number"}}),
        (
            Tuple[int, str],
            {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "minItems": 2, "maxItems": 2},
        ),
        (Dict[str, float], {"type": "object", "additionalProperties": {"type": "number"}}),
        (dict[str, Any], {"type": "object"}),
        (Union[int, str], {"type": ["integer", "string"]}),
        (Lazy[Part], {"$ref": "#/$defs/Part"}),
        (Optional[Lazy[Part]], {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Part"}]}),
        (Any, {}),
        (inspect.Parameter.empty, {}),
    ],
)
def test_each_annotation_becomes_its_schema(annotation, expected):
    assert _Builder().annotation(annotation) == expected


def test_a_union_with_an_unconstrained_member_is_unconstrained():
    assert union([{"type": "integer"}, {}]) == {}


def test_the_schema_is_a_valid_2020_12_schema_with_one_def_per_base_even_when_recursive():
    schema = _schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$ref"] == "#/$defs/Holder"
    assert set(schema["$defs"]) == {"Holder", "Gadget", "Part"}
    holder = schema["$defs"]["Holder"]
    assert holder["required"] == ["gadget"] and holder["additionalProperties"] is False
    assert holder["properties"]["gadget"] == {"$ref": "#/$defs/Gadget"}
    assembly = next(branch for branch in schema["$defs"]["Part"]["oneOf"] if branch.get("title") == "assembly")
    assert assembly["then"]["properties"]["parts"]["items"] == {"$ref": "#/$defs/Part"}
    assert assembly["then"]["required"] == ["type", "parts"]
    plain = next(branch for branch in schema["$defs"]["Gadget"]["oneOf"] if branch.get("title") == "plain")
    assert plain["then"]["properties"]["count"] == {"type": "integer", "description": "how many, and how fast: "
                                                    "the colon in (a: b) is no end.", "default": 1}  # fmt: skip


# The schema and FromParams agree: each config is valid under the schema exactly when regimen builds it.
AGREEMENT = [
    ({"gadget": {}}, True),  # the default implementation, without "type"
    ({"gadget": {"type": "plain", "count": 2.0, "rate": 3, "flag": "true"}}, True),  # 2.0 is an int, "true" a bool
    ({"gadget": "plain"}, True),  # a bare name
    ({"gadget": {"type": "built", "part": {"type": "bolt", "size": 3}, "pair": [1, "a"], "where": "x"}}, True),
    ({"gadget": {"type": "built", "part": "bolt"}}, False),  # a bolt needs its size
    ({"gadget": "built"}, False),  # a built gadget needs its part
    ({"gadget": {"type": "built", "part": {"type": "assembly", "parts": [{"type": "bolt", "size": 1}]}}}, True),
    ({"gadget": {"type": "built", "part": {"type": "assembly", "parts": [{"size": 1}]}}}, False),  # Part: no default
    ({"gadget": {"type": f"{__name__}.PlainGadget", "count": 3}}, True),  # a dotted import path
    ({"gadget": {"count": 1.5}}, False),
    ({"gadget": {"counts": 1}}, False),  # a typo
    ({"gadget": {"flag": "yes"}}, False),
    ({"gadget": {"mode": "median"}}, False),
    ({"gadget": {"color": "BLUE"}}, True),  # an enum member by name
    ({"gadget": {"color": "green"}}, False),
    ({"gadget": {"type": "fancy"}}, False),
    ({"gadget": {}, "spare": None, "label": "x", "anything": [1, {"a": None}]}, True),
    ({"gadget": {}, "label": 1.5}, False),
    ({"gadget": {"type": "built", "part": {"type": "bolt", "size": 3}, "pair": [1]}}, False),
    ({"gadget": {"type": "built", "part": {"type": "bolt", "size": 3}, "table": {"a": "b"}}}, False),
    ({"gadget": {}, "extra": 1}, False),
    ({}, False),
]


@pytest.mark.parametrize(("config", "valid"), AGREEMENT, ids=[str(i) for i in range(len(AGREEMENT))])
def test_the_schema_accepts_exactly_what_from_params_builds(config, valid):
    assert _regimen_accepts(config) is valid  # the case itself says what regimen does
    assert jsonschema.Draft202012Validator(_schema()).is_valid(config) is valid


def test_an_error_points_at_the_chosen_implementations_key_not_at_other_branches():
    validator = jsonschema.Draft202012Validator(_schema())
    config = {"gadget": {"type": "built", "part": {"type": "bolt", "size": "big"}}}
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    assert (error.json_path, error.message) == ("$.gadget.part.size", "'big' is not of type 'integer'")
    error = jsonschema.exceptions.best_match(validator.iter_errors({"gadget": {"type": "fancy"}}))
    assert (error.json_path, error.message) == ("$.gadget.type", "'fancy' is not one of ['plain', 'built']")
    error = jsonschema.exceptions.best_match(validator.iter_errors({"gadget": {"type": "built", "part": {}}}))
    assert (error.json_path, error.message) == ("$.gadget.part", "'type' is a required property")


def test_the_registry_introspection_does_not_import_torch():
    code = "import sys, regimen.registry.introspection, regimen.registry.schema; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"

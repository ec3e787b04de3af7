"""FromParams: every annotation a constructor may use, extras, strictness and the shape of its errors."""

from __future__ import annotations

import enum
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any, Dict, List, Literal, Optional, Set, Tuple, Union

import pytest

from regimen.registry import ConfigurationError, FromParams, Lazy, Params, Registrable


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Everything(FromParams):
    def __init__(
        self,
        name: str,
        count: int = 1,
        rate: float = 0.5,
        flag: bool = False,
        maybe: Optional[int] = None,
        either: int | str = 0,
        sizes: List[int] = (),  # type: ignore[assignment]
        pair: Tuple[int, str] = (0, ""),
        many: tuple[float, ...] = (),
        tags: Set[str] = frozenset(),  # type: ignore[assignment]
        table: Dict[str, float] = None,  # type: ignore[assignment]
        mapping: Mapping[int, str] = None,  # type: ignore[assignment]
        stream: Iterable[int] = (),
        mode: Literal["min", "max"] = "min",
        color: Color = Color.RED,
        where: pathlib.Path = pathlib.Path("."),
        anything: Any = None,
        untyped=None,
    ) -> None:
        self.__dict__.update({key: value for key, value in locals().items() if key != "self"})


def build(config: dict, cls: type = Everything, path: str = "thing", **extras: Any) -> Any:
    return cls.from_params(Params(config, path), **extras)


def test_every_supported_annotation_is_converted():
    thing = build(
        {
            "name": "x",
            "count": 3.0,
            "rate": 2,
            "flag": True,
            "maybe": 4,
            "either": "text",
            "sizes": [1, 2],
            "pair": [1, "a"],
            "many": [1, 2.5, 3],
            "tags": ["a", "b", "a"],
            "table": {"a": 1},
            "mapping": {"3": "three"},
            "stream": [5],
            "mode": "max",
            "color": "blue",
            "where": "/tmp/x",
            "anything": {"nested": [1, {"deep": True}]},
            "untyped": [1, 2],
        }
    )
    assert thing.count == 3 and isinstance(thing.count, int)
    assert thing.rate == 2.0 and isinstance(thing.rate, float)
    assert thing.flag is True and thing.maybe == 4 and thing.either == "text"
    assert thing.sizes == [1, 2] and thing.pair == (1, "a") and thing.many == (1.0, 2.5, 3.0)
    assert thing.tags == {"a", "b"} and thing.table == {"a": 1.0} and thing.mapping == {3: "three"}
    assert list(thing.stream) == [5] and thing.mode == "max" and thing.color is Color.BLUE
    assert thing.where == pathlib.Path("/tmp/x")
    assert thing.anything == {"nested": [1, {"deep": True}]} and type(thing.anything) is dict
    assert thing.untyped == [1, 2]


def test_an_absent_key_leaves_the_constructor_default():
    thing = build({"name": "x"})
    assert thing.count == 1 and thing.sizes == () and thing.color is Color.RED and thing.maybe is None


def test_null_is_accepted_only_where_the_annotation_allows_it():
    assert build({"name": "x", "maybe": None}).maybe is None
    with pytest.raises(ConfigurationError, match=r"^thing.count: expected int, got null$"):
        build({"name": "x", "count": None})


def test_union_members_are_tried_in_order():
    assert build({"name": "x", "either": 5}).either == 5
    with pytest.raises(ConfigurationError, match=r"^thing.either: expected int or str, got 1.5$"):
        build({"name": "x", "either": 1.5})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"name": "x", "count": "ten"}, r'^thing.count: expected int, got "ten"$'),
        ({"name": "x", "count": 2.5}, r"^thing.count: expected int, got 2.5$"),
        ({"name": "x", "count": True}, r"^thing.count: expected int, got true$"),
        ({"name": "x", "rate": "0.1"}, r'^thing.rate: expected float, got "0.1" \(a string;'),
        ({"name": 5}, r"^thing.name: expected str, got 5$"),
        ({"name": "x", "flag": 1}, r"^thing.flag: expected bool, got 1$"),
        ({"name": "x", "sizes": 3}, r"^thing.sizes: expected list\[int\], got 3$"),
        ({"name": "x", "sizes": [1, "b"]}, r'^thing.sizes.1: expected int, got "b"$'),
        ({"name": "x", "pair": [1, "a", 2]}, r"^thing.pair: expected a list of 2 values, got 3$"),
        ({"name": "x", "many": [1, "a"]}, r'^thing.many.1: expected float, got "a"$'),
        ({"name": "x", "table": [1]}, r"^thing.table: expected dict\[str, float\], got a list$"),
        ({"name": "x", "table": {"a": "b"}}, r'^thing.table.a: expected float, got "b"$'),
        ({"name": "x", "mapping": {"x": "y"}}, r'^thing.mapping.x: expected an int key, got "x"$'),
        (
            {"name": "x", "mode": "maxx"},
            r'^thing.mode: unknown value "maxx"; did you mean "max"\? valid values: min, max$',
        ),
        ({"name": "x", "color": "green"}, r'^thing.color: unknown value "green"; valid values: red, blue$'),
        ({"name": "x", "where": 3}, r"^thing.where: expected str, got 3$"),
        ({}, r"^thing.name: missing required key \(Everything needs a str\)$"),
        (
            {"name": "x", "cuont": 2},
            r'^thing.cuont: unknown key "cuont"; did you mean "count"\? valid keys: name, count',
        ),
    ],
)
def test_each_mistake_is_a_configuration_error_naming_its_path(config, message):
    with pytest.raises(ConfigurationError, match=message):
        build(config)


def test_all_mistakes_in_one_object_are_reported_together():
    with pytest.raises(ConfigurationError) as info:
        build({"count": "ten", "mode": "x", "colour": "red"})
    paths = [error.path for error in info.value.errors]
    assert paths == ["thing.name", "thing.count", "thing.mode", "thing.colour"]
    assert str(info.value).startswith("4 problems in the configuration:\n  - thing.name: missing required key")


def test_future_annotations_are_resolved(tmp_path):
    # This module itself uses ``from __future__ import annotations``: every annotation above is a string.
    assert Everything.__init__.__annotations__["count"] == "int"
    assert build({"name": "x", "count": 2}).count == 2


# ---- nested and registered classes -----------------------------------------------------------------------------
class Activation(Registrable):
    default_implementation = "relu"


@Activation.register("relu")
class Relu(Activation):
    def __init__(self, inplace: bool = False) -> None:
        self.inplace = inplace


@Activation.register("leaky_relu")
class LeakyRelu(Activation):
    def __init__(self, slope: float = 0.01) -> None:
        self.slope = slope


class Layer(FromParams):
    def __init__(self, size: int, activation: Activation = Relu(), dropout: float = 0.0) -> None:
        self.size, self.activation, self.dropout = size, activation, dropout


class Network(FromParams):
    def __init__(self, layers: list[Layer], output: Layer | None = None, device: str = "cpu") -> None:
        self.layers, self.output, self.device = layers, output, device


def test_nested_classes_are_built_and_registered_ones_chosen_by_type():
    network = build(
        {"layers": [{"size": 4, "activation": {"type": "leaky_relu", "slope": 0.2}}, {"size": 2}]},
        Network,
        "model",
    )
    assert isinstance(network.layers[0].activation, LeakyRelu) and network.layers[0].activation.slope == 0.2
    assert isinstance(network.layers[1].activation, Relu) and network.output is None


def test_a_bare_string_names_a_registered_type():
    layer = build({"size": 1, "activation": "leaky_relu"}, Layer)
    assert isinstance(layer.activation, LeakyRelu)


def test_nested_errors_carry_the_full_path_including_list_indexes():
    with pytest.raises(ConfigurationError) as info:
        build(
            {"layers": [{"size": 1}, {"size": 1, "activation": {"type": "leaky_relu", "slop": 1}}]},
            Network,
            "model",
        )
    assert str(info.value).startswith('model.layers.1.activation.slop: unknown key "slop"; did you mean "slope"?')


def test_unknown_type_lists_choices_suggests_and_points_at_plugins():
    with pytest.raises(ConfigurationError) as info:
        build({"size": 1, "activation": "leaky-relu"}, Layer, "model.layer")
    message = str(info.value)
    assert message.startswith('model.layer.activation.type: unknown Activation type "leaky-relu"; ')
    assert 'did you mean "leaky_relu"?' in message
    assert "valid Activation types: relu, leaky_relu" in message
    assert "--include-package" in message


def test_a_type_that_is_not_a_string_is_an_error():
    with pytest.raises(ConfigurationError, match=r"^x.activation.type: expected str, got 3$"):
        build({"size": 1, "activation": {"type": 3}}, Layer, "x")


def test_an_object_expected_but_a_number_given():
    with pytest.raises(ConfigurationError, match=r"^x.layers.0: expected an object for Layer, got 3$"):
        build({"layers": [3]}, Network, "x")


def test_an_error_deep_inside_an_optional_member_is_reported_as_is():
    with pytest.raises(ConfigurationError, match=r"^x.output.size: expected int"):
        build({"layers": [], "output": {"size": "big"}}, Network, "x")


# ---- extras ---------------------------------------------------------------------------------------------------
class NeedsModel(FromParams):
    def __init__(self, model: str, scale: float = 1.0) -> None:
        self.model, self.scale = model, scale


class Holder(FromParams):
    def __init__(self, children: list[NeedsModel], serialization_dir: str | None = None) -> None:
        self.children, self.serialization_dir = children, serialization_dir


def test_extras_are_injected_at_any_depth_where_a_constructor_names_them():
    holder = build({"children": [{}, {"scale": 2}]}, Holder, model="the model", unrelated=1)
    assert [child.model for child in holder.children] == ["the model", "the model"]
    assert holder.serialization_dir is None  # not named by the caller, default kept


def test_a_config_value_wins_over_an_extra():
    holder = build({"children": [{"model": "from config"}]}, Holder, model="injected")
    assert holder.children[0].model == "from config"


def test_extras_are_not_listed_as_valid_keys():
    with pytest.raises(ConfigurationError) as info:
        build({"children": [{"sacle": 2}]}, Holder, model="m")
    assert str(info.value).endswith("valid keys: scale (in NeedsModel)")


# ---- **kwargs -------------------------------------------------------------------------------------------------
class Base(FromParams):
    def __init__(self, width: int, depth: int = 2) -> None:
        self.width, self.depth = width, depth


class Child(Base):
    def __init__(self, extra: str = "e", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.extra = extra


class GrandChild(Child):
    def __init__(self, more: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.more = more


def test_kwargs_pulls_in_the_superclass_parameters_recursively():
    grand = build({"more": 1, "extra": "x", "width": 3}, GrandChild)
    assert (grand.more, grand.extra, grand.width, grand.depth) == (1, "x", 3, 2)
    with pytest.raises(ConfigurationError, match=r'unknown key "wdith"; did you mean "width"\?'):
        build({"wdith": 3}, GrandChild)
    with pytest.raises(ConfigurationError, match=r"^thing.width: missing required key"):
        build({}, Child)


# ---- constructors that reject their arguments -----------------------------------------------------------------
class Validating(FromParams):
    def __init__(self, patience: int | None = None) -> None:
        if patience is not None and patience <= 0:
            raise ConfigurationError(f"must be a positive int, got {patience}", key="patience")


class RaisesValueError(FromParams):
    def __init__(self, lr: float) -> None:
        if lr < 0:
            raise ValueError(f"Invalid learning rate: {lr}")


def test_a_constructor_s_own_validation_is_placed_at_the_key_path():
    with pytest.raises(ConfigurationError, match=r"^trainer.patience: must be a positive int, got 0$"):
        build({"patience": 0}, Validating, "trainer")


def test_a_value_error_from_a_constructor_becomes_a_configuration_error():
    with pytest.raises(
        ConfigurationError, match=r"^trainer.optimizer: RaisesValueError rejected its configuration: Invalid"
    ):
        build({"lr": -1}, RaisesValueError, "trainer.optimizer")


# ---- Lazy -----------------------------------------------------------------------------------------------------
class Optim(Registrable):
    default_implementation = "sgd"


@Optim.register("sgd")
class Sgd(Optim):
    built = 0

    def __init__(self, model_parameters: list, lr: float = 0.1) -> None:
        Sgd.built += 1
        self.model_parameters, self.lr = model_parameters, lr


@Optim.register("adam")
class Adam(Optim):
    def __init__(self, model_parameters: list, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999)) -> None:
        self.model_parameters, self.lr, self.betas = model_parameters, lr, betas


class Loop(Registrable):
    pass


@Loop.register("gd", constructor="from_partial_objects")
class GradientDescent(Loop):
    def __init__(self, optimizer: Optim, num_epochs: int) -> None:
        self.optimizer, self.num_epochs = optimizer, num_epochs

    @classmethod
    def from_partial_objects(
        cls,
        model: list,
        num_epochs: int = 20,
        optimizer: Lazy[Optim] = Lazy(Optim),
        scheduler: Optional[Lazy[LeakyRelu]] = None,
    ) -> GradientDescent:
        return cls(optimizer.construct(model_parameters=model), num_epochs)


def test_from_partial_objects_with_lazy_arguments():
    loop = build({"type": "gd", "optimizer": {"type": "adam", "lr": 0.01}, "num_epochs": 3}, Loop, "trainer", model=[1])
    assert isinstance(loop, GradientDescent) and isinstance(loop.optimizer, Adam)
    assert loop.optimizer.model_parameters == [1] and loop.optimizer.lr == 0.01 and loop.num_epochs == 3


def test_lazy_default_and_bare_string():
    assert isinstance(build({"type": "gd"}, Loop, "trainer", model=[]).optimizer, Sgd)
    assert isinstance(build({"type": "gd", "optimizer": "adam"}, Loop, "trainer", model=[]).optimizer, Adam)


def test_lazy_construct_builds_a_new_object_each_time_from_a_fresh_config():
    lazy = Lazy(Optim, Params({"type": "adam", "lr": 0.5}, "trainer.optimizer"), {"model_parameters": [1]})
    first, second = lazy.construct(), lazy.construct(model_parameters=[2])
    assert first is not second and first.lr == second.lr == 0.5
    assert first.model_parameters == [1] and second.model_parameters == [2]  # call-time kwargs win


def test_lazy_config_values_win_over_extras():
    lazy = Lazy(Optim, {"type": "sgd", "lr": 0.3}, {"lr": 0.9, "model_parameters": []})
    assert lazy.construct(lr=0.7).lr == 0.3


def test_lazy_of_a_plain_callable():
    lazy = Lazy(dict, {"a": 1})
    assert lazy.construct(b=2) == {"a": 1}  # dict takes **kwargs: the config passes through; b is not named


def test_a_lazy_config_is_checked_when_it_is_read_not_when_it_is_built():
    before = Sgd.built
    with pytest.raises(ConfigurationError) as info:
        build(
            {"type": "gd", "num_epochs": "x", "optimizer": {"type": "adamm", "lr": 1}},
            Loop,
            "trainer",
            model=[],
        )
    assert [error.path for error in info.value.errors] == ["trainer.num_epochs", "trainer.optimizer.type"]
    with pytest.raises(ConfigurationError, match=r"^trainer.optimizer.betas.0: expected float"):
        build({"type": "gd", "optimizer": {"type": "adam", "betas": ["a", 1]}}, Loop, "trainer", model=[])
    with pytest.raises(ConfigurationError, match=r"^trainer.scheduler.slop: unknown key"):
        build({"type": "gd", "scheduler": {"slop": 1}}, Loop, "trainer", model=[])
    assert Sgd.built == before  # checking built nothing


def test_a_missing_key_a_lazy_may_still_receive_is_not_an_error_when_checked():
    lazy = build({"type": "gd", "optimizer": {"type": "sgd"}}, Loop, "trainer", model=[7])
    assert lazy.optimizer.model_parameters == [7]


def test_registered_classmethod_constructor_errors_name_their_keys():
    with pytest.raises(
        ConfigurationError, match=r'^trainer.num_epoch: unknown key "num_epoch"; did you mean "num_epochs"\?'
    ):
        build({"type": "gd", "num_epoch": 3}, Loop, "trainer", model=[])


def test_a_registrable_base_without_implementations_is_an_error():
    class Empty(Registrable):
        pass

    with pytest.raises(ConfigurationError, match="no Empty implementations are registered"):
        build({}, Empty, "x")


def test_a_missing_type_without_default_lists_the_choices():
    with pytest.raises(ConfigurationError, match=r"^x.type: missing required key \(choose a Loop type: gd"):
        build({}, Loop, "x")


def test_union_of_registered_and_scalar():
    class Wrapper(FromParams):
        def __init__(self, value: Union[float, Activation]) -> None:
            self.value = value

    assert build({"value": 2}, Wrapper).value == 2.0
    assert isinstance(build({"value": {"type": "leaky_relu"}}, Wrapper).value, LeakyRelu)


class TwoPhase(Registrable):
    pass


@TwoPhase.register("two_phase", constructor="from_partial_objects")
class TwoPhaseImpl(TwoPhase):
    def __init__(self, optimizer: Optim, num_epochs: int = 20, patience: int | None = None) -> None:
        self.optimizer, self.num_epochs, self.patience = optimizer, num_epochs, patience

    @classmethod
    def from_partial_objects(cls, model: list, optimizer: Lazy[Optim] = Lazy(Optim), **kwargs: Any) -> TwoPhaseImpl:
        return cls(optimizer.construct(model_parameters=model), **kwargs)


def test_kwargs_of_a_classmethod_constructor_are_the_init_parameters():
    built = build({"type": "two_phase", "num_epochs": 3, "optimizer": "adam"}, TwoPhase, "trainer", model=[1])
    assert (built.num_epochs, built.patience, type(built.optimizer)) == (3, None, Adam)
    with pytest.raises(ConfigurationError, match=r'^trainer.patiense: unknown key "patiense"; did you mean "patience"'):
        build({"type": "two_phase", "patiense": 3}, TwoPhase, "trainer", model=[1])
    with pytest.raises(ConfigurationError, match=r"^trainer.num_epochs: expected int"):
        build({"type": "two_phase", "num_epochs": "x"}, TwoPhase, "trainer", model=[1])

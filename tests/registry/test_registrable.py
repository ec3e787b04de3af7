"""Registrable: registering, looking up and choosing implementations by name."""

from __future__ import annotations

import pytest
import torch

from regimen.registry import ConfigurationError, Params, Registrable


class Scheduler(Registrable):
    default_implementation = "constant"


@Scheduler.register("step")
class Step(Scheduler):
    def __init__(self, gamma: float = 0.1) -> None:
        self.gamma = gamma


@Scheduler.register("constant")
class Constant(Scheduler):
    pass


@Scheduler.register("with_builder", constructor="build")
class WithBuilder(Scheduler):
    def __init__(self, value: int) -> None:
        self.value = value

    @classmethod
    def build(cls, half: int) -> WithBuilder:
        return cls(half * 2)


def test_list_available_puts_the_default_first():
    assert Scheduler.list_available() == ["constant", "step", "with_builder"]


def test_by_name_and_resolve_class_name():
    assert Scheduler.by_name("step") is Step
    assert Scheduler.by_name("with_builder") == WithBuilder.build
    assert Scheduler.resolve_class_name("with_builder") == (WithBuilder, "build")
    assert Scheduler.is_registered("step") and not Scheduler.is_registered("nope")


def test_names_are_kept_per_base_class():
    class Other(Registrable):
        pass

    @Other.register("step")
    class OtherStep(Other):
        pass

    assert Other.by_name("step") is OtherStep and Scheduler.by_name("step") is Step


def test_a_duplicate_name_is_an_error_unless_exist_ok():
    with pytest.raises(ConfigurationError, match=r'Scheduler "step": the name is already taken by .*Step'):

        @Scheduler.register("step")
        class Again(Scheduler):
            pass

    @Scheduler.register("replaced", exist_ok=True)
    class First(Scheduler):
        pass

    @Scheduler.register("replaced", exist_ok=True)
    class Second(Scheduler):
        pass

    assert Scheduler.by_name("replaced") is Second


def test_registering_a_missing_constructor_method_is_an_error():
    with pytest.raises(ConfigurationError, match="has no constructor method 'nope'"):
        Scheduler.register("broken", constructor="nope")(Constant)


def test_type_chooses_and_absent_type_uses_the_default():
    assert isinstance(Scheduler.from_params(Params({"type": "step", "gamma": 0.5})), Step)
    assert isinstance(Scheduler.from_params(Params({})), Constant)
    assert isinstance(Scheduler.from_params("step"), Step)
    assert Scheduler.from_params({"type": "with_builder", "half": 4}).value == 8


def test_a_dotted_type_imports_the_class():
    built = Scheduler.from_params(Params({"type": f"{__name__}.Step", "gamma": 0.3}))
    assert isinstance(built, Step) and built.gamma == 0.3


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "no_such_module.Thing",
            r'x.type: cannot import module "no_such_module" for type "no_such_module.Thing"',
        ),
        (f"{__name__}.Nope", rf'x.type: module "{__name__}" has no attribute "Nope"'),
    ],
)
def test_a_bad_dotted_type_names_what_failed(name, message):
    with pytest.raises(ConfigurationError, match=message):
        Scheduler.from_params(Params({"type": name}, "x"))


@pytest.mark.parametrize(("typo", "suggestion"), [("stpe", "step"), ("with-builder", "with_builder"), ("Step", "step")])
def test_an_unknown_name_suggests_the_closest(typo, suggestion):
    with pytest.raises(ConfigurationError) as info:
        Scheduler.from_params(Params({"type": typo}, "trainer.learning_rate_scheduler"))
    message = str(info.value)
    assert message.startswith(f'trainer.learning_rate_scheduler.type: unknown Scheduler type "{typo}"')
    assert f'did you mean "{suggestion}"?' in message
    assert "valid Scheduler types: constant, step, with_builder" in message
    assert "--include-package" in message and ".regimen_plugins" in message


def test_a_name_far_from_every_choice_gets_no_suggestion():
    with pytest.raises(ConfigurationError) as info:
        Scheduler.from_params(Params({"type": "completely_different"}, "s"))
    assert "did you mean" not in str(info.value)


class TorchOptimizer(Registrable):
    pass


TorchOptimizer.register("sgd")(torch.optim.SGD)


def test_a_registered_class_that_is_not_from_params_is_built_from_its_kwargs():
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = TorchOptimizer.from_params(Params({"type": "sgd", "lr": 0.5, "momentum": 0.9}), params=[weight])
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["lr"] == 0.5 and optimizer.param_groups[0]["momentum"] == 0.9


def test_a_torch_class_rejecting_its_arguments_is_a_configuration_error():
    weight = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(
        ConfigurationError, match=r"^trainer.optimizer: SGD rejected its configuration: Invalid learning rate"
    ):
        TorchOptimizer.from_params(Params({"type": "sgd", "lr": -1.0}, "trainer.optimizer"), params=[weight])
    with pytest.raises(
        ConfigurationError,
        match=r'^trainer.optimizer.momentun: unknown key "momentun"; did you mean "momentum"\?',
    ):
        TorchOptimizer.from_params(Params({"type": "sgd", "momentun": 0.9}, "trainer.optimizer"), params=[weight])


def test_configuration_errors_survive_pickling():
    import pickle

    error = ConfigurationError.combine([ConfigurationError("a", "x.y"), ConfigurationError("b", key="z")])
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and len(copy.errors) == 2

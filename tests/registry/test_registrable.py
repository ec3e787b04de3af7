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


# ---- a subclass registered without a constructor inherits its registered parent's ---------------------------------
class Built(Registrable):
    pass


@Built.register("parent", constructor="build")
class Parent(Built):
    def __init__(self, value: int, label: str = "parent") -> None:
        self.value = value
        self.label = label

    @classmethod
    def build(cls, value: int, **kwargs) -> Parent:
        """Doubles ``value``; the rest of ``__init__``'s keys pass through ``**kwargs``."""
        return cls(value=value * 2, **kwargs)


@Built.register("child")
class Child(Parent):
    pass


@Built.register("grandchild")
class Grandchild(Child):
    """Overrides only ``__init__``, adding a key: built through ``build``, which reads it through ``**kwargs``."""

    def __init__(self, value: int, shout: bool = False, **kwargs) -> None:
        super().__init__(value, **kwargs)
        self.shout = shout


@Built.register("own_init", constructor="__init__")
class OwnInit(Parent):
    pass


def test_a_plain_registration_builds_through_the_constructor_its_registered_parent_declared():
    assert Built.resolve_class_name("child") == (Child, "build")
    assert Built.by_name("child") == Child.build
    child = Built.from_params({"type": "child", "value": 3, "label": "c"})
    assert type(child) is Child and (child.value, child.label) == (6, "c")


def test_the_constructor_is_inherited_through_plain_registrations_and_an_overridden_init_still_runs():
    assert Built.resolve_class_name("grandchild") == (Grandchild, "build")
    built = Built.from_params({"type": "grandchild", "value": 2, "shout": True, "label": "g"})
    assert type(built) is Grandchild and (built.value, built.shout, built.label) == (4, True, "g")
    with pytest.raises(ConfigurationError, match=r'^b.shuot: unknown key "shuot"; did you mean "shout"\?'):
        Built.from_params(Params({"type": "grandchild", "value": 2, "shuot": True}, "b"))


def test_constructor_init_opts_out_of_the_inherited_constructor():
    assert Built.resolve_class_name("own_init") == (OwnInit, None)
    assert Built.from_params({"type": "own_init", "value": 5}).value == 5  # not doubled


def test_a_dotted_type_is_built_as_its_registration_or_its_registered_parent_is():
    assert Built.from_params({"type": f"{__name__}.Parent", "value": 1}).value == 2
    assert Built.resolve_class_name(f"{__name__}.Child") == (Child, "build")


def test_the_inheritance_holds_when_the_subclass_registers_before_its_parent():
    class Base(Registrable):
        pass

    class Late(Base):
        def __init__(self, value: int) -> None:
            self.value = value

        @classmethod
        def build(cls, half: int):
            return cls(half * 2)

    @Base.register("early")
    class Early(Late):
        pass

    assert Base.resolve_class_name("early") == (Early, None)  # nothing registered to inherit from yet
    Base.register("late", constructor="build")(Late)
    assert Base.resolve_class_name("early") == (Early, "build")
    assert Base.from_params({"type": "early", "half": 4}).value == 8


def test_nothing_is_inherited_when_the_parent_is_ambiguous_or_registered_for_another_base():
    class Base(Registrable):
        pass

    class Other(Registrable):
        pass

    class Two(Base):
        @classmethod
        def one(cls):
            return cls()

        @classmethod
        def other(cls):
            return cls()

    Base.register("one", constructor="one")(Two)
    Base.register("other", constructor="other")(Two)

    @Base.register("ambiguous")
    class Ambiguous(Two):
        pass

    @Other.register("elsewhere", constructor="one")
    class Elsewhere(Two):
        pass

    @Base.register("unrelated")
    class Unrelated(Elsewhere):
        pass

    assert Base.resolve_class_name("ambiguous") == (Ambiguous, None)  # which of "one" and "other"? __init__
    assert Base.resolve_class_name("unrelated") == (Unrelated, None)  # Elsewhere is no Base registration
    assert Other.resolve_class_name("elsewhere") == (Elsewhere, "one")


# ---- names a base once had ------------------------------------------------------------------------------------------
def test_a_removed_name_says_when_it_went_and_what_replaced_it():
    class Base(Registrable):
        pass

    @Base.register("new")
    class New(Base):
        pass

    Base.register_removed("old", "v2.0", 'use "new" instead')
    with pytest.raises(ConfigurationError) as caught:
        Base.from_params(Params({"type": "old"}, "thing"))
    assert str(caught.value) == 'thing.type: Base type "old" was removed in v2.0: use "new" instead'
    assert Base.list_available() == ["new"]

    @Base.register("old")
    class Revived(Base):  # a plugin that brings the name back wins
        pass

    assert isinstance(Base.from_params({"type": "old"}), Revived)

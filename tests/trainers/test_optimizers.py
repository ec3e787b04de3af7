"""Optimizers: every registered name builds and steps, parameter groups, multi, and the AllenNLP-named variants."""

from __future__ import annotations

import copy
import inspect
import logging
from typing import Any

import pytest
import torch
from torch import nn

from regimen.registry import ConfigurationError, FromParams, Lazy, Params
from regimen.trainers.optimizers import Optimizer

TOKENS = torch.tensor([0, 1, 2, 3, 4, 5])


class Net(nn.Module):
    """An embedding, a hidden layer and an output layer: enough names for parameter groups."""

    def __init__(self, sparse: bool = False, bias: bool = True) -> None:
        super().__init__()
        self.embed = nn.Embedding(6, 4, sparse=sparse)
        self.hidden = nn.Linear(4, 3, bias=bias)
        self.out = nn.Linear(3, 1, bias=bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(self.embed(tokens)))).pow(2).sum()


def make_net(seed: int = 0, **kwargs: Any) -> Net:
    torch.manual_seed(seed)
    return Net(**kwargs)


def build(config: Any, model: nn.Module, path: str = "trainer.optimizer") -> Any:
    params = Params(config, path) if isinstance(config, dict) else config
    return Optimizer.from_params(params, model_parameters=list(model.named_parameters()))


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, tokens: torch.Tensor = TOKENS) -> None:
    optimizer.zero_grad()
    model(tokens).backward()
    optimizer.step()


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: parameter.detach().clone() for name, parameter in model.named_parameters()}


def group_of(optimizer: torch.optim.Optimizer, parameter: torch.Tensor) -> int | None:
    for index, group in enumerate(optimizer.param_groups):
        if any(member is parameter for member in group["params"]):
            return index
    return None


MULTI = {
    "type": "multi",
    "optimizers": {"default": {"type": "adam", "lr": 0.01}, "embeddings": {"type": "sgd", "lr": 0.1}},
    "parameter_groups": [[["^embed"], {"optimizer_name": "embeddings"}]],
}
# What each registered name needs to train Net; the rest train it with their defaults.
SPECIAL: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "sparse_adam": ({"parameter_groups": [[["^hidden", "^out"], {"requires_grad": False}]]}, {"sparse": True}),
    "dense_sparse_adam": ({}, {"sparse": True}),
    "muon": ({}, {"bias": False}),
    "multi": ({key: value for key, value in MULTI.items() if key != "type"}, {}),
}


# ---- every registered name ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", Optimizer.list_available())
def test_every_registered_name_builds_and_a_step_changes_every_trainable_weight(name):
    config, net_options = SPECIAL.get(name, ({}, {}))
    model = make_net(**net_options)
    optimizer = build({"type": name, **config}, model)
    assert isinstance(optimizer, torch.optim.Optimizer) and isinstance(optimizer, Optimizer)
    before = snapshot(model)
    train_step(model, optimizer)
    for parameter_name, parameter in model.named_parameters():
        changed = not torch.equal(before[parameter_name], parameter)
        assert changed == parameter.requires_grad, parameter_name


def test_defaults_are_torch_defaults_except_the_allennlp_names():
    for name in Optimizer.list_available():
        cls, _ = Optimizer.resolve_class_name(name)
        if name.startswith("huggingface_") or name == "multi":
            continue
        base = next(klass for klass in cls.__mro__ if klass.__module__.startswith("torch.optim"))
        theirs = inspect.signature(base.__init__).parameters
        for key, parameter in inspect.signature(cls.__init__).parameters.items():
            if key in theirs and key != "params":
                assert parameter.default == theirs[key].default, f"{name}: {key}"


# ---- building from a config -------------------------------------------------------------------------------------
def test_a_bare_string_a_missing_type_and_a_lazy_optimizer_all_build():
    model = make_net()
    sgd = Optimizer.from_params("sgd", model_parameters=list(model.named_parameters()))
    assert type(sgd).__name__ == "SgdOptimizer" and sgd.param_groups[0]["lr"] == 0.001
    assert type(build({}, model)).__name__ == "AdamOptimizer"

    class Holder(FromParams):
        def __init__(self, optimizer: Lazy[Optimizer]) -> None:
            self.optimizer = optimizer

    holder = Holder.from_params(Params({"optimizer": "adamw"}, "trainer"))
    adamw = holder.optimizer.construct(model_parameters=list(model.named_parameters()))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["weight_decay"] == 0.01


def test_a_bad_hyper_parameter_is_a_configuration_error_at_trainer_optimizer():
    with pytest.raises(ConfigurationError) as caught:
        build({"type": "adam", "lr": -1.0}, make_net())
    assert str(caught.value) == (
        "trainer.optimizer: AdamOptimizer rejected its configuration: Invalid learning rate: -1.0"
    )
    with pytest.raises(ConfigurationError, match=r'^trainer\.optimizer\.fused: "foreach" and "fused" cannot both'):
        build({"type": "sgd", "foreach": True, "fused": True}, make_net())


def test_it_is_a_torch_optimizer_for_lr_schedulers_and_checkpoints():
    model = make_net()
    optimizer = build({"type": "adam", "lr": 0.1}, model)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    train_step(model, optimizer)
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == 0.05
    resumed_model = copy.deepcopy(model)
    resumed = build({"type": "adam", "lr": 0.1}, resumed_model)
    resumed.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # as if read from a checkpoint file
    train_step(model, optimizer)
    train_step(resumed_model, resumed)
    for (name, expected), actual in zip(model.named_parameters(), resumed_model.parameters()):
        torch.testing.assert_close(actual, expected, msg=name)


# ---- parameter groups -------------------------------------------------------------------------------------------
def test_each_parameter_group_gets_its_options_and_the_rest_get_the_defaults():
    model = make_net()
    groups = [[["^embed"], {"lr": 0.1}], [["^hidden\\.weight", "^hidden\\.bias"], {"lr": 0.01, "betas": [0.5, 0.6]}]]
    optimizer = build({"type": "adam", "lr": 0.001, "parameter_groups": groups}, model)
    assert [group["lr"] for group in optimizer.param_groups] == [0.1, 0.01, 0.001]
    assert optimizer.param_groups[1]["betas"] == (0.5, 0.6) and optimizer.param_groups[2]["betas"] == (0.9, 0.999)
    assert group_of(optimizer, model.embed.weight) == 0
    assert group_of(optimizer, model.hidden.weight) == group_of(optimizer, model.hidden.bias) == 1
    assert group_of(optimizer, model.out.weight) == group_of(optimizer, model.out.bias) == 2


def test_a_frozen_group_is_left_out_of_the_optimizer_and_does_not_change():
    model = make_net()
    groups = [[["^embed"], {"requires_grad": False}], [["^out"], {"lr": 0.5}]]
    optimizer = build({"type": "sgd", "lr": 0.1, "parameter_groups": groups}, model)
    assert not model.embed.weight.requires_grad and group_of(optimizer, model.embed.weight) is None
    assert [group["lr"] for group in optimizer.param_groups] == [0.5, 0.1]
    assert all("requires_grad" not in group for group in optimizer.param_groups)
    before = snapshot(model)
    train_step(model, optimizer)
    assert torch.equal(model.embed.weight, before["embed.weight"])
    assert not torch.equal(model.hidden.weight, before["hidden.weight"])


def test_parameters_not_requiring_grad_are_skipped_unless_a_group_unfreezes_them():
    model = make_net()
    model.out.bias.requires_grad_(False)
    model.embed.weight.requires_grad_(False)
    optimizer = build({"type": "sgd", "parameter_groups": [[["^embed"], {"requires_grad": True}]]}, model)
    assert group_of(optimizer, model.out.bias) is None
    assert model.embed.weight.requires_grad and group_of(optimizer, model.embed.weight) == 0


def test_a_parameter_in_two_groups_is_an_error_naming_it_and_both_groups():
    groups = [[["^embed"], {"lr": 0.1}], [["^out"], {}], [["weight$"], {"lr": 0.2}]]
    with pytest.raises(ConfigurationError) as caught:
        build({"type": "adam", "parameter_groups": groups}, make_net())
    messages = [str(error) for error in caught.value.errors]
    assert messages[0] == (
        'trainer.optimizer.parameter_groups: parameter "embed.weight" is matched by parameter group 0 ("^embed") '
        'and parameter group 2 ("weight$"); a parameter may belong to one group only'
    )
    assert len(messages) == 2 and '"out.weight" is matched by parameter group 1 ("^out") and' in messages[1]


def test_a_regex_or_a_whole_group_matching_nothing_is_a_warning(caplog):
    """As AllenNLP's make_parameter_groups (allennlp/training/optimizers.py): unmatched regexes are logged, and a
    group that matches nothing stays, empty, so one config serves models with and without those parameters."""
    with caplog.at_level(logging.WARNING, logger="regimen.trainers.optimizers"):
        optimizer = build({"type": "adam", "parameter_groups": [[["^embed", "^encoder"], {"lr": 0.1}]]}, make_net())
    assert optimizer.param_groups[0]["lr"] == 0.1
    assert 'parameter group 0: regex "^encoder" matches no parameter name' in caplog.text
    groups = [[["^embed"], {}], [["^encoder", "^decoder"], {"lr": 0.5}]]
    with caplog.at_level(logging.WARNING, logger="regimen.trainers.optimizers"):
        optimizer = build({"type": "adam", "parameter_groups": groups}, make_net())
    assert (
        'parameter group 1: no parameter name matches any of its regexes ("^encoder", "^decoder"), so it is empty; '
        'names look like "embed.weight", "hidden.weight", "hidden.bias", "out.weight", "out.bias"'
    ) in caplog.text
    assert [len(group["params"]) for group in optimizer.param_groups] == [1, 0, 4]
    assert optimizer.param_groups[1]["lr"] == 0.5


def test_mistakes_in_group_options_are_reported_together_at_their_paths():
    groups = [
        [["^embed"], {"lrr": 0.1}],
        [["^hidden"], {"lr": "fast", "requires_grad": "no"}],
        [["^out(", "^out"], {"optimizer_name": "embeddings"}],
    ]
    with pytest.raises(ConfigurationError) as caught:
        build({"type": "adam", "parameter_groups": groups}, make_net())
    assert len(caught.value.errors) == 1  # a bad regex stops the matching
    assert str(caught.value).startswith('trainer.optimizer.parameter_groups.2.0.0: invalid regex "^out("')
    groups[2][0] = ["^out"]
    with pytest.raises(ConfigurationError) as caught:
        build({"type": "adam", "parameter_groups": groups}, make_net())
    messages = [str(error) for error in caught.value.errors]
    assert messages[0].startswith(
        'trainer.optimizer.parameter_groups.0.1.lrr: unknown parameter group option "lrr"; did you mean "lr"?'
    )
    assert messages[1] == 'trainer.optimizer.parameter_groups.1.1.lr: expected float, got "fast"'
    assert messages[2] == 'trainer.optimizer.parameter_groups.1.1.requires_grad: expected bool, got "no"'
    assert messages[3].endswith('"optimizer_name" only means something in a "multi" optimizer')


def test_a_model_without_trainable_parameters_is_an_error():
    model = make_net().requires_grad_(False)
    with pytest.raises(ConfigurationError, match=r"^trainer\.optimizer: the optimizer has no trainable parameters"):
        build({"type": "adam"}, model)


# ---- multi ------------------------------------------------------------------------------------------------------
def test_multi_steps_embeddings_with_sgd_and_the_rest_with_adam():
    model = make_net()
    reference = copy.deepcopy(model)
    optimizer = build(MULTI, model)
    assert type(optimizer.optimizers["embeddings"]).__name__ == "SgdOptimizer"
    assert type(optimizer.optimizers["default"]).__name__ == "AdamOptimizer"
    sgd = torch.optim.SGD([reference.embed.weight], lr=0.1)
    adam = torch.optim.Adam([p for name, p in reference.named_parameters() if not name.startswith("embed")], lr=0.01)
    for tokens in (TOKENS, torch.tensor([1, 1, 4])):
        train_step(model, optimizer, tokens)
        sgd.zero_grad()
        adam.zero_grad()
        reference(tokens).backward()
        sgd.step()
        adam.step()
    for (name, expected), actual in zip(reference.named_parameters(), model.parameters()):
        torch.testing.assert_close(actual, expected, msg=name)


def test_multi_param_groups_are_the_inner_groups_so_a_scheduler_reaches_them():
    model = make_net()
    config = copy.deepcopy(MULTI)
    config["parameter_groups"].append([["^out"], {"lr": 0.5, "betas": [0.8, 0.9]}])
    optimizer = build(config, model)
    # In the order of "optimizers"; within each, config order, then that optimizer's default group.
    assert [group["lr"] for group in optimizer.param_groups] == [0.5, 0.01, 0.1]
    assert optimizer.param_groups[0]["betas"] == (0.8, 0.9)
    assert optimizer.param_groups[0] is optimizer.optimizers["default"].param_groups[0]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    train_step(model, optimizer)
    scheduler.step()
    assert optimizer.optimizers["embeddings"].param_groups[0]["lr"] == 0.05
    assert [group["lr"] for group in optimizer.optimizers["default"].param_groups] == [0.25, 0.005]
    # One state view over both: Adam's for four parameters; SGD without momentum keeps none.
    assert len(optimizer.state) == 4 and "exp_avg" in optimizer.state[model.out.weight]


def test_multi_state_dict_round_trips_and_rejects_another_configuration():
    model = make_net()
    optimizer = build(MULTI, model)
    train_step(model, optimizer)
    state = optimizer.state_dict()
    assert set(state) == {"default", "embeddings"}
    resumed_model = copy.deepcopy(model)
    resumed = build(MULTI, resumed_model)
    resumed.load_state_dict(copy.deepcopy(state))  # as if read from a checkpoint file
    train_step(model, optimizer)
    train_step(resumed_model, resumed)
    for (name, expected), actual in zip(model.named_parameters(), resumed_model.parameters()):
        torch.testing.assert_close(actual, expected, msg=name)
    with pytest.raises(ValueError, match=r"holds optimizers \['default'\] but this one has \['default', 'embed"):
        resumed.load_state_dict({"default": state["default"]})


def test_multi_freezes_groups_and_checks_each_group_against_its_own_optimizer():
    model = make_net()
    config = copy.deepcopy(MULTI)
    config["parameter_groups"] = [
        [["^embed"], {"optimizer_name": "embeddings", "momentum": 0.9}],
        [["^out"], {"requires_grad": False}],
    ]
    optimizer = build(config, model)
    assert optimizer.optimizers["embeddings"].param_groups[0]["momentum"] == 0.9
    assert not model.out.weight.requires_grad and group_of(optimizer, model.out.weight) is None
    config["parameter_groups"][1] = [["^out"], {"momentum": 0.9}]  # "default" is adam: no momentum
    with pytest.raises(ConfigurationError, match=r"parameter_groups\.1\.1\.momentum: unknown parameter group option"):
        build(config, make_net())


def test_multi_config_mistakes():
    config = {"type": "multi", "optimizers": {"embeddings": "sgd"}, "parameter_groups": [[["^embed"], {}]]}
    with pytest.raises(ConfigurationError) as caught:
        build(config, make_net())
    assert str(caught.value) == (
        'trainer.optimizer.optimizers: needs an optimizer named "default" for the parameters no group routes '
        'elsewhere; it has "embeddings"'
    )
    config = copy.deepcopy(MULTI)
    config["parameter_groups"][0][1]["optimizer_name"] = "embedding"
    config["optimizers"]["embeddings"]["parameter_groups"] = [[["^embed"], {}]]
    with pytest.raises(ConfigurationError) as caught:
        build(config, make_net())
    messages = [str(error) for error in caught.value.errors]
    assert messages[0].startswith("trainer.optimizer.optimizers.embeddings.parameter_groups: write parameter groups")
    assert len(messages) == 1  # the inner configs are checked first
    del config["optimizers"]["embeddings"]["parameter_groups"]
    with pytest.raises(ConfigurationError) as caught:
        build(config, make_net())
    assert str(caught.value) == (
        'trainer.optimizer.parameter_groups.0.1.optimizer_name: unknown optimizer name "embedding"; did you mean '
        '"embeddings"? valid optimizer names: default, embeddings'
    )


def test_multi_inner_configs_are_checked_before_any_model_exists():
    class Holder(FromParams):
        def __init__(self, optimizer: Lazy[Optimizer]) -> None:
            self.optimizer = optimizer

    config = copy.deepcopy(MULTI)
    config["optimizers"]["embeddings"]["lrr"] = 0.1
    with pytest.raises(ConfigurationError, match=r'trainer\.optimizer\.optimizers\.embeddings\.lrr: unknown key "lrr"'):
        Holder.from_params(Params({"optimizer": config}, "trainer"))


# ---- the AllenNLP-named variants --------------------------------------------------------------------------------
def test_dense_sparse_adam_steps_dense_weights_like_adam_and_sparse_ones_like_sparse_adam():
    model = make_net(sparse=True)
    reference = copy.deepcopy(model)
    optimizer = build({"type": "dense_sparse_adam", "lr": 0.05, "betas": [0.8, 0.9]}, model)
    sparse = torch.optim.SparseAdam([reference.embed.weight], lr=0.05, betas=(0.8, 0.9))
    dense = torch.optim.Adam(list(reference.parameters())[1:], lr=0.05, betas=(0.8, 0.9))
    for tokens in (TOKENS, torch.tensor([1, 1, 4]), torch.tensor([2, 4])):
        train_step(model, optimizer, tokens)
        assert model.embed.weight.grad.is_sparse
        sparse.zero_grad()
        dense.zero_grad()
        reference(tokens).backward()
        sparse.step()
        dense.step()
    for (name, expected), actual in zip(reference.named_parameters(), model.parameters()):
        torch.testing.assert_close(actual, expected, msg=name)


def test_huggingface_adamw_without_bias_correction_matches_a_hand_computation():
    lr, beta1, beta2, eps, decay = 0.1, 0.9, 0.99, 1e-8, 0.1
    start = torch.tensor([1.0, -2.0, 0.5])
    gradients = [torch.tensor([0.3, -0.1, 2.0]), torch.tensor([-0.2, 0.4, 1.0])]
    config = {"type": "huggingface_adamw", "lr": lr, "betas": [beta1, beta2], "eps": eps, "weight_decay": decay}

    def run(correct_bias: bool) -> torch.Tensor:
        weight = nn.Parameter(start.clone())
        optimizer = build({**config, "correct_bias": correct_bias}, nn.ParameterDict({"w": weight}))
        for gradient in gradients:
            weight.grad = gradient.clone()
            optimizer.step()
        return weight.detach()

    expected, m, v = start.clone(), torch.zeros(3), torch.zeros(3)
    for g in gradients:
        expected = expected * (1 - lr * decay)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        expected = expected - lr * m / (v.sqrt() + eps)
    torch.testing.assert_close(run(correct_bias=False), expected)

    weight = nn.Parameter(start.clone())
    adamw = torch.optim.AdamW([weight], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=decay)
    for gradient in gradients:
        weight.grad = gradient.clone()
        adamw.step()
    torch.testing.assert_close(run(correct_bias=True), weight.detach())
    assert not torch.allclose(weight.detach(), expected)


def test_huggingface_adamw_defaults_are_allennlps():
    optimizer = build({"type": "huggingface_adamw"}, make_net())
    group = optimizer.param_groups[0]
    assert (group["lr"], group["eps"], group["weight_decay"], optimizer.correct_bias) == (1e-05, 1e-08, 0.0, True)


def test_huggingface_adafactor_refuses_what_hf_refuses_or_cannot_run():
    with pytest.raises(ConfigurationError) as caught:
        build(
            {"type": "huggingface_adafactor", "lr": 1e-3, "parameter_groups": [[["^embed"], {"lr": 0.1}]]}, make_net()
        )
    assert [str(error) for error in caught.value.errors] == [
        "trainer.optimizer.lr: HF's Adafactor cannot combine lr with relative_step: true; remove lr to get the "
        "relative step min(0.01, 1/sqrt(step)), or set relative_step: false",
        "trainer.optimizer.parameter_groups.0.1.lr: HF's Adafactor ignores a group's lr with relative_step: true; "
        "remove lr to get the relative step min(0.01, 1/sqrt(step)), or set relative_step: false",
    ]
    with pytest.raises(ConfigurationError) as caught:
        build({"type": "huggingface_adafactor", "relative_step": False, "warmup_init": True}, make_net())
    assert [str(error) for error in caught.value.errors] == [
        "trainer.optimizer.lr: relative_step: false needs an lr (HF's Adafactor fails without one)",
        "trainer.optimizer.warmup_init: HF's Adafactor needs relative_step: true for warmup_init",
    ]
    config = {"type": "huggingface_adafactor", "parameter_groups": [[["^embed"], {"relative_step": False}]]}
    with pytest.raises(ConfigurationError, match=r"^trainer.optimizer.parameter_groups.0.1.relative_step: unknown"):
        build(config, make_net())


def test_huggingface_adafactor_shows_the_relative_step_as_its_lr():
    model = make_net()
    optimizer = build({"type": "huggingface_adafactor", "warmup_init": True}, model)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-6)
    for _ in range(3):
        train_step(model, optimizer)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(3e-6)  # min(1e-6 * step, 1 / sqrt(step))
    constant = build({"type": "huggingface_adafactor", "relative_step": False, "lr": 1e-3}, make_net())
    train_step(model, constant)
    assert constant.param_groups[0]["lr"] == 1e-3


def test_huggingface_adafactor_resumes_exactly_from_its_state_dict():
    config = {"type": "huggingface_adafactor", "beta1": 0.9}
    model = make_net()
    optimizer = build(config, model)
    for _ in range(2):
        train_step(model, optimizer)
    resumed_model = copy.deepcopy(model)
    resumed = build(config, resumed_model)
    resumed.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    for _ in range(2):
        train_step(model, optimizer)
        train_step(resumed_model, resumed)
    for (name, expected), actual in zip(model.named_parameters(), resumed_model.parameters()):
        torch.testing.assert_close(actual, expected, msg=name, rtol=0, atol=0)


def test_huggingface_adafactor_steps_bfloat16_weights_in_float32():
    model = make_net().to(torch.bfloat16)
    optimizer = build({"type": "huggingface_adafactor", "relative_step": False, "lr": 0.05}, model)
    before = snapshot(model)
    train_step(model, optimizer)
    for name, parameter in model.named_parameters():
        assert parameter.dtype == torch.bfloat16 and torch.isfinite(parameter).all(), name
        assert not torch.equal(before[name], parameter), name
    assert optimizer.state[model.hidden.weight]["exp_avg_sq_row"].dtype == torch.float32


def test_bert_adam_is_refused_with_what_replaced_it():
    with pytest.raises(ConfigurationError) as caught:
        build({"type": "bert_adam", "lr": 2e-5}, make_net())
    assert str(caught.value).startswith(
        'trainer.optimizer.type: Optimizer type "bert_adam" was removed in AllenNLP 1.0: use "huggingface_adamw" '
        'with "correct_bias": false'
    )
    assert '"linear_with_warmup"' in str(caught.value) and "bert_adam" not in Optimizer.list_available()


@pytest.mark.skipif(not Optimizer.is_registered("muon"), reason="torch has no Muon")
def test_muon_names_the_parameters_that_are_not_matrices():
    with pytest.raises(ConfigurationError) as caught:
        build({"type": "muon"}, make_net())
    assert str(caught.value).startswith(
        'trainer.optimizer: Muon only optimizes 2D parameters, and these are not: "hidden.bias", "out.bias"'
    )
    model = make_net()
    optimizer = build({"type": "muon", "parameter_groups": [[["bias$"], {"requires_grad": False}]]}, model)
    assert group_of(optimizer, model.hidden.weight) == 0 and not model.out.bias.requires_grad

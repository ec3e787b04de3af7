"""Optimizers: torch.optim's optimizers registered by name and built from a config with per-parameter groups.

Each registered class subclasses both ``Optimizer`` (for the registry) and the torch optimizer, so what a config
builds *is* a ``torch.optim.Optimizer``: ``state_dict``/``load_state_dict`` work and torch's LR schedulers accept
it. The trainer injects ``model_parameters`` (``list(model.named_parameters())``); a config never writes it.

``parameter_groups`` gives some parameters their own options, AllenNLP style::

    "parameter_groups": [
        [["^embedder\\.", "^_embedding"], {"lr": 0.01}],
        [["\\.bias$"], {"weight_decay": 0.0}],
        [["^encoder\\.layer\\.0\\."], {"requires_grad": false}],
    ]

- A parameter belongs to the group whose regexes match its name (``re.search``); a parameter matched by two
  groups is an error, and parameters no group matches form a default group with the optimizer's own options.
- The optimizer's ``param_groups`` are the configured groups in order (frozen ones left out), then the default
  group when it has any parameter.
- A regex matching no parameter is only a warning (configs list alternatives for several architectures), but a
  group none of whose regexes matches anything is an error.
- ``{"requires_grad": false}`` freezes the group's parameters and leaves them out of the optimizer;
  ``{"requires_grad": true}`` unfreezes them. Parameters that do not require gradients are left out.
- Any other option must be a hyper-parameter of the optimizer (``lr``, ``betas``, ...), checked and converted
  by the constructor's type annotation.

Keys most optimizers share: ``maximize`` (maximize the objective instead of minimizing it), ``foreach`` (use the
multi-tensor implementation; null lets torch choose), ``fused`` (use the fused kernel; null lets torch choose).
``capturable`` and ``differentiable`` are not exposed: they serve CUDA-graph capture and differentiating
through the optimizer, which a training config has no use for. ``torch.optim.LBFGS`` is not registered: its
``step`` needs a closure that re-evaluates the model several times, which a gradient-descent trainer's one
backward pass per step does not provide, and it cannot take parameter groups.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar, Literal

import torch

from regimen.registry import ConfigurationError, Lazy, Registrable
from regimen.registry.errors import unknown_name_message
from regimen.registry.from_params import construct_arg
from regimen.registry.values import describe

logger = logging.getLogger(__name__)

NamedParameters = list[tuple[str, torch.nn.Parameter]]
ParameterGroups = list[tuple[list[str], dict[str, Any]]]

_INJECTED = ("model_parameters", "parameter_groups")


class Optimizer(Registrable):
    """The base of registered optimizers; ``adam`` when a config names no type.

    An implementation subclasses this and a ``torch.optim.Optimizer`` and takes ``model_parameters`` and
    ``parameter_groups`` first; ``self.make_parameter_groups(model_parameters, parameter_groups)`` turns them into
    torch's parameter groups.
    """

    default_implementation = "adam"
    # Constructor keys a parameter group may not override (they are not per-group options in torch).
    _not_per_group: ClassVar[frozenset[str]] = frozenset()
    # Constructor keys that torch calls by another name in a parameter group.
    _torch_names: ClassVar[dict[str, str]] = {}

    @classmethod
    def _group_options(cls) -> dict[str, tuple[str, Any]]:
        """``{config key: (torch group key, annotation)}`` for the options a parameter group may set."""
        hints = typing.get_type_hints(cls.__init__)
        options = {}
        for name, parameter in list(inspect.signature(cls.__init__).parameters.items())[1:]:
            keyword = parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
            if keyword and name not in _INJECTED and name not in cls._not_per_group:
                options[name] = (cls._torch_names.get(name, name), hints.get(name, Any))
        return options

    @classmethod
    def make_parameter_groups(
        cls, model_parameters: Iterable[tuple[str, torch.nn.Parameter]], parameter_groups: ParameterGroups | None
    ) -> list[dict[str, Any]]:
        """torch's parameter groups: the configured ones in order (frozen ones left out), then the default group."""
        named = list(model_parameters)
        groups = list(parameter_groups or [])
        members, rest = _match_groups(named, groups)
        allowed = cls._group_options()
        errors: list[ConfigurationError] = []
        converted = [_convert_options(index, options, allowed, errors) for index, (_, options) in enumerate(groups)]
        if errors:
            raise ConfigurationError.combine(errors)
        torch_groups = []
        for (options, requires_grad), group_members in zip(converted, members):
            _set_requires_grad(group_members, requires_grad)
            if requires_grad is not False:
                torch_options = {allowed[key][0]: value for key, value in options.items()}
                torch_groups.append({"params": _trainable(group_members), **torch_options})
        default = _trainable(rest)
        if default:
            torch_groups.append({"params": default})
        if not any(group["params"] for group in torch_groups):
            raise ConfigurationError("the optimizer has no trainable parameters (none requires a gradient)")
        return torch_groups


# ---- parameter groups -----------------------------------------------------------------------------------------
def _match_groups(named: NamedParameters, groups: ParameterGroups) -> tuple[list[NamedParameters], NamedParameters]:
    """The parameters each group's regexes match, and those no group matches; config mistakes raise."""
    errors: list[ConfigurationError] = []
    compiled: list[list[tuple[str, re.Pattern]]] = []
    for index, (patterns, _) in enumerate(groups):
        group = []
        for position, pattern in enumerate(patterns):
            try:
                group.append((pattern, re.compile(pattern)))
            except re.error as error:
                key = f"parameter_groups.{index}.0.{position}"
                errors.append(ConfigurationError(f'invalid regex "{pattern}": {error}', key=key))
        compiled.append(group)
    if errors:
        raise ConfigurationError.combine(errors)

    members: list[NamedParameters] = [[] for _ in groups]
    rest: NamedParameters = []
    matched_any = [False] * len(groups)
    used: set[tuple[int, str]] = set()
    for name, parameter in named:
        hits: list[tuple[int, list[str]]] = []
        for index, group in enumerate(compiled):
            matching = [pattern for pattern, regex in group if regex.search(name)]
            if matching:
                hits.append((index, matching))
                used.update((index, pattern) for pattern in matching)
                matched_any[index] = True
        if len(hits) > 1:
            described = " and ".join(f"parameter group {index} ({_quoted(patterns)})" for index, patterns in hits)
            message = f'parameter "{name}" is matched by {described}; a parameter may belong to one group only'
            errors.append(ConfigurationError(message, key="parameter_groups"))
        elif hits:
            members[hits[0][0]].append((name, parameter))
        else:
            rest.append((name, parameter))

    examples = _quoted([name for name, _ in named][:5]) + (", ..." if len(named) > 5 else "")
    for index, group in enumerate(compiled):
        if not matched_any[index]:  # AllenNLP warns and keeps the empty group: one config serves several models
            patterns = _quoted([pattern for pattern, _ in group])
            logger.warning(
                "parameter group %d: no parameter name matches any of its regexes (%s), so it is empty; names "
                "look like %s",
                index,
                patterns,
                examples,
            )
            continue
        for pattern, _ in group:
            if (index, pattern) not in used:
                logger.warning('parameter group %d: regex "%s" matches no parameter name', index, pattern)
    if errors:
        raise ConfigurationError.combine(errors)
    return members, rest


def _convert_options(
    index: int,
    options: Mapping[str, Any],
    allowed: Mapping[str, tuple[str, Any]] | None,
    errors: list[ConfigurationError],
    also: Iterable[str] = (),
) -> tuple[dict[str, Any], bool | None]:
    """A group's options converted by their annotations (all passed as they are when ``allowed`` is None),
    without ``requires_grad``, which comes second; mistakes are added to ``errors``."""
    converted: dict[str, Any] = {}
    requires_grad = None
    for key, value in options.items():
        path = f"parameter_groups.{index}.1.{key}"
        try:
            if key == "requires_grad":
                requires_grad = construct_arg(bool, value, path, {})
            elif key in also:
                continue
            elif allowed is None:
                converted[key] = value
            elif key in allowed:
                converted[key] = construct_arg(allowed[key][1], value, path, {})
            else:
                message = unknown_name_message("parameter group option", key, ["requires_grad", *allowed])
                if key == "optimizer_name":
                    message += '; "optimizer_name" only means something in a "multi" optimizer'
                errors.append(ConfigurationError(message, key=path))
        except ConfigurationError as error:  # construct_arg names the path in full; make it relative to ours
            errors.extend(ConfigurationError(leaf.message, key=leaf.path or path) for leaf in error.errors)
    return converted, requires_grad


def _set_requires_grad(members: NamedParameters, requires_grad: bool | None) -> None:
    if requires_grad is None:
        return
    for _, parameter in members:
        parameter.requires_grad_(requires_grad)
    if requires_grad is False:
        logger.info("Freezing parameters: %s", ", ".join(name for name, _ in members))


def _trainable(members: NamedParameters) -> list[torch.nn.Parameter]:
    return [parameter for _, parameter in members if parameter.requires_grad]


def _quoted(items: Iterable[str]) -> str:
    return ", ".join(f'"{item}"' for item in items)


def _check_foreach_fused(foreach: bool | None, fused: bool | None) -> None:
    # torch raises a RuntimeError for this, which would not come out as a ConfigurationError.
    if foreach and fused:
        raise ConfigurationError('"foreach" and "fused" cannot both be true; set one of them', key="fused")


# Optimizer types AllenNLP itself removed: a config naming one is told what replaced it (allennlp PR #3635).
Optimizer.register_removed(
    "bert_adam",
    "AllenNLP 1.0",
    'use "huggingface_adamw" with "correct_bias": false (pytorch_pretrained_bert\'s BertAdam did not correct the '
    'bias; its weight decay default was 0.01) or "adamw"; BertAdam\'s "warmup" and "t_total" become a '
    '"learning_rate_scheduler" such as "linear_with_warmup", and its "max_grad_norm" the trainer\'s "grad_norm"',
)


# ---- torch's optimizers -----------------------------------------------------------------------------------------
@Optimizer.register("adam")
class AdamOptimizer(Optimizer, torch.optim.Adam):
    """Adam (``torch.optim.Adam``): adaptive per-parameter steps from running moments of the gradient.

    Registered as an `Optimizer` with name "adam".

    Config keys:
    - `parameter_groups` (list, default null): per-parameter options, see the module docstring.
    - `lr` (float, default 0.001): learning rate.
    - `betas` ([float, float], default [0.9, 0.999]): decay rates of the first and second moments.
    - `eps` (float, default 1e-08): added to the denominator for numerical stability.
    - `weight_decay` (float, default 0.0): L2 penalty added to the gradient.
    - `amsgrad` (bool, default false): use the AMSGrad variant.
    - `maximize` (bool, default false), `foreach` (bool or null, default null), `fused` (bool or null,
      default null): see the module docstring.
    - `decoupled_weight_decay` (bool, default false): decay the weights directly, as AdamW does.
    """

    def __init__(
        self,
        model_parameters: NamedParameters,
        parameter_groups: ParameterGroups | None = None,
        lr: float = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-08,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        _check_foreach_fused(foreach, fused)
        super().__init__(
            self.make_parameter_groups(model_parameters, parameter_groups),
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
            decoupled_weight_decay=decoupled_weight_decay,
        )


@Optimizer.register("adamw")
class AdamWOptimizer(Optimizer, torch.optim.AdamW):
    """AdamW (``torch.optim.AdamW``): Adam with weight decay applied to the weights, not the gradient.

    Registered as an `Optimizer` with name "adamw".

    Config keys:
    - `parameter_groups` (list, default null): per-parameter options, see the module docstring.
    - `lr` (float, default 0.001): learning rate.
    - `betas` ([float, float], default [0.9, 0.999]): decay rates of the first and second moments.
    - `eps` (float, default 1e-08): added to the denominator for numerical stability.
    - `weight_decay` (float, default 0.01): decoupled weight decay coefficient.
    - `amsgrad` (bool, default false): use the AMSGrad variant.
    - `maximize` (bool, default false), `foreach` (bool or null, default null), `fused` (bool or null,
      default null): see the module docstring.
    """

    def __init__(
        self,
        model_parameters: NamedParameters,
        parameter_groups: ParameterGroups | None = None,
        lr: float = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-08,
        weight_decay: float = 0.01,
        amsgrad: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        _check_foreach_fused(foreach, fused)
        super().__init__(
            self.make_parameter_groups(model_parameters, parameter_groups),
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
        )


@Optimizer.register("sgd")
class SgdOptimizer(Optimizer, torch.optim.SGD):
    """Stochastic gradient descent (``torch.optim.SGD``), with optional momentum.

    Registered as an `Optimizer` with name "sgd".

    Config keys:
    - `parameter_groups` (list, default null): per-parameter options, see the module docstring.
    - `lr` (float, default 0.001): learning rate.
    - `momentum` (float, default 0.0): momentum factor.
    - `dampening` (float, default 0.0): dampening for momentum.
    - `weight_decay` (float, default 0.0): L2 penalty added to the gradient.
    - `nesterov` (bool, default false): use Nesterov momentum.
    - `maximize` (bool, default false), `foreach` (bool or null, default null), `fused` (bool or null,
      default null): see the module docstring.
    """

    def __init__(
        self,
        model_parameters: NamedParameters,
        parameter_groups: ParameterGroups | None = None,
        lr: float = 0.001,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        _check_foreach_fused(foreach, fused)
        super().__init__(
            self.make_parameter_groups(model_parameters, parameter_groups),
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
        )


@Optimizer.register("rmsprop")
class RmsPropOptimizer(Optimizer, torch.optim.RMSprop):
    """RMSprop (``torch.optim.RMSprop``): steps scaled by a running average of squared gradients.

    Registered as an `Optimizer` with name "rmsprop".

    Config keys:
    - `parameter_groups` (list, default null): per-parameter options, see the module docstring.
    - `lr` (float, default 0.01): learning rate.
    - `alpha` (float, default 0.99): smoothing constant of the squared-gradient average.
    - `eps` (float, default 1e-08): added to the denominator for numerical stability.
    - `weight_decay` (float, default 0.0): L2 penalty added to the gradient.
    - `momentum` (float, default 0.0): momentum factor.
    - `centered` (bool, default false): normalize by the estimated variance of the gradient.
    - `maximize` (bool, default false), `foreach` (bool or null, default null): see the module docstring.
    """

    def __init__(
        self,
        model_parameters: NamedParameters,
        parameter_groups: ParameterGroups | None = None,
        lr: float = 0.01,
        alpha: float = 0.99,
        eps: float = 1e-08,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            self.make_parameter_groups(model_parameters, parameter_groups),
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            maximize=maximize,
            foreach=foreach,
        )


@Optimizer.register("adagrad")
class AdagradOptimizer(Optimizer, torch.optim.Adagrad):
    """Adagrad (``torch.optim.Adagrad``): steps scaled by the sum of all past squared gradients.

    Registered as an `Optimizer` with name "adagrad".

    Config keys:
    - `parameter_groups` (list, default null): per-parameter options, see the module docstring.
    - `lr` (float, default 0.01): learning rate.
    - `lr_decay` (float, default 0.0): learning rate decay.
    - `weight_decay` (float, default 0.0): L2 penalty added to the gradient.
    - `initial_accumulator_value` (float, default 0.0): starting value of the squared-gradient sums.
    - `eps` (float, default 1e-10): added to the denominator for numerical stability.
    - `maximize` (bool, default false), `foreach` (bool or null, default null), `fused` (bool or null,
      default null): see the module docstring.
    """

    def __init__(
        self,
        model_parameters: NamedParameters,
        parameter_groups: ParameterGroups | None = None,
        lr: float = 0.01,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        _check_foreach_fused(foreach, fused)
        super().__init__(
            self.make_parameter_groups(model_parameters, parameter_groups),
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
        )


@Optimizer.register("adadelta")
class AdadeltaOptimizer(Optimizer, torch.optim.Adadelta):
    """Adadelta (``torch.optim.Adadelta``): steps from running averages of squared gradients and updates.

    Registered as an `Optimizer` with name "adadelta".

    Config keys:
    - `parameter_groups` (list, default null): per-parameter options, see the module docstring.
    - `lr` (float, default 1.0): coefficient that scales the update.
    - `rho` (float, default 0.9): decay rate of the running averages.
    - `eps` (float, default 1e-06): added to the denominator for numerical stability.
    - `weight_decay` (float, default 0.0): L2 penalty added to the gradient.
    - `maximize` (bool, default false), `foreach` (bool or null, default null): see the module docstring.
    """

    def __init__(
        self,
        model_parameters: NamedParameters,
        parameter_groups: ParameterGroups | None = None,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-06,
        weight_decay: float = 0.0,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            self.make_parameter_groups(model_parameters, parameter_groups),
            lr=lr,
            rho=rho,
            eps=eps,
            weight_decay=weight_decay,
            maximize=maximize,
            foreach=foreach,
        )


@Optimizer.register("adamax")
class AdamaxOptimizer(Optimizer, torch.optim.Adamax):
    """Adamax (``torch.optim.Adamax``): Adam with the infinity norm in place of the second moment.

    Registered as an `Optimizer` with name "adamax".

    Config keys:
    - `parameter_groups` (list, default null): per-parameter options, see the module docstring.
    - `lr` (float, default 0.002): learning rate.
    - `betas` ([float, float], default [0.9, 0.999]): decay rates of the moment and the infinity norm.
    - `eps` (float, default 1e-08): added to the denominator for numerical stability.
    - `weight_decay` (float, default 0.0): L2 penalty added to the gradient.
    - `maximize` (bool, default false), `foreach` (bool or null, default null): see the module docstring.
    """

    def __init__(
        self,
        model_parameters: NamedParameters,
        parameter_groups: ParameterGroups | None = None,
        lr: float = 0.002,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-08,
        weight_decay: float = 0.0,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            self.make_parameter_groups(model_parameters, parameter_groups),
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            maximize=maximize,
            foreach=foreach,
        )


@Optimizer.register("sparse_adam")
class SparseAdamOptimizer(Optimizer, torch.optim.SparseAdam):
    """SparseAdam (``torch.optim.SparseAdam``): Adam for sparse gradients only (``nn.Embedding(sparse=True)``).

    Every parameter must receive sparse gradients; for a model that mixes sparse and dense gradients use
    "dense_sparse_adam".

    Registered as an `Optimizer` with name "sparse_adam".

    Config keys:
    - `parameter_groups` (list, default null): per-parameter options, see the module docstring.
    - `lr` (float, default 0.001): learning rate.
    - `betas` ([float, float], default [0.9, 0.999]): decay rates of the first and second moments.
    - `eps` (float, default 1e-08): added to the denominator for numerical stability.
    - `maximize` (bool, default false): see the module docstring.
    """

    def __init__(
        self,
        model_parameters: NamedParameters,
        parameter_groups: ParameterGroups | None = None,
        lr: float = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-08,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            self.make_parameter_groups(model_parameters, parameter_groups),
            lr=lr,
            betas=betas,
            eps=eps,
            maximize=maximize,
        )


@Optimizer.register("averaged_sgd")
class AveragedSgdOptimizer(Optimizer, torch.optim.ASGD):
    """Averaged SGD (``torch.optim.ASGD``): SGD that also keeps a running average of the weights.

    Registered as an `Optimizer` with name "averaged_sgd".

    Config keys:
    - `parameter_groups` (list, default null): per-parameter options, see the module docstring.
    - `lr` (float, default 0.01): learning rate.
    - `lambd` (float, default 0.0001): decay term.
    - `alpha` (float, default 0.75): power for the learning rate update.
    - `t0` (float, default 1000000.0): step at which averaging starts.
    - `weight_decay` (float, default 0.0): L2 penalty added to the gradient.
    - `maximize` (bool, default false), `foreach` (bool or null, default null): see the module docstring.
    """

    def __init__(
        self,
        model_parameters: NamedParameters,
        parameter_groups: ParameterGroups | None = None,
        lr: float = 0.01,
        lambd: float = 0.0001,
        alpha: float = 0.75,
        t0: float = 1000000.0,
        weight_decay: float = 0.0,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            self.make_parameter_groups(model_parameters, parameter_groups),
            lr=lr,
            lambd=lambd,
            alpha=alpha,
            t0=t0,
            weight_decay=weight_decay,
            maximize=maximize,
            foreach=foreach,
        )


@Optimizer.register("nadam")
class NAdamOptimizer(Optimizer, torch.optim.NAdam):
    """NAdam (``torch.optim.NAdam``): Adam with Nesterov momentum.

    Registered as an `Optimizer` with name "nadam".

    Config keys:
    - `parameter_groups` (list, default null): per-parameter options, see the module docstring.
    - `lr` (float, default 0.002): learning rate.
    - `betas` ([float, float], default [0.9, 0.999]): decay rates of the first and second moments.
    - `eps` (float, default 1e-08): added to the denominator for numerical stability.
    - `weight_decay` (float, default 0.0): weight decay coefficient.
    - `momentum_decay` (float, default 0.004): momentum decay.
    - `decoupled_weight_decay` (bool, default false): decay the weights directly, as AdamW does.
    - `maximize` (bool, default false), `foreach` (bool or null, default null): see the module docstring.
    """

    def __init__(
        self,
        model_parameters: NamedParameters,
        parameter_groups: ParameterGroups | None = None,
        lr: float = 0.002,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-08,
        weight_decay: float = 0.0,
        momentum_decay: float = 0.004,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            self.make_parameter_groups(model_parameters, parameter_groups),
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
            foreach=foreach,
        )


@Optimizer.register("radam")
class RAdamOptimizer(Optimizer, torch.optim.RAdam):
    """RAdam (``torch.optim.RAdam``): Adam with a rectified, warmup-free adaptive learning rate.

    Registered as an `Optimizer` with name "radam".

    Config keys:
    - `parameter_groups` (list, default null): per-parameter options, see the module docstring.
    - `lr` (float, default 0.001): learning rate.
    - `betas` ([float, float], default [0.9, 0.999]): decay rates of the first and second moments.
    - `eps` (float, default 1e-08): added to the denominator for numerical stability.
    - `weight_decay` (float, default 0.0): weight decay coefficient.
    - `decoupled_weight_decay` (bool, default false): decay the weights directly, as AdamW does.
    - `maximize` (bool, default false), `foreach` (bool or null, default null): see the module docstring.
    """

    def __init__(
        self,
        model_parameters: NamedParameters,
        parameter_groups: ParameterGroups | None = None,
        lr: float = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-08,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            self.make_parameter_groups(model_parameters, parameter_groups),
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
            foreach=foreach,
        )


@Optimizer.register("rprop")
class RpropOptimizer(Optimizer, torch.optim.Rprop):
    """Rprop (``torch.optim.Rprop``): per-weight step sizes adapted from the sign of the gradient (full batch).

    Registered as an `Optimizer` with name "rprop".

    Config keys:
    - `parameter_groups` (list, default null): per-parameter options, see the module docstring.
    - `lr` (float, default 0.01): initial step size.
    - `etas` ([float, float], default [0.5, 1.2]): factors that shrink and grow the step size.
    - `step_sizes` ([float, float], default [1e-06, 50.0]): smallest and largest allowed step sizes.
    - `maximize` (bool, default false), `foreach` (bool or null, default null): see the module docstring.
    """

    def __init__(
        self,
        model_parameters: NamedParameters,
        parameter_groups: ParameterGroups | None = None,
        lr: float = 0.01,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-06, 50.0),
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            self.make_parameter_groups(model_parameters, parameter_groups),
            lr=lr,
            etas=etas,
            step_sizes=step_sizes,
            maximize=maximize,
            foreach=foreach,
        )


if hasattr(torch.optim, "Adafactor"):  # torch >= 2.5

    @Optimizer.register("adafactor")
    class AdafactorOptimizer(Optimizer, torch.optim.Adafactor):
        """Adafactor (``torch.optim.Adafactor``): factored second moments, relative step sizes, little memory.

        The step size is ``min(lr, 1/sqrt(step))`` times the root mean square of the parameter.

        Registered as an `Optimizer` with name "adafactor".

        Config keys:
        - `parameter_groups` (list, default null): per-parameter options, see the module docstring.
        - `lr` (float, default 0.01): the largest relative step size; also scales the weight decay.
        - `beta2_decay` (float, default -0.8): decay rate of the second-moment coefficient.
        - `eps` ([float or null, float], default [null, 0.001]): stabilizer of the update (null: the dtype's
          machine epsilon) and the smallest parameter scale.
        - `d` (float, default 1.0): clipping threshold of the update.
        - `weight_decay` (float, default 0.0): decoupled weight decay coefficient.
        - `maximize` (bool, default false), `foreach` (bool or null, default null): see the module docstring.
        """

        def __init__(
            self,
            model_parameters: NamedParameters,
            parameter_groups: ParameterGroups | None = None,
            lr: float = 0.01,
            beta2_decay: float = -0.8,
            eps: tuple[float | None, float] = (None, 0.001),
            d: float = 1.0,
            weight_decay: float = 0.0,
            maximize: bool = False,
            foreach: bool | None = None,
        ) -> None:
            super().__init__(
                self.make_parameter_groups(model_parameters, parameter_groups),
                lr=lr,
                beta2_decay=beta2_decay,
                eps=eps,
                d=d,
                weight_decay=weight_decay,
                maximize=maximize,
                foreach=foreach,
            )


if hasattr(torch.optim, "Muon"):  # torch >= 2.9

    @Optimizer.register("muon")
    class MuonOptimizer(Optimizer, torch.optim.Muon):
        """Muon (``torch.optim.Muon``): momentum orthogonalized by Newton-Schulz iterations, for 2D weights.

        Every parameter must be a matrix; give biases, norms and embeddings another optimizer with "multi".

        Registered as an `Optimizer` with name "muon".

        Config keys:
        - `parameter_groups` (list, default null): per-parameter options, see the module docstring.
        - `lr` (float, default 0.001): learning rate.
        - `weight_decay` (float, default 0.1): decoupled weight decay coefficient.
        - `momentum` (float, default 0.95): momentum factor.
        - `nesterov` (bool, default true): use Nesterov momentum.
        - `ns_coefficients` ([float, float, float], default [3.4445, -4.775, 2.0315]): coefficients of the
          Newton-Schulz iteration.
        - `eps` (float, default 1e-07): stabilizer of the normalization.
        - `ns_steps` (int, default 5): number of Newton-Schulz iterations.
        - `adjust_lr_fn` ("original", "match_rms_adamw" or null, default null): how the learning rate is
          scaled by the matrix shape.
        """

        def __init__(
            self,
            model_parameters: NamedParameters,
            parameter_groups: ParameterGroups | None = None,
            lr: float = 0.001,
            weight_decay: float = 0.1,
            momentum: float = 0.95,
            nesterov: bool = True,
            ns_coefficients: tuple[float, float, float] = (3.4445, -4.775, 2.0315),
            eps: float = 1e-07,
            ns_steps: int = 5,
            adjust_lr_fn: Literal["original", "match_rms_adamw"] | None = None,
        ) -> None:
            named = list(model_parameters)
            torch_groups = self.make_parameter_groups(named, parameter_groups)
            optimized = {id(parameter) for group in torch_groups for parameter in group["params"]}
            not_matrices = [name for name, parameter in named if id(parameter) in optimized and parameter.ndim != 2]
            if not_matrices:
                raise ConfigurationError(
                    f"Muon only optimizes 2D parameters, and these are not: {_quoted(not_matrices)}; freeze them "
                    'with a parameter group or give them another optimizer with "type": "multi"'
                )
            super().__init__(
                torch_groups,
                lr=lr,
                weight_decay=weight_decay,
                momentum=momentum,
                nesterov=nesterov,
                ns_coefficients=ns_coefficients,
                eps=eps,
                ns_steps=ns_steps,
                adjust_lr_fn=adjust_lr_fn,
            )


# ---- the names AllenNLP configs use ---------------------------------------------------------------------------
@Optimizer.register("huggingface_adamw")
class HuggingfaceAdamWOptimizer(Optimizer, torch.optim.AdamW):
    """AdamW as HuggingFace's ``transformers.AdamW`` was configured: torch's AdamW plus ``correct_bias``.

    With ``correct_bias: false`` the moments are used without Adam's bias correction, as BERT's original
    optimizer did: the update is ``lr * m / (sqrt(v) + eps)`` after the decoupled weight decay. The defaults are
    AllenNLP's for this name, so configs written for it train the same.

    Registered as an `Optimizer` with name "huggingface_adamw".

    Config keys:
    - `parameter_groups` (list, default null): per-parameter options, see the module docstring.
    - `lr` (float, default 1e-05): learning rate.
    - `betas` ([float, float], default [0.9, 0.999]): decay rates of the first and second moments.
    - `eps` (float, default 1e-08): added to the denominator for numerical stability.
    - `weight_decay` (float, default 0.0): decoupled weight decay coefficient.
    - `correct_bias` (bool, default true): apply Adam's bias correction; the same for all groups.
    """

    _not_per_group = frozenset({"correct_bias"})

    def __init__(
        self,
        model_parameters: NamedParameters,
        parameter_groups: ParameterGroups | None = None,
        lr: float = 1e-05,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-08,
        weight_decay: float = 0.0,
        correct_bias: bool = True,
    ) -> None:
        super().__init__(
            self.make_parameter_groups(model_parameters, parameter_groups),
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
        )
        self.correct_bias = correct_bias

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One step; torch's AdamW step when correcting the bias, else the uncorrected update below."""
        if self.correct_bias:
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # Written by hand because torch's AdamW always corrects the bias; the state has AdamW's layout, so
        # checkpoints load into either form.
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                if parameter.grad.is_sparse:
                    raise RuntimeError("huggingface_adamw does not support sparse gradients")
                state = self.state[parameter]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
                state["step"] += 1
                parameter.mul_(1 - group["lr"] * group["weight_decay"])
                state["exp_avg"].lerp_(parameter.grad, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(parameter.grad, parameter.grad, value=1 - beta2)
                denominator = state["exp_avg_sq"].sqrt().add_(group["eps"])
                parameter.addcdiv_(state["exp_avg"], denominator, value=-group["lr"])
        return loss


@Optimizer.register("huggingface_adafactor")
class HuggingfaceAdafactorOptimizer(Optimizer, torch.optim.Optimizer):
    """Adafactor as HuggingFace's ``transformers.Adafactor`` computes it, with its keys and defaults.

    Each step of a parameter ``p`` with gradient ``g`` (HF's rule): ``u = g**2 + eps[0]`` is averaged with the
    weight ``1 - step**decay_rate`` into the second moment, factored into row and column means for matrices;
    the update ``g / sqrt(second moment)`` is divided by ``max(1, rms(update) / clip_threshold)`` and multiplied
    by the step size ``lr`` (``min(0.01, 1/sqrt(step))`` with `relative_step`, ``min(1e-6 * step, 1/sqrt(step))``
    with `warmup_init` too), times ``max(eps[1], rms(p))`` with `scale_parameter`; with `beta1` it is averaged
    into a first moment; `weight_decay` subtracts ``weight_decay * step size * p``. ``eps[0]`` is added to the
    squared gradient, so a gradient that is exactly zero (an unused embedding row) leaves its weights as they
    are. With `relative_step` the optimizer's ``lr`` shows the relative step size last used and a learning-rate
    scheduler has no effect, as in HF; to schedule the lr set `relative_step: false` and give `lr`.

    Registered as an `Optimizer` with name "huggingface_adafactor".

    Config keys:
    - `parameter_groups` (list, default null): per-parameter options, see the module docstring.
    - `lr` (float or null, default null): the step size; required with `relative_step: false`, refused with
      `relative_step: true` (HF refuses it too).
    - `eps` ([float, float], default [1e-30, 0.001]): added to the squared gradient, and the smallest parameter
      scale.
    - `clip_threshold` (float, default 1.0): the largest root mean square of an update.
    - `decay_rate` (float, default -0.8): the second moment's average weight is ``1 - step**decay_rate``.
    - `beta1` (float or null, default null): decay rate of a first moment (null: none is kept).
    - `weight_decay` (float, default 0.0): weight decay, scaled by the step size.
    - `scale_parameter` (bool, default true): scale the step size by the parameter's root mean square.
    - `relative_step` (bool, default true): use the relative step size instead of `lr`; the same for all groups.
    - `warmup_init` (bool, default false): warm the relative step up from 1e-6; needs `relative_step`; the same
      for all groups.
    """

    _not_per_group = frozenset({"relative_step", "warmup_init"})

    def __init__(
        self,
        model_parameters: NamedParameters,
        parameter_groups: ParameterGroups | None = None,
        lr: float | None = None,
        eps: tuple[float, float] = (1e-30, 0.001),
        clip_threshold: float = 1.0,
        decay_rate: float = -0.8,
        beta1: float | None = None,
        weight_decay: float = 0.0,
        scale_parameter: bool = True,
        relative_step: bool = True,
        warmup_init: bool = False,
    ) -> None:
        errors = []
        manual_lr = "remove lr to get the relative step min(0.01, 1/sqrt(step)), or set relative_step: false"
        if lr is not None and relative_step:
            errors.append(
                ConfigurationError(f"HF's Adafactor cannot combine lr with relative_step: true; {manual_lr}", key="lr")
            )
        if lr is None and not relative_step:
            errors.append(
                ConfigurationError("relative_step: false needs an lr (HF's Adafactor fails without one)", key="lr")
            )
        if warmup_init and not relative_step:
            errors.append(
                ConfigurationError("HF's Adafactor needs relative_step: true for warmup_init", key="warmup_init")
            )
        for index, (_, options) in enumerate(parameter_groups or []):
            if relative_step and isinstance(options, Mapping) and "lr" in options:
                message = f"HF's Adafactor ignores a group's lr with relative_step: true; {manual_lr}"
                errors.append(ConfigurationError(message, key=f"parameter_groups.{index}.1.lr"))
        if errors:
            raise ConfigurationError.combine(errors)
        defaults = {
            "lr": self._relative_step_size(1, warmup_init) if relative_step else lr,
            "eps": eps,
            "clip_threshold": clip_threshold,
            "decay_rate": decay_rate,
            "beta1": beta1,
            "weight_decay": weight_decay,
            "scale_parameter": scale_parameter,
            "relative_step": relative_step,
            "warmup_init": warmup_init,
        }
        super().__init__(self.make_parameter_groups(model_parameters, parameter_groups), defaults)

    @staticmethod
    def _relative_step_size(step: int, warmup_init: bool) -> float:
        return min(1e-6 * step if warmup_init else 1e-2, 1.0 / math.sqrt(step))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One step of HF's Adafactor rule (see the class docstring) for every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # Written by hand because torch.optim.Adafactor computes another rule: it clamps the second moment at
        # eps[0] squared (HF's 1e-30 squared is 0 in float32, so an exactly-zero gradient gives 0 * inf = NaN)
        # instead of adding eps[0] to the squared gradient, and it has no constant lr, unscaled step, first
        # moment or HF's weight decay. transformers is not a dependency.
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                if parameter.grad.is_sparse:
                    raise RuntimeError("huggingface_adafactor does not support sparse gradients")
                self._update(parameter, group)
        return loss

    def _update(self, parameter: torch.Tensor, group: dict[str, Any]) -> None:
        low_precision = parameter.dtype in (torch.float16, torch.bfloat16)
        grad = parameter.grad.float() if low_precision else parameter.grad
        factored = grad.dim() >= 2
        state = self.state[parameter]
        if not state:
            state["step"] = 0
            if group["beta1"] is not None:
                state["exp_avg"] = torch.zeros_like(grad)
            if factored:
                state["exp_avg_sq_row"] = grad.new_zeros(grad.shape[:-1])
                state["exp_avg_sq_col"] = grad.new_zeros(grad.shape[:-2] + grad.shape[-1:])
            else:
                state["exp_avg_sq"] = torch.zeros_like(grad)
        for key in ("exp_avg", "exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq"):
            if key in state:  # a checkpoint loaded onto a half-precision parameter casts the state to its dtype
                state[key] = state[key].to(grad)
        weights = parameter.float() if low_precision else parameter
        state["step"] += 1
        state["RMS"] = _rms(weights)
        relative = self._relative_step_size(state["step"], group["warmup_init"])
        if group["relative_step"]:
            group["lr"] = relative
        step_size = group["lr"] * (max(group["eps"][1], state["RMS"]) if group["scale_parameter"] else 1.0)

        beta2 = 1.0 - math.pow(state["step"], group["decay_rate"])
        update = grad**2 + group["eps"][0]
        if factored:
            row, col = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
            row.mul_(beta2).add_(update.mean(dim=-1), alpha=1.0 - beta2)
            col.mul_(beta2).add_(update.mean(dim=-2), alpha=1.0 - beta2)
            row_factor = (row / row.mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1)
            update = torch.mul(row_factor, col.unsqueeze(-2).rsqrt()).mul_(grad)
        else:
            state["exp_avg_sq"].mul_(beta2).add_(update, alpha=1.0 - beta2)
            update = state["exp_avg_sq"].rsqrt().mul_(grad)
        update.div_((_rms(update) / group["clip_threshold"]).clamp_(min=1.0))
        update.mul_(step_size)
        if group["beta1"] is not None:
            state["exp_avg"].mul_(group["beta1"]).add_(update, alpha=1 - group["beta1"])
            update = state["exp_avg"]
        if group["weight_decay"] != 0:
            weights.add_(weights, alpha=-group["weight_decay"] * step_size)
        weights.add_(-update)
        if low_precision:
            parameter.copy_(weights)


def _rms(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.norm(2) / (tensor.numel() ** 0.5)


@Optimizer.register("dense_sparse_adam")
class DenseSparseAdam(Optimizer, torch.optim.Adam):
    """Adam for a model with both dense and sparse gradients (an ``nn.Embedding(sparse=True)`` beside dense layers).

    Parameters whose gradient is dense take ``torch.optim.Adam``'s step; those whose gradient is sparse take
    ``torch.optim.SparseAdam``'s update, which touches only the rows in the batch. Both keep Adam's state.

    Registered as an `Optimizer` with name "dense_sparse_adam".

    Config keys:
    - `parameter_groups` (list, default null): per-parameter options, see the module docstring.
    - `lr` (float, default 0.001): learning rate.
    - `betas` ([float, float], default [0.9, 0.999]): decay rates of the first and second moments.
    - `eps` (float, default 1e-08): added to the denominator for numerical stability.
    """

    def __init__(
        self,
        model_parameters: NamedParameters,
        parameter_groups: ParameterGroups | None = None,
        lr: float = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-08,
    ) -> None:
        super().__init__(self.make_parameter_groups(model_parameters, parameter_groups), lr=lr, betas=betas, eps=eps)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One step: Adam's for dense gradients, SparseAdam's for sparse ones."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        sparse = [
            (parameter, group)
            for group in self.param_groups
            for parameter in group["params"]
            if parameter.grad is not None and parameter.grad.is_sparse
        ]
        gradients = [parameter.grad for parameter, _ in sparse]
        for parameter, _ in sparse:  # hidden from torch's Adam, which refuses sparse gradients
            parameter.grad = None
        try:
            super().step()
        finally:
            for (parameter, _), gradient in zip(sparse, gradients):
                parameter.grad = gradient
        for parameter, group in sparse:
            self._sparse_update(parameter, group)
        return loss

    def _sparse_update(self, parameter: torch.Tensor, group: dict[str, Any]) -> None:
        # Written by hand because torch.optim.SparseAdam refuses dense gradients, Adam refuses sparse ones, and
        # torch has no public functional form of SparseAdam's update. This is that update, on Adam's state.
        beta1, beta2 = group["betas"]
        gradient = parameter.grad.coalesce()  # the update is not linear, so each index must appear once
        state = self.state[parameter]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(parameter)
            state["exp_avg_sq"] = torch.zeros_like(parameter)
        state["step"] += 1
        step = state["step"].item()

        def at_indices(values: torch.Tensor) -> torch.Tensor:
            return torch.sparse_coo_tensor(
                gradient.indices(), values, gradient.size(), is_coalesced=True, check_invariants=False
            )

        values = gradient.values()
        exp_avg = state["exp_avg"].sparse_mask(gradient).values()
        exp_avg_change = (values - exp_avg) * (1 - beta1)
        state["exp_avg"].add_(at_indices(exp_avg_change))
        exp_avg_sq = state["exp_avg_sq"].sparse_mask(gradient).values()
        exp_avg_sq_change = (values * values - exp_avg_sq) * (1 - beta2)
        state["exp_avg_sq"].add_(at_indices(exp_avg_sq_change))
        step_size = group["lr"] * math.sqrt(1 - beta2**step) / (1 - beta1**step)
        update = (exp_avg + exp_avg_change) / ((exp_avg_sq + exp_avg_sq_change).sqrt() + group["eps"])
        parameter.add_(at_indices(-step_size * update))


# ---- several optimizers as one ----------------------------------------------------------------------------------
class _MergedState(Mapping):
    """The ``state`` of a multi optimizer: each inner optimizer's state, read-only (parameters are disjoint)."""

    def __init__(self, optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        self._optimizers = optimizers

    def __getitem__(self, parameter: torch.Tensor) -> Any:
        for optimizer in self._optimizers.values():
            if parameter in optimizer.state:
                return optimizer.state[parameter]
        raise KeyError(parameter)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for optimizer in self._optimizers.values():
            yield from optimizer.state

    def __len__(self) -> int:
        return sum(len(optimizer.state) for optimizer in self._optimizers.values())


@Optimizer.register("multi")
class MultiOptimizer(Optimizer, torch.optim.Optimizer):
    """Several named optimizers as one: each parameter group is stepped by the optimizer its config names.

    A group's ``optimizer_name`` picks the optimizer (``"default"`` when absent); its other options override
    that optimizer's hyper-parameters; parameters no group matches go to ``"default"``, which must exist::

        "optimizer": {
            "type": "multi",
            "optimizers": {"default": {"type": "adam", "lr": 1e-3}, "embeddings": {"type": "sgd", "lr": 0.1}},
            "parameter_groups": [[["^embed"], {"optimizer_name": "embeddings"}]],
        }

    It presents one ``step``, ``zero_grad``, ``state_dict`` (``{name: that optimizer's state_dict}``),
    ``load_state_dict`` and ``param_groups``. ``param_groups`` holds the inner optimizers' own group dicts, in
    the order of ``optimizers`` and, within each, in config order with its default group last, so an LR
    scheduler or a logger that changes or reads them acts on the optimizer that steps them. An optimizer left
    without trainable parameters is not built.

    Registered as an `Optimizer` with name "multi".

    Config keys:
    - `optimizers` (object, required): name -> optimizer config; writes no ``parameter_groups`` of its own.
    - `parameter_groups` (list, default null): as for any optimizer (see the module docstring), plus
      ``optimizer_name`` in a group's options.
    """

    def __init__(
        self,
        model_parameters: NamedParameters,
        optimizers: dict[str, Lazy[Optimizer]],
        parameter_groups: ParameterGroups | None = None,
    ) -> None:
        named = list(model_parameters)
        groups = list(parameter_groups or [])
        _check_inner_configs(optimizers)
        members, rest = _match_groups(named, groups)
        routes = _route_groups(groups, optimizers)

        assigned: dict[str, tuple[NamedParameters, ParameterGroups]] = {name: ([], []) for name in optimizers}
        for (target, options, requires_grad), group_members in zip(routes, members):
            _set_requires_grad(group_members, requires_grad)
            if requires_grad is False:
                continue
            inner_parameters, inner_groups = assigned[target]
            inner_parameters.extend(group_members)
            # The group is settled here; the inner optimizer gets exactly its parameters, by their full names.
            inner_groups.append(([f"^{re.escape(name)}$" for name, _ in group_members], options))
        assigned["default"][0].extend(rest)

        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        for name, lazy in optimizers.items():
            inner_parameters, inner_groups = assigned[name]
            if not _trainable(inner_parameters):
                logger.warning('multi optimizer: "%s" has no trainable parameters and is not built', name)
                continue
            self.optimizers[name] = lazy.construct(model_parameters=inner_parameters, parameter_groups=inner_groups)
        if not self.optimizers:
            raise ConfigurationError("the optimizer has no trainable parameters (none requires a gradient)")

        everything = [parameter for inner in self.optimizers.values() for parameter in _parameters_of(inner)]
        default = self.optimizers.get("default")
        torch.optim.Optimizer.__init__(self, everything, dict(default.defaults) if default is not None else {})
        # The inner optimizers' own dicts, so a change made here (an LR scheduler's) reaches them.
        self.param_groups = [group for inner in self.optimizers.values() for group in inner.param_groups]
        self.state = _MergedState(self.optimizers)  # type: ignore[assignment]
        self._constructed = True

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Only used while constructing; afterwards add the group to one of ``self.optimizers``."""
        if self.__dict__.get("_constructed"):
            raise TypeError("add a parameter group to one of the multi optimizer's .optimizers instead")
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Step every inner optimizer; the closure, if any, is evaluated once."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.optimizers.values():
            optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if set(state_dict) != set(self.optimizers):
            raise ValueError(
                f"the multi optimizer's state holds optimizers {sorted(state_dict)} but this one has "
                f"{sorted(self.optimizers)}; it was saved from a different configuration"
            )
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state_dict[name])


def _parameters_of(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [parameter for group in optimizer.param_groups for parameter in group["params"]]


def _check_inner_configs(optimizers: Mapping[str, Lazy[Optimizer]]) -> None:
    errors = []
    if "default" not in optimizers:
        message = (
            'needs an optimizer named "default" for the parameters no group routes elsewhere; '
            f"it has {_quoted(optimizers) or 'none'}"
        )
        errors.append(ConfigurationError(message, key="optimizers"))
    for name, lazy in optimizers.items():
        if "parameter_groups" in lazy.params:
            message = 'write parameter groups in the multi optimizer\'s "parameter_groups" with "optimizer_name"'
            errors.append(ConfigurationError(message, key=f"optimizers.{name}.parameter_groups"))
        if lazy.params.get("type") == "multi":
            message = "a multi optimizer cannot contain another multi optimizer"
            errors.append(ConfigurationError(message, key=f"optimizers.{name}.type"))
    if errors:
        raise ConfigurationError.combine(errors)


def _route_groups(
    groups: ParameterGroups, optimizers: Mapping[str, Lazy[Optimizer]]
) -> list[tuple[str, dict[str, Any], bool | None]]:
    """For each group: the optimizer it goes to, its options (checked against that optimizer), requires_grad."""
    errors: list[ConfigurationError] = []
    routes = []
    for index, (_, options) in enumerate(groups):
        target = options.get("optimizer_name", "default")
        if not isinstance(target, str):
            message = f"expected the name of one of the optimizers ({_quoted(optimizers)}), got {describe(target)}"
            errors.append(ConfigurationError(message, key=f"parameter_groups.{index}.1.optimizer_name"))
            continue
        if target not in optimizers:
            message = unknown_name_message("optimizer name", str(target), list(optimizers))
            errors.append(ConfigurationError(message, key=f"parameter_groups.{index}.1.optimizer_name"))
            continue
        allowed = _group_options_of(optimizers[target])
        converted, requires_grad = _convert_options(index, options, allowed, errors, also=("optimizer_name",))
        routes.append((target, converted, requires_grad))
    if errors:
        raise ConfigurationError.combine(errors)
    return routes


def _group_options_of(lazy: Lazy[Optimizer]) -> dict[str, tuple[str, Any]] | None:
    """The group options the inner optimizer takes; None (not checked here) when it is not a known Optimizer."""
    name = lazy.params.get("type", Optimizer.default_implementation)
    if not isinstance(name, str):
        return None  # the registry reports it when the optimizer is built
    implementation, _ = Optimizer.resolve_class_name(name, lazy.params.path_of("type"))
    if isinstance(implementation, type) and issubclass(implementation, Optimizer):
        return implementation._group_options()
    return None

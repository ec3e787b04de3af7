"""Model: the base class of every trainable model, a ``torch.nn.Module`` that is also Registrable."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from regimen.registry import Registrable

if TYPE_CHECKING:
    import torchmetrics

logger = logging.getLogger(__name__)


class Model(torch.nn.Module, Registrable):
    """A model regimen can train.

    ``forward(**batch)`` takes the fields of a collated batch as keyword arguments and returns a dict. When the
    batch holds labels, the dict holds ``"loss"``: a scalar tensor, or a dict of named scalar losses, which the
    trainer sums for the backward pass and reports one by one as ``loss_<name>``.

    ``get_metrics(reset)`` returns the metrics accumulated since the last reset (floats, e.g. accuracy);
    ``get_regularization_penalty()`` an optional scalar added to the training loss.

    Metrics, the recommended way: hold each as a ``torchmetrics.Metric`` or ``torchmetrics.MetricCollection``
    attribute and update it in ``forward`` (``self.accuracy.update(logits, label)``); the default ``get_metrics``
    reports it, and the trainer resets, reduces and checkpoints it, with no code of the model's:

    - a metric under its attribute's name (``self.accuracy`` -> ``accuracy``); a collection's members, and the
      parts of a metric whose result is a dict, under the keys its ``compute()`` gives them (prefix and postfix
      included);
    - a scalar result as a float; a 1-d one (per class, ``average=None``) as ``<name>_0``, ``<name>_1``, ...;
      any other (a confusion matrix, a curve) is left out, with a warning once;
    - only the metrics updated since the last reset: a metric that a pass never updates (one the model updates
      only in eval mode) is not reported for that pass.

    The trainer reads the metrics with ``reset=True`` at the end of each epoch and of each validation (``regimen
    evaluate`` at its end) and resets every torchmetrics metric of the model there. In a distributed run it first
    reduces each metric's states over the workers, each state by its own ``dist_reduce_fx`` (sum, cat, mean, min,
    max, a callable or none: torchmetrics' ``sync``), so the metrics reported are those of the whole data; the
    other reads (the progress bar's, each batch) compute from the worker's own states without communicating. A
    checkpoint saved mid-epoch keeps every worker's metric states, and the run resumed from it reports the numbers
    of an uninterrupted one. Metric states stay out of ``state_dict()`` (torchmetrics' default): weights files
    and archives hold weights only, and a metric added to a model leaves its archives loadable.

    The alternative, for metrics torchmetrics does not have: override ``get_metrics(reset)`` (merging in
    ``super().get_metrics(reset)`` to keep the torchmetrics ones) and keep the metric's sums and counts in tensors
    (buffers) that ``metric_state()`` returns. In a distributed run the trainer sums them over the workers (in
    place) before it reads the metrics with ``reset=True``, and a mid-epoch checkpoint keeps those sums; a model
    that keeps its counts elsewhere reports the primary's share (with a warning).
    """

    def forward(self, **batch: Any) -> dict[str, Any]:  # pragma: no cover - every model defines it
        raise NotImplementedError  # abstract

    def get_metrics(self, reset: bool = False) -> dict[str, float]:
        """Metrics accumulated since the last reset: those of the model's torchmetrics attributes (see the class
        docstring); ``reset`` resets them after reading."""
        return torchmetrics_values(self, reset)

    def metric_state(self) -> list[torch.Tensor]:
        """The tensors of sums and counts a hand-written ``get_metrics`` computes its metrics from (none by
        default; torchmetrics metrics need none)."""
        return []

    def get_regularization_penalty(self) -> torch.Tensor | None:
        """A scalar added to the training loss, or None (the default)."""
        return None


def reported_metrics(model: torch.nn.Module) -> dict[str, torchmetrics.Metric | torchmetrics.MetricCollection]:
    """The torchmetrics metrics and collections that are attributes of ``model`` itself, by attribute name: those
    ``Model.get_metrics`` reports."""
    library = _torchmetrics()
    if library is None:
        return {}
    kinds = (library.Metric, library.MetricCollection)
    return {name: child for name, child in model.named_children() if isinstance(child, kinds)}


def metric_modules(model: torch.nn.Module) -> dict[str, torchmetrics.Metric]:
    """Every torchmetrics metric in ``model`` by module name (``accuracy``, ``scores.MulticlassPrecision``),
    members of collections and metrics of submodules included: those whose states the trainer reduces over the
    workers, resets and checkpoints."""
    library = _torchmetrics()
    if library is None:
        return {}
    return {name: module for name, module in model.named_modules() if isinstance(module, library.Metric)}


def _torchmetrics() -> Any:
    """The torchmetrics module if anything imported it, else None (no model can hold its metrics then). It is not
    imported here: that takes seconds (it imports scipy.signal), which commands that build no model should not
    pay; the models that use it import it."""
    return sys.modules.get("torchmetrics")


def torchmetrics_values(model: torch.nn.Module, reset: bool = False) -> dict[str, float]:
    """The values of ``model``'s torchmetrics attributes updated since their reset, named and converted as the
    `Model` docstring says; ``reset`` resets every one of them after reading."""
    values: dict[str, float] = {}
    for name, metric in reported_metrics(model).items():
        if any(member.update_called for member in metric_modules(metric).values()):
            values.update(_as_floats(name, metric.compute(), model))
        if reset:
            metric.reset()
    return values


def _as_floats(name: str, value: Any, model: torch.nn.Module) -> dict[str, float]:
    """A metric's result as named floats: a dict's by its keys, a 1-d tensor's by index; others are left out."""
    if isinstance(value, Mapping):
        floats: dict[str, float] = {}
        for part, item in value.items():
            floats.update(_as_floats(str(part), item, model))
        return floats
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return {name: float(value)}
    if isinstance(value, torch.Tensor) and value.dim() == 1:
        return {f"{name}_{index}": float(number) for index, number in enumerate(value.tolist())}
    if isinstance(value, (int, float)):
        return {name: float(value)}
    warned = getattr(model, "_regimen_unreported_metrics", None)
    if warned is None:
        warned = model._regimen_unreported_metrics = set()  # type: ignore[assignment]
    if name not in warned:
        warned.add(name)
        shape = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        logger.warning(
            "metric %r is %s, which is not reported: only scalars and 1-d tensors (as %s_0, %s_1, ...) are; "
            "reduce it to those in the model's get_metrics",
            name, shape, name, name,
        )  # fmt: skip
    return {}


def metric_states(metric: torchmetrics.Metric) -> dict[str, Any]:
    """``metric``'s states by name (the tensors and lists themselves), each one it added with ``add_state``."""
    # torchmetrics' registry of a metric's states; its metric_state property reads the same.
    return {name: getattr(metric, name) for name in metric._defaults}


def metric_state_copy(metric: torchmetrics.Metric) -> dict[str, Any]:
    """A copy of ``metric``'s states (on the CPU) and of its count of updates, for a checkpoint: what
    `replace_metric_state` takes."""
    states = {
        name: _cpu_copy(value) if isinstance(value, torch.Tensor) else [_cpu_copy(item) for item in value]
        for name, value in metric_states(metric).items()
    }
    return {"states": states, "update_count": metric.update_count}


def replace_metric_state(metric: torchmetrics.Metric, states: Mapping[str, Any], update_count: int) -> None:
    """Replace ``metric``'s states (each a tensor, or a list of them for a list state; moved to the metric's
    device) and its count of updates, and drop the result it cached: a checkpoint's, or their reduction over the
    workers (a tensor, which a list state gets as a list of one). Raises ValueError when the names of ``states``
    are not those of the metric's."""
    names = list(metric_states(metric))
    if set(states) != set(names):
        raise ValueError(f"{type(metric).__name__} has the states {sorted(names)}, not {sorted(states)}")
    for name in names:
        value = states[name]
        if isinstance(value, torch.Tensor):
            value = value.to(metric.device)
            setattr(metric, name, [value] if isinstance(getattr(metric, name), list) else value)
        else:
            setattr(metric, name, [item.to(metric.device) for item in value])
    # torchmetrics has no public way to set these: the count behind update_count and update_called (which decide
    # whether the metric is reported), and the result compute() keeps until the next update.
    metric._update_count = int(update_count)
    metric._computed = None


def _cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu", copy=True)


def freeze_parameters(model: torch.nn.Module, patterns: list[str]) -> None:
    """Stop training the parameters whose names match any of the regular expressions ``patterns`` (the trainer's
    ``no_grad``); a pattern that matches nothing is logged as a warning."""
    for pattern in patterns:
        matched = {name for name, _ in model.named_parameters() if re.search(pattern, name)}
        if not matched:
            logger.warning("no_grad: %r matches no parameter", pattern)
        for name, parameter in model.named_parameters():
            if name in matched:
                parameter.requires_grad_(False)

"""A step's gradients: which loss fills which parameters' gradients (one loss per optimizer), and their clipping."""

from __future__ import annotations

from typing import Any

import torch

from regimen.registry import ConfigurationError
from regimen.trainers.precision import Precision


class OptimizerLosses:
    """Routes a model's named losses to the inner optimizers of a ``"multi"`` optimizer (aitoolbox's MultiLoss with
    MultiOptimizer; GANs, actor-critic): each loss is backpropagated into its own optimizer's parameters only
    (``backward(inputs=...)``), so that each optimizer steps on its own loss, clipped on its own.

    The route is ``mapping`` (optimizer name -> loss name, the trainer's ``optimizer_losses``) or, without one,
    each optimizer to the loss of the same name when the model's dict of losses has exactly the optimizers' names.
    Otherwise (or with any other optimizer) the summed loss is backpropagated into everything, as usual. A
    regularization penalty goes into every parameter. All backward passes of a step come before its steps, so no
    step changes a weight that a later backward pass needs.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, mapping: dict[str, str] | None, distributed: bool) -> None:
        inner = getattr(optimizer, "optimizers", None)  # MultiOptimizer's inner optimizers, by name
        self.parameters: dict[str, list[torch.Tensor]] = {
            name: [p for group in member.param_groups for p in group["params"]]
            for name, member in (inner or {}).items()
        }
        if mapping is not None:
            if not self.parameters:
                raise ConfigurationError('needs a "multi" optimizer, whose optimizers it names', key="optimizer_losses")
            unknown, left = sorted(set(mapping) - set(self.parameters)), sorted(set(self.parameters) - set(mapping))
            if unknown or left:
                problem = (
                    f"names optimizers {unknown} that the multi optimizer does not have"
                    if unknown
                    else (f"gives no loss to optimizers {left}")
                )
                raise ConfigurationError(
                    f"{problem}: it has {', '.join(self.parameters)}, and each needs one", key="optimizer_losses"
                )
            if distributed:
                raise ConfigurationError("is not supported in distributed runs yet", key="optimizer_losses")
        self.mapping = mapping
        self.distributed = distributed
        self.routed = False  # whether the current step's gradients came from routed losses

    def backward(self, output: dict[str, Any], share: float, precision: Precision, optimizer: Any) -> bool:
        """Backpropagate each optimizer's loss (times ``share``, the batch's part of its step) into that optimizer's
        parameters; False (nothing done) when this output's losses are not routed."""
        routes = self._routes(output.get("named_losses") or {})
        self.routed = routes is not None
        if routes is None:
            return False
        named = output["named_losses"]
        terms = [(named[loss] * share, self.parameters[name]) for name, loss in routes.items()]
        if "reg_loss" in output:
            terms.append((output["reg_loss"] * share, [p for ps in self.parameters.values() for p in ps]))
        for number, (loss, inputs) in enumerate(terms, start=1):
            precision.backward(loss, optimizer, inputs=inputs, retain_graph=number < len(terms))
        return True

    def clip(
        self, model: torch.nn.Module, grad_norm: float | bool | None, grad_clipping: float | None
    ) -> torch.Tensor | None:
        """The trainer's clipping of a step's gradients: rescale to ``grad_norm`` (true: only measure; returns the
        norm before clipping, a 0-dim tensor on the device, as AllenNLP's `rescale_gradients` does: reading it is
        left to whoever needs the number), then clamp values to ``grad_clipping``. Each optimizer's parameters are
        rescaled on their own when the step's losses were routed to them."""
        measured = None
        if grad_norm is not None and grad_norm is not False:
            limit = float("inf") if grad_norm is True else float(grad_norm)
            sets = list(self.parameters.values()) if self.routed else [list(model.parameters())]
            norms = [torch.nn.utils.clip_grad_norm_([p for p in ps if p.grad is not None], limit) for ps in sets]
            measured = norms[0] if len(norms) == 1 else torch.linalg.vector_norm(torch.stack(norms))
        if grad_clipping is not None:
            torch.nn.utils.clip_grad_value_(model.parameters(), grad_clipping)
        return measured

    def _routes(self, named: dict[str, Any]) -> dict[str, str] | None:
        if self.mapping is not None:
            missing = sorted(set(self.mapping.values()) - set(named))
            if missing:
                raise ValueError(
                    f"optimizer_losses names losses {missing} that the model did not return (it returned "
                    f"{sorted(named) or 'no dict of losses'})"
                )
            return self.mapping
        if self.parameters and not self.distributed and set(named) == set(self.parameters):
            return {name: name for name in self.parameters}
        return None

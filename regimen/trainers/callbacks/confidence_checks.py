"""ConfidenceChecksCallback: checks the model for known mistakes on the first training batch."""

from __future__ import annotations

from typing import Any

import torch

from regimen.trainers.callbacks.callback import TrainerCallback

_WITH_BIAS = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
_BATCH_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)


class ConfidenceCheckError(RuntimeError):
    """The model failed a confidence check; the message says which layers and how to fix or silence it."""


@TrainerCallback.register("confidence_checks")
class ConfidenceChecksCallback(TrainerCallback):
    """Watches the first forward pass and fails fast when a layer with a bias feeds straight into batch
    normalization (the normalization subtracts the mean, so the bias only wastes parameters and memory).

    Registered as a `TrainerCallback` with name "confidence_checks". The trainer adds it while
    `run_confidence_checks` is true (the default, as in AllenNLP). Config keys: none.
    """

    def __init__(self, serialization_dir: str | None = None) -> None:
        super().__init__(serialization_dir)
        self._order: list[tuple[str, torch.nn.Module]] = []
        self._handles: list[Any] = []

    def on_start(self, trainer: Any, is_primary: bool = True, **kwargs: Any) -> None:
        for name, module in trainer.model.named_modules():
            if not any(module.children()):
                self._handles.append(module.register_forward_hook(self._recorder(name)))
        # Checked when the first forward pass finishes, so later batches pay nothing.
        self._handles.append(trainer.model.register_forward_hook(self._check))

    def _recorder(self, name: str) -> Any:
        def record(module: torch.nn.Module, inputs: Any, output: Any) -> None:
            self._order.append((name, module))

        return record

    def _check(self, *args: Any) -> None:
        self._remove_hooks()
        problems = [
            f"{first} ({type(a).__name__} with a bias) feeds {second} ({type(b).__name__})"
            for (first, a), (second, b) in zip(self._order, self._order[1:])
            if isinstance(a, _WITH_BIAS) and a.bias is not None and isinstance(b, _BATCH_NORMS)
        ]
        self._order = []
        if problems:
            raise ConfidenceCheckError(
                "confidence check failed: " + "; ".join(problems) + ". Batch normalization cancels the bias: "
                "build the layer with bias=False, or set trainer.run_confidence_checks to false."
            )

    def on_end(
        self, trainer: Any, metrics: Any = None, epoch: Any = None, is_primary: bool = True, **kwargs: Any
    ) -> None:
        self._remove_hooks()

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

"""Precision: how the loop runs forward and backward passes in full or mixed precision (native AMP or apex)."""

from __future__ import annotations

import inspect
import logging
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from regimen.registry import ConfigurationError
from regimen.registry.errors import unknown_name_message

logger = logging.getLogger(__name__)

_FULL_PRECISION = nullcontext()  # reusable: entering it does nothing


class Precision:
    """Full precision, or mixed precision through ``torch.autocast`` with a ``GradScaler`` where float16 needs one.

    The loop calls ``autocast()`` around forward passes, ``backward(loss)``, ``unscale()`` before clipping and
    ``step()`` for the optimizer step, and never needs to know which precision it runs in.
    """

    def __init__(
        self,
        device: torch.device,
        dtype: torch.dtype | None = None,
        grad_scaling: bool = True,
        scaler_arguments: dict[str, Any] | None = None,
    ) -> None:
        self.device = device
        self.dtype = dtype
        scales = dtype == torch.float16 and grad_scaling
        self.scaler = torch.amp.GradScaler(device.type, **(scaler_arguments or {})) if scales else None

    def prepare(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Called once with the built model and optimizer (apex rewrites them here)."""

    def autocast(self) -> AbstractContextManager[Any]:
        return torch.autocast(self.device.type, self.dtype) if self.dtype is not None else _FULL_PRECISION

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, **options: Any) -> None:
        """``loss.backward(**options)``, scaled where float16 needs it (``inputs``, ``retain_graph`` pass through)."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward(**options)

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])


class ApexPrecision(Precision):
    """NVIDIA apex's ``amp`` at an ``opt_level``, used only when apex is installed (it is not on PyPI)."""

    def __init__(self, device: torch.device, opt_level: str) -> None:
        super().__init__(device, None)
        from apex import amp

        self.amp = amp
        self.opt_level = opt_level

    def prepare(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        # apex patches the model and optimizer in place and returns the same objects at these opt levels.
        self.amp.initialize(model, optimizer, opt_level=self.opt_level)

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, **options: Any) -> None:
        with self.amp.scale_loss(loss, optimizer) as scaled:
            scaled.backward(**options)

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        pass  # apex unscales when scale_loss exits

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return {"amp": self.amp.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "amp" in state:
            self.amp.load_state_dict(state["amp"])


def make_precision(
    device: torch.device,
    use_amp: bool | dict[str, Any],
    amp_dtype: str | None = None,
    opt_level: str | None = None,
    grad_scaling: bool = True,
) -> Precision:
    """The precision a trainer config asks for.

    ``use_amp`` with ``amp_dtype`` (default float16 on CUDA, bfloat16 on CPU) is native AMP; an object for
    ``use_amp`` turns it on with those ``torch.amp.GradScaler`` arguments (aitoolbox's form). An AllenNLP 1.x
    ``opt_level`` uses apex when it is installed and a CUDA device is used; otherwise "O0" means full precision
    and "O1"-"O3" native AMP, with a logged note. ``grad_scaling`` false leaves float16 losses unscaled.
    """
    scaler_arguments = use_amp if isinstance(use_amp, dict) else None
    if scaler_arguments is not None:
        _check_scaler_arguments(scaler_arguments, grad_scaling)
    if opt_level is not None and opt_level != "O0":
        if device.type == "cuda" and _apex_available():
            logger.info("opt_level %s: using NVIDIA apex", opt_level)
            return ApexPrecision(device, opt_level)
        logger.info("opt_level %s: apex is not in use here, using torch's native mixed precision instead", opt_level)
        use_amp = True
    if not use_amp:
        return Precision(device)
    dtype = getattr(torch, amp_dtype) if amp_dtype is not None else None
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.bfloat16)
    if scaler_arguments and dtype != torch.float16:
        logger.warning("use_amp: the GradScaler arguments are not used, since %s needs no loss scaling", dtype)
    return Precision(device, dtype, grad_scaling, scaler_arguments)


def _check_scaler_arguments(arguments: dict[str, Any], grad_scaling: bool) -> None:
    """``use_amp``'s GradScaler arguments, checked against torch's signature (keys other than the device)."""
    accepted = [name for name in inspect.signature(torch.amp.GradScaler).parameters if name != "device"]
    for key, value in arguments.items():
        if key not in accepted:
            raise ConfigurationError(unknown_name_message("GradScaler argument", key, accepted), key=f"use_amp.{key}")
        expected = bool if key == "enabled" else int if key == "growth_interval" else float
        if isinstance(value, bool) != (expected is bool) or not isinstance(value, (int, float)):
            raise ConfigurationError(f"expected {expected.__name__}, got {value!r}", key=f"use_amp.{key}")
        if expected is int and not isinstance(value, int):
            raise ConfigurationError(f"expected int, got {value!r}", key=f"use_amp.{key}")
    if not grad_scaling:
        raise ConfigurationError("GradScaler arguments contradict grad_scaling: false", key="use_amp")


def _apex_available() -> bool:
    try:
        import apex.amp  # noqa: F401
    except ImportError:
        return False
    return True

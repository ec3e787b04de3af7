"""Precision: how the loop runs forward and backward passes in full or mixed precision (native AMP or apex)."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

logger = logging.getLogger(__name__)

_FULL_PRECISION = nullcontext()  # reusable: entering it does nothing


class Precision:
    """Full precision, or mixed precision through ``torch.autocast`` with a ``GradScaler`` where float16 needs one.

    The loop calls ``autocast()`` around forward passes, ``backward(loss)``, ``unscale()`` before clipping and
    ``step()`` for the optimizer step, and never needs to know which precision it runs in.
    """

    def __init__(self, device: torch.device, dtype: torch.dtype | None = None, grad_scaling: bool = True) -> None:
        self.device = device
        self.dtype = dtype
        self.scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 and grad_scaling else None

    def prepare(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Called once with the built model and optimizer (apex rewrites them here)."""

    def autocast(self) -> AbstractContextManager[Any]:
        return torch.autocast(self.device.type, self.dtype) if self.dtype is not None else _FULL_PRECISION

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

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

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        with self.amp.scale_loss(loss, optimizer) as scaled:
            scaled.backward()

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
    use_amp: bool,
    amp_dtype: str | None = None,
    opt_level: str | None = None,
    grad_scaling: bool = True,
) -> Precision:
    """The precision a trainer config asks for.

    ``use_amp`` with ``amp_dtype`` (default float16 on CUDA, bfloat16 on CPU) is native AMP. An AllenNLP 1.x
    ``opt_level`` uses apex when it is installed and a CUDA device is used; otherwise "O0" means full precision
    and "O1"-"O3" native AMP, with a logged note. ``grad_scaling`` false leaves float16 losses unscaled.
    """
    if opt_level is not None and opt_level != "O0":
        if device.type == "cuda" and _apex_available():
            logger.info("opt_level %s: using NVIDIA apex", opt_level)
            return ApexPrecision(device, opt_level)
        logger.info("opt_level %s: apex is not in use here, using torch's native mixed precision instead", opt_level)
        use_amp = True
    if not use_amp:
        return Precision(device)
    if amp_dtype is None:
        return Precision(device, torch.float16 if device.type == "cuda" else torch.bfloat16, grad_scaling)
    return Precision(device, getattr(torch, amp_dtype), grad_scaling)


def _apex_available() -> bool:
    try:
        import apex.amp  # noqa: F401
    except ImportError:
        return False
    return True

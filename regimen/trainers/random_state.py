"""The random number generator states of this process (Python, NumPy, torch CPU and CUDA), for checkpoints."""

from __future__ import annotations

import random
from typing import Any

import numpy
import torch


def rng_state() -> dict[str, Any]:
    """Every RNG state a training step may draw from, as tensors and plain values (``weights_only``-loadable)."""
    version, python_state, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = numpy.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(python_state), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype("int64")), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back what ``rng_state`` returned."""
    version, python_state, gauss = state["python"]
    random.setstate((version, tuple(python_state), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    numpy.random.set_state((kind, keys.numpy().astype("uint32"), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def worker_rng_state(saved: Any, rank: int) -> dict[str, Any]:
    """Worker ``rank``'s state from a checkpoint's list of every worker's (the primary's when the checkpoint has
    fewer workers than this run); a checkpoint from before per-worker states holds one dict."""
    if isinstance(saved, dict):
        return saved
    return saved[rank] if rank < len(saved) else saved[0]

"""Trainer: the registrable base of everything that trains a model from a config."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from regimen.registry import ConfigurationError, Registrable


def resolve_device(cuda_device: int | str | None) -> torch.device:
    """``None`` picks the first CUDA device when there is one, else the CPU; ``-1`` is the CPU."""
    if cuda_device is None:
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if isinstance(cuda_device, str):
        return torch.device(cuda_device)
    if cuda_device < 0:
        return torch.device("cpu")
    if not torch.cuda.is_available() or cuda_device >= torch.cuda.device_count():
        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise ConfigurationError(
            f"CUDA device {cuda_device} is not available ({available} CUDA devices here); use -1 for the CPU",
            key="cuda_device",
        )
    return torch.device("cuda", cuda_device)


class Trainer(Registrable):
    """The base of trainers: ``train()`` runs training and returns its metrics.

    ``serialization_dir`` is where results go (None: nowhere), ``cuda_device`` the device (None: auto, -1: CPU),
    ``distributed``/``local_rank``/``world_size`` describe this worker in a distributed run.
    """

    default_implementation = "gradient_descent"

    def __init__(
        self,
        serialization_dir: str | None = None,
        cuda_device: int | None = None,
        distributed: bool = False,
        local_rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self._serialization_dir = serialization_dir
        self.device = resolve_device(cuda_device)
        self._distributed = distributed
        self._rank = local_rank
        self._world_size = world_size
        self._primary = local_rank == 0

    def train(self) -> dict[str, Any]:
        """Train the model and return the final metrics."""
        raise NotImplementedError  # abstract

    @contextmanager
    def get_checkpoint_state(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """``(model state, training state)`` for a checkpoint, valid while the context is open."""
        raise NotImplementedError  # abstract
        yield  # pragma: no cover

"""Trainer: the registrable base of everything that trains a model from a config."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from regimen.registry import ConfigurationError, Registrable
from regimen.trainers.distributed import Distributed


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

    ``serialization_dir`` is where results go (None: nowhere), ``cuda_device`` the device (None: auto, -1: CPU).
    ``distributed`` (given by the experiment, not written in configs) connects this worker to the others of a
    distributed run; it then decides the device, and only the primary worker writes files.

    A callback ends training early by setting ``trainer.should_stop = True`` (Lightning's name): training stops
    after the current epoch, with the usual final metrics, best weights and archive. In a distributed run it is
    enough that one worker sets it.
    """

    default_implementation = "gradient_descent"
    should_stop: bool = False

    def __init__(
        self,
        serialization_dir: str | None = None,
        cuda_device: int | None = None,
        distributed: Distributed | None = None,
    ) -> None:
        self._serialization_dir = serialization_dir
        self._dist = distributed if distributed is not None else Distributed()
        self.device = self._dist.device if self._dist.enabled else resolve_device(cuda_device)
        self._primary = self._dist.is_primary

    @property
    def global_step(self) -> int:
        """The optimizer steps taken in the whole run, resumes included (hooks get the epoch; this is the step)."""
        return getattr(self, "_total_steps", 0)

    def train(self) -> dict[str, Any]:
        """Train the model and return the final metrics."""
        raise NotImplementedError  # abstract

    @contextmanager
    def get_checkpoint_state(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """``(model state, training state)`` for a checkpoint, valid while the context is open."""
        raise NotImplementedError  # abstract
        yield  # pragma: no cover


# Trainer types AllenNLP itself removed: a config naming one is told what replaced it (allennlp PR #3828).
Trainer.register_removed(
    "callback",
    "AllenNLP 1.0",
    'use "gradient_descent" (the default trainer) with a "callbacks" list: AllenNLP 0.9\'s CallbackTrainer was '
    'folded into it, and its "validate", "checkpoint" and "track_metrics" callbacks are built in',
)
Trainer.register_removed(
    "ema_trainer",
    "AllenNLP 0.8",
    'use "gradient_descent" (the default trainer) with "moving_average": {"type": "exponential", "decay": D}, '
    'where D was EMATrainer\'s "exponential_moving_average_decay": the moving average became part of the trainer',
)

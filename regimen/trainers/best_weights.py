"""BestWeights: the model's weights at the best validation so far, written as best.th and restored at the end."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from regimen.trainers.atomic_files import BackgroundWriter, saving
from regimen.trainers.checkpointer import BEST_NAME, Checkpointer
from regimen.trainers.distributed import Distributed

logger = logging.getLogger(__name__)


class BestWeights:
    """A copy of the model's weights at the best validation so far, for the trainer to put back when training ends.

    The copy is also written as ``best.th`` in the run directory (when there is one, and ``writes``: the primary):
    through the checkpointer when there is one, so that a checkpoint of the same weights saved at the same step
    links its model file to ``best.th`` instead of writing the bytes twice, and otherwise through ``writer``.
    Either way the copy is written, made durable and put in place on a background thread (it never changes, so
    training goes on meanwhile); ``wait`` on the writer (and the checkpointer) to know it is done.
    """

    def __init__(
        self,
        serialization_dir: str | None,
        checkpointer: Checkpointer | None,
        writer: BackgroundWriter,
        writes: bool = True,
    ) -> None:
        self._path = None if serialization_dir is None else Path(serialization_dir) / BEST_NAME
        self._writes = writes and self._path is not None  # every worker reads best.th back; only one writes it
        self._checkpointer = checkpointer
        self._writer = writer
        self._state: dict[str, Any] | None = None
        self._step: int | None = None  # the optimizer step the copy was taken at (None: unknown, as after resuming)

    def update(self, model_state: Mapping[str, Any], step: int) -> None:
        """``model_state`` is the best so far, at optimizer step ``step``: keep a copy and write it as best.th."""
        copy = OrderedDict((key, value.detach().clone()) for key, value in model_state.items())
        metadata = getattr(model_state, "_metadata", None)
        if metadata is not None:  # the modules' versions, which load_state_dict reads, kept as state_dict() keeps them
            copy._metadata = metadata
        self._state = copy
        self._step = step
        if not self._writes:
            return
        if self._checkpointer is not None:
            self._checkpointer.save_best_model(self._state)
        else:
            self._writer.write(self._path, saving(self._state))

    def for_checkpoint(self, model_state: dict[str, Any], step: int) -> dict[str, Any]:
        """``model_state`` for a checkpoint at ``step``; the kept copy itself when it holds the same values, which
        tells the checkpointer that best.th already holds these bytes. Compared only at the step of the copy."""
        kept = self._state
        if kept is None or step != self._step or not _same_values(model_state, kept):
            return model_state
        return kept

    def load(self, device: torch.device, fallback: Path | None = None) -> None:
        """Read back ``best.th`` (when resuming a run), if it exists. One that cannot be read is logged, moved aside
        to ``best.th.corrupt`` (so no archive takes it) and rebuilt from ``fallback``, the checkpoint of the best
        epoch's end, where that loads; otherwise the best weights so far are lost, and the next best validation
        writes best.th again."""
        if self._path is None or not self._path.is_file():
            return
        self._step = None
        try:
            self._state = torch.load(self._path, map_location=device, weights_only=True)
            return
        except Exception as error:
            problem = f"{type(error).__name__}: {error}"
        if self._writes:
            self._path.replace(self._path.with_name(BEST_NAME + ".corrupt"))
        rebuilt = _load_or_none(fallback, device)
        if rebuilt is None:
            logger.error(
                "cannot load %s (%s): moved aside to %s; the best weights so far are lost, and best.th is written "
                "again at the next best validation (without one, the final weights are archived)",
                self._path, problem, BEST_NAME + ".corrupt",
            )  # fmt: skip
            return
        logger.error(
            "cannot load %s (%s): rebuilt from %s, the checkpoint of the best epoch", self._path, problem, fallback
        )
        self._state = rebuilt
        if self._writes:
            self._writer.write(self._path, saving(rebuilt))

    def restore(self, model: torch.nn.Module, distributed: Distributed) -> None:
        """Put the best weights back into ``model`` (nothing if there was no validation); every worker calls this
        (with a sharded model, the primary's copy is loaded on every worker)."""
        if self._state is not None:
            distributed.load_full_model_state(model, self._state)


def _load_or_none(path: Path | None, device: torch.device) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception:
        return None


def _same_values(state: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    if state.keys() != other.keys():
        return False
    for key, value in state.items():
        kept = other[key]
        if not (isinstance(value, torch.Tensor) and isinstance(kept, torch.Tensor)):
            return False
        if value.dtype != kept.dtype or value.shape != kept.shape or not torch.equal(value, kept):
            return False
    return True

"""Batches on the model's device: copied without blocking the host, the next one while the current one computes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from regimen.data.collate import map_tensors


def move_to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor in it moved to ``device`` (see `map_tensors` for the nesting it follows).

    The copies do not block the host: from pinned memory (a loader's ``pin_memory``) they run asynchronously."""
    return map_tensors(batch, lambda tensor: tensor.to(device, non_blocking=True))


def batches_on_device(batches: Iterable[Any], device: torch.device) -> Iterable[Any]:
    """``batches``, in order, moved to ``device``; on the CPU, where loaders make them, ``batches`` itself.

    On CUDA each batch is copied on a side stream one batch ahead: the copy of batch k+1 is queued before batch
    k is handed out, so it overlaps batch k's forward and backward. The stream that computes waits for a batch's
    copy on the device (an event), never on the host, and the batch's memory is kept for that stream until its
    work is done. On other devices each batch is moved when it is reached.
    """
    if device.type == "cpu":
        return batches
    if device.type != "cuda":
        return (move_to_device(batch, device) for batch in batches)
    return _copied_ahead(batches, device)


def _copied_ahead(batches: Iterable[Any], device: torch.device) -> Iterator[Any]:
    copies = torch.cuda.Stream(device)
    iterator = iter(batches)
    ahead = _copy(iterator, copies, device)
    while ahead is not None:
        batch, copied = ahead
        ahead = _copy(iterator, copies, device)  # the next batch's copy, queued before this one computes
        torch.cuda.current_stream(device).wait_event(copied)
        yield batch


def _copy(iterator: Iterator[Any], stream: torch.cuda.Stream, device: torch.device) -> tuple[Any, Any] | None:
    """The iterator's next batch copied to ``device`` on ``stream``, and the event that marks the copy done. Each
    copy is recorded as used by the stream that computes (the current one), so that the caching allocator keeps
    its memory until that stream's work with it is done, though it was allocated on ``stream``."""
    compute = torch.cuda.current_stream(device)

    def copy_for_compute(tensor: torch.Tensor) -> torch.Tensor:
        moved = tensor.to(device, non_blocking=True)
        moved.record_stream(compute)
        return moved

    for batch in iterator:
        with torch.cuda.stream(stream):
            moved = map_tensors(batch, copy_for_compute)
            copied = torch.cuda.Event()
            copied.record(stream)
        return moved, copied
    return None

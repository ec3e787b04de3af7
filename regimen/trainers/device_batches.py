"""Batches on the model's device: copied without blocking the host, the next one while the current one computes."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import Any

import torch


def move_to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor in it moved to ``device`` (nested dicts, lists and tuples included; a dict
    subclass, such as a loader's batch with its ``indices``, is copied with its attributes).

    The copies do not block the host: from pinned memory (a loader's ``pin_memory``) they run asynchronously."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        moved = {key: move_to_device(value, device) for key, value in batch.items()}
        if type(batch) is dict:
            return moved
        clone = copy.copy(batch)
        clone.update(moved)
        return clone
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(value, device) for value in batch)
    return batch


def batches_on_device(batches: Iterable[Any], device: torch.device) -> Iterator[Any]:
    """``batches``, in order, moved to ``device``.

    On CUDA each batch is copied on a side stream one batch ahead: the copy of batch k+1 is queued before batch
    k is handed out, so it overlaps batch k's forward and backward. The stream that computes waits for a batch's
    copy on the device (an event), never on the host, and the batch's memory is kept for that stream until its
    work is done. On other devices each batch is moved when it is reached.
    """
    if device.type != "cuda":
        for batch in batches:
            yield move_to_device(batch, device)
        return
    copies = torch.cuda.Stream(device)
    iterator = iter(batches)
    ahead = _copy(iterator, copies, device)
    while ahead is not None:
        batch, copied = ahead
        ahead = _copy(iterator, copies, device)  # the next batch's copy, queued before this one computes
        compute = torch.cuda.current_stream(device)
        compute.wait_event(copied)
        _used_by(batch, compute)
        yield batch


def _copy(iterator: Iterator[Any], stream: torch.cuda.Stream, device: torch.device) -> tuple[Any, Any] | None:
    """The iterator's next batch copied to ``device`` on ``stream``, and the event that marks the copy done."""
    for batch in iterator:
        with torch.cuda.stream(stream):
            moved = move_to_device(batch, device)
            copied = torch.cuda.Event()
            copied.record(stream)
        return moved, copied
    return None


def _used_by(batch: Any, stream: torch.cuda.Stream) -> None:
    """Tell the caching allocator that ``stream`` uses the batch's tensors (they were allocated on another one)."""
    if isinstance(batch, torch.Tensor):
        if batch.is_cuda:
            batch.record_stream(stream)
    elif isinstance(batch, dict):
        for value in batch.values():
            _used_by(value, stream)
    elif isinstance(batch, (list, tuple)):
        for value in batch:
            _used_by(value, stream)

"""Batches moved to the model's device: in order, with their structure, the next one copied ahead on CUDA."""

from __future__ import annotations

import pytest
import torch

from regimen.trainers.device_batches import batches_on_device, move_to_device

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def sample_batches(count: int, pin: bool = False) -> list[dict]:
    batches = []
    for number in range(count):
        features = torch.full((4, 3), float(number))
        batches.append(
            {
                "features": features.pin_memory() if pin else features,
                "extra": {"ids": [f"i{number}"], "pair": (torch.tensor([number]), 7)},
            }
        )
    return batches


def test_every_tensor_is_moved_and_everything_else_kept_in_order():
    moved = list(batches_on_device(sample_batches(3), torch.device("meta")))
    assert len(moved) == 3
    for number, batch in enumerate(moved):
        assert batch["features"].device.type == "meta" and batch["features"].shape == (4, 3)
        assert batch["extra"]["ids"] == [f"i{number}"]
        pair = batch["extra"]["pair"]
        assert isinstance(pair, tuple) and pair[0].device.type == "meta" and pair[1] == 7


def test_moving_to_the_cpu_keeps_the_very_tensors():
    batch = sample_batches(1)[0]
    assert move_to_device(batch, torch.device("cpu"))["features"] is batch["features"]


@CUDA
def test_on_cuda_the_next_batch_is_copied_before_the_current_one_is_handed_out():
    pulled = []

    def source():
        for number, batch in enumerate(sample_batches(4, pin=True)):
            pulled.append(number)
            yield batch

    device = torch.device("cuda", 0)
    batches = batches_on_device(source(), device)
    first = next(batches)
    assert pulled == [0, 1]  # batch 1 is on its way while batch 0 computes
    values = [first, *batches]
    assert [int(batch["features"][0, 0].item()) for batch in values] == [0, 1, 2, 3]
    assert all(batch["features"].is_cuda and batch["extra"]["pair"][0].is_cuda for batch in values)


def test_a_loaders_batch_keeps_its_indices_on_the_device():
    from regimen.data.collate import IndexedBatch

    batch = IndexedBatch({"features": torch.ones(2, 3), "names": ["a", "b"]}, [7, 3])
    moved = move_to_device(batch, torch.device("meta"))
    assert isinstance(moved, IndexedBatch) and moved.indices == [7, 3] and moved["names"] == ["a", "b"]
    assert moved["features"].device.type == "meta" and batch["features"].device.type == "cpu"


@CUDA
def test_pinned_batches_are_page_locked_and_keep_their_indices():
    from regimen.data.collate import IndexedBatch, pinned

    batch = pinned(IndexedBatch({"features": torch.ones(2, 3), "pair": [torch.zeros(2)]}, [1, 0]))
    assert batch.indices == [1, 0] and batch["features"].is_pinned() and batch["pair"][0].is_pinned()

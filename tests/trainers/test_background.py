"""Writing checkpoints in the background: the snapshot taken for the writer, and the writer's ordering and errors."""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from regimen.registry import Params
from regimen.trainers.background import BackgroundWriter, snapshot
from regimen.trainers.checkpointer import Checkpointer


def test_a_snapshot_is_unchanged_by_later_training_and_keeps_types_and_shared_tensors():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    state = {"model": model.state_dict(), "steps": [1, (2, torch.ones(2))], "name": "run"}
    state["model"]["tied"] = state["model"]["0.weight"]  # two entries for one tensor, as tied weights give
    before = model[0].weight.detach().clone()
    copied = snapshot(state)

    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.add_(1.0)
    state["steps"][1][1].add_(1.0)
    assert torch.equal(copied["model"]["0.weight"], before)
    assert torch.equal(copied["model"]["1.running_mean"], torch.zeros(3))
    assert torch.equal(copied["steps"][1][1], torch.ones(2))
    assert copied["model"]["tied"] is copied["model"]["0.weight"]
    assert type(copied["model"]) is OrderedDict and copied["model"]._metadata == state["model"]._metadata
    assert copied["steps"][0] == 1 and type(copied["steps"][1]) is tuple and copied["name"] == "run"


def test_the_writer_runs_one_write_at_a_time_in_order_and_raises_a_failure_once():
    writer = BackgroundWriter()
    done: list[int] = []
    release = threading.Event()
    writer.submit(lambda: (release.wait(10), done.append(1)), "first")
    assert done == []  # submit returned while the write waits
    release.set()
    writer.submit(lambda: done.append(2), "second")  # waits for the first
    writer.wait()
    assert done == [1, 2]

    writer.submit(lambda: 1 / 0, "best.th")
    with pytest.raises(RuntimeError, match=r"writing best\.th failed: ZeroDivisionError"):
        writer.wait()
    writer.wait()  # raised once

    inline = BackgroundWriter(enabled=False)
    with pytest.raises(ZeroDivisionError):
        inline.submit(lambda: 1 / 0, "best.th")


class BlocksWhilePickled:
    """Pickling it waits for ``release``: a write in the background cannot finish until the test says so."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        if not self.release.wait(10):
            raise TimeoutError("the write was not released")
        return OrderedDict, ()  # unpickles as an empty OrderedDict, which weights_only loading allows


def test_save_checkpoint_returns_before_the_files_are_written_and_writes_the_state_as_it_was(tmp_path):
    checkpointer = Checkpointer.from_params(Params({}), serialization_dir=str(tmp_path))
    weight = torch.zeros(3)
    release = threading.Event()

    class Trainer:
        @contextmanager
        def get_checkpoint_state(self):
            yield {"weight": weight}, {"step": 1, "slow": BlocksWhilePickled(release)}

    checkpointer.save_checkpoint(Trainer(), 1, 0)
    weight.add_(5.0)  # training goes on and changes the weights while the checkpoint is written
    assert sorted(p.name for p in Path(tmp_path).iterdir() if not p.name.startswith(".")) == []
    release.set()
    checkpointer.wait()
    model_state, training_state = checkpointer.load_checkpoint()
    assert torch.equal(model_state["weight"], torch.zeros(3)) and training_state["step"] == 1

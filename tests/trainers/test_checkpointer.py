"""The checkpointer: file names, finding and loading the newest checkpoint, retention, config keys, crash safety."""

from __future__ import annotations

import inspect
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

import regimen.trainers.checkpointer as checkpointer_module
from regimen.registry import ConfigurationError, Params
from regimen.trainers.atomic_files import save_atomically
from regimen.trainers.checkpointer import Checkpointer

ROOT = Path(__file__).resolve().parents[2]
LOGGER = "regimen.trainers.checkpointer"


class StandInTrainer:
    """What the checkpointer needs of a trainer: ``get_checkpoint_state()`` giving real tensors."""

    def __init__(self, step: int = 0, model_state: dict[str, Any] | None = None) -> None:
        self.step = step
        self.model_state = model_state

    @contextmanager
    def get_checkpoint_state(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        model_state = self.model_state or {"weight": torch.full((3, 2), float(self.step))}
        yield model_state, {"version": 1, "step": self.step, "optimizer": {"lr": torch.tensor(0.1 * self.step)}}


def build(directory: Path, config: dict[str, Any] | None = None) -> Checkpointer:
    return Checkpointer.from_params(Params(config or {}, "trainer.checkpointer"), serialization_dir=str(directory))


def save(checkpointer: Checkpointer, *positions: tuple[int, int]) -> None:
    for epochs, batches in positions:
        checkpointer.save_checkpoint(StandInTrainer(step=100 * epochs + batches), epochs, batches)
    checkpointer.wait()


def names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def pair(epochs: int, batches: int) -> list[str]:
    return [f"model_state_e{epochs}_b{batches}.th", f"training_state_e{epochs}_b{batches}.th"]


def pairs(*positions: tuple[int, int]) -> list[str]:
    return sorted(name for position in positions for name in pair(*position))


def age(directory: Path, position: tuple[int, int], seconds: float) -> None:
    """Make a checkpoint's files look written ``seconds`` ago."""
    then = time.time() - seconds
    for name in pair(*position):
        os.utime(directory / name, (then, then))


class Clock:
    """Stands in for the module's ``time``: ``monotonic()`` is set by the test, ``time()`` is real."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.reads = 0

    def monotonic(self) -> float:
        self.reads += 1
        return self.now

    @staticmethod
    def time() -> float:
        return time.time()


class RunsCodeWhenUnpickled:
    """Unpickling this would create ``marker``: what weights_only loading must refuse to do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


# ---- registration and documentation ---------------------------------------------------------------------------
def test_it_is_the_default_checkpointer_with_allennlp_2_defaults(tmp_path):
    checkpointer = build(tmp_path)
    assert type(checkpointer) is Checkpointer and Checkpointer.by_name("default") is Checkpointer
    assert type(Checkpointer.from_params("default", serialization_dir=str(tmp_path))) is Checkpointer
    save(checkpointer, (1, 0), (2, 0), (3, 0))
    assert names(tmp_path) == pairs((2, 0), (3, 0))  # keep_most_recent_by_count = 2


def test_the_docstring_names_the_registration_and_every_key_with_its_default():
    doc = inspect.getdoc(Checkpointer) or ""
    assert 'Registered as a `Checkpointer` with name "default"' in doc
    for name in ("model_state_e{E}_b{B}.th", "training_state_e{E}_b{B}.th", "best.th", "Atomicity"):
        assert name in doc
    for parameter in list(inspect.signature(Checkpointer).parameters.values()):
        if parameter.name == "serialization_dir":
            assert "``serialization_dir``" in doc
            continue
        match = re.search(rf"^\s+{parameter.name}: (?P<type>[^=\n]+?) = (?P<default>.+)$", doc, re.MULTILINE)
        assert match, f"the docstring does not document {parameter.name}"
        assert match["default"] == json.dumps(parameter.default), parameter.name


# ---- saving and loading --------------------------------------------------------------------------------------
@pytest.mark.parametrize("background", [True, False])
def test_a_checkpoint_round_trips_exactly_under_allennlp_2_file_names(tmp_path, background):
    torch.manual_seed(0)
    model_state = {
        "layer.weight": torch.randn(4, 3),
        "layer.bias": torch.randn(3, dtype=torch.float64),
        "embedding": torch.randn(2, 5).to(torch.bfloat16),
        "counts": torch.arange(6, dtype=torch.int64).reshape(2, 3),
    }
    checkpointer = build(tmp_path / "run", {"write_in_background": background})  # the first save makes the directory
    checkpointer.save_checkpoint(StandInTrainer(step=7, model_state=model_state), 3, 12)
    checkpointer.wait()
    assert names(tmp_path / "run") == ["model_state_e3_b12.th", "training_state_e3_b12.th"]
    assert checkpointer.find_latest_checkpoint() == tuple(str(tmp_path / "run" / name) for name in pair(3, 12))

    loaded = checkpointer.load_checkpoint()
    assert loaded is not None
    loaded_model, loaded_training = loaded
    assert loaded_model.keys() == model_state.keys()
    for key, tensor in model_state.items():
        assert loaded_model[key].dtype == tensor.dtype and torch.equal(loaded_model[key], tensor), key
    assert loaded_training["step"] == 7 and torch.equal(loaded_training["optimizer"]["lr"], torch.tensor(0.7))


def test_a_background_save_returns_before_the_disk_has_the_files_and_puts_them_in_place_after(tmp_path, monkeypatch):
    release, real_fsync = threading.Event(), os.fsync

    def slow_fsync(descriptor: int) -> None:  # a slow disk, on the writer thread only
        if threading.current_thread() is not threading.main_thread() and not release.wait(10):
            raise TimeoutError("the test did not release the writer")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    checkpointer = build(tmp_path)
    checkpointer.save_checkpoint(StandInTrainer(step=1), 1, 0)
    assert checkpointer.find_latest_checkpoint() is None  # written, not yet durable, so not yet in place
    release.set()
    checkpointer.wait()
    assert names(tmp_path) == pair(1, 0) and checkpointer.load_checkpoint()[1]["step"] == 1


def test_save_atomically_writes_whole_files(tmp_path):
    save_atomically({"weight": torch.ones(2)}, tmp_path / "best.th")
    save_atomically({"weight": torch.full((2,), 5.0)}, tmp_path / "best.th")  # replaces the old file
    assert names(tmp_path) == ["best.th"]
    assert torch.equal(torch.load(tmp_path / "best.th", weights_only=True)["weight"], torch.full((2,), 5.0))
    save_atomically({"x": torch.arange(3)}, tmp_path / "other.th")  # a PathLike works too
    assert torch.equal(torch.load(str(tmp_path / "other.th"), weights_only=True)["x"], torch.arange(3))
    assert names(tmp_path) == ["best.th", "other.th"]


@pytest.mark.parametrize("links", [True, False])
def test_a_checkpoint_of_the_state_given_as_best_links_its_model_file_to_best_th(tmp_path, monkeypatch, links):
    if not links:  # a file system without hard links: the model file is written as a copy instead

        def no_links(source, target):
            raise PermissionError(1, "Operation not permitted", str(target))

        monkeypatch.setattr(os, "link", no_links)
    checkpointer = build(tmp_path)
    best = {"weight": torch.full((3, 2), 7.0)}
    checkpointer.save_best_model(best)
    checkpointer.save_checkpoint(StandInTrainer(step=7, model_state=best), 1, 0)
    checkpointer.wait()
    model_file = tmp_path / "model_state_e1_b0.th"
    assert os.path.samefile(model_file, tmp_path / "best.th") == links
    assert names(tmp_path) == ["best.th", *pair(1, 0)]  # no temporary file left either way
    assert torch.equal(checkpointer.load_checkpoint()[0]["weight"], best["weight"])

    # An equal state that is not the very object given as best is written as its own file.
    checkpointer.save_checkpoint(StandInTrainer(step=8, model_state={"weight": best["weight"].clone()}), 2, 0)
    checkpointer.wait()
    assert not os.path.samefile(tmp_path / "model_state_e2_b0.th", tmp_path / "best.th")
    # A new best.th replaces the file, not its contents: the older checkpoint keeps its weights.
    checkpointer.save_best_model({"weight": torch.zeros(3, 2)})
    checkpointer.wait()
    assert torch.equal(torch.load(model_file, weights_only=True)["weight"], best["weight"])


@pytest.mark.parametrize("background", [True, False])
def test_a_checkpoint_linked_to_a_best_th_that_failed_is_not_put_in_place(tmp_path, background):
    checkpointer = build(tmp_path, {"write_in_background": background})
    save(checkpointer, (1, 0))
    (tmp_path / "best.th").mkdir()  # best.th cannot be put in place: the checkpoint of its weights must not be either
    best = {"weight": torch.ones(3, 2)}
    with pytest.raises(Exception, match=r"best\.th"):  # at the save or at the wait, in the background or not
        checkpointer.save_best_model(best)
        checkpointer.save_checkpoint(StandInTrainer(model_state=best), 2, 0)
        checkpointer.wait()
    checkpointer.wait()
    assert names(tmp_path) == ["best.th", *pair(1, 0)]  # no second checkpoint and no temporary file


@pytest.mark.parametrize("background", [True, False])
def test_a_save_that_fails_midway_leaves_no_files_and_the_previous_checkpoint_intact(tmp_path, background):
    checkpointer = build(tmp_path, {"write_in_background": background})
    save(checkpointer, (1, 0))
    with pytest.raises(Exception, match=r"lambda|pickle"):  # written before save_checkpoint returns, either way
        checkpointer.save_checkpoint(StandInTrainer(model_state={"function": lambda: 0}), 2, 0)
    checkpointer.wait()
    assert names(tmp_path) == pair(1, 0)
    loaded = checkpointer.load_checkpoint()
    assert loaded is not None and loaded[1]["step"] == 100


def test_with_no_checkpoints_there_is_nothing_to_load(tmp_path):
    assert build(tmp_path / "missing").load_checkpoint() is None
    assert build(tmp_path).find_latest_checkpoint() is None and build(tmp_path).load_checkpoint() is None


# ---- finding the newest checkpoint ----------------------------------------------------------------------------
def test_the_newest_checkpoint_is_ordered_by_epoch_and_batch_as_numbers(tmp_path):
    checkpointer = build(tmp_path, {"keep_most_recent_by_count": None})
    save(checkpointer, (2, 10), (2, 9))  # "e2_b9" sorts after "e2_b10" as a string
    age(tmp_path, (2, 10), 1000)  # and the newest by modification time is e2_b9
    assert checkpointer.find_latest_checkpoint() == tuple(str(tmp_path / name) for name in pair(2, 10))
    save(checkpointer, (10, 0), (9, 3))  # "e9" sorts after "e10"
    assert checkpointer.find_latest_checkpoint()[0] == str(tmp_path / "model_state_e10_b0.th")
    loaded = checkpointer.load_checkpoint()
    assert loaded is not None and loaded[1]["step"] == 1000


def test_a_model_file_without_its_training_state_and_the_reverse_are_never_used(tmp_path):
    checkpointer = build(tmp_path)
    save(checkpointer, (1, 0))
    torch.save({"weight": torch.zeros(1)}, tmp_path / "model_state_e2_b0.th")
    torch.save({"step": 300}, tmp_path / "training_state_e3_b0.th")
    assert checkpointer.find_latest_checkpoint()[0] == str(tmp_path / "model_state_e1_b0.th")
    loaded = checkpointer.load_checkpoint()
    assert loaded is not None and loaded[1]["step"] == 100
    save(checkpointer, (1, 5))  # the incomplete checkpoints are deleted at the next save
    assert names(tmp_path) == pairs((1, 0), (1, 5))


def test_temporary_files_never_look_like_checkpoints_and_stale_ones_go_at_the_next_save(tmp_path):
    checkpointer = build(tmp_path)
    stale = [
        ".model_state_e9_b0.th.0123456789abcdef.tmp",
        ".training_state_e9_b0.th.0123456789abcdef.tmp",
        ".best.th.fedcba9876543210.tmp",
    ]
    for name in stale:
        torch.save({"weight": torch.zeros(1), "step": 900}, tmp_path / name)  # whole files, even
    other = tmp_path / ".metrics.json.abc123.tmp"  # someone else's temporary file is left alone
    other.write_text("{}")
    assert checkpointer.find_latest_checkpoint() is None and checkpointer.load_checkpoint() is None
    save(checkpointer, (1, 0))
    assert names(tmp_path) == sorted([other.name, *pair(1, 0)])


def test_the_first_save_removes_leftovers_without_waiting_for_a_best_th_still_being_written(tmp_path, monkeypatch):
    release, real_fsync = threading.Event(), os.fsync

    def slow_fsync(descriptor: int) -> None:  # best.th's write stays under way on the writer thread
        if threading.current_thread() is not threading.main_thread() and not release.wait(10):
            raise TimeoutError("the test did not release the writer")
        real_fsync(descriptor)

    leftover = tmp_path / ".model_state_e9_b0.th.0123456789abcdef.tmp"  # an interrupted process's
    torch.save({"weight": torch.zeros(1)}, leftover)
    monkeypatch.setattr(os, "fsync", slow_fsync)
    checkpointer = build(tmp_path)
    best = {"weight": torch.ones(3, 2)}
    checkpointer.save_best_model(best)
    started = time.monotonic()
    checkpointer.save_checkpoint(StandInTrainer(step=1, model_state=best), 1, 0)
    assert time.monotonic() - started < 5  # it did not wait for the writer (which waits up to 10 s)
    assert not leftover.exists()
    assert [name for name in names(tmp_path) if name.startswith(".best.th.")], "best.th's own temporary file is kept"
    release.set()
    checkpointer.wait()
    assert names(tmp_path) == sorted(["best.th", *pair(1, 0)])
    assert torch.equal(checkpointer.load_checkpoint()[0]["weight"], best["weight"])


# ---- corrupt checkpoints ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncate the model state", "garbage training state"])
def test_an_unloadable_newest_checkpoint_falls_back_to_the_previous_one_with_an_error(tmp_path, caplog, damage):
    checkpointer = build(tmp_path)
    save(checkpointer, (1, 0), (2, 0))
    if damage == "truncate the model state":
        broken = tmp_path / "model_state_e2_b0.th"
        broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    else:
        broken = tmp_path / "training_state_e2_b0.th"
        broken.write_bytes(os.urandom(500))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        loaded = checkpointer.load_checkpoint()
    assert loaded is not None and loaded[1]["step"] == 100
    assert torch.equal(loaded[0]["weight"], torch.full((3, 2), 100.0))
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1 and str(broken) in errors[0].getMessage()
    # The resumed run's next save replaces the unloadable checkpoint as the newest: it is deleted.
    save(checkpointer, (1, 4))
    assert names(tmp_path) == pairs((1, 0), (1, 4))


def test_when_no_checkpoint_loads_restoring_raises_naming_them(tmp_path, caplog):
    checkpointer = build(tmp_path)
    save(checkpointer, (1, 0), (2, 0))
    for name in ("model_state_e1_b0.th", "training_state_e2_b0.th"):
        (tmp_path / name).write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(ConfigurationError) as error:
        checkpointer.load_checkpoint()
    message = str(error.value)
    assert "none of the 2 checkpoints" in message
    assert "training_state_e2_b0.th" in message and "model_state_e1_b0.th" in message
    assert len(caplog.records) == 2


def test_loading_refuses_pickled_objects_instead_of_running_them(tmp_path, caplog):
    marker = tmp_path / "code-ran"
    checkpointer = build(tmp_path / "run")
    save(checkpointer, (1, 0), (2, 0))
    torch.save({"weight": RunsCodeWhenUnpickled(marker)}, tmp_path / "run" / "model_state_e2_b0.th")
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        loaded = checkpointer.load_checkpoint()
    assert loaded is not None and loaded[1]["step"] == 100
    assert "model_state_e2_b0.th" in caplog.text and not marker.exists()

    only = build(tmp_path / "alone")
    save(only, (1, 0))
    torch.save({"step": RunsCodeWhenUnpickled(marker)}, tmp_path / "alone" / "training_state_e1_b0.th")
    with pytest.raises(ConfigurationError, match=r"training_state_e1_b0\.th"):
        only.load_checkpoint()
    assert not marker.exists()


# ---- retention ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [1, 3])
def test_retention_by_count_keeps_exactly_the_newest(tmp_path, count):
    checkpointer = build(tmp_path, {"keep_most_recent_by_count": count, "save_every_num_batches": 2})
    positions = [(0, 2), (0, 4), (1, 0), (1, 2), (1, 4), (2, 0)]
    for step, position in enumerate(positions):
        save(checkpointer, position)
        assert names(tmp_path) == pairs(*positions[max(0, step + 1 - count) : step + 1])


def test_retention_never_deletes_the_checkpoint_a_run_resumes_from(tmp_path):
    checkpointer = build(tmp_path, {"keep_most_recent_by_count": 1})
    save(checkpointer, (5, 0))
    save(checkpointer, (1, 0))  # written last, but (5, 0) is the newest: both stay
    assert names(tmp_path) == pairs((1, 0), (5, 0))
    by_age = build(tmp_path, {"keep_most_recent_by_count": None, "keep_most_recent_by_age": 60})
    age(tmp_path, (5, 0), 3600)
    age(tmp_path, (1, 0), 3600)
    save(by_age, (2, 0))  # (5, 0) is too old for the age rule, and the newest
    assert names(tmp_path) == pairs((2, 0), (5, 0))


def test_retention_by_age_keeps_checkpoints_younger_than_the_age(tmp_path):
    checkpointer = build(tmp_path, {"keep_most_recent_by_count": None, "keep_most_recent_by_age": 60})
    save(checkpointer, (1, 0), (2, 0), (3, 0))
    age(tmp_path, (1, 0), 3600)
    age(tmp_path, (3, 0), 3600)
    save(checkpointer, (4, 0))
    assert names(tmp_path) == pairs((2, 0), (4, 0))


def test_count_and_age_together_keep_what_either_keeps_and_both_null_keep_all(tmp_path):
    checkpointer = build(tmp_path / "both", {"keep_most_recent_by_count": 1, "keep_most_recent_by_age": 60})
    save(checkpointer, (1, 0), (2, 0), (3, 0))  # all young: all kept
    assert names(tmp_path / "both") == pairs((1, 0), (2, 0), (3, 0))
    age(tmp_path / "both", (1, 0), 3600)
    age(tmp_path / "both", (3, 0), 3600)
    save(checkpointer, (4, 0))  # (2, 0) by age, (4, 0) by count
    assert names(tmp_path / "both") == pairs((2, 0), (4, 0))

    everything = build(tmp_path / "all", {"keep_most_recent_by_count": None})
    save(everything, (1, 0), (2, 0), (3, 0), (4, 0))
    assert len(names(tmp_path / "all")) == 8


# ---- config keys -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "config, expected",
    [
        ({"num_serialized_models_to_keep": 5}, {"_keep_most_recent_by_count": 5}),
        ({"num_serialized_models_to_keep": -1}, {"_keep_most_recent_by_count": None}),
        ({"num_serialized_models_to_keep": 0}, {"_keep_most_recent_by_count": 1}),
        ({"keep_serialized_model_every_num_seconds": 3600}, {"_keep_most_recent_by_age": 3600}),
        ({"model_save_interval": 900.0}, {"_save_every_num_seconds": 900.0}),
    ],
)
def test_allennlp_1_keys_are_read_with_one_deprecation_warning_each(tmp_path, caplog, config, expected):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        checkpointer = build(tmp_path, config)
    for attribute, value in expected.items():
        assert getattr(checkpointer, attribute) == value
    [record] = caplog.records
    (old,) = config
    assert record.levelno == logging.WARNING and f'"{old}" is deprecated' in record.getMessage()


def test_a_negative_num_serialized_models_to_keep_keeps_every_checkpoint_as_in_allennlp(tmp_path):
    checkpointer = build(tmp_path, {"num_serialized_models_to_keep": -1})
    save(checkpointer, (1, 0), (2, 0), (3, 0))
    assert names(tmp_path) == pairs((1, 0), (2, 0), (3, 0))


@pytest.mark.parametrize(
    "old, new, value",
    [
        ("num_serialized_models_to_keep", "keep_most_recent_by_count", 2),  # even the default's value, written
        ("num_serialized_models_to_keep", "keep_most_recent_by_count", None),
        ("keep_serialized_model_every_num_seconds", "keep_most_recent_by_age", 60),
        ("model_save_interval", "save_every_num_seconds", 60.0),
    ],
)
def test_an_allennlp_1_key_with_its_replacement_is_an_error_naming_both(tmp_path, old, new, value):
    with pytest.raises(ConfigurationError) as error:
        build(tmp_path, {old: 10, new: value})
    assert str(error.value) == (
        f'trainer.checkpointer.{old}: "{old}" is AllenNLP 1.x\'s spelling of "{new}", and both are given; '
        f'keep only "{new}"'
    )


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("save_every_num_batches", 0, "expected a positive number of batches, got 0"),
        ("save_every_num_seconds", -1.0, "expected a positive number of seconds, got -1.0"),
        ("keep_most_recent_by_count", 0, "expected at least 1 (null keeps every checkpoint), got 0"),
        ("keep_most_recent_by_age", 0, "expected a positive number of seconds (null keeps checkpoints of any age)"),
        ("model_save_interval", 0, "expected a positive number of seconds, got 0.0"),
        ("keep_serialized_model_every_num_seconds", -5, "expected a positive number of seconds (null keeps"),
    ],
)
def test_invalid_values_are_configuration_errors_at_their_key(tmp_path, key, value, expected):
    with pytest.raises(ConfigurationError) as error:
        build(tmp_path, {key: value})
    assert error.value.path == f"trainer.checkpointer.{key}"
    assert expected in str(error.value)


def test_several_mistakes_are_reported_together(tmp_path):
    with pytest.raises(ConfigurationError) as error:
        build(tmp_path, {"save_every_num_batches": -2, "keep_most_recent_by_count": 0})
    assert [leaf.path for leaf in error.value.errors] == [
        "trainer.checkpointer.save_every_num_batches",
        "trainer.checkpointer.keep_most_recent_by_count",
    ]


# ---- when to save -------------------------------------------------------------------------------------------------
def test_saves_every_n_batches_and_at_epoch_ends(tmp_path):
    checkpointer = build(tmp_path, {"save_every_num_batches": 3, "keep_most_recent_by_count": None})
    trainer = StandInTrainer()
    saved = [b for b in range(1, 8) if checkpointer.maybe_save_checkpoint(trainer, 0, b)]
    assert saved == [3, 6]
    assert checkpointer.maybe_save_checkpoint(trainer, 1, 0)
    checkpointer.wait()
    assert names(tmp_path) == pairs((0, 3), (0, 6), (1, 0))


def test_no_epoch_end_checkpoint_without_save_completed_epochs_and_no_clock_or_files_when_not_due(
    tmp_path, monkeypatch
):
    clock = Clock(0.0)
    monkeypatch.setattr(checkpointer_module, "time", clock)
    checkpointer = build(tmp_path / "run", {"save_completed_epochs": False})
    trainer = StandInTrainer()
    assert not any(checkpointer.maybe_save_checkpoint(trainer, epoch, b) for epoch in range(3) for b in range(5))
    assert clock.reads == 0 and not (tmp_path / "run").exists()


def test_saves_when_the_seconds_have_passed_since_the_last_save(tmp_path, monkeypatch):
    clock = Clock(1000.0)
    monkeypatch.setattr(checkpointer_module, "time", clock)
    checkpointer = build(
        tmp_path, {"save_every_num_seconds": 10, "save_every_num_batches": 50, "keep_most_recent_by_count": None}
    )
    trainer = StandInTrainer()
    decisions = []
    # (now, batches): the clock starts at the first batch; a batch-count save restarts it too.
    for now, batches in [(1000, 1), (1009.9, 2), (1010, 3), (1015, 4), (1019, 50), (1025, 51), (1029, 52)]:
        clock.now = now
        decisions.append(checkpointer.maybe_save_checkpoint(trainer, 0, batches))
    assert decisions == [False, False, True, False, True, False, True]
    checkpointer.wait()
    assert names(tmp_path) == pairs((0, 3), (0, 50), (0, 52))
    assert clock.reads == 6 + 3  # one read per call not due by batches, and one after each of the 3 saves

    # After a restore the clock restarts: the time a run spent stopped does not make a save due.
    checkpointer.load_state_dict(checkpointer.state_dict())
    clock.now = 10**6
    assert not checkpointer.maybe_save_checkpoint(trainer, 0, 53)
    clock.now += 10
    assert checkpointer.maybe_save_checkpoint(trainer, 0, 54)


def test_the_state_dict_is_versioned(tmp_path):
    checkpointer = build(tmp_path)
    assert checkpointer.state_dict() == {"version": 1}
    with pytest.raises(RuntimeError, match="version 2 is newer"):
        checkpointer.load_state_dict({"version": 2})


# ---- crash safety --------------------------------------------------------------------------------------------------
CRASHING_RUN = r"""
import contextlib, sys
import torch
from regimen.trainers.checkpointer import Checkpointer

sys.stdin.readline()  # started ahead of its turn, so importing torch overlaps the previous run
checkpointer = Checkpointer(sys.argv[1])
loaded = checkpointer.load_checkpoint()
step = 0 if loaded is None else loaded[1]["step"]

class Trainer:
    @contextlib.contextmanager
    def get_checkpoint_state(self):
        yield {"weight": torch.full((5_000_000,), float(step))}, {"step": step}  # 20 MB

print("saving", flush=True)
while True:
    step += 1
    checkpointer.save_checkpoint(Trainer(), step, 0)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_run_killed_at_any_moment_leaves_a_complete_loadable_checkpoint(tmp_path, caplog):
    rng = random.Random(1234)
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        command = [sys.executable, "-c", CRASHING_RUN, str(tmp_path)]
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
        processes.append(subprocess.Popen(command, **pipes, env=environment, text=True))
        return processes[-1]

    checkpointer = build(tmp_path)
    try:
        upcoming = start()
        for kill in range(5):
            process, upcoming = upcoming, start() if kill < 4 else None
            process.stdin.write("go\n")
            process.stdin.flush()
            assert process.stdout.readline() == "saving\n"
            time.sleep(rng.uniform(0.0, 0.3))
            process.send_signal(signal.SIGKILL)
            assert process.wait() == -signal.SIGKILL

            with caplog.at_level(logging.ERROR, logger=LOGGER):
                loaded = checkpointer.load_checkpoint()
            assert not caplog.records, caplog.text  # the newest complete checkpoint always loads, first time
            latest = checkpointer.find_latest_checkpoint()
            if loaded is None:
                assert latest is None
                continue
            model_state, training_state = loaded
            step = training_state["step"]
            assert latest[0] == str(tmp_path / f"model_state_e{step}_b0.th")
            assert model_state["weight"].shape == (5_000_000,)
            assert torch.equal(model_state["weight"], torch.full((5_000_000,), float(step)))
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
            process.stdin.close()
            process.stdout.close()

    save(checkpointer, (10**6, 0))  # leftovers of the killed runs are cleaned up by the next save
    leftovers = [name for name in names(tmp_path) if not re.fullmatch(r"(model|training)_state_e\d+_b0\.th", name)]
    assert leftovers == []

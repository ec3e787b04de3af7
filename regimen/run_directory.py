"""The serialization directory of a run: when it may be used, replaced or resumed, and the files describing the run."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from regimen.models.archival import CONFIG_NAME, META_NAME
from regimen.registry import ConfigurationError, Params
from regimen.registry.params import write_json_atomically
from regimen.trainers.preemption import TrainingPreempted

logger = logging.getLogger(__name__)

LOG_NAME = "out.log"
METRICS_NAME = "metrics.json"
# Raising these continues a finished run on --recover; every other change is refused.
EXTENDABLE_KEYS = ("trainer.num_epochs", "trainer.num_steps")


def check_run_directory(directory: Path, params: Params, recover: bool, force: bool) -> None:
    """Raise ConfigurationError unless ``directory`` may be used as asked; changes nothing on disk.

    A new or empty directory is fine. A non-empty one needs ``force`` (it is replaced) or ``recover`` (it must
    hold a ``config.json`` equal to ``params``, except for a raised epoch or step budget).
    """
    if recover and force:
        raise ConfigurationError("--recover and --force contradict each other: resume the run or replace it")
    exists = directory.exists()
    if exists and not directory.is_dir():
        raise ConfigurationError(f"serialization directory {directory} is a file")
    if recover:
        if not (directory / CONFIG_NAME).is_file():
            if exists and any(directory.iterdir()):  # leaving out --recover would be refused too: say what works
                raise ConfigurationError(
                    f"--recover: {directory} is not empty but holds no {CONFIG_NAME}, so it is no run to recover: "
                    "use --force to replace it with a new run, or choose another directory"
                )
            raise ConfigurationError(
                f"--recover: {directory} {'is empty' if exists else 'does not exist'}, so there is no run to "
                "recover; leave out --recover to start one"
            )
        previous = Params.from_file(directory / CONFIG_NAME).as_dict()
        current = params.as_dict()
        # The workers may change (a 2-GPU run continued on 4, or in one process); the experiment may not.
        before, after = previous.pop("distributed", None), current.pop("distributed", None)
        differences = config_differences(previous, current)
        if not differences and before != after:
            logger.warning(
                "--recover: the distributed block changed (%s -> %s): the run continues correctly from its "
                "checkpoint, but only the same number of workers continues it bit-exactly",
                json.dumps(before),
                json.dumps(after),
            )
        if differences:
            listed = "\n".join(f"  {line}" for line in differences)
            raise ConfigurationError(
                f"--recover: the config differs from the one {directory} was started with:\n{listed}\n"
                "Only raising trainer.num_epochs or trainer.num_steps may change on recovery. Start a new run in "
                "another directory, or use --force to discard this one."
            )
        return
    if exists and any(directory.iterdir()) and not force:
        raise ConfigurationError(
            f"serialization directory {directory} already exists and is not empty: use --recover to continue "
            "the run in it, --force to replace it, or choose another directory"
        )


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``path: old -> new`` for each value that differs, leaving out raised epoch or step budgets. Objects (and
    lists of one length) are compared key by key; a subtree replaced by something else is one line."""
    lines = []
    for key in sorted(set(old) | set(new), key=str):
        path = f"{prefix}{key}"
        before, after = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
            before, after = dict(enumerate(before)), dict(enumerate(after))
        if isinstance(before, dict) and isinstance(after, dict):
            lines += config_differences(before, after, f"{path}.")
        elif before != after and not (path in EXTENDABLE_KEYS and _raised(before, after)):
            lines.append(f"{path}: {_show(before)} -> {_show(after)}")
    return lines


_ABSENT = object()


def _raised(before: Any, after: Any) -> bool:
    if after is _ABSENT or isinstance(after, bool) or not isinstance(after, int):
        return False
    return before is _ABSENT or before is None or (isinstance(before, int) and after >= before)


def _show(value: Any) -> str:
    return "(absent)" if value is _ABSENT else json.dumps(value)


def prepare_run_directory(directory: Path, params: Params, recover: bool, force: bool) -> None:
    """Make ``directory`` ready: replace it with ``force``, create it, write ``config.json`` and ``meta.json``."""
    if force and directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    params.to_file(directory / CONFIG_NAME)
    meta_path = directory / META_NAME
    invocation = {"command": ["regimen", *sys.argv[1:]], "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if recover and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        meta.setdefault("recoveries", []).append(invocation)
    else:
        meta = {
            "regimen_version": _regimen_version(),
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "hostname": platform.node(),
            **invocation,
        }
    write_json_atomically(meta_path, meta)


def _regimen_version() -> str:
    from regimen import __version__

    return __version__


@contextmanager
def outcome_recorded(directory: Path, enabled: bool = True) -> Iterator[None]:
    """Keep how this invocation is going in ``meta.json``'s ``outcome``, for ``print-results``: ``running`` (with
    the host and process id) while the context is open, then ``finished``, ``preempted`` (stopped by a signal,
    recoverable) or ``failed`` with the error's first line."""
    if not enabled:
        yield
        return
    _set_outcome(directory, {"status": "running", "host": platform.node(), "pid": os.getpid()})
    try:
        yield
    except TrainingPreempted:
        _set_outcome(directory, {"status": "preempted"})
        raise
    except BaseException as error:
        first_line = (str(error).strip().splitlines() or [""])[0]
        _set_outcome(directory, {"status": "failed", "error": f"{type(error).__name__}: {first_line}".strip(": ")})
        raise
    _set_outcome(directory, {"status": "finished"})


def _set_outcome(directory: Path, outcome: dict[str, Any]) -> None:
    meta_path = directory / META_NAME
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    meta["outcome"] = {**outcome, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json_atomically(meta_path, meta)


class EarlyRecords(logging.handlers.BufferingHandler):
    """Keeps the log records of a command from its first line until its run's ``out.log`` exists (see
    `early_records`); `logging_to` writes them there first."""

    def shouldFlush(self, record: logging.LogRecord) -> bool:
        return False  # kept until out.log takes them (the first 100,000 at most)

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.buffer) < 100_000:
            self.buffer.append(record)


@contextmanager
def early_records() -> Iterator[None]:
    """While open, the root logger's records are kept for the out.log of a run that has no directory yet."""
    handler = EarlyRecords(capacity=0)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


@contextmanager
def logging_to(path: Path) -> Iterator[None]:
    """Copy every log record to ``path`` (appending) while the context is open. An exception leaving the context
    (a crash, not a pre-emption stop) is written there with its traceback too, so the file tells how the run
    ended; the console gets it from the command."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for early in [h for h in root.handlers if isinstance(h, EarlyRecords)]:  # the command's lines before this
        for record in early.buffer:
            handler.handle(record)
        early.buffer.clear()
        root.removeHandler(early)
    root.addHandler(handler)
    try:
        yield
    except Exception as error:
        if not isinstance(error, TrainingPreempted):
            where = getattr(error, "regimen_where", None)
            message = f"the run failed at {where}: %s" if where else "the run failed: %s"
            record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, message, (error,), sys.exc_info())
            handler.handle(record)  # to the file only
        raise
    finally:
        root.removeHandler(handler)
        handler.close()

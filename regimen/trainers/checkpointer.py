"""Checkpointer: when to save training checkpoints, how to write them so a crash cannot break them, which to keep."""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from regimen.registry import ConfigurationError, Registrable
from regimen.trainers.atomic_files import (
    BackgroundWriter,
    link_temporary,
    made_here,
    put_directory_in_place,
    put_in_place,
    saving,
    write_temporary,
)
from regimen.trainers.sharded_state import is_sharded_checkpoint, save_sharded

if TYPE_CHECKING:
    from regimen.trainers.trainer import Trainer

logger = logging.getLogger(__name__)

# ``model_state_e3_b0.th``: 3 epochs completed, 0 batches into the next one. Anchored, so temporary files
# (``.model_state_e3_b0.th.<hex>.tmp``) never match.
# A sharded checkpoint's model state is a directory, ``model_state_e3_b0.dcp``.
_CHECKPOINT_NAME = re.compile(r"^(model_state|training_state)_e(\d+)_b(\d+)\.(?:th|dcp)$")
# What `write_temporary` leaves behind when the process is killed mid-write (only ``.th`` and ``.dcp`` targets),
# and the directory the workers write a sharded checkpoint into.
_TEMPORARY_NAME = re.compile(r"^\..+\.(th|dcp)\.[0-9a-f]{16}\.tmp$|^\..+\.dcp\.shards\.tmp$")

BEST_NAME = "best.th"  # the best model's state, in the serialization directory
_Position = tuple[int, int]  # (epochs completed, batches into the next epoch)


class _Default(int):
    """An int default that ``is`` can tell apart from the same number written in a config.

    Lets the constructor see whether ``keep_most_recent_by_count`` was given along with its AllenNLP 1.x
    spelling, while the signature (and the documentation read from it) still says ``2``.
    """


_KEEP_TWO = _Default(2)


# ---- the checkpointer ------------------------------------------------------------------------------------------
class Checkpointer(Registrable):
    """Saves the model and training state during training, restores the newest one, and prunes old ones.

    Registered as a `Checkpointer` with name "default" (the default when the trainer's ``checkpointer`` config
    has no ``type``).

    Files, in the serialization directory, named as AllenNLP 2.x names them:
    ``model_state_e{E}_b{B}.th`` and ``training_state_e{E}_b{B}.th``, a checkpoint taken after ``E`` completed
    epochs and ``B`` batches into the next one (``B`` is 0 at an epoch's end), and ``best.th``, the best model's
    state. A checkpoint is complete when both of its files exist; an incomplete one is never used, and is
    deleted at the next save. The newest checkpoint is the complete one with the highest ``(E, B)``, compared
    as numbers. When a checkpoint holds the same weights as ``best.th`` (one saved at the end of an epoch that
    was the best so far), its model-state file is a hard link to ``best.th``: one copy on disk, written once.
    regimen only ever replaces files (rename), never writes into them; a tool that rewrites ``best.th`` in place
    would change that checkpoint too.

    Atomicity: every file is written to a temporary file in the same directory, fsynced, renamed into place and
    the directory fsynced (`regimen.trainers.atomic_files`). The training state is renamed into place before
    the model state and, when pruning, the model state is deleted before the training state, so a model file
    always has its training-state twin. A process killed at any moment, in the middle of a write included,
    leaves every checkpoint written before intact and loadable; the temporary files it leaves never look like
    checkpoints and are deleted at the next save. Old checkpoints are pruned only after the new one is
    completely written.

    Restoring (`load_checkpoint`) loads with ``weights_only=True`` (tensors and plain containers only, never
    arbitrary pickled code). A newest checkpoint that cannot be loaded is logged as an error and the next older
    one is used; it is deleted at the next save unless that save rewrites it. If checkpoints exist and none can
    be loaded, restoring raises a RuntimeError rather than starting afresh.

    Config keys:
        save_completed_epochs: bool = true
            Save a checkpoint at the end of every epoch.
        save_every_num_epochs: int | null = null
            With save_completed_epochs, save at the end of every this many epochs only (1 is every epoch).
        save_every_num_batches: int | null = null
            Also save after every this many batches within an epoch, counted from the epoch's start
            (AllenNLP's meaning: batches, not optimizer steps, and the count restarts each epoch).
        save_every_num_steps: int | null = null
            Also save after every this many optimizer steps of the whole run (the count goes on across epochs,
            as autrainer's save_frequency in step-based training).
        save_every_num_seconds: float | null = null
            Also save when this many seconds have passed since the last save (measured in this process: the
            clock starts at the first batch and restarts at every save and after a restore).
        keep_most_recent_by_count: int | null = 2
            Keep the newest this many checkpoints.
        keep_most_recent_by_age: int | null = null
            Keep the checkpoints written (by their files' modification time) less than this many seconds ago.
            A checkpoint is kept when either rule keeps it; with both null every checkpoint is kept. The newest
            checkpoint, the one a run resumes from, is always kept.
        num_serialized_models_to_keep: int | null = null
            AllenNLP 1.x's name for keep_most_recent_by_count (deprecated; logs a warning). A negative value
            keeps every checkpoint, as in AllenNLP; 0 keeps only the newest (AllenNLP 1.x deleted each checkpoint
            right after writing it; regimen always keeps the one a run resumes from).
        keep_serialized_model_every_num_seconds: int | null = null
            AllenNLP 1.x's key (deprecated; logs a warning), read as keep_most_recent_by_age with the same
            number of seconds. This is not what AllenNLP 1.x did: it kept one checkpoint per that many seconds
            for the whole run, while keep_most_recent_by_age keeps every checkpoint younger than that and
            deletes older ones beyond keep_most_recent_by_count.
        model_save_interval: float | null = null
            AllenNLP 1.x's name for save_every_num_seconds (deprecated; logs a warning).
        write_in_background: bool = true
            Write a checkpoint's files before training goes on, then make them durable (fsync, which waits for
            the disk) and rename them into place on a background thread while training goes on; ``best.th``,
            written from the trainer's copy of the best weights, is written on that thread too. Saves are put
            in place one at a time, in order (a save waits only when four are still under way), and training
            waits for all of them before it ends or stops on a signal; when one fails, the saves after it are
            dropped and training stops with the error. False does it all before training goes on. The files,
            their crash safety and the memory used are the same either way.
    Giving an AllenNLP 1.x key together with its replacement is an error.

    Given by the trainer, not written in the config: ``serialization_dir`` (the directory of the run).
    """

    default_implementation = "default"

    def __init__(
        self,
        serialization_dir: str,
        save_completed_epochs: bool = True,
        save_every_num_batches: int | None = None,
        save_every_num_seconds: float | None = None,
        save_every_num_epochs: int | None = None,
        save_every_num_steps: int | None = None,
        keep_most_recent_by_count: int | None = _KEEP_TWO,
        keep_most_recent_by_age: int | None = None,
        num_serialized_models_to_keep: int | None = None,
        keep_serialized_model_every_num_seconds: int | None = None,
        model_save_interval: float | None = None,
        write_in_background: bool = True,
    ) -> None:
        errors: list[ConfigurationError] = []
        # [key as written, value] for each setting, so an invalid value is reported under the key the user wrote.
        by_count = ["keep_most_recent_by_count", keep_most_recent_by_count]
        by_age = ["keep_most_recent_by_age", keep_most_recent_by_age]
        every_seconds = ["save_every_num_seconds", save_every_num_seconds]
        if num_serialized_models_to_keep is not None:
            if keep_most_recent_by_count is not _KEEP_TWO:
                errors.append(_both("num_serialized_models_to_keep", "keep_most_recent_by_count"))
            else:
                count = num_serialized_models_to_keep
                by_count = ["num_serialized_models_to_keep", None if count < 0 else max(count, 1)]
                _deprecated("num_serialized_models_to_keep", "keep_most_recent_by_count", by_count[1])
        if keep_serialized_model_every_num_seconds is not None:
            if keep_most_recent_by_age is not None:
                errors.append(_both("keep_serialized_model_every_num_seconds", "keep_most_recent_by_age"))
            else:
                by_age = ["keep_serialized_model_every_num_seconds", keep_serialized_model_every_num_seconds]
                _deprecated(
                    "keep_serialized_model_every_num_seconds",
                    "keep_most_recent_by_age",
                    by_age[1],
                    "; unlike AllenNLP 1.x, which kept one checkpoint per that many seconds for the whole run, "
                    "checkpoints older than that are deleted beyond keep_most_recent_by_count",
                )
        if model_save_interval is not None:
            if save_every_num_seconds is not None:
                errors.append(_both("model_save_interval", "save_every_num_seconds"))
            else:
                every_seconds = ["model_save_interval", model_save_interval]
                _deprecated("model_save_interval", "save_every_num_seconds", model_save_interval)
        for (key, value), what in (
            (("save_every_num_batches", save_every_num_batches), "a positive number of batches"),
            (("save_every_num_epochs", save_every_num_epochs), "a positive number of epochs"),
            (("save_every_num_steps", save_every_num_steps), "a positive number of optimizer steps"),
            (every_seconds, "a positive number of seconds"),
            (by_count, "at least 1 (null keeps every checkpoint)"),
            (by_age, "a positive number of seconds (null keeps checkpoints of any age)"),
        ):
            if value is not None and value <= 0:
                errors.append(ConfigurationError(f"expected {what}, got {value}", key=key))
        if errors:
            raise ConfigurationError.combine(errors)

        self._serialization_dir = serialization_dir
        self._save_completed_epochs = save_completed_epochs
        self._save_every_num_batches = save_every_num_batches
        self._save_every_num_epochs = save_every_num_epochs
        self._save_every_num_steps = save_every_num_steps
        self._save_every_num_seconds = every_seconds[1]
        self._keep_most_recent_by_count = None if by_count[1] is None else int(by_count[1])
        self._keep_most_recent_by_age = by_age[1]
        # time.monotonic() of the last save; None until the first batch, so building the trainer and reading
        # the data do not count towards save_every_num_seconds.
        self._last_save_time: float | None = None
        # Checkpoints that failed to load in this process: deleted at the next save (unless it rewrites them).
        self._unloadable: set[_Position] = set()
        self._writer = BackgroundWriter(write_in_background)
        self._best_state: dict[str, Any] | None = None  # what best.th holds, as given to save_best_model
        self._cleaned = False  # whether leftovers of an interrupted process were removed (at the first save)

    # ---- saving ------------------------------------------------------------------------------------------------
    def is_due(
        self, num_batches_in_epoch_completed: int, by_clock: bool = True, step: int = 0, epochs_completed: int = 0
    ) -> bool:
        """Whether a checkpoint is due now: after optimizer step ``step`` of the run
        (``num_batches_in_epoch_completed`` > 0) or at the end of epoch ``epochs_completed`` (0 batches). Costs a
        few comparisons, and one clock read with ``save_every_num_seconds`` (skipped with ``by_clock`` false:
        then only the rules that every worker of a run decides alike count)."""
        batches = num_batches_in_epoch_completed
        if batches == 0:
            every_epochs = self._save_every_num_epochs
            due = self._save_completed_epochs and (every_epochs is None or epochs_completed % every_epochs == 0)
        else:
            every, every_steps = self._save_every_num_batches, self._save_every_num_steps
            due = (every is not None and batches % every == 0) or (every_steps is not None and step % every_steps == 0)
        if not due and by_clock and self._save_every_num_seconds is not None:
            now = time.monotonic()
            if self._last_save_time is None:
                self._last_save_time = now
            due = now - self._last_save_time >= self._save_every_num_seconds
        return due

    def maybe_save_checkpoint(
        self, trainer: Trainer, num_epochs_completed: int, num_batches_in_epoch_completed: int
    ) -> bool:
        """Save a checkpoint if one ``is_due``; return whether one was saved."""
        due = self.is_due(num_batches_in_epoch_completed, epochs_completed=num_epochs_completed)
        if due:
            self.save_checkpoint(trainer, num_epochs_completed, num_batches_in_epoch_completed)
        return due

    def save_checkpoint(self, trainer: Trainer, num_epochs_completed: int, num_batches_in_epoch_completed: int) -> None:
        """Write the trainer's checkpoint as ``(E, B) = (num_epochs_completed, num_batches_in_epoch_completed)``.

        Temporary files left by an interrupted process are deleted at the first save. Both states are written to
        temporary files while ``trainer.get_checkpoint_state()`` is open (a model state given to
        `save_best_model` is linked to ``best.th`` instead). Making them durable (fsync), renaming them into place
        (training state first) and deleting incomplete checkpoints and those no retention rule keeps then happen
        on the writer thread with ``write_in_background`` (call `wait` to know they are done), or before this
        returns without it.
        """
        position = (num_epochs_completed, num_batches_in_epoch_completed)
        model_path, training_path = self._paths(position)
        self._clean_once(training_path.parent)
        with trainer.get_checkpoint_state() as (model_state, training_state):
            training = write_temporary(training_path, saving(training_state))
            try:
                # best.th holds the bytes of the best state: its link is made once best.th is in place.
                model = (
                    model_state if model_state is self._best_state else write_temporary(model_path, saving(model_state))
                )
            except BaseException:
                training.unlink(missing_ok=True)
                raise

        def discard() -> None:
            for temporary in (training, model):
                if isinstance(temporary, Path):
                    temporary.unlink(missing_ok=True)

        try:
            self._writer.submit(
                lambda: self._put_in_place(position, training, model), f"checkpoint {model_path.name}", discard
            )
        except BaseException:  # a save before failed: this one is not put in place either
            discard()
            raise
        self._last_save_time = time.monotonic()

    def save_sharded_checkpoint(
        self, trainer: Trainer, num_epochs_completed: int, num_batches_in_epoch_completed: int, distributed: Any
    ) -> None:
        """Write a sharded checkpoint (a model sharded with FSDP): every worker calls this together.

        Each worker writes its shards of the model, the optimizer and the moving average with
        ``torch.distributed.checkpoint`` into a temporary directory, the primary the rest of the training state
        into a temporary file; once every worker's files are written, the primary makes them durable and puts the
        training state, then the directory ``model_state_eE_bB.dcp``, in place, as `save_checkpoint` does. This
        happens before training goes on (DCP's writes are a collective; ``write_in_background`` does not apply).
        """
        position = (num_epochs_completed, num_batches_in_epoch_completed)
        model_path, training_path = self._paths(position, sharded=True)
        shards = model_path.with_name(f".{model_path.name}.shards.tmp")
        if distributed.is_primary:
            self._writer.wait()  # best.th of this step is in place before the checkpoint
            self._clean_once(training_path.parent)
            shutil.rmtree(shards, ignore_errors=True)  # left by a save of this position that was interrupted
        distributed.barrier()
        training = None
        try:
            with trainer.get_sharded_checkpoint_state() as (state, training_state):
                save_sharded(state, shards)  # returns once every worker's shards are written
                if distributed.is_primary:
                    training = write_temporary(training_path, saving(training_state))
            if distributed.is_primary:
                put_in_place(training, training_path)
                put_directory_in_place(shards, model_path)
                logger.debug("saved sharded checkpoint %s", model_path)
                self._unloadable.discard(position)
                self._prune(position)
        except BaseException:
            if distributed.is_primary:
                shutil.rmtree(shards, ignore_errors=True)
                if training is not None:
                    training.unlink(missing_ok=True)
            raise
        self._last_save_time = time.monotonic()

    def save_best_model(self, model_state: dict[str, Any]) -> None:
        """Write ``model_state`` as ``best.th``, made durable and renamed into place like a checkpoint.

        ``model_state`` must not change after it is passed here (the trainer passes a copy). With
        ``write_in_background`` it is then written on the writer thread. When a later checkpoint's model state
        is this very object (the trainer passes it again while the weights are unchanged, as at the end of an
        epoch that was the best so far), its model-state file is a hard link to ``best.th`` rather than a second
        copy of the same bytes.
        """
        self._writer.write(Path(self._serialization_dir) / BEST_NAME, saving(model_state))
        self._best_state = model_state

    def wait(self) -> None:
        """Return once the files of the last save are durable and in place; raise if that failed."""
        self._writer.wait()

    def _put_in_place(self, position: _Position, training: Path, model: Path | dict[str, Any]) -> None:
        """Put a checkpoint's temporary files in place, training state first (once the model file is in place,
        the pair is complete); only then delete the checkpoints no longer kept. ``model`` is the model state's
        temporary file, or the best state, to link to ``best.th`` (or write where links are not possible)."""
        model_path, training_path = self._paths(position)
        temporaries = [training]
        try:
            if not isinstance(model, Path):
                best = model_path.with_name(BEST_NAME)
                model = link_temporary(model_path, best) or write_temporary(model_path, saving(model))
            temporaries.append(model)
            put_in_place(training, training_path)
            put_in_place(model, model_path)
        except BaseException:
            for temporary in temporaries:
                temporary.unlink(missing_ok=True)
            raise
        logger.debug("saved checkpoint %s", model_path)
        self._unloadable.discard(position)
        self._prune(position)

    # ---- restoring ---------------------------------------------------------------------------------------------
    def find_latest_checkpoint(self) -> tuple[str, str] | None:
        """``(model state path, training state path)`` of the newest complete checkpoint, or None."""
        checkpoints, _ = self._scan()
        if not checkpoints:
            return None
        return checkpoints[max(checkpoints)]

    def load_checkpoint(self) -> tuple[dict[str, Any] | Path, dict[str, Any]] | None:
        """``(model state, training state)`` of the newest checkpoint that loads, on the CPU; None if there is none.
        The model state of a sharded checkpoint is its directory's path, which the trainer loads its shards from.

        A checkpoint that fails to load (truncated, corrupt, or holding objects other than tensors and plain
        containers) is logged as an error and the next older one is tried. Raises ConfigurationError (the
        command's exit status 2, no traceback) when checkpoints exist and none of them loads.
        """
        checkpoints, _ = self._scan()
        failures: list[str] = []
        for position in sorted(checkpoints, reverse=True):
            states: list[Any] = []
            for path in checkpoints[position]:
                if is_sharded_checkpoint(Path(path)):  # loaded by every worker into its shards (the trainer)
                    states.append(Path(path))
                    continue
                try:
                    state = torch.load(path, map_location="cpu", weights_only=True)
                    if not isinstance(state, dict):
                        raise TypeError(f"expected a dict, found {type(state).__name__}")
                except Exception as error:
                    logger.error("cannot load checkpoint file %s (%s: %s)", path, type(error).__name__, error)
                    failures.append(f"{path} ({type(error).__name__}: {error})")
                    self._unloadable.add(position)
                    break
                states.append(state)
            else:
                if failures:
                    logger.warning("resuming from the older checkpoint %s instead", checkpoints[position][0])
                return states[0], states[1]
        if failures:
            listed = "\n  ".join(failures)
            raise ConfigurationError(
                f"--recover: none of the {len(failures)} checkpoints in {self._serialization_dir} can be loaded:\n"
                f"  {listed}\nmove them away to start training afresh, use --force to start the run over, or "
                "choose another serialization directory"
            )
        return None

    # ---- state across restarts -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The checkpointer's own state: only a version.

        Positions come from the trainer and retention from the files, so nothing else needs to carry over.
        The time of the last save does not: a monotonic clock means nothing in another process, and the time a
        run spent stopped should not make a save due the moment it resumes.
        """
        return {"version": 1}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take up what `state_dict` gave; the save_every_num_seconds clock restarts at the next batch."""
        version = state_dict.get("version", 1)
        if version > 1:
            raise RuntimeError(f"checkpointer state version {version} is newer than this regimen reads (1)")
        self._last_save_time = None

    # ---- files -----------------------------------------------------------------------------------------------
    def _paths(self, position: _Position, sharded: bool = False) -> tuple[Path, Path]:
        directory = Path(self._serialization_dir)
        suffix = f"e{position[0]}_b{position[1]}"
        model = f"model_state_{suffix}.{'dcp' if sharded else 'th'}"
        return directory / model, directory / f"training_state_{suffix}.th"

    def _scan(self) -> tuple[dict[_Position, tuple[str, str]], list[Path]]:
        """Complete checkpoints ``{(E, B): (model path, training path)}`` and the incomplete checkpoints' files."""
        found: dict[_Position, dict[str, Path]] = {}
        try:
            entries = list(os.scandir(self._serialization_dir))
        except FileNotFoundError:
            return {}, []
        for entry in entries:
            match = _CHECKPOINT_NAME.match(entry.name)
            if match:
                kind, epochs, batches = match.groups()
                found.setdefault((int(epochs), int(batches)), {})[kind] = Path(entry.path)
        complete = {
            position: (str(files["model_state"]), str(files["training_state"]))
            for position, files in found.items()
            if len(files) == 2
        }
        incomplete = [path for files in found.values() if len(files) == 1 for path in files.values()]
        return complete, incomplete

    def _clean_once(self, directory: Path) -> None:
        """Before this process's first save: create ``directory`` and delete the temporary files an interrupted
        process left there. This process's own temporaries (`made_here`: a ``best.th`` the writer thread may be
        writing) are left alone; they are always put in place or removed."""
        if not self._cleaned:
            directory.mkdir(parents=True, exist_ok=True)
            self._remove_temporaries(directory)
            self._cleaned = True

    def _remove_temporaries(self, directory: Path) -> None:
        for entry in os.scandir(directory):
            if _TEMPORARY_NAME.match(entry.name) and not made_here(entry.name):
                logger.info("removing %s, left by an interrupted save", entry.path)
                _remove(Path(entry.path))

    def _prune(self, saved: _Position) -> None:
        """Delete incomplete checkpoints, unloadable ones, and complete ones no retention rule keeps.

        Runs after the checkpoint at ``saved`` was completely written; that one and the newest loadable one
        (the same one, unless the directory holds checkpoints from further on) are always kept. A model file is
        deleted before its training state, so a model file never lacks its twin.
        """
        checkpoints, incomplete = self._scan()
        loadable = sorted((p for p in checkpoints if p not in self._unloadable), reverse=True)
        keep = {saved, *loadable[:1]}
        if self._keep_most_recent_by_count is None and self._keep_most_recent_by_age is None:
            keep.update(loadable)
        if self._keep_most_recent_by_count is not None:
            keep.update(loadable[: self._keep_most_recent_by_count])
        if self._keep_most_recent_by_age is not None:
            cutoff = time.time() - self._keep_most_recent_by_age
            keep.update(p for p in loadable if _mtime(checkpoints[p][0]) > cutoff)
        doomed = [Path(path) for p in sorted(checkpoints) if p not in keep for path in checkpoints[p]]
        for path in incomplete + doomed:
            try:
                _remove(path)
            except OSError as error:  # a checkpoint that cannot be deleted costs disk space, not the run
                logger.warning("cannot delete old checkpoint file %s: %s", path, error)
        if doomed:
            logger.debug("deleted old checkpoints: %s", ", ".join(path.name for path in doomed))
        self._unloadable.clear()


Checkpointer.register("default")(Checkpointer)


def _remove(path: Path) -> None:
    """Delete a checkpoint's file, or a sharded checkpoint's directory."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return float("-inf")


def _both(old: str, new: str) -> ConfigurationError:
    return ConfigurationError(
        f'"{old}" is AllenNLP 1.x\'s spelling of "{new}", and both are given; keep only "{new}"', key=old
    )


def _deprecated(old: str, new: str, value: Any, difference: str = "") -> None:
    shown = "null" if value is None else value
    logger.warning(
        'checkpointer key "%s" is deprecated (AllenNLP 1.x): read as %s = %s%s. Rename it to "%s".',
        old,
        new,
        shown,
        difference,
        new,
    )

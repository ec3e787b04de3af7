"""CheckpointedState: what a GradientDescentTrainer puts in a checkpoint besides the model, and how it resumes."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from regimen.trainers.loss_totals import restore_running_sums, running_sums
from regimen.trainers.random_state import rng_state, set_rng_state, worker_rng_state
from regimen.trainers.sharded_state import load_sharded, sharded_state

logger = logging.getLogger(__name__)

_STATE_VERSION = 1  # of the training state in checkpoints; raise it when its layout changes


class CheckpointedState:
    """The checkpoint half of `GradientDescentTrainer` (a mixin, kept apart so the trainer's module is its loop):
    the training state it saves (position, running sums, metrics, callbacks, RNG states and every stateful
    component) and how it takes a checkpoint back up. It reads the trainer's attributes and nothing else."""

    _rng_states: list[Any] | None = None  # every worker's, gathered for the checkpoint being saved
    _summed: dict[str, Any] | None = None  # the running sums over every worker, for that checkpoint
    _seconds_before = 0.0  # the training time of the run's earlier invocations, up to the checkpoint resumed
    _started = 0.0  # when this invocation's train() began (time.monotonic)

    @contextmanager
    def get_checkpoint_state(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """The model's state (moving-average weights swapped in while open) and the training state."""
        with self._averaged_weights():
            yield self._best.for_checkpoint(self.model.state_dict(), self._total_steps), self._training_state({})

    @contextmanager
    def get_sharded_checkpoint_state(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """For a sharded model (FSDP): the state every worker saves its shards of, with DCP (the model, with the
        moving-average weights swapped in while open, the optimizer and the moving average), and the rest of the
        training state, which the primary saves."""
        sharded = {"moving_average": self._moving_average} if self._moving_average is not None else {}
        training_state = self._training_state({"optimizer", *sharded})
        with self._averaged_weights():
            extra = {key: component.state_dict() for key, component in sharded.items()}
            yield sharded_state(self.model, self.optimizer, extra), training_state

    def _training_state(self, leave_out: set[str]) -> dict[str, Any]:
        """What a checkpoint holds besides the model, without the components named in ``leave_out``."""
        return {
            "version": _STATE_VERSION,
            "total_steps": self._total_steps,
            "epochs_completed": self._epochs_completed,
            "batches_in_epoch": self._batches_in_epoch,
            "training_seconds": self._seconds_before + time.monotonic() - self._started,  # every invocation's
            **(self._summed or running_sums(self._totals, self.model)),  # over every worker; the primary resumes them
            "last_metrics": self._last_metrics,
            "epoch_validation": self._epoch_validation,  # a step validation earlier in this epoch
            "callbacks": [callback.state_dict() for callback in self._callbacks],
            "rng": self._rng_states if self._rng_states is not None else [rng_state()],  # one per worker
            **{key: c.state_dict() for key, c in self._stateful_components().items() if key not in leave_out},
        }

    def _save_checkpoint(self, epochs_completed: int, batches_in_epoch: int, stopping: bool) -> None:
        """Every worker's RNG state and the epoch's running sums over all workers go into the checkpoint, which
        the primary writes (made durable in the background unless ``stopping``) while the others wait."""
        self._rng_states = self._dist.gather_objects(rng_state())
        self._summed = running_sums(self._totals, self.model, self._dist)
        if self._dist.shards_checkpoints:  # every worker writes its shards
            self._checkpointer.save_sharded_checkpoint(self, epochs_completed, batches_in_epoch, self._dist)
        elif self._primary:
            self._checkpointer.save_checkpoint(self, epochs_completed, batches_in_epoch)
            if stopping:
                self._wait_for_writes()
        self._rng_states = self._summed = None
        self._dist.barrier()  # no worker stops (pre-emption) before the checkpoint is on disk

    def _stateful_components(self) -> dict[str, Any]:
        components = {
            "optimizer": self.optimizer,
            "metric_tracker": self._metric_tracker,
            "learning_rate_scheduler": self._learning_rate_scheduler,
            "momentum_scheduler": self._momentum_scheduler,
            "moving_average": self._moving_average,
            "precision": self._precision,
            "checkpointer": self._checkpointer,
        }
        return {key: component for key, component in components.items() if component is not None}

    def _restore_checkpoint(self) -> int:
        """Continue from the newest complete checkpoint, if any; returns the batch to start the epoch at."""
        loaded = self._checkpointer.load_checkpoint() if self._checkpointer is not None else None
        if loaded is None:
            return 0
        model_state, training_state = loaded
        if training_state.get("version") != _STATE_VERSION:
            raise RuntimeError(f"cannot resume: training state version {training_state.get('version')} is unknown")
        if isinstance(model_state, Path):  # a sharded checkpoint: the model, optimizer and moving average in DCP
            extra = {"moving_average": self._moving_average.state_dict()} if self._moving_average else {}
            training_state.update(load_sharded(model_state, self.model, self.optimizer, extra))
        else:
            self.model.load_state_dict(model_state)
        # The live weights first: the moving average's state restores them over the averaged ones saved here.
        for key, component in self._stateful_components().items():
            if key in training_state:
                component.load_state_dict(training_state[key])
        for callback, state in zip(self._callbacks, training_state["callbacks"]):
            callback.load_state_dict(state)
        self._total_steps = training_state["total_steps"]
        self._epochs_completed = training_state["epochs_completed"]
        self._seconds_before = training_state.get("training_seconds", 0.0)
        restore_running_sums(training_state, self._totals, self.model, self._dist)
        self._last_metrics = training_state["last_metrics"]
        self._epoch_validation = training_state.get("epoch_validation", {})
        best = self._metric_tracker.best_epoch  # best.th holds the weights saved at that epoch's end
        directory = self._serialization_dir
        fallback = None if best is None or directory is None else Path(directory) / f"model_state_e{best + 1}_b0.th"
        self._best.load(self.device, fallback)
        set_rng_state(worker_rng_state(training_state["rng"], self._dist.rank))
        batches, workers = training_state["batches_in_epoch"], len(training_state["rng"])
        logger.info("resuming after %d epochs and %d batches", self._epochs_completed, batches)
        if batches and workers != self._dist.world_size:
            # The checkpoint's workers each took `batches` of the epoch's batches, dealt out in turn: start after
            # all of them (as near as the new number of workers allows).
            batches, left = divmod(batches * workers, self._dist.world_size)
            logger.warning(
                "the checkpoint was written by %d worker(s), this run has %d: each starts the epoch at its batch %d%s",
                workers,
                self._dist.world_size,
                batches,
                f" ({left} batch(es) of it are trained again)" if left else "",
            )
        return batches

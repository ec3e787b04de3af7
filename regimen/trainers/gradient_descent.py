"""GradientDescentTrainer: the training loop. When things happen is here; how they happen is in each component."""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal

import torch

from regimen.data import DataLoader
from regimen.models import Model
from regimen.models.model import freeze_parameters
from regimen.registry import ConfigurationError, Lazy
from regimen.registry.from_params import init_defaults
from regimen.registry.values import check_positive
from regimen.trainers.activation_checkpointing import checkpoint_activations
from regimen.trainers.agreement import Agreement
from regimen.trainers.atomic_files import BackgroundWriter, wait_for_writers
from regimen.trainers.best_weights import BestWeights
from regimen.trainers.callbacks import TensorBoardCallback, TrainerCallback
from regimen.trainers.callbacks.backward import backward_by_callbacks
from regimen.trainers.callbacks.callback import BatchCallback, EpochCallback, HookDispatch
from regimen.trainers.callbacks.defaults import gather_callbacks
from regimen.trainers.checkpointed_state import CheckpointedState
from regimen.trainers.checkpointer import Checkpointer
from regimen.trainers.device_batches import batches_on_device
from regimen.trainers.distributed import Distributed
from regimen.trainers.divergence import divergence_error
from regimen.trainers.evaluation import sum_named_losses
from regimen.trainers.legacy_keys import gather_configured_callbacks, legacy_trainer_keys
from regimen.trainers.loss_totals import LossTotals, RunningMetrics
from regimen.trainers.lr_schedulers import LearningRateScheduler
from regimen.trainers.memory import peak_memory_mb
from regimen.trainers.metric_tracker import MetricTracker, check_set_metrics
from regimen.trainers.momentum_schedulers import MomentumScheduler
from regimen.trainers.moving_average import MovingAverage, averaged_weights
from regimen.trainers.optimizer_losses import OptimizerLosses
from regimen.trainers.optimizers import Optimizer
from regimen.trainers.precision import make_precision
from regimen.trainers.preemption import PreemptionWatcher, TrainingPreempted
from regimen.trainers.progress import Progress, format_duration
from regimen.trainers.trainer import Trainer

logger = logging.getLogger(__name__)

_FINITE_CHECK_EVERY = 50  # optimizer steps between checks that the training loss is finite


@Trainer.register("gradient_descent", constructor="from_partial_objects")
class GradientDescentTrainer(CheckpointedState, Trainer):
    """Trains a model by gradient descent over the batches of a data loader, validating as it goes.

    Registered as a `Trainer` with name "gradient_descent" (the default).

    Config keys (the experiment supplies `model`, `data_loader`, `validation_data_loader`, `test_data_loader` and
    `serialization_dir`):
    - `num_epochs` (int, 20): epochs to train; `num_steps` (int, null) instead trains for that many optimizer steps.
    - `patience` (int, null): stop after this many validations without strict improvement.
    - `validation_metric` (str or list[str], "-loss"): "+name" / "-name" for higher / lower is better; a list is
      summed.
    - `validate_every_num_epochs` (int, 1) or `validate_every_num_steps` (int, null): when to validate.
    - `optimizer` (Optimizer, "adam"), `learning_rate_scheduler` (LearningRateScheduler, null),
      `momentum_scheduler` (MomentumScheduler, null), `moving_average` (MovingAverage, null).
    - `callbacks` (list[TrainerCallback], []), `batch_callbacks` / `epoch_callbacks` (AllenNLP 1.x, []),
      `enable_default_callbacks` (bool, true: adds `console_logger`); AllenNLP 1.x's `tensorboard_writer`
      (TensorBoardCallback keys) is read as a `tensorboard` callback with a deprecation note.
    - AllenNLP 0.9's trainer-level keys, each read where it moved with one deprecation note:
      `num_serialized_models_to_keep`, `keep_serialized_model_every_num_seconds`, `model_save_interval` (int /
      int / float, null) as the checkpointer's `keep_most_recent_by_count` (negative: keep all),
      `keep_most_recent_by_age` and `save_every_num_seconds`; `summary_interval`, `histogram_interval`,
      `should_log_parameter_statistics`, `should_log_learning_rate`, `log_batch_size_period` (null) as those of a
      `tensorboard` callback (`log_batch_size_period` as `batch_size_interval`), added for them.
    - `num_gradient_accumulation_steps` (int, 1): batches per optimizer step; a final partial group still steps.
    - `optimizer_losses` (object, null): with a "multi" optimizer, optimizer name -> the name of the model's loss
      that alone gives that optimizer's parameters their gradients (GANs, actor-critic); without it, a model
      whose dict of losses has exactly the optimizers' names gets that routing (see `OptimizerLosses`).
    - `grad_norm` (float or bool, null): a float rescales gradients to that total norm; true only measures it.
    - `grad_clipping` (float, null): clamps each gradient value to [-x, x].
    - `use_amp` (bool or object, false) with `amp_dtype` ("float16" | "bfloat16", float16 on CUDA and bfloat16 on
      CPU); an object turns AMP on with those `torch.amp.GradScaler` arguments (`{"init_scale": 1024,
      "growth_interval": 100}`, as aitoolbox's `use_amp` takes);
      `opt_level` ("O0".."O3", null) accepts apex configs: apex is used when installed, else native AMP;
      `grad_scaling` (bool, true): float16 AMP scales the loss with a GradScaler (false: AllenNLP's switch to not).
    - `no_grad` (list[str], []): regexes of parameters to freeze.
    - `activation_checkpointing` (list[str], []): class names of submodules that recompute their activations in the
      backward pass instead of keeping them (less memory, the same loss; see `activation_checkpointing`).
    - `cuda_device` (int, null: the first CUDA device if there is one, else the CPU; -1: the CPU).
    - `compile` (bool or object, false): run the model through `torch.compile`; an object is passed to it as
      keyword arguments (`{"mode": "max-autotune"}`). Checkpoints hold the uncompiled model's weights.
    - `progress_bar` (bool, true), `file_friendly_logging` (bool, false: plain log lines instead of a bar, as
      whenever stderr is not a terminal).
    - `checkpointer` (Checkpointer, "default"; null: no checkpoints): when to save and how many to keep. A
      trainer whose serialization directory holds checkpoints resumes from the newest complete one.
    - `run_confidence_checks` (bool, true): on the first batch, fail if a biased layer feeds batch normalization;
      AllenNLP 2.x's deprecated `run_sanity_checks` is read as it, with a deprecation note.
    """

    def __init__(
        self,
        model: Model,
        optimizer: torch.optim.Optimizer,
        data_loader: DataLoader,
        patience: int | None = None,
        validation_metric: str | list[str] = "-loss",
        validation_data_loader: DataLoader | dict[str, DataLoader] | None = None,
        test_data_loader: DataLoader | None = None,
        num_epochs: int = 20,
        num_steps: int | None = None,
        validate_every_num_epochs: int = 1,
        validate_every_num_steps: int | None = None,
        serialization_dir: str | None = None,
        checkpointer: Checkpointer | None = None,
        cuda_device: int | None = None,
        grad_norm: float | bool | None = None,
        grad_clipping: float | None = None,
        learning_rate_scheduler: LearningRateScheduler | None = None,
        momentum_scheduler: MomentumScheduler | None = None,
        moving_average: MovingAverage | None = None,
        callbacks: list[TrainerCallback] | None = None,
        num_gradient_accumulation_steps: int = 1,
        optimizer_losses: dict[str, str] | None = None,
        use_amp: bool | dict[str, Any] = False,
        grad_scaling: bool = True,
        amp_dtype: Literal["float16", "bfloat16"] | None = None,
        opt_level: Literal["O0", "O1", "O2", "O3"] | None = None,
        compile: bool | dict[str, Any] = False,
        progress_bar: bool = True,
        file_friendly_logging: bool = False,
        enable_default_callbacks: bool = True,
        run_confidence_checks: bool = True,
        activation_checkpointing: list[str] | None = None,
        distributed: Distributed | None = None,
    ) -> None:
        super().__init__(serialization_dir, cuda_device, distributed)
        check_positive(num_epochs=num_epochs, validate_every_num_epochs=validate_every_num_epochs)
        check_positive(num_steps=num_steps, validate_every_num_steps=validate_every_num_steps)
        check_positive(num_gradient_accumulation_steps=num_gradient_accumulation_steps, grad_clipping=grad_clipping)
        if grad_norm is not False and grad_norm is not True and grad_norm is not None and grad_norm <= 0:
            raise ConfigurationError(f"must be positive or true, got {grad_norm}", key="grad_norm")
        self.model = model.to(self.device)
        checkpoint_activations(self.model, activation_checkpointing or [])
        # Forward and backward go through the DDP wrapper (a distributed run); state dicts come from the model itself.
        self._forward = _compiled(self._dist.wrap(self.model), compile)
        self.optimizer = optimizer
        self.data_loader = self._dist.shard(data_loader)
        if isinstance(validation_data_loader, dict):  # named validation sets, each validated at every validation
            check_set_metrics(validation_metric, list(validation_data_loader))
        self.validation_data_loader = self._dist.shard(validation_data_loader)
        self.test_data_loader = self._dist.shard(test_data_loader)  # evaluated after training, best weights in
        self._metric_tracker = MetricTracker(validation_metric, patience)
        self._num_epochs = num_epochs
        self._num_steps = num_steps
        self._validate_every_num_epochs = validate_every_num_epochs
        self._validate_every_num_steps = validate_every_num_steps
        self._grad_norm = grad_norm
        self._grad_clipping = grad_clipping
        self._learning_rate_scheduler = learning_rate_scheduler
        self._momentum_scheduler = momentum_scheduler
        self._moving_average = moving_average
        self._accumulation = num_gradient_accumulation_steps
        self._optimizer_losses = OptimizerLosses(optimizer, optimizer_losses, self._dist.enabled)
        self._precision = make_precision(self.device, use_amp, amp_dtype, opt_level, grad_scaling)
        self._precision.prepare(self.model, self.optimizer)
        self._progress = Progress(enabled=progress_bar and self._primary, file_friendly=file_friendly_logging)
        sets = self.validation_data_loader
        loaders = [self.data_loader, *(sets.values() if isinstance(sets, dict) else [sets]), self.test_data_loader]
        components = [self.model, *loaders, *(getattr(loader, "reader", None) for loader in loaders), optimizer]
        components += [learning_rate_scheduler, momentum_scheduler, moving_average]
        self._callbacks = gather_callbacks(
            callbacks or [], serialization_dir, components, enable_default_callbacks, run_confidence_checks
        )
        # The position of the run: optimizer steps taken, epochs completed, batches into the current epoch.
        self._checkpointer = checkpointer
        self._preemption = PreemptionWatcher()
        self._agreement = Agreement(self._dist)
        self._total_steps = self._epochs_completed = self._batches_in_epoch = 0
        self._totals = LossTotals()
        self._writer = BackgroundWriter()  # the metrics files and best.th (without a checkpointer)
        self._best = BestWeights(serialization_dir, checkpointer, self._writer, writes=self._primary)
        self._last_metrics: dict[str, Any] = {}  # the newest training and validation metrics
        self._epoch_validation: dict[str, Any] = {}  # the current epoch's last step validation
        # AllenNLP's name: callbacks (should_validate_callback) switch the validation of the coming epoch off.
        self._should_validate_this_epoch = True
        self._hooks = HookDispatch([])  # made from the callbacks when training starts
        self._at = ("training", 0, 0)  # (split, epoch, batch) being run, for the message of a crash
        self._finite_until = 0  # the batch of the epoch up to which the loss is known to be finite

    @classmethod
    def from_partial_objects(
        cls,
        model: Model,
        data_loader: DataLoader,
        optimizer: Lazy[Optimizer] = Lazy(Optimizer),
        learning_rate_scheduler: Lazy[LearningRateScheduler] | None = None,
        momentum_scheduler: Lazy[MomentumScheduler] | None = None,
        moving_average: Lazy[MovingAverage] | None = None,
        callbacks: list[Lazy[TrainerCallback]] | None = None,
        batch_callbacks: list[BatchCallback] | None = None,
        epoch_callbacks: list[EpochCallback] | None = None,
        tensorboard_writer: Lazy[TensorBoardCallback] | None = None,
        checkpointer: Lazy[Checkpointer] | None = Lazy(Checkpointer),
        no_grad: list[str] | None = None,
        serialization_dir: str | None = None,
        num_serialized_models_to_keep: int | None = None,
        keep_serialized_model_every_num_seconds: int | None = None,
        model_save_interval: float | None = None,
        summary_interval: int | None = None,
        histogram_interval: int | None = None,
        should_log_parameter_statistics: bool | None = None,
        should_log_learning_rate: bool | None = None,
        log_batch_size_period: int | None = None,
        run_sanity_checks: bool | None = None,
        **kwargs: Any,
    ) -> GradientDescentTrainer:
        """Build the components that need the model or the optimizer, then the trainer."""
        # Older AllenNLP trainer keys go where they moved, or into kwargs by their new names.
        checkpointer_keys, tensorboard_keys = legacy_trainer_keys(locals(), checkpointer, tensorboard_writer, kwargs)
        defaults = init_defaults(cls)
        freeze_parameters(model, no_grad or [])
        # The schedules count this worker's steps; FSDP replaces the parameters, so it shards before the optimizer.
        if kwargs.get("distributed") is not None:
            data_loader = kwargs["distributed"].shard(data_loader)
            kwargs["distributed"].shard_model(model)
        parameters = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        built_optimizer = optimizer.construct(model_parameters=parameters)
        num_epochs = kwargs.get("num_epochs", defaults["num_epochs"])
        steps_per_epoch = math.ceil(len(data_loader) / kwargs.get("num_gradient_accumulation_steps", 1))
        if kwargs.get("num_steps") is not None:
            num_epochs = math.ceil(kwargs["num_steps"] / max(steps_per_epoch, 1))
        schedule_extras = {
            "optimizer": built_optimizer,
            "num_epochs": num_epochs,
            "num_steps_per_epoch": steps_per_epoch,
        }
        built_callbacks = gather_configured_callbacks(
            callbacks or [],
            batch_callbacks or [],
            epoch_callbacks or [],
            tensorboard_writer,
            tensorboard_keys,
            serialization_dir,
        )
        return cls(
            model=model,
            optimizer=built_optimizer,
            data_loader=data_loader,
            learning_rate_scheduler=learning_rate_scheduler and learning_rate_scheduler.construct(**schedule_extras),
            momentum_scheduler=momentum_scheduler and momentum_scheduler.construct(optimizer=built_optimizer),
            moving_average=moving_average and moving_average.construct(parameters=parameters),
            callbacks=built_callbacks,
            serialization_dir=serialization_dir,
            checkpointer=checkpointer.construct(serialization_dir=serialization_dir, **checkpointer_keys)
            if checkpointer is not None and serialization_dir is not None
            else None,
            **kwargs,
        )

    @property
    def _scaler(self) -> torch.amp.GradScaler | None:
        """AllenNLP's name for the float16 gradient scaler (None without one), for callbacks written for AllenNLP."""
        return self._precision.scaler

    # ---- the run, top to bottom --------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Train until the epoch or step budget is spent or patience runs out; return the final metrics.

        On SIGTERM, SIGUSR1 or SIGINT it finishes the optimizer step, saves a checkpoint and raises
        TrainingPreempted (exit code 75 from the command line).
        """
        self._started = start = time.monotonic()
        metrics: dict[str, Any] | None = None
        self._hooks = hooks = HookDispatch(self._callbacks)  # each hook calls only the callbacks that define it
        try:
            with self._preemption:
                if self._serialization_dir is not None and self._primary:
                    Path(self._serialization_dir).mkdir(parents=True, exist_ok=True)
                start_batch = self._restore_checkpoint()
                hooks("on_start", self, is_primary=self._primary)
                first_epoch = self._epochs_completed
                while not self._finished():
                    if self._train_epoch(self._epochs_completed, start_batch):
                        break
                    start_batch = 0
            final = self._final_metrics(first_epoch, time.monotonic() - start)
            self._best.restore(self.model, self._dist)
            final.update(self._test())  # inside the run, so that on_end sees the test metrics
            self._wait_for_writes()  # the run's files are on disk when it returns
            metrics = final
            return metrics
        except Exception as error:  # a crash, in user code or ours: the command says first where it happened
            error.regimen_where = "epoch {1}, batch {2} of {0}".format(*self._at)  # type: ignore[attr-defined]
            raise
        finally:
            self._progress.close()
            self._wait_for_writes(quietly=True)
            hooks("on_end", self, metrics=metrics, epoch=self._epochs_completed - 1, is_primary=self._primary)

    def _wait_for_writes(self, quietly: bool = False) -> None:
        """Return once the files written in the background are durable and in place; raise if one failed (only
        log it with ``quietly``, after an error)."""
        wait_for_writers((self._checkpointer, self._writer), quietly)

    def _finished(self) -> bool:
        return self._metric_tracker.should_stop_early() or self._budget_spent()

    def _budget_spent(self) -> bool:
        if self._num_steps is not None:
            return self._total_steps >= self._num_steps
        return self._epochs_completed >= self._num_epochs

    def _train_epoch(self, epoch: int, start_batch: int = 0) -> bool:
        """One pass over the training batches (from ``start_batch`` when resuming); True means stop early."""
        self.model.train()
        if start_batch == 0:
            self._totals = LossTotals()
        totals = self._totals
        self._hooks("on_epoch_start", self, epoch=epoch)
        bar = self._progress.start(f"epoch {epoch}", len(self.data_loader))
        bar.update(start_batch, {})
        self._batches_in_epoch = self._finite_until = start_batch
        step_in_epoch = start_batch // self._accumulation
        for group in _groups(self._batches(self.data_loader, epoch, start_batch), self._accumulation):
            self._at = ("training", epoch, self._batches_in_epoch)  # where a crash happens (the next batch)
            if self._hooks.wants("on_batch_start"):
                self._hooks("on_batch_start", self, list(group), epoch, step_in_epoch + 1, True, split="training")
            outputs, grad_norm = self._optimizer_step(group, totals)
            step_in_epoch += 1
            self._total_steps += 1
            self._batches_in_epoch += len(group)
            if self._total_steps % _FINITE_CHECK_EVERY == 0:
                self._check_finite(totals, epoch)
            # Read (a device sync) only when the bar refreshes or a callback looks at them.
            train_metrics = RunningMetrics(totals, "training_", self.model)
            bar.update(len(group), train_metrics)
            if self._hooks.wants("on_batch"):
                self._hooks(
                    "on_batch", self, list(group), outputs, train_metrics, epoch, step_in_epoch, True,
                    is_primary=self._primary, batch_grad_norm=grad_norm, split="training",
                )  # fmt: skip
            if self._validate_every_num_steps and self._total_steps % self._validate_every_num_steps == 0:
                if self._should_validate_this_epoch and self._step_validation(epoch, totals):
                    return True
            if self._num_steps is not None and self._total_steps >= self._num_steps:
                break
            self._save_after_step(epoch, self._batches_in_epoch)
        else:
            self._hooks("on_loader_exhausted", self, epoch=epoch)
        bar.close()
        self._check_finite(totals, epoch)
        self._epochs_completed = epoch + 1
        self._batches_in_epoch = 0
        stop = self._end_epoch(epoch, totals)
        self._totals = LossTotals()
        self._save_after_step(self._epochs_completed, 0)
        return stop

    def _check_finite(self, totals: LossTotals, epoch: int) -> None:
        """Raise if the loss summed since the last check is not finite (a NaN or inf stays in the sum).

        Checked every few steps and before every checkpoint rather than per batch, so no step waits for the device;
        the error says between which batches the loss went bad."""
        first, self._finite_until = self._finite_until, self._batches_in_epoch
        total = totals.sums.get("loss")
        if total is not None and not math.isfinite(float(total)):
            where = f"at epoch {epoch}, batches {first} to {max(first, self._batches_in_epoch - 1)}"
            clipped = self._grad_clipping is not None or type(self._grad_norm) in (int, float)  # not a bool
            raise divergence_error(float(total), where, self.optimizer, clipped, self._precision.dtype == torch.float16)

    def _save_after_step(self, epochs_completed: int, batches_in_epoch: int) -> None:
        """Save a checkpoint when one is due, and stop (after saving) when a signal asked for it."""
        # Every worker saves (its RNG state) and stops at the same step: see Agreement.
        due, stop = self._agreement.decide(
            self._total_steps, self._checkpointer, batches_in_epoch, self._preemption.requested, epochs_completed
        )
        if self._checkpointer is not None and (due or stop):
            self._check_finite(self._totals, epochs_completed - (batches_in_epoch == 0))  # never save NaN weights
            self._save_checkpoint(epochs_completed, batches_in_epoch, stopping=stop)
        if stop:
            raise TrainingPreempted(self._preemption.signal_number or 0, self._checkpointer is not None)

    def _optimizer_step(
        self, group: tuple[dict[str, Any], ...], totals: LossTotals
    ) -> tuple[list[dict[str, Any]], torch.Tensor | None]:
        """Clear the last step's gradients, backward over each batch of the group, then unscale, clip, schedule,
        step, average (in that order). The gradients stay until the next step, for callbacks (as in AllenNLP)."""
        self.optimizer.zero_grad(set_to_none=True)
        outputs = []
        for batch in group[:-1]:
            with self._dist.no_sync(self._forward):  # workers average gradients once, in the last batch's backward
                outputs.append(self._forward_backward(batch, totals, len(group)))
        outputs.append(self._forward_backward(group[-1], totals, len(group)))
        self._precision.unscale(self.optimizer)
        grad_norm = self._optimizer_losses.clip(self.model, self._grad_norm, self._grad_clipping)
        if self._learning_rate_scheduler is not None:
            self._learning_rate_scheduler.step_batch(self._total_steps + 1)
        if self._momentum_scheduler is not None:
            self._momentum_scheduler.step_batch(self._total_steps + 1)
        self._precision.step(self.optimizer)
        if self._moving_average is not None:
            self._moving_average.apply(self._total_steps + 1)
        return outputs, grad_norm

    def _forward_backward(self, batch: dict[str, Any], totals: LossTotals, group_size: int) -> dict[str, Any]:
        """One training batch: forward, add its losses to the totals, backward its share of the step's loss."""
        output = self._run_batch(batch, for_training=True)
        totals.add(output, batch)
        loss = output["loss"] / group_size if group_size > 1 else output["loss"]
        # A callback may do the backward pass itself (AllenNLP's on_backward); it sees the batch's share of the loss.
        if not (
            self._hooks.wants("on_backward")
            and backward_by_callbacks(self, self._hooks.by_hook["on_backward"], {**output, "loss": loss})
        ) and not self._optimizer_losses.backward(output, 1 / group_size, self._precision, self.optimizer):
            self._precision.backward(loss, self.optimizer)
        return output

    def _run_batch(self, batch: dict[str, Any], for_training: bool) -> dict[str, Any]:
        """The model's output for one batch, with ``loss`` summed over named losses and the penalty added."""
        with self._precision.autocast():
            output = sum_named_losses(dict(self._forward(**batch)), self.model)
        if "loss" not in output:
            if for_training:
                raise ValueError("the model returned no 'loss' for a training batch: does the batch hold labels?")
            return output
        if for_training:
            penalty = self.model.get_regularization_penalty()
            if penalty is not None:
                output["reg_loss"] = penalty
                output["loss"] = output["loss"] + penalty
        return output

    # ---- validation ----------------------------------------------------------------------------------------
    def _end_epoch(self, epoch: int, totals: LossTotals) -> bool:
        """After every epoch, in AllenNLP 2.10's order: the epoch's training metrics, validation when due, the
        metrics file, the schedules, ``on_epoch``. Returns True when patience has run out. The end of the run always
        validates (unless a should_validate callback says no): restoring the best weights drops no unvalidated steps."""
        last, every = self._budget_spent(), self._validate_every_num_steps
        if every is not None and last and self._should_validate_this_epoch and self._total_steps % every:
            self._step_validation(epoch, totals)  # the steps since the last step validation
        metrics = self._epoch_metrics(totals, "training_")  # read in training mode, then reset
        score = None
        if every is not None:  # this epoch's last step validation, if it had one
            metrics.update(self._epoch_validation)
            score = self._metric_tracker.current_score if self._epoch_validation else None
        elif self._should_validate_this_epoch and (
            last or self._epochs_completed % self._validate_every_num_epochs == 0
        ):
            metrics.update(self._track(epoch, metrics))
            score = self._metric_tracker.current_score
        self._epoch_validation = {}
        metrics.update(self._best_metrics(), best_epoch=self._metric_tracker.best_epoch, epoch=epoch)
        self._last_metrics.update(metrics)  # a validation's keys stay until the next validation
        self._write_metrics(f"epoch_{epoch}", metrics)
        if self._learning_rate_scheduler is not None:
            self._learning_rate_scheduler.step(score)
        if self._momentum_scheduler is not None:
            self._momentum_scheduler.step(score)
        self._hooks("on_epoch", self, metrics=metrics, epoch=epoch, is_primary=self._primary)
        if self._dist.any(bool(self.should_stop)):  # every worker asks here, so that they stop together
            logger.info("a callback set trainer.should_stop: training ends after epoch %d", epoch)
            return True
        return self._out_of_patience()

    def _step_validation(self, epoch: int, totals: LossTotals) -> bool:
        """A validation after an optimizer step (``validate_every_num_steps``); True when patience has run out."""
        metrics = self._epoch_metrics(totals, "training_")
        self._epoch_validation = self._track(epoch, metrics)
        metrics.update(self._epoch_validation, **self._best_metrics())
        metrics.update(best_epoch=self._metric_tracker.best_epoch, epoch=epoch)
        self._last_metrics.update(metrics)
        self._write_metrics(f"step_{self._total_steps}", metrics)
        return self._out_of_patience()

    def _track(self, epoch: int, training_metrics: dict[str, Any]) -> dict[str, Any]:
        """Validate (or, without validation data, take the training metrics), track the score and keep the best
        weights; returns the ``validation_*`` metrics."""
        tracked = {key.removeprefix("training_"): value for key, value in training_metrics.items()}
        metrics: dict[str, Any] = {}
        if self.validation_data_loader is not None:
            self._hooks("on_validation_start", self, epoch=epoch)
            with self._averaged_weights():
                tracked = self._validate(epoch)
            metrics.update({f"validation_{key}": value for key, value in tracked.items()})
            self._hooks("on_validation_end", self, epoch=epoch, metrics=dict(metrics))
        self._metric_tracker.add_metrics(tracked, epoch)
        if self._metric_tracker.is_best_so_far():
            with self._averaged_weights():
                self._best.update(self._dist.full_model_state(self.model), self._total_steps)
        return metrics

    def _best_metrics(self) -> dict[str, Any]:
        """``best_validation_*`` of the best validation so far, for every epoch's metrics (none without validation)."""
        if self.validation_data_loader is None:
            return {}
        return {f"best_validation_{k}": v for k, v in self._metric_tracker.best_epoch_metrics.items()}

    def _write_metrics(self, name: str, metrics: dict[str, Any]) -> None:
        if self._serialization_dir is not None and self._primary:
            text = json.dumps(metrics, indent=4, default=float) + "\n"  # made durable in the background
            self._writer.write(
                Path(self._serialization_dir) / f"metrics_{name}.json", lambda file: file.write(text.encode())
            )

    def _out_of_patience(self) -> bool:
        if self._metric_tracker.should_stop_early():
            logger.info("ran out of patience after %d validations without improvement", self._metric_tracker.patience)
            return True
        return False

    def _evaluate(self, loader: Iterable[dict[str, Any]], split: str, epoch: int) -> dict[str, float]:
        """The loss and the model's metrics over a validation or test loader's data, in eval mode."""
        self.model.eval()
        totals = LossTotals()
        bar = self._progress.start(f"{split} {epoch}", len(loader))
        with torch.inference_mode():
            for number, batch in enumerate(self._batches(loader, epoch), start=1):
                self._at = (split, epoch, number - 1)
                if self._hooks.wants("on_batch_start"):
                    self._hooks("on_batch_start", self, [batch], epoch, number, False, split=split)
                output = self._run_batch(batch, for_training=False)
                totals.add(output, batch)
                batch_metrics = RunningMetrics(totals, "", self.model)
                bar.update(1, batch_metrics)
                self._hooks(
                    "on_batch", self, [batch], [output], batch_metrics, epoch, number, False,
                    is_primary=self._primary, split=split,
                )  # fmt: skip
        bar.close()
        metrics = self._epoch_metrics(totals, "")  # in eval mode: models that report some metrics only then
        self.model.train()
        return metrics

    def _validate(self, epoch: int) -> dict[str, float]:
        """The validation metrics; with named sets each set's, as ``<name>_<metric>``."""
        if not isinstance(self.validation_data_loader, dict):
            return self._evaluate(self.validation_data_loader, "validation", epoch)
        sets = self.validation_data_loader.items()
        return {f"{name}_{k}": v for name, loader in sets for k, v in self._evaluate(loader, name, epoch).items()}

    def _test(self) -> dict[str, Any]:
        """``test_*`` metrics of the best weights on the test data (none without a test loader), with its hooks."""
        if self.test_data_loader is None:
            return {}
        logger.info("evaluating the best model on the test data")
        self._hooks("on_test_start", self)
        tested = self._evaluate(self.test_data_loader, "test", max(self._epochs_completed - 1, 0))
        metrics = {f"test_{name}": value for name, value in tested.items()}
        self._hooks("on_test_end", self, metrics=dict(metrics))
        return metrics

    def _epoch_metrics(self, totals: LossTotals, prefix: str) -> dict[str, float]:
        """The losses and the model's metrics over all workers' batches; resets the model's metrics."""
        return totals.reduced(self._dist).metrics(prefix, self.model, reset=True, distributed=self._dist)

    # ---- weights -------------------------------------------------------------------------------------------
    def _averaged_weights(self) -> AbstractContextManager[None]:
        return averaged_weights(self._moving_average)

    # ---- helpers -------------------------------------------------------------------------------------------
    def _batches(self, loader: Iterable[dict[str, Any]], epoch: int, start: int = 0) -> Iterable[dict[str, Any]]:
        """The batches of ``epoch`` from batch ``start`` on (regimen's loaders skip without producing them), moved to
        the model's device one batch ahead (see `batches_on_device`)."""
        iter_epoch = getattr(loader, "iter_epoch", None)
        if iter_epoch is None and hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        batches = iter_epoch(epoch, start) if iter_epoch is not None else itertools.islice(loader, start, None)
        return batches_on_device(batches, self.device)

    def _final_metrics(self, first_epoch: int, duration: float) -> dict[str, Any]:
        metrics: dict[str, Any] = {
            "best_epoch": self._metric_tracker.best_epoch,
            "training_duration": format_duration(self._seconds_before + duration),  # over every invocation
            "training_duration_this_run": format_duration(duration),
            "training_start_epoch": first_epoch,
            "training_epochs": self._epochs_completed - first_epoch,
        }
        for worker_memory in self._dist.gather_objects(peak_memory_mb(self._dist.rank, self.device)) or []:
            metrics.update(worker_memory)  # every worker's peak, on the primary
        metrics.update({k: v for k, v in self._last_metrics.items() if k not in ("best_epoch",)})
        return json.loads(json.dumps(metrics, default=float))  # plain JSON values (tensors, numpy numbers: floats)


def _groups(batches: Iterable[dict[str, Any]], size: int) -> Iterator[tuple[dict[str, Any], ...]]:
    """Consecutive groups of ``size`` batches; the last group may be shorter."""
    if size == 1:
        return zip(batches)  # one-batch tuples, made without a Python frame per batch
    iterator = iter(batches)
    return iter(lambda: tuple(itertools.islice(iterator, size)), ())


def _compiled(model: torch.nn.Module, options: bool | dict[str, Any]) -> Any:
    if options is False:
        return model
    return torch.compile(model, **(options if isinstance(options, dict) else {}))

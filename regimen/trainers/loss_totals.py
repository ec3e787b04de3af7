"""LossTotals: the running sums of the losses over an epoch or a validation, and how checkpoints keep them."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from regimen.data.collate import batch_size
from regimen.models import Model
from regimen.models.model import metric_modules, metric_state_copy, metric_states, replace_metric_state
from regimen.trainers.distributed import Distributed

logger = logging.getLogger(__name__)


class LossTotals:
    """Sums of the losses over an epoch or a validation, kept as tensors so no step waits on the device.

    Each batch's losses count once per instance in it, so the mean is per instance, whatever the batches' sizes:
    a final short batch weighs what its instances do, and ``regimen evaluate`` with another batch size gives the
    same loss. The instances are the model's ``batch_size`` output where it returns one (an int: a model whose
    loss is a mean over tokens may report its tokens), else the batch's first dimension; a batch with neither
    counts as one.
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.batches = 0
        self.instances = 0

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "batches": self.batches, "instances": self.instances}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # A checkpoint from before losses were weighted by instances: its sums are of batch means.
        self.sums, self.batches = dict(state["sums"]), state["batches"]
        self.instances = state.get("instances", self.batches)

    def add(self, output: dict[str, Any], batch: Mapping[str, Any]) -> None:
        self.batches += 1
        loss = output.get("loss")
        if loss is None:
            return
        reported = output.get("batch_size")
        weight = int(reported) if reported is not None else (batch_size(batch) or 1)
        self.instances += weight
        self._add("loss", loss, weight)
        if "reg_loss" in output:
            self._add("reg_loss", output["reg_loss"], weight)
        for name, value in output.get("named_losses", {}).items():
            self._add(f"loss_{name}", value, weight)

    def _add(self, name: str, value: torch.Tensor, weight: int) -> None:
        total = self.sums.get(name)
        if total is None:
            self.sums[name] = value.detach().float() * weight  # the one allocation; later batches add in place
        else:
            total.add_(value.detach(), alpha=weight)

    def reduced(self, distributed: Distributed) -> LossTotals:
        """The totals over every worker of a distributed run (a copy; this one is unchanged): one collective."""
        if distributed.world_size == 1:
            return self
        names = sorted(self.sums)
        counts = torch.tensor([float(self.batches), float(self.instances)])
        tensors = [self.sums[name].clone() for name in names] + [counts]
        distributed.all_reduce_sum_(tensors)
        total = LossTotals()
        total.sums = dict(zip(names, tensors[:-1]))
        total.batches, total.instances = (round(float(count)) for count in tensors[-1])
        return total

    def metrics(
        self, prefix: str, model: Model, reset: bool, distributed: Distributed | None = None
    ) -> dict[str, float]:
        """The losses per instance and the model's metrics, prefixed. With ``distributed`` (and ``reset``), the
        model's ``metric_state()`` tensors are first summed over the workers and its torchmetrics metrics reduced,
        so its metrics are the whole data's. ``reset`` also resets every torchmetrics metric of the model, whether
        or not its ``get_metrics`` does."""
        reduces = distributed is not None and distributed.world_size > 1 and reset
        state = model.metric_state()
        if reduces:
            if state:
                distributed.all_reduce_sum_(state)
            distributed.reduce_metrics_(model)
        values = {f"{prefix}{name}": float(total) / max(self.instances, 1) for name, total in self.sums.items()}
        metrics = model.get_metrics(reset=reset)
        if reset:
            for metric in metric_modules(model).values():
                metric.reset()
        if reduces and not state and type(model).get_metrics is not Model.get_metrics:
            _warn_if_unreduced(model, metrics, distributed)  # the model computes metrics of its own
        values.update({f"{prefix}{name}": value for name, value in metrics.items()})
        return values


def _warn_if_unreduced(model: Model, metrics: dict[str, float], distributed: Distributed) -> None:
    """Warn once when a model's metrics, with no ``metric_state()`` to sum, differ across the workers: each worker
    counted only its share of the data, and the primary's share is what gets reported. (Every worker calls this.)"""
    gathered = distributed.gather_objects(metrics)
    if not gathered or getattr(model, "_regimen_warned_unreduced", False):
        return
    differing = sorted(name for name in gathered[0] if len({repr(worker.get(name)) for worker in gathered}) > 1)
    if differing:
        model._regimen_warned_unreduced = True  # type: ignore[attr-defined]
        shown = ", ".join(f"{name}: {[worker.get(name) for worker in gathered]}" for name in differing[:3])
        logger.warning(
            "%s's metrics differ across the %d workers (%s) and nothing reduces them: the primary's share of the "
            "data is reported. Make the metric a torchmetrics attribute of the model, or keep its counts in "
            "tensors that metric_state() returns, and it is reduced over the workers",
            type(model).__name__, len(gathered), shown,
        )  # fmt: skip


def running_sums(totals: LossTotals, model: Model, distributed: Distributed | None = None) -> dict[str, Any]:
    """For a checkpoint: the epoch's loss totals and the model's ``metric_state()`` counters so far, summed over
    the workers of ``distributed`` (every worker calls this together; None or a single worker: this worker's own),
    and the states of its torchmetrics metrics, one copy per worker (the primary gets them all; the others None).
    The counters are copies; a single worker's totals are its live tensors, so save them before the next step."""
    counters = [counter.clone() for counter in model.metric_state()]
    # Each worker's own states rather than their reduction: a state reduced by "mean", a callable or none cannot
    # be added to afterwards, and a worker resuming with its own states reduces at the epoch's end exactly as the
    # run would have without the interruption.
    states = {name: metric_state_copy(metric) for name, metric in metric_modules(model).items()}
    every_worker: list[Any] | None = [states]
    if distributed is not None:
        totals = totals.reduced(distributed)
        if counters:
            distributed.all_reduce_sum_(counters)
        if states:
            every_worker = distributed.gather_objects(states)
    return {"loss_totals": totals.state_dict(), "metric_state": counters, "torchmetrics": every_worker}


def restore_running_sums(state: Mapping[str, Any], totals: LossTotals, model: Model, distributed: Distributed) -> None:
    """Take up what `running_sums` saved: the primary carries the sums of every worker's batches so far, and the
    other workers start theirs afresh, so the epoch's sums over the workers come out whole, whatever their
    number; each worker takes up its own torchmetrics states (see `restore_metric_states`). (A checkpoint from
    before ``metric_state`` was saved holds the counters in the model's state only; one from before torchmetrics
    states were saved leaves the metrics as the model's state loaded them, on the primary alone.)"""
    primary = distributed.is_primary
    if primary:
        totals.load_state_dict(state["loss_totals"])
    for counter, saved in zip(model.metric_state(), state.get("metric_state", [])):
        counter.copy_(saved if primary else torch.zeros_like(saved))
    saved_states = state.get("torchmetrics")
    if saved_states is None:
        if not primary:
            for metric in metric_modules(model).values():
                metric.reset()
        return
    restore_metric_states(model, saved_states, distributed.rank, distributed.world_size)


def restore_metric_states(model: Model, saved: list[dict[str, Any]], rank: int, world_size: int) -> None:
    """Give worker ``rank`` of ``world_size`` the torchmetrics states that the checkpoint's workers ``saved``: its
    own when their number is the same. With another number, the saved workers are dealt out in turn (worker ``r``
    takes those whose rank is ``r`` modulo ``world_size``) and a worker's several are merged as torchmetrics'
    sync reduces workers' states; a metric whose states cannot merge keeps the first's (with a warning). Raises
    RuntimeError when the checkpoint's metrics or their states are not the model's."""
    metrics = metric_modules(model)
    for worker in saved:
        if set(worker) != set(metrics):
            raise RuntimeError(
                f"cannot resume: the checkpoint holds the states of the torchmetrics metrics {sorted(worker)}; "
                f"the model's are {sorted(metrics)}"
            )
        for name, metric in metrics.items():
            expected, found = sorted(metric_states(metric)), sorted(worker[name]["states"])
            if found != expected:
                raise RuntimeError(
                    f"cannot resume: the checkpoint holds the states {found} of the torchmetrics metric {name!r} "
                    f"({type(metric).__name__}), whose states are {expected}"
                )
    mine = saved[rank::world_size]
    for name, metric in metrics.items():
        for index, worker in enumerate(mine):
            if index == 0:
                replace_metric_state(metric, worker[name]["states"], worker[name]["update_count"])
            else:
                _merge(name, metric, worker[name], len(mine))


def _merge(name: str, metric: Any, saved: dict[str, Any], count: int) -> None:
    """Add another saved worker's states to ``metric``'s (the checkpoint had more workers than this run), as
    torchmetrics' sync reduces two workers' states: a list state joined, a tensor state stacked and reduced by its
    ``dist_reduce_fx``. A state reduced by none cannot be merged so that it takes further updates: such a metric
    keeps the first worker's states, with a warning."""
    merged = {}
    for state, local in metric_states(metric).items():
        incoming = saved["states"][state]
        reduction = metric._reductions[state]  # torchmetrics' record of each state's dist_reduce_fx
        if isinstance(local, list):
            merged[state] = [*local, *incoming]
            continue
        combined = None if reduction is None else reduction(torch.stack([local, incoming.to(local)]))
        if combined is not None and combined.shape == local.shape:
            merged[state] = combined
        else:
            logger.warning(
                "the torchmetrics metric %r (%s) cannot merge the states of the %d checkpoint workers it resumes "
                "(its state %r is not reduced to one of its shape): its value for this epoch leaves out all but "
                "one worker's batches before the checkpoint",
                name, type(metric).__name__, count, state,
            )  # fmt: skip
            return
    replace_metric_state(metric, merged, metric.update_count + saved["update_count"])


class RunningMetrics(Mapping[str, float]):
    """The running metrics of a pass, read from the totals and the model on first access and then kept.

    Reading them waits for the device, so the loop hands this to the progress bar and the callbacks, which read
    it only when they show or log something. Read it in the callback: it holds the values of its first reading.
    """

    def __init__(self, totals: LossTotals, prefix: str, model: Model) -> None:
        self._totals, self._prefix, self._model = totals, prefix, model
        self._values: dict[str, float] | None = None

    def _read(self) -> dict[str, float]:
        if self._values is None:
            self._values = self._totals.metrics(self._prefix, self._model, reset=False)
        return self._values

    def __getitem__(self, key: str) -> float:
        return self._read()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())

"""LossTotals: the running sums of the losses over an epoch or a validation, and how checkpoints keep them."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from regimen.data.collate import batch_size
from regimen.models import Model
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
        model's ``metric_state()`` tensors are first summed over the workers, so its metrics are the whole data's."""
        reduces = distributed is not None and distributed.world_size > 1 and reset
        state = model.metric_state()
        if reduces and state:
            distributed.all_reduce_sum_(state)
        values = {f"{prefix}{name}": float(total) / max(self.instances, 1) for name, total in self.sums.items()}
        metrics = model.get_metrics(reset=reset)
        if reduces and not state:
            _warn_if_unreduced(model, metrics, distributed)
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
            "data is reported. Keep the metric's counts in tensors that metric_state() returns, and they are "
            "summed over the workers",
            type(model).__name__, len(gathered), shown,
        )  # fmt: skip


def running_sums(totals: LossTotals, model: Model, distributed: Distributed | None = None) -> dict[str, Any]:
    """For a checkpoint: the epoch's loss totals and the model's ``metric_state()`` counters so far, summed over
    the workers of ``distributed`` (every worker calls this together; None or a single worker: this worker's own).
    The counters are copies; a single worker's totals are its live tensors, so save them before the next step."""
    counters = [counter.clone() for counter in model.metric_state()]
    if distributed is not None:
        totals = totals.reduced(distributed)
        if counters:
            distributed.all_reduce_sum_(counters)
    return {"loss_totals": totals.state_dict(), "metric_state": counters}


def restore_running_sums(state: Mapping[str, Any], totals: LossTotals, model: Model, primary: bool) -> None:
    """Take up what `running_sums` saved: the primary carries the sums of every worker's batches so far, and the
    other workers start theirs afresh, so the epoch's sums over the workers come out whole, whatever their
    number. (A checkpoint from before ``metric_state`` was saved holds the counters in the model's state only.)"""
    if primary:
        totals.load_state_dict(state["loss_totals"])
    for counter, saved in zip(model.metric_state(), state.get("metric_state", [])):
        counter.copy_(saved if primary else torch.zeros_like(saved))


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

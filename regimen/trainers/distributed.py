"""The distributed runtime: the one small object through which a worker talks to its fellow workers, if it has any.

The trainer calls every method of :class:`Distributed` unconditionally. A single-process run gets the base class,
whose methods return at once; a multi-process run gets :class:`ProcessGroupDistributed`, backed by an initialised
``torch.distributed`` process group (or its FSDP subclass, in ``sharding``). The training loop never branches on the
backend: only these runtimes (and ``sharded_state``, for sharded checkpoints) use ``torch.distributed``.

Also here is the launcher for one machine's workers, :func:`spawn_workers`, which stops all of them within seconds
when one fails and raises :class:`WorkerFailed` naming the worker and its error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NoReturn

import torch
import torch.distributed as dist
import torch.multiprocessing
from torch.multiprocessing import ProcessContext, ProcessExitedException, ProcessRaisedException
from torch.nn.parallel import DistributedDataParallel

from regimen.models.model import metric_modules, metric_states, replace_metric_state
from regimen.registry import ConfigurationError

logger = logging.getLogger(__name__)

Backend = Literal["gloo", "nccl"]

# How long a collective waits for a worker that has not arrived before raising. A dead worker on this machine is
# noticed far sooner (Gloo raises as soon as the peer's sockets close, and spawn_workers stops everyone); this bounds
# the wait for a worker that hangs or whose machine vanished. Raise it if the primary does long work alone (a big
# checkpoint, a final evaluation) while the others wait at a barrier.
DEFAULT_TIMEOUT_S = 600.0
# When a worker fails, the others get this long to fail on their own (running their `finally` blocks), then SIGTERM,
# then as long again before SIGKILL: a worker that handles SIGTERM itself (pre-emption) or is stuck in C++ code would
# otherwise never stop.
TERMINATION_GRACE_S = 3.0
TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# Where a worker notes, on the exception that ends it, when it failed (see ProcessGroupDistributed.shutdown).
FAILURE_TIME_ATTRIBUTE = "_regimen_failure_time"


class Distributed:
    """A single worker on its own: rank 0 of 1, every collective returns at once.

    The base of the distributed runtime and what a single-process run uses; :class:`ProcessGroupDistributed` does
    the same things across workers. It is a context manager that calls :meth:`shutdown` on exit.
    """

    # Whether checkpoints are written by every worker, each its shards (a model sharded with FSDP), rather than
    # by the primary alone.
    shards_checkpoints = False

    def __init__(self, device: torch.device | str | None = None) -> None:
        self._device = torch.device("cpu") if device is None else torch.device(device)

    @property
    def rank(self) -> int:
        """This worker's rank among all workers on all machines."""
        return 0

    @property
    def local_rank(self) -> int:
        """This worker's rank among the workers on its machine (its GPU index)."""
        return 0

    @property
    def world_size(self) -> int:
        """How many workers there are, on all machines."""
        return 1

    @property
    def is_primary(self) -> bool:
        """Whether this worker is rank 0, the one that writes checkpoints, metrics and logs."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether there is a process group behind this object."""
        return False

    @property
    def device(self) -> torch.device:
        """The device this worker computes on."""
        return self._device

    def shard_model(self, model: torch.nn.Module) -> None:
        """Shard ``model``'s parameters across the workers, in place, before an optimizer is built on them (which
        a sharded model's checkpoints, FSDP, need); nothing without sharding."""

    def wrap(self, model: torch.nn.Module, find_unused_parameters: bool | None = None) -> torch.nn.Module:
        """The module to call for forward and backward. Keep using ``model`` itself for state dicts, so that
        checkpoints never get the ``module.`` prefix of a wrapper. ``model`` must already be on :attr:`device`."""
        return model

    def shard(self, loader: Any) -> Any:
        """``loader`` made to produce only this worker's share of each epoch (``loader`` itself with one worker);
        a dict of named loaders (validation sets) is sharded loader by loader."""
        if isinstance(loader, dict):
            return {name: self.shard(member) for name, member in loader.items()}
        if loader is None or self.world_size == 1:
            return loader
        if not callable(getattr(loader, "shard", None)):
            raise ConfigurationError(
                f"a distributed run needs data loaders that can be sharded; {type(loader).__name__} has no shard()"
            )
        loader.shard(self.rank, self.world_size)
        return loader

    def full_model_state(self, model: torch.nn.Module) -> dict[str, Any]:
        """The model's full weights (``model.state_dict()``), for ``best.th`` and archives; a collective with a
        sharded model, whose full weights only the primary gets."""
        return model.state_dict()

    def load_full_model_state(self, model: torch.nn.Module, state: dict[str, Any]) -> None:
        """Load full weights ``state`` (from :meth:`full_model_state` or ``best.th``) into ``model``."""
        model.load_state_dict(state)

    def no_sync(self, wrapped: torch.nn.Module) -> AbstractContextManager[None]:
        """A context in which backward passes through ``wrapped`` (from :meth:`wrap`) keep their gradients local:
        the non-final micro-batches of gradient accumulation, whose gradients the final one's all-reduce carries."""
        return contextlib.nullcontext()

    def all_reduce_sum_(self, tensors: list[torch.Tensor]) -> None:
        """Replace each tensor, in place, by its sum across workers (every worker passes tensors of the same shapes
        and dtypes, in the same order). A worker on its own already holds the sum."""

    def reduce_metrics_(self, model: torch.nn.Module) -> None:
        """Replace the states of every torchmetrics metric in ``model``, in place, by their reduction across
        workers, each state by its own ``dist_reduce_fx``, and each metric's count of updates by their sum: for a
        reading of the metrics that resets them after it. A worker on its own already holds them."""

    def sum_floats(self, values: dict[str, float]) -> dict[str, float]:
        """Each value summed across workers, computed in float64 (every worker passes the same keys)."""
        return {key: float(value) for key, value in values.items()}

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any worker, e.g. whether any was asked to stop by a pre-emption signal."""
        return bool(flag)

    def agree(self, primary_says: list[int], anyone_says: bool) -> tuple[list[int], bool]:
        """Decisions every worker must take alike, in one collective: the primary's numbers ``primary_says`` (a
        checkpoint is due by its clock, when to agree next) and whether ``anyone_says`` is true on any worker (a
        signal arrived). Every worker passes as many numbers."""
        return [int(value) for value in primary_says], bool(anyone_says)

    def broadcast_object(self, value: Any) -> Any:
        """The primary's ``value`` (anything picklable), on every worker; the others' values are ignored."""
        return value

    def gather_objects(self, value: Any) -> list[Any] | None:
        """Every worker's ``value`` (anything picklable) in rank order on the primary; None on the other workers."""
        return [value]

    def barrier(self) -> None:
        """Wait until every worker has arrived here."""

    def shutdown(self) -> None:
        """Release the process group, if there is one; the object cannot communicate afterwards."""

    def __enter__(self) -> Distributed:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, world_size={self.world_size}, device={self.device})"


class ProcessGroupDistributed(Distributed):
    """One worker of several, communicating through the initialised default ``torch.distributed`` process group.

    Build it with :func:`init_process_group` or :func:`from_torchrun_environment`, which initialise the group.
    Each method is one collective that every worker must call, in the same order.
    """

    joined = False  # whether this process has been a worker of a process group (see `leave_at_once`)

    def __init__(self, local_rank: int, device: torch.device | str, find_unused_parameters: bool = False) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "ProcessGroupDistributed needs an initialised torch.distributed process group; "
                "build it with init_process_group() or from_torchrun_environment()"
            )
        super().__init__(device)
        ProcessGroupDistributed.joined = True
        self._rank = dist.get_rank()
        self._world_size = dist.get_world_size()
        self._local_rank = local_rank
        self._find_unused_parameters = find_unused_parameters
        self._nccl = dist.get_backend() == "nccl"
        # NCCL moves only CUDA tensors; Gloo implements every collective for CPU tensors but not all for CUDA ones.
        self._communication_device = self.device if self._nccl else torch.device("cpu")

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def local_rank(self) -> int:
        return self._local_rank

    @property
    def world_size(self) -> int:
        return self._world_size

    @property
    def enabled(self) -> bool:
        return True

    def wrap(self, model: torch.nn.Module, find_unused_parameters: bool | None = None) -> torch.nn.Module:
        """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel`, which first copies the primary's
        parameters and buffers to every worker, then averages gradients across workers in each backward pass and
        copies the primary's buffers again before each forward pass; the tensors of the model's ``metric_state()``
        are left alone, so that each worker counts its own batches. ``find_unused_parameters`` None uses the
        setting this object was made with."""
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        if find_unused_parameters is None:
            find_unused_parameters = self._find_unused_parameters
        counters = {id(tensor) for tensor in getattr(model, "metric_state", list)()}
        own = [name for name, buffer in model.named_buffers() if id(buffer) in counters]
        if own:
            # A model's metric counters are each worker's own, summed at the epoch's end: DDP must not copy the
            # primary's over them before every forward pass, as it does with other buffers (batch-norm statistics).
            # This static method is how torch lets a module name what DDP leaves alone.
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, own)
        self._own_metrics(model)
        return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=find_unused_parameters)

    @staticmethod
    def _own_metrics(model: torch.nn.Module) -> None:
        """Make the model's torchmetrics metrics compute from this worker's states alone: the primary reads them
        for the progress bar by itself, and :meth:`reduce_metrics_` reduces them when every worker reads them."""
        for metric in metric_modules(model).values():
            # By default a torchmetrics metric's compute() gathers its states from every worker whenever a process
            # group is up: a collective that one worker reading alone would wait on forever.
            metric.distributed_available_fn = _computes_alone

    def no_sync(self, wrapped: torch.nn.Module) -> AbstractContextManager[None]:
        if isinstance(wrapped, DistributedDataParallel):
            return wrapped.no_sync()
        return contextlib.nullcontext()

    def all_reduce_sum_(self, tensors: list[torch.Tensor]) -> None:
        """Replace each tensor, in place, by its sum across workers, in a single collective however many there are.

        The tensors travel in one flat buffer: int64 when all of them are integer or bool (exact), float64 otherwise
        (exact for integers up to 2**53). A bool tensor comes back true where any worker's was true.
        """
        if not tensors:
            return
        for tensor in tensors:
            if tensor.is_complex():
                raise ValueError(f"all_reduce_sum_ takes real tensors, got one of dtype {tensor.dtype}")
        exact = not any(tensor.is_floating_point() for tensor in tensors)
        dtype = torch.int64 if exact else torch.float64
        with torch.no_grad():
            flat = torch.cat([tensor.detach().reshape(-1).to(self._communication_device, dtype) for tensor in tensors])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            for tensor, total in zip(tensors, flat.split([tensor.numel() for tensor in tensors])):
                tensor.copy_(total.view(tensor.shape))

    def reduce_metrics_(self, model: torch.nn.Module) -> None:
        """Through torchmetrics' own ``sync``, which gathers every state from every worker and reduces it by the
        state's ``dist_reduce_fx``: the reduced states are kept in place of the worker's own (``unsync`` would put
        those back), since the reading that follows resets them. Every worker calls this, for the same metrics."""
        metrics = list(metric_modules(model).values())
        if not metrics:
            return
        lists = [
            (metric, name)
            for metric in metrics
            for name, state in metric_states(metric).items()
            if isinstance(state, list)
        ]
        # One collective: each metric's count of updates summed (so that a metric some worker updated is reported by
        # every worker: the same keys everywhere), and how many workers hold nothing in each list state.
        counts = [metric.update_count for metric in metrics] + [int(not getattr(m, name)) for m, name in lists]
        totals = torch.tensor(counts, dtype=torch.int64)
        self.all_reduce_sum_([totals])
        updates, empties = totals[: len(metrics)].tolist(), totals[len(metrics) :].tolist()
        partly_empty = [state for state, empty in zip(lists, empties) if 0 < empty < self.world_size]
        if partly_empty:
            self._stand_in_for_empty_lists(partly_empty)
        for metric, count in zip(metrics, updates):
            metric.sync(distributed_available=_reduces_across_workers)
            reduced = dict(metric_states(metric))
            metric.unsync()  # puts the worker's own states back and leaves the metric unsynced, able to compute
            replace_metric_state(metric, reduced, count)

    def _stand_in_for_empty_lists(self, empty: list[tuple[Any, str]]) -> None:
        """Give a list state that this worker left empty, and another did not, an empty tensor of the others' shape
        and dtype: torchmetrics' sync gathers a list state as one tensor from each worker, and its own stand-in for
        an empty list (a 1-d float tensor) does not match 2-d or integer ones (Gloo aborts the process)."""
        layouts = [None if not getattr(m, name) else _layout(getattr(m, name)) for m, name in empty]
        every_worker: list[Any] = [None] * self.world_size
        dist.all_gather_object(every_worker, layouts)
        for index, (metric, name) in enumerate(empty):
            if not getattr(metric, name):
                shape, dtype = next(worker[index] for worker in every_worker if worker[index] is not None)
                setattr(metric, name, [torch.empty((0, *shape), dtype=dtype, device=metric.device)])

    def sum_floats(self, values: dict[str, float]) -> dict[str, float]:
        # Sorted, so that workers whose dicts were filled in a different order still line up.
        keys = sorted(values)
        totals = torch.tensor([float(values[key]) for key in keys], dtype=torch.float64)
        self.all_reduce_sum_([totals])
        summed = dict(zip(keys, totals.tolist()))
        return {key: summed[key] for key in values}

    def any(self, flag: bool) -> bool:
        count = torch.tensor([int(bool(flag))], dtype=torch.int64)
        self.all_reduce_sum_([count])
        return bool(count.item() > 0)

    def agree(self, primary_says: list[int], anyone_says: bool) -> tuple[list[int], bool]:
        primary = [int(value) if self.is_primary else 0 for value in primary_says]
        votes = torch.tensor([*primary, int(bool(anyone_says))], dtype=torch.int64)
        self.all_reduce_sum_([votes])
        *agreed, anyone = votes.tolist()
        return agreed, anyone > 0

    def broadcast_object(self, value: Any) -> Any:
        objects = [value if self.is_primary else None]
        dist.broadcast_object_list(objects, src=0, device=self._communication_device)
        return objects[0]

    def gather_objects(self, value: Any) -> list[Any] | None:
        # all_gather_object rather than gather_object: it works the same on Gloo and NCCL, and the objects gathered
        # here (per-rank RNG states) are small.
        objects: list[Any] = [None] * self.world_size
        dist.all_gather_object(objects, value)
        return objects if self.is_primary else None

    def barrier(self) -> None:
        dist.barrier(device_ids=[self.device.index] if self._nccl else None)

    def shutdown(self) -> None:
        error = sys.exc_info()[1]
        if error is not None:
            # Called while an exception propagates: destroying the group closes this worker's connections, and the
            # others' collectives fail at once. Noting when this worker failed lets spawn_workers name it, rather
            # than another worker whose error was a consequence but happened to be recorded first.
            _note_failure_time(error)
        if dist.is_initialized():
            dist.destroy_process_group()


def _layout(items: list[torch.Tensor]) -> tuple[tuple[int, ...], torch.dtype]:
    """The shape after the first dimension and the dtype of the tensors a list state joins along it."""
    return tuple(items[0].shape[1:]), items[0].dtype


def _computes_alone() -> bool:
    """A torchmetrics ``distributed_available_fn`` saying no: its metric's compute() never communicates."""
    return False


def _reduces_across_workers() -> bool:
    return True


def init_process_group(
    backend: Backend,
    rank: int,
    world_size: int,
    local_rank: int,
    device: torch.device,
    primary_address: str,
    primary_port: int,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    find_unused_parameters: bool = False,
    runtime: Callable[[int, torch.device], ProcessGroupDistributed] | None = None,
) -> ProcessGroupDistributed:
    """Join the default process group of ``world_size`` workers as ``rank``, and return the runtime backed by it.

    The primary (rank 0) listens on ``primary_address:primary_port`` and the others connect to it; every worker
    waits there until all have arrived. ``device`` is this worker's device: ``cuda:<local_rank>`` for ``"nccl"``,
    the CPU for ``"gloo"``. A collective that waits longer than ``timeout_s`` for another worker raises.
    ``runtime(local_rank, device)`` builds the runtime (a ``ddp_accelerator``'s); by default plain DDP's.
    """
    if backend not in ("gloo", "nccl"):
        raise ValueError(f'backend must be "gloo" or "nccl", got {backend!r}')
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank {rank} and world_size {world_size}")
    if local_rank < 0:
        raise ValueError(f"local_rank must not be negative, got {local_rank}")
    if not 0 < primary_port < 2**16:
        raise ValueError(f"primary_port must be between 1 and 65535, got {primary_port}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    device = torch.device(device)
    if backend == "nccl" and (device.type != "cuda" or device.index is None):
        raise ValueError(f'the "nccl" backend needs a CUDA device with an index, such as cuda:0; got {device}')
    if dist.is_initialized():
        raise RuntimeError("this process has already joined a process group; shut it down before joining another")
    host = f"[{primary_address}]" if ":" in primary_address and not primary_address.startswith("[") else primary_address
    extra: dict[str, Any] = {}
    if backend == "nccl":
        # Collectives that pick "the current device" (object broadcasts, barriers) must pick this worker's GPU.
        torch.cuda.set_device(device)
        extra["device_id"] = device
    dist.init_process_group(
        backend,
        init_method=f"tcp://{host}:{primary_port}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=timeout_s),
        **extra,
    )
    if runtime is not None:
        return runtime(local_rank, device)
    return ProcessGroupDistributed(local_rank, device, find_unused_parameters)


def from_torchrun_environment(
    runtime: Callable[[int, torch.device], ProcessGroupDistributed] | None = None,
) -> ProcessGroupDistributed | None:
    """The runtime for a worker started by ``torchrun`` (or anything that sets its variables), or None when
    ``WORLD_SIZE`` is unset or 1.

    Reads ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; uses NCCL on
    ``cuda:<LOCAL_RANK>`` when CUDA is available and Gloo on the CPU otherwise; ``runtime`` as for
    :func:`init_process_group`. With ``WORLD_SIZE`` above 1 but
    another variable missing it raises ``ValueError`` rather than quietly training one copy per process.
    """
    world_size = _integer_variable("WORLD_SIZE") if os.environ.get("WORLD_SIZE") else 1
    if world_size <= 1:
        return None
    missing = [name for name in TORCHRUN_VARIABLES if not os.environ.get(name)]
    if missing:
        raise ValueError(
            f"WORLD_SIZE is {world_size} but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set; "
            "launch the workers with torchrun, or set all of WORLD_SIZE, " + ", ".join(TORCHRUN_VARIABLES)
        )
    local_rank = _integer_variable("LOCAL_RANK")
    cuda = torch.cuda.is_available()
    return init_process_group(
        "nccl" if cuda else "gloo",
        rank=_integer_variable("RANK"),
        world_size=world_size,
        local_rank=local_rank,
        device=torch.device("cuda", local_rank) if cuda else torch.device("cpu"),
        primary_address=os.environ["MASTER_ADDR"],
        primary_port=_integer_variable("MASTER_PORT"),
        runtime=runtime,
    )


def _integer_variable(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


class WorkerFailed(Exception):
    """A worker started by :func:`spawn_workers` raised or died, and the others were stopped.

    ``str()`` names the worker and the cause: ``worker 1 failed: ValueError: boom``, or ``worker 1 failed: killed
    by signal SIGKILL``, or ``worker 1 failed: exited with code 3``. ``traceback`` holds the worker's traceback
    text when it raised; ``error_type`` the name of the exception's class; ``exit_code`` the process's exit code
    (negative: the signal's number) when it died without raising.
    """

    def __init__(
        self,
        rank: int,
        message: str,
        traceback: str | None = None,
        error_type: str | None = None,
        exit_code: int | None = None,
    ) -> None:
        super().__init__(f"worker {rank} failed: {message}")
        self.rank = rank
        self.message = message
        self.traceback = traceback
        self.error_type = error_type
        self.exit_code = exit_code

    @classmethod
    def from_exit_code(cls, rank: int, exit_code: int) -> WorkerFailed:
        """The failure of worker ``rank``, which died without raising: with ``exit_code``, or by the signal whose
        number is ``-exit_code`` when that is negative (as ``multiprocessing`` reports it)."""
        if exit_code >= 0:
            return cls(rank, f"exited with code {exit_code}", exit_code=exit_code)
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = str(-exit_code)
        return cls(rank, f"killed by signal {name}", exit_code=exit_code)

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle their str() as the only argument by default, which this __init__ cannot take.
        return type(self), (self.rank, self.message, self.traceback, self.error_type, self.exit_code)


def spawn_workers(
    worker: Callable[..., Any],
    args: tuple,
    num_workers: int,
    *,
    grace_period_s: float = TERMINATION_GRACE_S,
    forward_signals: tuple[int, ...] = (),
) -> None:
    """Run ``worker(local_rank, *args)`` in ``num_workers`` fresh processes on this machine and wait for them all.

    ``worker`` must be a module-level function and ``args`` picklable, since each process is started with the
    "spawn" method (the only one that is safe with CUDA). When a worker raises or dies, the others get
    ``grace_period_s`` seconds to stop on their own, then SIGTERM, then SIGKILL after as long again, and this raises
    :class:`WorkerFailed` for the worker that failed first. While they run, each of ``forward_signals`` that
    this process receives is passed on to every worker (Kubernetes signals a container's main process alone).
    """
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    if grace_period_s < 0:
        raise ValueError(f"grace_period_s must not be negative, got {grace_period_s}")
    with tempfile.TemporaryDirectory(prefix="regimen-workers-") as errors:
        context = torch.multiprocessing.start_processes(
            _run_worker, args=(worker, args, errors), nprocs=num_workers, join=False, start_method="spawn"
        )
        previous = _forward(forward_signals, context.processes)
        try:
            # torch's ProcessContext terminates the other workers when one exits with a non-zero code.
            while not context.join(grace_period=grace_period_s):
                pass
        except (ProcessRaisedException, ProcessExitedException) as failure:
            raise _worker_failed(failure, Path(errors)) from None
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            # Reached with workers still running only when this process was interrupted while waiting: they must
            # not outlive it.
            _stop(context.processes, grace_period_s)
            _remove_error_files(context)


def _forward(numbers: tuple[int, ...], processes: list[BaseProcess]) -> dict[int, Any]:
    """Pass each of the signals ``numbers`` on to every live process of ``processes``; returns the handlers they
    replaced (none outside the main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def forward(number: int, frame: Any) -> None:
        name = signal.Signals(number).name
        logger.warning("received %s: passing it to the workers, which save a checkpoint and stop", name)
        for process in processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, number)

    return {number: signal.signal(number, forward) for number in numbers}


def find_free_port() -> int:
    """A TCP port that is free on this machine now, for a primary to listen on. Another process may take it before
    the primary does, so use it at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("", 0))
        return int(probe.getsockname()[1])


def _run_worker(local_rank: int, worker: Callable[..., Any], args: tuple, errors: str) -> None:
    """The function each spawned process runs: ``worker``, recording what it raised for :func:`spawn_workers`.

    torch records only the traceback text, from which the exception's class and whole message cannot be told
    reliably; and it records no time, which tells the first failure from the ones it caused in the other workers.
    """
    try:
        worker(local_rank, *args)
    except SystemExit as stop:  # the worker's own exit status (a preempted run's 75)
        if stop.code is not None and not isinstance(stop.code, int):
            print(stop.code, file=sys.stderr)  # as Python itself reports sys.exit("message"), with status 1
        leave_at_once(stop.code if isinstance(stop.code, int) else int(stop.code is not None))
    except Exception as error:
        record = {
            "time": getattr(error, FAILURE_TIME_ATTRIBUTE, time.time()),
            "type": type(error).__name__,
            "message": _describe(error),
            "traceback": traceback.format_exc(),
        }
        path = Path(errors) / f"worker-{local_rank}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record))
        os.replace(temporary, path)
        raise
    leave_at_once(0)


def leave_at_once(code: int) -> NoReturn:
    """End a worker whose work is done with exit status ``code``, skipping the interpreter's teardown.

    ``destroy_process_group`` drops only torch's own references to the group: DDP's reducer (and anything else that
    holds the model) keeps the Gloo backend alive until the interpreter finalises its modules, and Gloo's threads
    destroyed then can abort the process ("terminate called without an active exception", SIGABRT) after a run
    that succeeded. Called once every file of the run is written and closed (`spawn_workers`' processes, and the
    CLI for a torchrun worker: see ``ProcessGroupDistributed.joined``); only the log handlers and standard streams
    need flushing.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _note_failure_time(error: BaseException) -> None:
    # On the exception itself, since a worker has no other place to keep it without module-level state.
    if not hasattr(error, FAILURE_TIME_ATTRIBUTE):
        with contextlib.suppress(AttributeError, TypeError):
            setattr(error, FAILURE_TIME_ATTRIBUTE, time.time())


def _describe(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:  # an exception whose __str__ fails must not hide the original one
        text = ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _worker_failed(failure: ProcessRaisedException | ProcessExitedException, errors: Path) -> WorkerFailed:
    records = {}
    for path in errors.glob("worker-*.json"):
        with contextlib.suppress(OSError, ValueError):
            records[int(path.stem.removeprefix("worker-"))] = json.loads(path.read_text())
    rank = failure.error_index
    if rank in records:
        # When one worker raises, the others' collectives raise too, and torch may see one of those exits first.
        rank = min(records, key=lambda index: records[index]["time"])
        record = records[rank]
        return WorkerFailed(rank, record["message"], record["traceback"], record["type"])
    if isinstance(failure, ProcessExitedException):
        return WorkerFailed.from_exit_code(rank, failure.exit_code)
    # The worker raised but left no record (it could not write one); torch's message holds its traceback.
    trace = failure.msg.split("terminated with the following error:\n", 1)[-1]
    last_line = trace.strip().splitlines()[-1] if trace.strip() else "an exception"
    return WorkerFailed(rank, last_line, trace)


def _stop(processes: list[BaseProcess], grace_period_s: float) -> None:
    alive = [process for process in processes if process.is_alive()]
    for process in alive:
        process.terminate()
    deadline = time.monotonic() + grace_period_s
    for process in alive:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in alive:
        if process.is_alive():
            process.kill()
        process.join()


def _remove_error_files(context: ProcessContext) -> None:
    # torch leaves a file in the temporary directory for each worker that raised.
    for path in context.error_files:
        with contextlib.suppress(OSError):
            os.remove(path)

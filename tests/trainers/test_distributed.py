"""The distributed runtime: collectives, DDP and the worker launcher, on real processes over Gloo on the CPU.

Starting a set of workers costs seconds (each imports torch), so each spawned worker function checks several
things and writes what it saw to a file that the test reads back.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from regimen.trainers.distributed import (
    Distributed,
    ProcessGroupDistributed,
    WorkerFailed,
    find_free_port,
    from_torchrun_environment,
    init_process_group,
    spawn_workers,
)

TORCHRUN = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def linear(seed: int) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 2)


def inputs(rank: int) -> torch.Tensor:
    return torch.arange(6.0).reshape(2, 3) * (rank + 1) - 2.0


def local_gradients(rank: int) -> list[torch.Tensor]:
    """The gradients that worker ``rank``'s batch gives at the weights of ``linear(0)``, computed in one process."""
    model = linear(0)
    model(inputs(rank)).square().sum().backward()
    return [parameter.grad for parameter in model.parameters()]


class Counting(torch.nn.Module):
    """A layer with a running statistic (a buffer DDP copies from the primary) and a metric counter."""

    def __init__(self, rank: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)
        self.register_buffer("statistic", torch.tensor(float(rank)))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        self.seen += len(features)
        return self.linear(features)

    def metric_state(self) -> list[torch.Tensor]:
        return [self.seen]


# Worker functions are module-level so that the spawned processes can unpickle them.


def collectives_worker(rank: int, port: int, directory: Path) -> None:
    # As torchrun would set them, in this worker's own environment.
    os.environ.update(
        WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    distributed = from_torchrun_environment()
    assert distributed is not None
    with distributed:
        floats = torch.full((2, 2), rank + 0.5)
        integers = torch.tensor([rank, 10])
        flags = torch.tensor([rank == 1, False])
        scalar = torch.tensor(rank * 0.25, dtype=torch.float64)
        distributed.all_reduce_sum_([floats, integers, flags, scalar])
        huge = torch.tensor([2**60 + rank])  # all integers: summed in int64, exactly
        distributed.all_reduce_sum_([huge])
        # Filled in a different order on each worker.
        values = {"loss": rank + 0.25, "count": 3} if rank == 0 else {"count": 3, "loss": rank + 0.25}

        # Each worker starts from different weights, which wrapping replaces by the primary's.
        model = linear(seed=rank + 10)
        wrapped = distributed.wrap(model)
        starts_as_primary = all(torch.equal(a, b) for a, b in zip(model.parameters(), linear(10).parameters()))
        model.load_state_dict(linear(0).state_dict())  # the weights local_gradients() differentiates at
        wrapped(inputs(rank)).square().sum().backward()
        synchronised = [parameter.grad.clone() for parameter in model.parameters()]
        model.zero_grad()
        with distributed.no_sync(wrapped):
            wrapped(inputs(rank)).square().sum().backward()
        kept_local = [parameter.grad.clone() for parameter in model.parameters()]

        # Batches of 3 instances on the primary and 5 on the other, twice: each counts its own instances.
        counting = Counting(rank)
        wrapped_counting = distributed.wrap(counting)
        for _ in range(2):
            wrapped_counting(torch.ones(3 + 2 * rank, 3)).sum().backward()

        results = {
            "rank": distributed.rank,
            "local_rank": distributed.local_rank,
            "world_size": distributed.world_size,
            "is_primary": distributed.is_primary,
            "enabled": distributed.enabled,
            "device": str(distributed.device),
            "tensors": [floats, integers, flags, scalar, huge],
            "sum_floats": distributed.sum_floats(values),
            "any_rank_1": distributed.any(rank == 1),
            "any_none": distributed.any(False),
            "broadcast": distributed.broadcast_object({"from": rank, "stop": rank == 0}),
            "gathered": distributed.gather_objects({"rank": rank, "state": [rank] * 3}),
            "starts_as_primary": starts_as_primary,
            "synchronised": synchronised,
            "kept_local": kept_local,
            "state_dict_keys": list(model.state_dict()),
            "wrapped_state_dict_keys": list(wrapped.state_dict()),
            "statistic": float(counting.statistic),
            "seen": int(counting.seen),
        }
        distributed.barrier()
    torch.save(results, directory / f"rank{rank}.pt")


def raising_worker(rank: int, port: int, directory: Path) -> None:
    # Both leave through shutdown(), as the trainer does: rank 1 closes its connections before its error is recorded,
    # and rank 0's collective fails at once, yet rank 1 is the one to blame.
    with init_process_group("gloo", rank, 2, rank, torch.device("cpu"), "127.0.0.1", port) as distributed:
        if rank == 1:
            raise ValueError("boom on rank 1")
        started = time.monotonic()
        try:
            distributed.all_reduce_sum_([torch.ones(1)])  # waits for rank 1, which never comes
        except Exception as error:
            record = {"error": type(error).__name__, "seconds": time.monotonic() - started}
            (directory / "rank0.json").write_text(json.dumps(record))
            raise


def exiting_worker(rank: int) -> None:
    # A worker that ends itself, as a preempted one does with 75; rank 1 with a message, as sys.exit allows.
    sys.exit(75 if rank == 0 else "stopping: the data ran out")


def killed_worker(rank: int, directory: Path) -> None:
    ready = directory / "rank0-ready"
    if rank == 1:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)
    # Like a worker whose pre-emption handler holds SIGTERM: only SIGKILL stops it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready.touch()
    time.sleep(120)


def test_a_single_worker_is_rank_0_of_1_and_its_collectives_return_their_input():
    distributed = Distributed()
    assert (distributed.rank, distributed.local_rank, distributed.world_size) == (0, 0, 1)
    assert distributed.is_primary and not distributed.enabled
    assert distributed.device == torch.device("cpu")
    assert Distributed(torch.device("cpu", 0)).device == torch.device("cpu", 0)

    model = linear(0)
    wrapped = distributed.wrap(model, find_unused_parameters=True)
    assert wrapped is model
    with distributed.no_sync(wrapped):
        wrapped(inputs(0)).sum().backward()
    assert model.weight.grad is not None

    tensors = [torch.tensor([1.5, 2.5]), torch.tensor([3])]
    distributed.all_reduce_sum_(tensors)
    assert tensors[0].tolist() == [1.5, 2.5] and tensors[1].tolist() == [3]
    assert distributed.sum_floats({"loss": 2.5, "count": 4}) == {"loss": 2.5, "count": 4.0}
    assert distributed.any(True) is True and distributed.any(False) is False
    assert distributed.broadcast_object({"stop": True}) == {"stop": True}
    assert distributed.gather_objects([1, 2]) == [[1, 2]]
    with distributed as entered:
        entered.barrier()
    distributed.shutdown()


def test_two_workers_sum_broadcast_gather_and_average_gradients(tmp_path):
    spawn_workers(collectives_worker, (find_free_port(), tmp_path), 2)
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]

    for rank, result in enumerate(results):
        assert (result["rank"], result["local_rank"], result["world_size"]) == (rank, rank, 2)
        assert result["is_primary"] == (rank == 0) and result["enabled"]
        assert result["device"] == "cpu"
        floats, integers, flags, scalar, huge = result["tensors"]
        assert floats.dtype == torch.float32 and floats.tolist() == [[2.0, 2.0], [2.0, 2.0]]
        assert integers.dtype == torch.int64 and integers.tolist() == [1, 20]
        assert flags.dtype == torch.bool and flags.tolist() == [True, False]
        assert scalar.shape == () and scalar.item() == 0.25
        assert huge.tolist() == [2**61 + 1]
        assert result["sum_floats"] == {"loss": 1.5, "count": 6.0}
        assert result["any_rank_1"] is True and result["any_none"] is False
        assert result["broadcast"] == {"from": 0, "stop": True}

        # DDP: every worker starts from the primary's weights, and a synchronised backward gives each the mean of
        # the workers' gradients, while under no_sync each keeps its own.
        assert result["starts_as_primary"]
        mean = [(a + b) / 2 for a, b in zip(local_gradients(0), local_gradients(1))]
        for got, expected in zip(result["synchronised"], mean):
            torch.testing.assert_close(got, expected)
        for got, expected in zip(result["kept_local"], local_gradients(rank)):
            torch.testing.assert_close(got, expected)
        assert not torch.allclose(result["kept_local"][0], mean[0])
        assert result["state_dict_keys"] == ["weight", "bias"]
        assert result["wrapped_state_dict_keys"] == ["module.weight", "module.bias"]
        # DDP gives every worker the primary's buffers, but the model's metric counters stay each worker's own.
        assert result["statistic"] == 0.0 and result["seen"] == [6, 10][rank]

    assert results[0]["gathered"] == [{"rank": 0, "state": [0, 0, 0]}, {"rank": 1, "state": [1, 1, 1]}]
    assert results[1]["gathered"] is None


def test_a_worker_that_raises_stops_the_other_waiting_in_a_collective(tmp_path):
    started = time.monotonic()
    with pytest.raises(WorkerFailed) as caught:
        spawn_workers(raising_worker, (find_free_port(), tmp_path), 2)
    assert time.monotonic() - started < 20

    failure = caught.value
    assert str(failure) == "worker 1 failed: ValueError: boom on rank 1"
    assert (failure.rank, failure.message, failure.error_type, failure.exit_code) == (
        1,
        "ValueError: boom on rank 1",
        "ValueError",
        None,
    )
    assert failure.traceback.startswith("Traceback (most recent call last):")
    assert "in raising_worker" in failure.traceback and "boom on rank 1" in failure.traceback
    # Gloo noticed the dead peer and raised in the survivor, long before the process group's timeout.
    survivor = json.loads((tmp_path / "rank0.json").read_text())
    assert survivor["error"] == "RuntimeError" and survivor["seconds"] < 10


def test_a_worker_killed_by_a_signal_is_named_and_the_other_is_killed_despite_ignoring_sigterm(tmp_path):
    started = time.monotonic()
    with pytest.raises(WorkerFailed) as caught:
        spawn_workers(killed_worker, (tmp_path,), 2, grace_period_s=0.5)
    assert time.monotonic() - started < 20
    assert str(caught.value) == "worker 1 failed: killed by signal SIGKILL"
    assert (caught.value.exit_code, caught.value.traceback) == (-signal.SIGKILL, None)
    assert (tmp_path / "rank0-ready").exists()


def test_a_worker_s_own_exit_status_and_message_are_kept(capfd):
    with pytest.raises(WorkerFailed) as caught:
        spawn_workers(exiting_worker, (), 2, grace_period_s=5)
    assert caught.value.exit_code in (75, 1)  # whichever the launcher saw first; both are theirs, not a signal
    assert "stopping: the data ran out" in capfd.readouterr().err


@pytest.mark.parametrize(
    ("exit_code", "message"),
    [
        (3, "worker 1 failed: exited with code 3"),
        (-signal.SIGSEGV, "worker 1 failed: killed by signal SIGSEGV"),
        (-99, "worker 1 failed: killed by signal 99"),
    ],
)
def test_a_worker_that_died_without_raising_is_described_by_its_exit_code(exit_code, message):
    failure = WorkerFailed.from_exit_code(1, exit_code)
    assert str(failure) == message
    assert (failure.rank, failure.exit_code, failure.traceback, failure.error_type) == (1, exit_code, None, None)


def test_spawn_workers_rejects_bad_arguments_before_starting_anything():
    with pytest.raises(ValueError) as caught:
        spawn_workers(killed_worker, (), 0)
    assert str(caught.value) == "num_workers must be at least 1, got 0"
    with pytest.raises(ValueError) as caught:
        spawn_workers(killed_worker, (), 2, grace_period_s=-1.0)
    assert str(caught.value) == "grace_period_s must not be negative, got -1.0"


def test_worker_failed_survives_pickling_with_its_traceback_out_of_its_message():
    failure = WorkerFailed(2, "KeyError: 'x'", "Traceback ...\nKeyError: 'x'\n", "KeyError")
    copy = pickle.loads(pickle.dumps(failure))
    assert str(copy) == "worker 2 failed: KeyError: 'x'"
    assert (copy.rank, copy.message, copy.traceback, copy.error_type, copy.exit_code) == (
        2,
        "KeyError: 'x'",
        "Traceback ...\nKeyError: 'x'\n",
        "KeyError",
        None,
    )


def test_from_torchrun_environment_is_none_without_its_variables(monkeypatch):
    for name in TORCHRUN:
        monkeypatch.delenv(name, raising=False)
    assert from_torchrun_environment() is None
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc-per-node 1
    assert from_torchrun_environment() is None


def test_from_torchrun_environment_names_what_is_missing_or_malformed(monkeypatch):
    for name in TORCHRUN:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ValueError) as caught:
        from_torchrun_environment()
    assert str(caught.value) == (
        "WORLD_SIZE is 2 but MASTER_ADDR, MASTER_PORT are not set; launch the workers with torchrun, "
        "or set all of WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT"
    )
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError) as caught:
        from_torchrun_environment()
    assert str(caught.value) == "environment variable WORLD_SIZE must be an integer, got 'two'"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"backend": "mpi"}, 'backend must be "gloo" or "nccl", got \'mpi\''),
        ({"rank": 2}, "need 0 <= rank < world_size, got rank 2 and world_size 2"),
        ({"world_size": 0, "rank": 0}, "need 0 <= rank < world_size, got rank 0 and world_size 0"),
        ({"local_rank": -1}, "local_rank must not be negative, got -1"),
        ({"primary_port": 0}, "primary_port must be between 1 and 65535, got 0"),
        ({"timeout_s": 0.0}, "timeout_s must be positive, got 0.0"),
        ({"backend": "nccl"}, 'the "nccl" backend needs a CUDA device with an index, such as cuda:0; got cpu'),
    ],
)
def test_init_process_group_rejects_bad_arguments_before_connecting(arguments, message):
    defaults = {
        "backend": "gloo",
        "rank": 1,
        "world_size": 2,
        "local_rank": 1,
        "device": torch.device("cpu"),
        "primary_address": "127.0.0.1",
        "primary_port": 29500,
    }
    with pytest.raises(ValueError) as caught:
        init_process_group(**{**defaults, **arguments})
    assert str(caught.value) == message


def test_a_process_group_runtime_needs_an_initialised_group():
    with pytest.raises(RuntimeError) as caught:
        ProcessGroupDistributed(0, torch.device("cpu"))
    assert str(caught.value) == (
        "ProcessGroupDistributed needs an initialised torch.distributed process group; "
        "build it with init_process_group() or from_torchrun_environment()"
    )


def test_leave_at_once_exits_with_its_code_and_loses_no_output(tmp_path):
    # How a finished worker ends (without the interpreter's teardown, where Gloo can abort it): what it printed
    # and logged is still written, and the exit status is the one given.
    script = (
        "import logging, sys\n"
        f"logging.basicConfig(filename={str(tmp_path / 'out.log')!r}, level=logging.INFO)\n"
        "from regimen.trainers.distributed import leave_at_once\n"
        "logging.info('logged before leaving')\n"
        "sys.stdout.write('printed without a newline')\n"
        "leave_at_once(75)\n"
        "print('never reached')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 75, done.stderr
    assert done.stdout == "printed without a newline"
    assert "logged before leaving" in (tmp_path / "out.log").read_text()

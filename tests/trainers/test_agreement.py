"""Agreement: checkpoint and stop decisions taken alike by every worker, with a collective about once a second."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from regimen.trainers.agreement import Agreement
from regimen.trainers.checkpointer import Checkpointer
from regimen.trainers.distributed import Distributed, find_free_port, init_process_group, spawn_workers


class Counting:
    """Wraps a runtime to count its agreements (module level: spawned workers unpickle by name)."""

    def __init__(self, distributed: Distributed) -> None:
        self._inner, self.agreements = distributed, 0
        self.world_size = distributed.world_size

    def agree(self, primary_says: list[int], anyone_says: bool) -> tuple[list[int], bool]:
        self.agreements += 1
        return self._inner.agree(primary_says, anyone_says)


def test_one_process_decides_after_every_step_and_stops_after_the_step_a_signal_came_in(tmp_path):
    distributed = Counting(Distributed())
    agreement = Agreement(distributed)
    checkpointer = Checkpointer(str(tmp_path), save_every_num_batches=3)
    decisions = [agreement.decide(step, checkpointer, step, signalled=step == 5) for step in range(1, 7)]
    assert decisions == [(False, False), (False, False), (True, False), (False, False), (False, True), (True, False)]
    assert distributed.agreements == 0  # nothing to agree with


def agreeing_worker(rank: int, port: int, directory: Path) -> None:
    # Steps of ~10 ms: agreements 0.1 s apart are 10 steps apart. The primary's clock makes a checkpoint due at
    # step 25 (only on the primary), and worker 1 alone is signalled from step 42 on.
    with init_process_group("gloo", rank, 2, rank, torch.device("cpu"), "127.0.0.1", port) as distributed:
        counting = Counting(distributed)
        agreement = Agreement(counting, seconds=0.1)
        checkpointer = Checkpointer(str(directory), save_every_num_batches=20, save_every_num_seconds=3600)
        decisions = []
        for step in range(1, 80):
            time.sleep(0.01)
            if rank == 0 and step == 25:
                checkpointer._last_save_time = time.monotonic() - 7200  # the primary's clock says a save is due
            due, stop = agreement.decide(step, checkpointer, step, signalled=rank == 1 and step >= 42)
            if due:
                checkpointer._last_save_time = time.monotonic()
            decisions.append([step, due, stop])
            if stop:
                break
        at_epoch_end = agreement.decide(step + 1, checkpointer, 0, signalled=False)
        (directory / f"rank{rank}.json").write_text(
            json.dumps({"decisions": decisions, "agreements": counting.agreements, "epoch_end": at_epoch_end})
        )


def test_two_workers_take_the_same_decisions_at_the_same_steps_with_few_collectives(tmp_path):
    spawn_workers(agreeing_worker, (find_free_port(), tmp_path), 2)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0] == ranks[1]  # the same decisions at the same steps, and as many collectives
    decisions = ranks[0]["decisions"]
    saved = [step for step, due, _ in decisions if due]
    assert saved[0] == 20 and 25 <= saved[1] <= 40 and 40 in saved  # by batch count at once, by clock soon after
    stopped = decisions[-1]
    assert stopped[2] and 42 <= stopped[0] <= 60  # worker 1's signal stops both within about 0.1 s
    assert ranks[0]["agreements"] < len(decisions) / 3 + 2  # not after every step
    assert ranks[0]["epoch_end"] == [True, False]  # an epoch end is always agreed on

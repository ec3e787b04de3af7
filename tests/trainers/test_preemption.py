"""Pre-emption: a signal stops training after the current step with a checkpoint and exit code 75."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

from regimen.trainers.checkpointer import Checkpointer
from regimen.trainers.preemption import PREEMPTION_EXIT_CODE
from tests.conftest import ROOT
from tests.trainers.test_resume import data, reference  # noqa: F401  (module-scoped fixtures)

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    import torch
    from regimen.trainers import TrainerCallback
    from regimen.trainers.preemption import TrainingPreempted
    from tests.trainers.test_resume import run

    directory, data, step, signals = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]

    class Signal(TrainerCallback):
        seen = 0
        def on_batch(self, trainer, *args, **kwargs):
            # A positive step counts optimizer steps; a negative one counts validation batches.
            if args[5] == (step > 0):
                self.seen += 1
                if self.seen == abs(step):
                    for number, name in enumerate(signals):
                        if number:
                            time.sleep(1.2)  # a second signal within a second is taken as the first one again
                        os.kill(os.getpid(), getattr(signal, name))

    try:
        # The interrupted run starts from the reference weights; a resumed one from others, which it must replace.
        trainer, metrics = run(directory, data, model_seed=0 if step else 77, callback=Signal())
    except TrainingPreempted as stopped:
        print(stopped, flush=True)
        sys.exit(stopped.exit_code)
    torch.save(trainer.model.state_dict(), directory / "final.th")
    """
)


def start(directory: Path, data: Path, step: int = 0, *signals: str) -> subprocess.Popen:  # noqa: F811
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(directory), str(data), str(step), *signals],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def train(directory: Path, data: Path, step: int = 0, *signals: str) -> subprocess.CompletedProcess:  # noqa: F811
    return finish(start(directory, data, step, *signals))


def test_each_signal_saves_a_checkpoint_and_exits_75_and_the_run_recovers_bit_identical(tmp_path, data, reference):  # noqa: F811
    _, reference_trainer, _ = reference
    names = ["SIGTERM", "SIGUSR1", "SIGINT"]
    # Steps 3, 5 and 7: mid-epoch, the first step of an epoch, mid-epoch again. The runs go side by side.
    stops = [start(tmp_path / name, data, 3 + 2 * number, name) for number, name in enumerate(names)]
    for name, stopped in zip(names, map(finish, stops)):
        assert stopped.returncode == PREEMPTION_EXIT_CODE, stopped.stderr
        assert f"training stopped on {name}; a checkpoint was saved" in stopped.stdout
    for name, finished in zip(names, map(finish, [start(tmp_path / name, data) for name in names])):
        assert finished.returncode == 0, finished.stderr
        final = torch.load(tmp_path / name / "final.th", weights_only=True)
        for key, value in reference_trainer.model.state_dict().items():
            assert torch.equal(final[key], value), (name, key)


def test_the_checkpoint_is_taken_at_the_step_the_signal_arrived(tmp_path, data):  # noqa: F811
    stopped = train(tmp_path, data, 3, "SIGTERM")  # step 3 = 6 batches into epoch 0; no save was due there
    assert stopped.returncode == PREEMPTION_EXIT_CODE
    assert Checkpointer(serialization_dir=str(tmp_path)).find_latest_checkpoint()[0].endswith("model_state_e0_b6.th")


def test_a_second_signal_exits_at_once_and_leaves_the_run_recoverable(tmp_path, data):  # noqa: F811
    stopped = train(tmp_path, data, 7, "SIGTERM", "SIGTERM")
    assert stopped.returncode == 128 + signal.SIGTERM
    assert "second SIGTERM: exiting now" in stopped.stderr
    assert Checkpointer(serialization_dir=str(tmp_path)).load_checkpoint() is not None  # the step-4 checkpoint
    assert train(tmp_path, data).returncode == 0


def test_a_signal_during_validation_is_not_missed(tmp_path, data, reference):  # noqa: F811
    _, reference_trainer, _ = reference
    stopped = train(tmp_path, data, -2, "SIGTERM")  # the second validation batch of the first validation
    assert stopped.returncode == PREEMPTION_EXIT_CODE, stopped.stderr
    # Validation finished, then the run stopped at the end of epoch 0 with its checkpoint.
    assert Checkpointer(serialization_dir=str(tmp_path)).find_latest_checkpoint()[0].endswith("model_state_e1_b0.th")
    assert (tmp_path / "metrics_epoch_0.json").is_file() and not (tmp_path / "metrics_epoch_1.json").exists()
    assert train(tmp_path, data).returncode == 0
    final = torch.load(tmp_path / "final.th", weights_only=True)
    assert all(torch.equal(final[key], value) for key, value in reference_trainer.model.state_dict().items())


def test_the_same_signal_delivered_twice_at_once_is_one_request():
    """A worker of a distributed run gets a job-wide signal twice (from the sender and from the launcher, which
    passes signals on): within a second the second delivery is the first request again, not "exit now"."""
    from regimen.trainers.preemption import PreemptionWatcher

    with PreemptionWatcher() as watcher:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handlers run here, in the main thread
        assert watcher.requested and watcher.signal_number == signal.SIGTERM


def test_a_watcher_opened_inside_another_shares_its_request_and_leaves_its_handlers_alone():
    """The command's watcher (around training and what follows) and the trainer's (around the loop) are one
    request: a signal before the loop is seen by it, and one after it is still noted, not a kill."""
    from regimen.trainers.preemption import PreemptionWatcher

    before = signal.getsignal(signal.SIGTERM)
    with PreemptionWatcher(then="finishing the run") as outer:
        installed = signal.getsignal(signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        with PreemptionWatcher() as inner:
            assert signal.getsignal(signal.SIGTERM) is installed  # the outer one's handler stays
            assert inner.requested and inner.signal_number == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is installed and outer.requested
    assert signal.getsignal(signal.SIGTERM) is before  # the process's own handler is back
    with PreemptionWatcher() as fresh:
        assert not fresh.requested  # a new outermost watcher starts without the old request

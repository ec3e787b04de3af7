"""Fault injection: interrupt training at random moments, recover, and check every trial ends bit-identical to
an uninterrupted run.

    python -m scripts.fault_injection 50            # 50 trials (default 10), each killed up to 3 times
    python -m scripts.fault_injection 50 --kills 5
    python -m scripts.fault_injection 20 --launcher-signal

By default a one-process run is killed with SIGKILL (no chance to save) and must never meet a corrupt newest
checkpoint. With ``--launcher-signal``, ``regimen train`` runs two CPU workers and its launcher's PID alone gets
SIGTERM (as Kubernetes signals a container's main process) at a random moment after the first checkpoint: each
worker must be told at most once and stop with 75 (or, when the signal came once training was over, let the run
finish: exit 0), and the run (recovered with ``--recover`` after 75) must end with the uninterrupted run's
metrics, ``best.th`` and final weights.

The suite runs small versions (tests/trainers/test_fault_injection.py, tests/commands/test_train_distributed.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
CORRUPT = "cannot load checkpoint file"  # what the checkpointer logs when the newest checkpoint is unreadable

TRAINER = {
    "num_epochs": 3,
    "patience": 5,
    "num_gradient_accumulation_steps": 2,
    "optimizer": {"type": "adam", "lr": 0.01},
    "learning_rate_scheduler": {"type": "linear_with_warmup", "warmup_steps": 5},
    "moving_average": {"decay": 0.95},
    "checkpointer": {"save_every_num_batches": 2, "keep_most_recent_by_count": 2},
    "progress_bar": False,
    "cuda_device": -1,
}


def write_blobs(path: Path, count: int, generator: torch.Generator, dims: int, separation: float) -> None:
    """A CSV of two noisy Gaussian blobs (label 0 and 1) whose centres lie ``2 * separation`` apart."""
    labels = torch.randint(0, 2, (count,), generator=generator)
    features = torch.randn(count, dims, generator=generator) + (labels[:, None].float() * 2 - 1) * separation
    rows = [",".join(f"{value:.5f}" for value in row) + f",{int(y)}" for row, y in zip(features, labels)]
    header = ",".join(f"x{i}" for i in range(dims)) + ",label"
    path.write_text("\n".join([header, *rows]) + "\n")


def write_data(directory: Path, seed: int = 0) -> None:
    """Two noisy blobs in 8 dimensions: 2,048 training and 256 validation rows as CSV."""
    generator = torch.Generator().manual_seed(seed)
    for name, count in (("train", 2048), ("validation", 256)):
        write_blobs(directory / f"{name}.csv", count, generator, dims=8, separation=0.5)


def worker(directory: Path, data: Path) -> None:
    """Train (or resume) in ``directory``; print "training" when the loop starts; save final.th at the end."""
    logging.basicConfig(level=logging.INFO)  # the restarts' logs say where each one resumed
    from regimen.data import DataLoader
    from regimen.data.readers import CsvReader
    from regimen.models import Model
    from regimen.registry import Params
    from regimen.trainers import Trainer, TrainerCallback

    class Announce(TrainerCallback):
        def on_start(self, trainer: object, is_primary: bool = True, **kwargs: object) -> None:
            print("training", flush=True)

    torch.manual_seed(0)
    model = Model.from_params(
        {"type": "mlp_classifier", "input_dim": 8, "num_classes": 2, "hidden_dims": [64, 64], "dropout": 0.2}
    )
    loaders = {
        name: DataLoader.from_params(
            Params({"batch_size": 16, "shuffle": True}, name), reader=CsvReader(), data_path=str(data / f"{name}.csv")
        )
        for name in ("train", "validation")
    }
    torch.manual_seed(1)
    trainer = Trainer.from_params(
        Params(dict(TRAINER), "trainer"),
        model=model,
        data_loader=loaders["train"],
        validation_data_loader=loaders["validation"],
        serialization_dir=str(directory),
        callbacks=[],
    )
    trainer._callbacks.append(Announce())
    trainer.train()
    torch.save(trainer.model.state_dict(), directory / "final.th")


def start_worker(directory: Path, data: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "scripts.fault_injection", "--worker", str(directory), str(data)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def reference_run(directory: Path, data: Path) -> float:
    """Train uninterrupted; returns how long the training loop took (kills are drawn within it)."""
    process = start_worker(directory, data)
    assert process.stdout is not None
    process.stdout.readline()
    began = time.monotonic()
    _, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the reference run failed:\n{stderr}")
    return time.monotonic() - began


def trial(directory: Path, data: Path, duration: float, kills: int, rng: random.Random) -> tuple[bool, list[str]]:
    """Kill a run ``kills`` times at random moments of its training loop, then let it finish.

    Returns whether any restart met a corrupt newest checkpoint, and the stderr of every restart.
    """
    logs = []
    for _ in range(kills):
        process = start_worker(directory, data)
        assert process.stdout is not None
        if process.stdout.readline().strip() == "training":
            time.sleep(rng.uniform(0, duration))
        process.kill()
        logs.append(process.communicate()[1])
    process = start_worker(directory, data)
    _, stderr = process.communicate()
    logs.append(stderr)
    if process.returncode != 0:
        raise RuntimeError(f"the recovered run failed:\n{stderr}")
    return any(CORRUPT in log for log in logs), logs


def identical(first: Path, second: Path) -> bool:
    return same_weights(torch.load(first, weights_only=True), torch.load(second, weights_only=True))


def same_weights(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


EXPERIMENT = ROOT / "fixtures" / "experiments" / "blobs.jsonnet"
TWO_WORKERS = json.dumps(
    {
        "trainer.num_epochs": 12,
        "trainer.checkpointer": {"save_every_num_batches": 6},
        "distributed": {"cuda_devices": [-1, -1]},
    }
)
TOLD = "received SIGTERM: finishing the current optimizer step"  # what each worker logs when it is told to stop
TOLD_LATE = "received SIGTERM: training is over"  # ... and when training was over, which lets the run finish
# Keys of metrics.json that differ between a run and its recovered twin by design (times, where it resumed), and
# the workers' peak memory (peak_worker_<rank>_memory_MB).
VOLATILE = {"training_duration", "training_duration_this_run", "training_start_epoch", "training_epochs"}


def start_cli(directory: Path, *arguments: str) -> subprocess.Popen:
    """``regimen train`` on the two-worker experiment, in a session of its own (a signal to it reaches it alone)."""
    command = [sys.executable, "-m", "regimen", "train", str(EXPERIMENT), "-s", str(directory), "-o", TWO_WORKERS]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [*command, *arguments], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip


def first_checkpoint(directory: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    """Wait until ``directory`` holds a checkpoint (or the process ended)."""
    deadline = time.monotonic() + timeout
    while not list(directory.glob("model_state_*.th")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


def finished_run(directory: Path) -> tuple[dict, dict[str, dict[str, torch.Tensor]]]:
    """A finished run's non-volatile metrics and its weights: ``best.th`` and the last epoch's checkpoint."""
    metrics = json.loads((directory / "metrics.json").read_text())
    newest = max(directory.glob("model_state_e*_b0.th"), key=lambda path: int(path.name.split("_e")[1].split("_")[0]))
    weights = {name: torch.load(directory / name, weights_only=True) for name in ("best.th", newest.name)}
    kept = {key: value for key, value in metrics.items() if key not in VOLATILE and not key.startswith("peak_")}
    return kept, weights


def launcher_signal_trial(directory: Path, window: float, rng: random.Random) -> tuple[int, int, str]:
    """SIGTERM to the launcher alone at a random moment of ``window`` seconds after the first checkpoint, then
    ``--recover`` where it stopped with 75. Returns the exit status, how many workers logged the signal, and the
    recovery's stderr (or the interrupted run's, where there was no recovery)."""
    process = start_cli(directory)
    first_checkpoint(directory, process)
    time.sleep(rng.uniform(0, window))
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    told = stderr.count(TOLD) + stderr.count(TOLD_LATE)
    if process.returncode != 75:
        return process.returncode, told, stderr
    recovered = start_cli(directory, "--recover")
    _, recovery_stderr = recovered.communicate(timeout=600)
    return (75 if recovered.returncode == 0 else recovered.returncode), told, recovery_stderr


def launcher_signal_trials(root: Path, trials: int, rng: random.Random) -> int:
    """Run ``trials`` launcher-signal trials against one uninterrupted reference; returns how many failed."""
    reference = start_cli(root / "reference")
    first_checkpoint(root / "reference", reference)
    began = time.monotonic()
    _, stderr = reference.communicate(timeout=600)
    if reference.returncode != 0:
        raise RuntimeError(f"the reference run failed:\n{stderr}")
    window = time.monotonic() - began
    expected_metrics, expected_weights = finished_run(root / "reference")
    failures = 0
    for number in range(trials):
        directory = root / f"trial{number}"
        status, told, stderr = launcher_signal_trial(directory, window, rng)
        problems = []
        if status not in (0, 75):
            problems.append(f"exit {status}: {stderr.strip().splitlines()[-1] if stderr.strip() else ''}")
        elif (status == 75 and told != 2) or told > 2:
            problems.append(f"{told} workers logged the signal (expected 2)")
        else:
            metrics, weights = finished_run(directory)
            if metrics != expected_metrics:
                changed = sorted(
                    key for key in {*metrics, *expected_metrics} if metrics.get(key) != expected_metrics.get(key)
                )
                problems.append(f"metrics differ: {', '.join(changed)}")
            problems += [
                f"{name} differs" for name in weights if not same_weights(weights[name], expected_weights.get(name, {}))
            ]
        failures += bool(problems)
        how = "stopped with 75 and recovered" if status == 75 else f"exit {status}"
        if status == 0:
            how += " (the signal came after training)" if told else " (the signal came as the workers left)"
        print(f"trial {number}: {how}, {told} workers told; {'; '.join(problems) or 'identical'}", flush=True)
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trials", type=int, nargs="?", default=10)
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per trial before it may finish")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--launcher-signal", action="store_true", help="SIGTERM the launcher of a two-worker run instead of SIGKILL"
    )
    parser.add_argument("--worker", nargs=2, metavar=("DIR", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(Path(args.worker[0]), Path(args.worker[1]))
        return 0
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        if args.launcher_signal:
            failures = launcher_signal_trials(root, args.trials, rng)
            print(f"{args.trials - failures} passed, {failures} failed")
            return 1 if failures else 0
        write_data(root)
        duration = reference_run(root / "reference", root)
        failures = 0
        for number in range(args.trials):
            directory = root / f"trial{number}"
            corrupt, _ = trial(directory, root, duration, args.kills, rng)
            same = identical(directory / "final.th", root / "reference" / "final.th")
            failures += corrupt or not same
            print(
                f"trial {number}: {'identical' if same else 'DIFFERENT'}, {'CORRUPT' if corrupt else 'no corrupt'} "
                f"checkpoint met",
                flush=True,
            )
        print(f"{args.trials - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

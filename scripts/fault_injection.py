"""Fault injection: kill training with SIGKILL at random moments, recover, and check every trial ends
bit-identical to an uninterrupted run and never meets a corrupt newest checkpoint.

    python -m scripts.fault_injection 50            # 50 trials (default 10), each killed up to 3 times
    python -m scripts.fault_injection 50 --kills 5

The suite runs a small version (tests/trainers/test_fault_injection.py).
"""

from __future__ import annotations

import argparse
import logging
import random
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
    a, b = torch.load(first, weights_only=True), torch.load(second, weights_only=True)
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trials", type=int, nargs="?", default=10)
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per trial before it may finish")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", nargs=2, metavar=("DIR", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(Path(args.worker[0]), Path(args.worker[1]))
        return 0
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
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

"""Scaling: training throughput with two CPU workers (Gloo) against one, for regimen and a hand-written DDP loop.

Four contenders, alternating round after round: a hand-written single-process loop, a hand-written DDP loop with two
workers spawned by ``torch.multiprocessing``, ``regimen train`` on an experiment file without a ``distributed``
block (one worker) and ``regimen train`` on the same file with ``"distributed": {"cuda_devices": [-1, -1]}`` (two
Gloo CPU workers started by regimen). All train the same MLP (same layers, same initial weights: torch seeded with
0 just before the network is built), with AdamW, on the same data in the same order (no shuffling), with the same
batch size per worker; one thread per worker; every run a fresh process.

Sharding, as regimen's data loader does it: of an epoch's ``n`` batches, ``full = n // w`` and ``tail = n % w`` for
``w`` workers; worker ``r`` takes batches ``r, r + w, ..., r + w * (full - 1)`` whole and, when ``tail > 0``, one
batch more: the instances of the epoch's last ``tail`` batches, pooled in order and cut into ``w`` consecutive
pieces whose sizes differ by at most one (the larger first), piece ``r``. So every worker takes the same number of
steps (none waits for another in the gradient all-reduce) and together they see every instance once per epoch; two
workers take about half the steps each. The hand-written loop shards its batches by the same rule.

Throughput is instances per second of training time only (no process start, no data reading, no worker start-up):
the hand-written loops time their epochs between two barriers (after the process group and DDP are set up);
regimen's runs report the time of ``Trainer.train()`` on the primary worker (``training_duration`` in
``metrics.json``), which includes regimen's data loader collating each batch from the instances it read (the
hand-written loop slices tensors built once) and the per-epoch reduction of the loss across workers.

Same work check: each contender reports the mean training loss of its last epoch (over every worker's batches);
``regimen train`` with one worker must agree with the single hand-written loop, and with two workers with the
hand-written DDP loop.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Options,
    alternating_rounds,
    fmt,
    fmt_stats,
    last_line,
    markdown_table,
    ratio,
    report,
    run_process,
    run_worker,
    scratch_dir,
    set_single_thread,
    single_thread_env,
    summary,
    verdict,
)

NAME = "scaling"
TITLE = "Scaling"
TARGET = 0.95  # two regimen workers ≥ 0.95x the hand-written DDP loop's throughput
LOSS_TOLERANCE = 1e-3  # relative difference of the last epoch's mean training loss from the hand-written loop's
FULL = {"input_dim": 256, "hidden_dims": [1024, 1024], "num_classes": 10, "batch_size": 128, "batches": 32, "epochs": 2}
QUICK = {**FULL, "batches": 16, "epochs": 1}
LR, WEIGHT_DECAY = 1e-3, 0.01
CONTENDERS = {
    "hand_1": "hand-written loop, 1 worker",
    "hand_2": "hand-written DDP loop, 2 workers (Gloo)",
    "regimen_1": "regimen train, 1 worker",
    "regimen_2": 'regimen train, 2 workers (`"distributed": {"cuda_devices": [-1, -1]}`)',
}
TIMING = {
    "hand": "epochs between two barriers",
    "regimen": "`training_duration` (metrics.json)",
}
BASELINE = {"regimen_1": "hand_1", "regimen_2": "hand_2"}  # whose final loss each regimen run must match


# ---- the data and the network (the same on both sides) ------------------------------------------------------------
def make_data(spec: dict[str, Any]):
    """Features and labels of a learnable task (a fixed random linear teacher), in batch order."""
    import torch

    generator = torch.Generator().manual_seed(7)
    size = spec["batches"] * spec["batch_size"]
    teacher = torch.randn(spec["input_dim"], spec["num_classes"], generator=generator)
    features = torch.randn(size, spec["input_dim"], generator=generator)
    labels = (features @ teacher).argmax(-1)
    return features, labels


def make_network(spec: dict[str, Any]):
    """Linear/ReLU layers created in the order of regimen's mlp_classifier, after seeding torch with 0."""
    import torch

    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    width = spec["input_dim"]
    for hidden in spec["hidden_dims"]:
        layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
        width = hidden
    layers.append(torch.nn.Linear(width, spec["num_classes"]))
    return torch.nn.Sequential(*layers)


def shard(batches: list[Any], rank: int, world_size: int) -> list[tuple[Any, Any]]:
    """Worker ``rank``'s batches of one epoch, by regimen's data loader's rule (see the module docstring)."""
    import torch

    full, tail = divmod(len(batches), world_size)
    mine = batches[rank : world_size * full : world_size]
    if tail:
        features = torch.cat([x for x, _ in batches[world_size * full :]])
        labels = torch.cat([y for _, y in batches[world_size * full :]])
        size, larger = divmod(len(features), world_size)
        start = rank * size + min(rank, larger)
        end = start + size + (1 if rank < larger else 0)
        mine.append((features[start:end], labels[start:end]))
    return mine


# ---- the suite (parent process) ---------------------------------------------------------------------------------
def run(options: Options) -> dict[str, Any]:
    spec = QUICK if options.quick else FULL
    instances = spec["batches"] * spec["batch_size"] * spec["epochs"]
    with scratch_dir("scaling-") as directory:
        config = {1: _write_experiment(directory, spec, 1), 2: _write_experiment(directory, spec, 2)}

        def measure(key: str, round_number: int) -> dict[str, Any]:
            side, workers = key.split("_")
            if side == "hand":
                return run_worker(
                    f"benchmarks.{NAME}", "--world-size", workers, *(["--quick"] if options.quick else [])
                )
            return _run_regimen(config[int(workers)], directory / f"run-{key}-{round_number}")

        runs, errors = alternating_rounds(options.repeats, "scaling", list(CONTENDERS), measure)
    samples = {key: [instances / result["seconds"] for result in results] for key, results in runs.items()}
    losses = {key: [result["final_loss"] for result in results] for key, results in runs.items()}
    results = {}
    for key, label in CONTENDERS.items():
        results[key] = {
            "label": label,
            "timing": TIMING[key.split("_")[0]],
            "instances_per_s": summary(samples[key]),
            "final_loss": losses[key][0] if losses[key] else None,
            "final_loss_stable": len(set(losses[key])) <= 1,
            "error": errors.get(key),
        }
    for key, baseline in BASELINE.items():
        loss, base = results[key]["final_loss"], results[baseline]["final_loss"]
        results[key]["loss_agrees"] = (
            None if loss is None or base is None else abs(loss - base) <= LOSS_TOLERANCE * abs(base)
        )
    median = {key: entry["instances_per_s"]["median"] for key, entry in results.items()}
    data = {
        "repeats": options.repeats,
        "quick": options.quick,
        "spec": spec,
        "contenders": results,
        "regimen_2_vs_hand_2": ratio(median["regimen_2"], median["hand_2"]),
        "regimen_1_vs_hand_1": ratio(median["regimen_1"], median["hand_1"]),
        "hand_speedup": ratio(median["hand_2"], median["hand_1"]),
        "regimen_speedup": ratio(median["regimen_2"], median["regimen_1"]),
    }
    print(render_table(data), flush=True)
    return data


def _write_experiment(directory: Path, spec: dict[str, Any], workers: int) -> Path:
    """The data as a CSV file (written once) and an experiment file for ``workers`` CPU workers."""
    data_path = directory / "train.csv"
    if not data_path.exists():
        features, labels = make_data(spec)
        header = ",".join([*(f"x{i}" for i in range(spec["input_dim"])), "label"])
        with open(data_path, "w") as file:
            file.write(header + "\n")
            for row, label in zip(features.tolist(), labels.tolist()):
                # 9 significant digits: every float32 reads back exactly, so both sides train on the same numbers
                file.write(",".join(f"{value:.9g}" for value in row) + f",{label}\n")
    experiment: dict[str, Any] = {
        "random_seed": 0,
        "numpy_seed": 0,
        "pytorch_seed": 0,  # the network's initial weights are then the hand-written loop's (make_network)
        "dataset_reader": {"type": "csv", "label_column": "label"},
        "train_data_path": str(data_path),
        "data_loader": {"batch_size": spec["batch_size"], "shuffle": False},
        "model": {
            "type": "mlp_classifier",
            "input_dim": spec["input_dim"],
            "hidden_dims": spec["hidden_dims"],
            "num_classes": spec["num_classes"],
        },
        "trainer": {
            "num_epochs": spec["epochs"],
            "optimizer": {"type": "adamw", "lr": LR, "weight_decay": WEIGHT_DECAY},
            "progress_bar": False,
            "checkpointer": None,  # the hand-written loop saves nothing either
            "cuda_device": -1,
        },
    }
    if workers > 1:
        experiment["distributed"] = {"cuda_devices": [-1] * workers}
    path = directory / f"experiment-{workers}.json"
    path.write_text(json.dumps(experiment, indent=2))
    return path


def _run_regimen(config: Path, serialization_dir: Path) -> dict[str, Any]:
    """Seconds of training and the last epoch's training loss of one ``regimen train`` run, from its metrics.json;
    RuntimeError when it fails."""
    argv = [sys.executable, "-m", "regimen", "train", str(config), "-s", str(serialization_dir)]
    done = run_process(argv, env=single_thread_env(REGIMEN_LOG_LEVEL="WARNING"))
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {done.tail(2)}")
    metrics_path = serialization_dir / "metrics.json"
    if not metrics_path.is_file():
        raise RuntimeError(f"no {metrics_path.name} in the serialization directory")
    metrics = json.loads(metrics_path.read_text())
    if not metrics.get("training_duration"):
        raise RuntimeError("metrics.json has no training_duration")
    return {"seconds": _seconds(metrics["training_duration"]), "final_loss": metrics.get("training_loss")}


def _seconds(duration: str) -> float:
    """'HH:MM:SS.ffffff' (regimen's training_duration) in seconds."""
    hours, minutes, seconds = duration.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


# ---- rendering ---------------------------------------------------------------------------------------------------
def render_table(data: dict[str, Any]) -> str:
    notes = {
        "regimen_1": f"{fmt(data['regimen_1_vs_hand_1'], 2, 'x')} the hand-written loop",
        "regimen_2": (
            f"{fmt(data['regimen_2_vs_hand_2'], 2, 'x')} hand-written DDP, "
            f"target {verdict(data['regimen_2_vs_hand_2'], TARGET, higher_is_better=True)}"
        ),
    }
    speedups = {"hand_2": "hand_speedup", "regimen_2": "regimen_speedup"}
    rows = []
    for key, entry in data["contenders"].items():
        if entry["error"] or not entry["instances_per_s"]["n"]:
            rows.append(
                [
                    entry["label"],
                    entry.get("timing", ""),
                    "unavailable",
                    "",
                    "",
                    last_line(entry["error"] or "")[:100],
                    "",
                    "",
                ]
            )
            continue
        median, low, high = fmt_stats(entry["instances_per_s"])
        speedup = fmt(data[speedups[key]], 2, "x") if key in speedups else ""
        agrees = {True: "✓", False: "✗ differs", None: "?"}[entry.get("loss_agrees")] if key in BASELINE else ""
        if not entry.get("final_loss_stable", True):
            agrees += " (varies between runs)"
        loss = fmt(entry.get("final_loss"), 6)
        rows.append(
            [
                entry["label"],
                entry.get("timing", ""),
                median,
                f"{low}-{high}",
                speedup,
                notes.get(key, ""),
                loss,
                agrees,
            ]
        )
    headers = ["contender", "timed", "instances/s", "min-max", "speed-up over 1 worker", "ratio / target"]
    headers += ["final loss", "= hand"]
    return markdown_table(headers, rows, align="llrrrrrl")


def render(data: dict[str, Any]) -> str:
    spec = data["spec"]
    widths = "→".join(str(d) for d in (spec["input_dim"], *spec["hidden_dims"], spec["num_classes"]))
    return "\n".join(
        [
            f"## {TITLE}",
            "",
            f"MLP {widths}, batch {spec['batch_size']} per worker, {spec['batches']} batches per epoch shared among "
            f"the workers (regimen's sharding rule: equal batch counts per worker), {spec['epochs']} epochs, AdamW, "
            "no validation, no checkpoints, the same initial weights and data order on every side. Throughput is "
            "instances per second of training time only ('timed'): no process start-up, no data reading, no worker "
            "start-up. regimen reads the data from a CSV file and its training time includes collating batches "
            "from the instances; the hand-written loops slice tensors built once. Final loss: the mean training "
            f"loss of the last epoch over all workers' batches; '= hand' is ✓ within {LOSS_TOLERANCE:g} (relative) "
            "of the hand-written loop with the same number of workers. Median, min and max of "
            f"{data['repeats']} alternating fresh runs; one thread per worker on a {os.cpu_count()}-core machine "
            "(two workers fill both cores, so other load on the machine weighs on them most).",
            "",
            render_table(data),
            "",
        ]
    )


# ---- the hand-written loop (worker) -----------------------------------------------------------------------------
def _train_rank(rank: int, world_size: int, spec: dict[str, Any], init_file: str, result_file: str) -> None:
    """One worker of the hand-written DDP loop (or the whole plain loop when ``world_size`` is 1)."""
    set_single_thread()
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    features, labels = make_data(spec)
    size = spec["batch_size"]
    batches = [(features[i : i + size], labels[i : i + size]) for i in range(0, len(features), size)]
    mine = shard(batches, rank, world_size)
    model = make_network(spec)
    if world_size > 1:
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
        model = torch.nn.parallel.DistributedDataParallel(model)
        dist.barrier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    start = time.perf_counter()
    for _ in range(spec["epochs"]):
        total = torch.zeros(())
        for x, y in mine:
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.detach()
    if world_size > 1:
        dist.barrier()
    seconds = time.perf_counter() - start
    # Untimed: the last epoch's mean loss per batch over all workers, as regimen's training_loss.
    sums = torch.stack([total, torch.tensor(float(len(mine)))])
    if world_size > 1:
        dist.all_reduce(sums)
    if rank == 0:
        final_loss = float(sums[0]) / float(sums[1])
        Path(result_file).write_text(json.dumps({"seconds": seconds, "final_loss": final_loss}))
    if world_size > 1:
        dist.destroy_process_group()


def worker(world_size: int, quick: bool) -> dict[str, Any]:
    spec = QUICK if quick else FULL
    with tempfile.TemporaryDirectory() as directory:
        init_file, result_file = os.path.join(directory, "init"), os.path.join(directory, "result.json")
        if world_size == 1:
            _train_rank(0, 1, spec, init_file, result_file)
        else:
            import torch.multiprocessing

            torch.multiprocessing.spawn(_train_rank, args=(world_size, spec, init_file, result_file), nprocs=world_size)
        return json.loads(Path(result_file).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", required=True)
    parser.add_argument("--world-size", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    report(worker(args.world_size, args.quick))


if __name__ == "__main__":
    main()

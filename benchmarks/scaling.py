"""Scaling: training throughput with two CPU workers (Gloo) against one, for regimen and a hand-written DDP loop.

Both sides train the same MLP with AdamW on the same data, sharded by batch as regimen's data loader shards it
(worker ``r`` of ``w`` takes batches ``r, r + w, ...`` of each epoch, each of the full batch size), so two workers
do half the steps each. Throughput is instances per second of training time: the hand-written loop times its
epochs between two barriers; regimen's run is timed by its trainer (``training_duration`` in ``metrics.json``),
so reading the data and starting the workers count for neither, but regimen's data loader collating each
batch from the instances it read does count (the hand-written loop slices tensors built once). Every run is a
fresh ``regimen train`` command or a fresh process that spawns its workers with ``torch.multiprocessing``, one
thread per worker.
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
    fmt,
    fmt_stats,
    last_line,
    markdown_table,
    progress,
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
FULL = {"input_dim": 256, "hidden_dims": [1024, 1024], "num_classes": 10, "batch_size": 128, "batches": 32, "epochs": 2}
QUICK = {**FULL, "batches": 16, "epochs": 1}
LR, WEIGHT_DECAY = 1e-3, 0.01
CONTENDERS = {
    "hand_1": "hand-written loop, 1 worker",
    "hand_2": "hand-written DDP loop, 2 workers (Gloo)",
    "regimen_1": "regimen train, 1 worker",
    "regimen_2": 'regimen train, 2 workers (`"distributed": {"cuda_devices": [-1, -1]}`)',
}


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
    import torch

    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    width = spec["input_dim"]
    for hidden in spec["hidden_dims"]:
        layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
        width = hidden
    layers.append(torch.nn.Linear(width, spec["num_classes"]))
    return torch.nn.Sequential(*layers)


# ---- the suite (parent process) ---------------------------------------------------------------------------------
def run(options: Options) -> dict[str, Any]:
    spec = QUICK if options.quick else FULL
    instances = spec["batches"] * spec["batch_size"] * spec["epochs"]
    samples: dict[str, list[float]] = {key: [] for key in CONTENDERS}
    errors: dict[str, str] = {}
    with scratch_dir("scaling-") as directory:
        config = {1: _write_experiment(directory, spec, 1), 2: _write_experiment(directory, spec, 2)}
        for round_number in range(1, options.repeats + 1):
            progress(f"scaling: round {round_number}/{options.repeats}")
            for key in CONTENDERS:
                if key in errors:
                    continue
                side, workers = key.split("_")
                try:
                    if side == "hand":
                        args = ["--world-size", workers] + (["--quick"] if options.quick else [])
                        seconds = run_worker(f"benchmarks.{NAME}", *args)["seconds"]
                    else:
                        seconds = _run_regimen(config[int(workers)], directory / f"run-{key}-{round_number}")
                    samples[key].append(instances / seconds)
                except RuntimeError as error:
                    errors[key] = str(error)
                    progress(f"  {key} unavailable: {error}")
    results = {}
    for key, label in CONTENDERS.items():
        results[key] = {"label": label, "instances_per_s": summary(samples[key]), "error": errors.get(key)}
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
                file.write(",".join(f"{value:.7g}" for value in row) + f",{label}\n")
    experiment: dict[str, Any] = {
        "random_seed": 0,
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


def _run_regimen(config: Path, serialization_dir: Path) -> float:
    """Seconds of training of one ``regimen train`` run, from its metrics.json; RuntimeError when it fails."""
    argv = [sys.executable, "-m", "regimen", "train", str(config), "-s", str(serialization_dir)]
    done = run_process(argv, env=single_thread_env(REGIMEN_LOG_LEVEL="WARNING"))
    if done.returncode != 0:
        if "distributed" in config.read_text():
            raise RuntimeError(f"distributed not implemented? exit {done.returncode}: {done.tail(2)}")
        raise RuntimeError(f"exit {done.returncode}: {done.tail(2)}")
    metrics_path = serialization_dir / "metrics.json"
    if not metrics_path.is_file():
        raise RuntimeError(f"no {metrics_path.name} in the serialization directory")
    duration = json.loads(metrics_path.read_text()).get("training_duration")
    if not duration:
        raise RuntimeError("metrics.json has no training_duration")
    return _seconds(duration)


def _seconds(duration: str) -> float:
    """'HH:MM:SS.ffffff' (regimen's training_duration) in seconds."""
    hours, minutes, seconds = duration.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


# ---- rendering ---------------------------------------------------------------------------------------------------
def render_table(data: dict[str, Any]) -> str:
    notes = {
        "hand_2": ("hand_speedup", ""),
        "regimen_1": (None, f"{fmt(data['regimen_1_vs_hand_1'], 2, 'x')} the hand-written loop"),
        "regimen_2": (
            "regimen_speedup",
            f"{fmt(data['regimen_2_vs_hand_2'], 2, 'x')} hand-written DDP, "
            f"target {verdict(data['regimen_2_vs_hand_2'], TARGET, higher_is_better=True)}",
        ),
    }
    rows = []
    for key, entry in data["contenders"].items():
        if entry["error"] or not entry["instances_per_s"]["n"]:
            rows.append([entry["label"], "unavailable", "", "", last_line(entry["error"] or "")[:100]])
            continue
        median, low, high = fmt_stats(entry["instances_per_s"])
        speedup_key, note = notes.get(key, (None, ""))
        speedup = fmt(data[speedup_key], 2, "x") if speedup_key else ""
        rows.append([entry["label"], median, f"{low}-{high}", speedup, note])
    return markdown_table(["contender", "instances/s", "min-max", "speed-up over 1 worker", "ratio / target"], rows)


def render(data: dict[str, Any]) -> str:
    spec = data["spec"]
    widths = "→".join(str(d) for d in (spec["input_dim"], *spec["hidden_dims"], spec["num_classes"]))
    return "\n".join(
        [
            f"## {TITLE}",
            "",
            f"MLP {widths}, batch {spec['batch_size']} per worker, {spec['batches']} batches per epoch shared among "
            f"the workers, {spec['epochs']} epochs, AdamW, no validation, no checkpoints. regimen reads the data "
            "from a CSV file and its training time includes collating batches from the instances; the "
            "hand-written loop slices tensors built once. Median, min and max of "
            f"{data['repeats']} alternating fresh runs; one thread per worker on a {os.cpu_count()}-core machine.",
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
    mine = batches[rank::world_size]
    model = make_network(spec)
    if world_size > 1:
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
        model = torch.nn.parallel.DistributedDataParallel(model)
        dist.barrier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    start = time.perf_counter()
    for _ in range(spec["epochs"]):
        for x, y in mine:
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
    if world_size > 1:
        dist.barrier()
    seconds = time.perf_counter() - start
    if rank == 0:
        Path(result_file).write_text(json.dumps({"seconds": seconds, "final_loss": loss.item()}))
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

"""Data loading: instances per second of regimen's DataLoader against torch's, with a CPU-heavy per-instance transform.

The same dataset on both sides: raw vectors (256 floats) and labels, and a transform per instance (a few matrix
products and tanh, ~0.1 ms) that makes its features. torch's side is what its users write: a map-style Dataset
whose ``__getitem__`` applies the transform, and ``torch.utils.data.DataLoader`` with its default collate. regimen's
side is what its users write: a DatasetReader whose ``_read`` yields the raw instances and whose
``transform_instance`` transforms each, and the default DataLoader with the same ``batch_size`` and
``num_workers``. Each measurement is a fresh process with one thread
(per process), timing one epoch from a fresh loader to its last batch: reading, the transforms, worker start-up
and collating, as in a run's first epoch. Both sides must produce the same batches (a checksum of every batch).

Both sides transform where they batch: torch's Dataset in ``__getitem__``, regimen's reader in
``transform_instance``, which the loader calls in its worker processes when ``num_workers`` is above 0.

Run one by hand: ``python -m benchmarks.data_loading --worker regimen --num-workers 2``.
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

from benchmarks.common import (
    Options,
    alternating_rounds,
    fmt,
    last_line,
    markdown_table,
    report,
    run_worker,
    set_single_thread,
    summary,
    verdict,
)
from benchmarks.step_overhead import paired_ratios, resolution_note

NAME = "data_loading"
TITLE = "Data loading"
INSTANCES, QUICK_INSTANCES = 4096, 512
BATCH_SIZE, FEATURES, TRANSFORM_ROUNDS = 32, 256, 8
NUM_WORKERS = (0, 1, 2)
CONTENDERS = {"torch": "torch.utils.data.DataLoader", "regimen": "regimen DataLoader"}
TARGET = 0.95  # regimen's throughput ≥ 0.95x torch's, at each num_workers


# ---- the suite (parent process) ----------------------------------------------------------------------------------
def run(options: Options) -> dict[str, Any]:
    instances = QUICK_INSTANCES if options.quick else INSTANCES
    data: dict[str, Any] = {"repeats": options.repeats, "quick": options.quick, "instances": instances, "rows": {}}
    for workers in NUM_WORKERS:
        args = ["--num-workers", str(workers), "--instances", str(instances)]
        samples, errors = alternating_rounds(
            options.repeats,
            f"data_loading/num_workers {workers}",
            list(CONTENDERS),
            lambda key, _, args=args: run_worker(f"benchmarks.{NAME}", key, *args),
        )
        data["rows"][str(workers)] = _summarise(samples, errors)
    print(render(data), flush=True)
    return data


def _summarise(samples: dict[str, list[dict[str, Any]]], errors: dict[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, runs in samples.items():
        row[key] = {
            "instances_per_s": summary([run["instances"] / run["seconds"] for run in runs]),
            "checksum": runs[0]["checksum"] if runs else None,
            "error": errors.get(key),
        }
    # Throughput ratio = the baseline's time over regimen's, round by round.
    torch_seconds = [run["seconds"] for run in samples["torch"]]
    paired = paired_ratios(torch_seconds, [run["seconds"] for run in samples["regimen"]])
    row["ratio"] = paired
    sums = (row["torch"]["checksum"], row["regimen"]["checksum"])
    row["same_batches"] = None if None in sums else abs(sums[0] - sums[1]) <= 1e-6 * max(abs(sums[0]), 1.0)
    return row


def render(data: dict[str, Any]) -> str:
    rows = []
    errors = []
    for workers, row in data["rows"].items():
        throughput = [fmt(row[key]["instances_per_s"]["median"], 0) for key in CONTENDERS]
        paired = row["ratio"]
        spread = paired.get("time_ratio_range")
        same = {True: "✓", False: "✗", None: "?"}[row["same_batches"]]
        rows.append(
            [
                workers,
                *throughput,
                fmt(paired.get("time_ratio"), 2, "x"),
                f"{spread[0]:.2f}-{spread[1]:.2f}" if spread else "",
                resolution_note(paired, TARGET),
                verdict(paired.get("time_ratio"), TARGET, higher_is_better=True),
                same,
            ]
        )
        errors += [
            f"- {CONTENDERS[k]}, {workers} workers: {last_line(row[k]['error'])}" for k in CONTENDERS if row[k]["error"]
        ]
    headers = ["num_workers", "torch inst/s", "regimen inst/s", "x torch", "range", "noise", "target", "same"]
    lines = [
        f"## {TITLE}",
        "",
        f"{data['instances']:,} instances, batch {BATCH_SIZE}, one epoch from a fresh loader; median of "
        f"{data['repeats']} alternating fresh processes.",
        "",
        markdown_table(headers, rows),
        "",
        "- Per instance: a vector of 256 floats through 8 rounds of a 256x256 matrix product and tanh (~0.1 ms).",
        "- torch: a map-style Dataset that transforms in `__getitem__` (so in the workers), default collate.",
        "- regimen: a DatasetReader that transforms in `transform_instance` (in the loader's workers, as torch's "
        "`__getitem__`), the default DataLoader.",
        "- x torch: median of the per-round throughput ratios; range: their min-max; 'below noise' / "
        "'unresolved' as in the step-overhead tables. same: both produced the same batches (checksum).",
        *errors,
        "",
    ]
    return "\n".join(lines)


# ---- the worker (a fresh process per measurement) -----------------------------------------------------------------
def make_raw(count: int) -> tuple[Any, Any, Any]:
    """``count`` raw vectors and labels, and the transform's matrix, from fixed seeds."""
    import torch

    generator = torch.Generator().manual_seed(7)
    raw = torch.randn(count, FEATURES, generator=generator)
    labels = torch.randint(0, 10, (count,), generator=generator).tolist()
    weight = torch.randn(FEATURES, FEATURES, generator=generator) / FEATURES**0.5
    return raw, labels, weight


def transform(vector, weight):
    """The CPU-heavy per-instance work: rounds of a matrix-vector product and tanh."""
    import torch

    for _ in range(TRANSFORM_ROUNDS):
        vector = torch.tanh(weight @ vector)
    return vector


def torch_loader(count: int, num_workers: int):
    import torch.utils.data

    raw, labels, weight = make_raw(count)

    class Transformed(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return count

        def __getitem__(self, index: int) -> dict[str, Any]:
            return {"features": transform(raw[index], weight), "label": labels[index]}

    return torch.utils.data.DataLoader(Transformed(), batch_size=BATCH_SIZE, num_workers=num_workers)


def regimen_loader(count: int, num_workers: int):
    from regimen.data import DatasetReader
    from regimen.data.data_loader import DefaultDataLoader

    raw, labels, weight = make_raw(count)

    class TransformingReader(DatasetReader):
        """Yields each raw vector as an instance and transforms it in `transform_instance`, which the loader calls
        as it batches (in its workers when there are any), every epoch, as torch's ``__getitem__`` does (benchmarks
        only; not registered)."""

        def _read(self, path: str):
            for index in range(count):
                yield {"features": raw[index], "label": labels[index]}

        def transform_instance(self, instance: dict[str, Any]) -> dict[str, Any]:
            instance["features"] = transform(instance["features"], weight)
            return instance

    return DefaultDataLoader(TransformingReader(), "raw", batch_size=BATCH_SIZE, num_workers=num_workers)


def worker(key: str, num_workers: int, count: int) -> dict[str, Any]:
    set_single_thread()
    loader = (torch_loader if key == "torch" else regimen_loader)(count, num_workers)
    # Importing torch leaves objects for Python's first full garbage collection, which whichever side allocates many
    # lasting objects first would pay inside its timing (~90 ms here: regimen's reader keeps its instances): pay it
    # before timing, on both sides.
    gc.collect()
    checksum, instances = 0.0, 0
    start = time.perf_counter()
    for batch in loader:
        instances += len(batch["label"])
        checksum += float(batch["features"].sum()) + float(batch["label"].sum())
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "instances": instances, "checksum": checksum}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=list(CONTENDERS), required=True)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--instances", type=int, default=INSTANCES)
    args = parser.parse_args()
    report(worker(args.worker, args.num_workers, args.instances))


if __name__ == "__main__":
    main()

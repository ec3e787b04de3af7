"""Collate: µs per batch of ``collate`` with its fast path against the general path alone, on csv-shaped batches.

``python -m benchmarks.collate [--repeats N]``. A batch is what the ``csv`` reader yields: instances
``{"features": [256 Python floats], "label": int}``. The general path is measured by running the same ``collate``
with ``collate_field`` swapped for ``_collate_field_general`` (what ``collate`` did before the fast path), in the
same process and on the same batches, alternating the two in every round; the table gives the median of the
rounds and the speed-up (general / fast). One intra-op thread, as in the other suites.
"""

from __future__ import annotations

import argparse
import importlib
import random
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch

collate_module = importlib.import_module("regimen.data.collate")

SHAPES = [(128, 256), (32, 64)]  # (instances per batch, features per instance)


def make_batch(batch_size: int, features: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {"features": [rng.gauss(0, 1) for _ in range(features)], "label": rng.randrange(10)} for _ in range(batch_size)
    ]


@contextmanager
def general_path_only():
    """``collate`` without its fast path, as it was before."""
    fast = collate_module.collate_field
    collate_module.collate_field = collate_module._collate_field_general
    try:
        yield
    finally:
        collate_module.collate_field = fast


def seconds_per_call(function: Callable[[], Any], budget_s: float = 0.2) -> float:
    """Wall time of one call, averaged over as many calls as fit in about ``budget_s`` (at least one)."""
    start = time.perf_counter()
    function()
    once = time.perf_counter() - start
    calls = max(1, int(budget_s / max(once, 1e-9)))
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


def measure(batch_size: int, features: int, repeats: int) -> dict[str, float]:
    instances = make_batch(batch_size, features)
    fast_batch = collate_module.collate(instances)
    with general_path_only():
        general_batch = collate_module.collate(instances)
    for name in general_batch:  # the comparison only means something if both give the same batch
        assert torch.equal(fast_batch[name], general_batch[name]), name
    fast, general = [], []
    for _ in range(repeats):
        fast.append(seconds_per_call(lambda: collate_module.collate(instances)))
        with general_path_only():
            general.append(seconds_per_call(lambda: collate_module.collate(instances)))
    fast_us, general_us = statistics.median(fast) * 1e6, statistics.median(general) * 1e6
    return {"general_us": general_us, "fast_us": fast_us, "speedup": general_us / fast_us}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.collate", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="rounds of each measurement (default 5)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"collate, one thread, median of {args.repeats} rounds")
    print("| batch x features | general path µs/batch | fast path µs/batch | speed-up |")
    print("|---|---:|---:|---:|")
    for batch_size, features in SHAPES:
        result = measure(batch_size, features, args.repeats)
        print(
            f"| {batch_size} x {features} | {result['general_us']:,.0f} | {result['fast_us']:,.0f} "
            f"| {result['speedup']:.1f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Activation checkpointing: the peak memory of a training step with and without it, and the same losses.

A deep MLP of ``Block`` modules (a transformer's feed-forward block: Linear to 4x the width, GELU, Linear back) on
a large batch, so that the activations kept for the backward pass dominate the step's memory, trained by regimen's
trainer for a few steps, once plainly and once with ``trainer.activation_checkpointing: ["Block"]``. Each
measurement is a fresh process with one thread. On the CPU the memory a step allocates shows in the process's
resident set: the worker records the peak RSS (``ru_maxrss``)
after building everything and again after training, and the difference is the step's peak above what the process
held before (large tensors are ``mmap``-ed by the allocator and returned to the system when freed, so the peak is
the activations' high-water mark). The losses of the two runs must be equal to the last bit: checkpointing
recomputes the same forward pass.

Run one by hand: ``python -m benchmarks.activation_memory --worker checkpointed``.
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.common import (
    Options,
    alternating_rounds,
    fmt,
    markdown_table,
    peak_rss_mb,
    report,
    run_worker,
    set_single_thread,
    summary,
    verdict,
)

NAME = "activation_memory"
TITLE = "Activation checkpointing memory"
CONTENDERS = {"plain": "no activation checkpointing", "checkpointed": 'activation_checkpointing: ["Block"]'}
FULL = {"depth": 8, "width": 512, "batch_size": 4096, "steps": 3}
QUICK = {"depth": 4, "width": 128, "batch_size": 1024, "steps": 2}
TARGET = 1.0  # the checkpointed step's peak below the plain one's (issue 18: "peak memory drops")


# ---- the suite (parent process) ----------------------------------------------------------------------------------
def run(options: Options) -> dict[str, Any]:
    spec = QUICK if options.quick else FULL
    args = [f"--{key.replace('_', '-')}={value}" for key, value in spec.items()]
    samples, errors = alternating_rounds(
        options.repeats, NAME, list(CONTENDERS), lambda key, _: run_worker(f"benchmarks.{NAME}", key, *args)
    )
    rows: dict[str, Any] = {}
    for key, runs in samples.items():
        rows[key] = {
            "step_peak_mib": summary([run["step_peak_mib"] for run in runs]),
            "losses": runs[0]["losses"] if runs else None,
            "error": errors.get(key),
        }
    plain, checkpointed = (rows[key]["step_peak_mib"].get("median") for key in CONTENDERS)
    data = {"spec": spec, "repeats": options.repeats, "rows": rows}
    data["ratio"] = checkpointed / plain if plain and checkpointed is not None else None
    data["same_losses"] = (
        rows["plain"]["losses"] is not None and rows["plain"]["losses"] == rows["checkpointed"]["losses"]
    )
    print(render(data), flush=True)
    return data


def render(data: dict[str, Any]) -> str:
    spec = data["spec"]
    rows = []
    for key, label in CONTENDERS.items():
        row = data["rows"][key]
        stats = row["step_peak_mib"]
        rows.append([label, fmt(stats.get("median"), 0), fmt(stats.get("min"), 0), fmt(stats.get("max"), 0)])
    unit = spec["batch_size"] * spec["width"] * 4 / 2**20  # MiB of one float32 activation of the model's width
    kept, recomputed = spec["depth"] * 9 * unit, spec["depth"] * unit
    lines = [
        f"## {TITLE}",
        "",
        f"An MLP of {spec['depth']} Block modules (Linear {spec['width']}->{4 * spec['width']}, GELU, Linear back), "
        f"batch {spec['batch_size']}, {spec['steps']} training steps with Adam; median of {data['repeats']} fresh "
        "processes per row.",
        "",
        markdown_table(["contender", "step peak MiB", "min", "max"], rows),
        "",
        f"- checkpointed / plain: {fmt(data['ratio'], 2, 'x')} ({verdict(data['ratio'], TARGET)}); the same losses at "
        f"every step: {'✓' if data['same_losses'] else '✗'}.",
        "- step peak: the peak resident memory after training minus the peak before it (model, optimizer and data "
        f"built). The plain step keeps each Block's input and its two 4x-wide activations (about {kept:.0f} MiB "
        f"here), the checkpointed one only each Block's input (about {recomputed:.0f} MiB) and recomputes the rest "
        "in the backward pass, one Block at a time.",
        *[f"- {CONTENDERS[k]}: {row['error']}" for k, row in data["rows"].items() if row["error"]],
        "",
    ]
    return "\n".join(lines)


# ---- the worker (a fresh process per measurement) -----------------------------------------------------------------
def worker(checkpointed: bool, depth: int, width: int, batch_size: int, steps: int) -> dict[str, Any]:
    set_single_thread()
    import torch

    from regimen.models import Model
    from regimen.registry import Params
    from regimen.trainers import Trainer
    from regimen.trainers.callbacks import TrainerCallback

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = torch.nn.Linear(width, 4 * width)
            self.down = torch.nn.Linear(4 * width, width)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.down(torch.nn.functional.gelu(self.up(x)))

    class DeepMlp(Model):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = torch.nn.Sequential(*(Block() for _ in range(depth)))
            self.out = torch.nn.Linear(width, 10)

        def forward(self, features: torch.Tensor, label: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"loss": torch.nn.functional.cross_entropy(self.out(self.blocks(features)), label)}

    class Losses(TrainerCallback):
        def __init__(self) -> None:
            super().__init__(None)
            self.losses: list[float] = []

        def on_batch(self, trainer: Any, batch_inputs: Any, batch_outputs: Any, *args: Any, **kwargs: Any) -> None:
            self.losses.append(float(batch_outputs[0]["loss"]))

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    batches = [
        {"features": torch.randn(batch_size, width, generator=generator), "label": torch.randint(0, 10, (batch_size,))}
        for _ in range(steps)
    ]
    config: dict[str, Any] = {"num_epochs": 1, "cuda_device": -1, "progress_bar": False, "checkpointer": None}
    config["optimizer"] = {"type": "adam", "lr": 1e-3}
    if checkpointed:
        config["activation_checkpointing"] = ["Block"]
    model = DeepMlp()
    trainer = Trainer.from_params(Params(config, "trainer"), model=model, data_loader=batches)
    losses = Losses()
    trainer._callbacks.append(losses)
    before = peak_rss_mb()
    trainer.train()
    return {"step_peak_mib": peak_rss_mb() - before, "losses": losses.losses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=list(CONTENDERS), required=True)
    for key, value in FULL.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=value)
    args = parser.parse_args()
    sizes = {key: getattr(args, key) for key in FULL}
    report(worker(args.worker == "checkpointed", **sizes))


if __name__ == "__main__":
    main()

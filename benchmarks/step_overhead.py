"""Step overhead: µs per optimizer step of regimen's trainer and of Lightning against a hand-written PyTorch loop.

Every contender trains the same network (same seed, so the same initial weights) on the same data in the same
order (no shuffling), with AdamW and a validation pass after every epoch. The baseline, the floor, is a hand-written
loop over ready-made batches (tensors sliced once, before the clock starts); most contenders get the same batches,
and those marked "over instances" get the same data as per-instance dicts and batch it themselves, with
torch's DataLoader or regimen's. Each measurement is a fresh process with one thread; only the training call is
timed (``loop()``, ``trainer.train()``, ``trainer.fit()``), and the time is divided by the number of optimizer
steps. The contenders alternate, round after round, and each one's ratio to the floor is taken round by round.

Afterwards each worker computes the mean training loss of its final weights over the training batches (untimed):
all contenders must agree, which shows they did the same work.

Run one worker by hand: ``python -m benchmarks.step_overhead --worker regimen_defaults --workload tiny``; add
``--profile FILE`` for cProfile statistics of the training call (read them with ``python -m pstats FILE``), and
``--epochs E`` (or ``--train-batches``, ``--validation-batches``) to change the workload's length (the
instructions suite runs the workers under cachegrind at several lengths).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from benchmarks.common import (
    Options,
    alternating_rounds,
    fmt,
    fmt_stats,
    last_line,
    markdown_table,
    peak_rss_mb,
    ratio,
    report,
    run_worker,
    scratch_dir,
    set_single_thread,
    summary,
    verdict,
)

NAME = "step_overhead"
TITLE = "Step overhead"
LOSS_TOLERANCE = 1e-3  # relative difference of the final training loss from the hand-written loop's
LR, WEIGHT_DECAY = 1e-3, 0.01


@dataclass(frozen=True)
class Workload:
    input_dim: int
    hidden_dims: tuple[int, ...]
    num_classes: int
    batch_size: int
    train_batches: int  # per epoch
    validation_batches: int
    epochs: int

    @property
    def steps(self) -> int:
        return self.train_batches * self.epochs

    def describe(self) -> str:
        widths = "→".join(str(d) for d in (self.input_dim, *self.hidden_dims, self.num_classes))
        return (
            f"MLP {widths}, batch {self.batch_size}, {self.epochs} epochs x {self.train_batches} steps, "
            f"{self.validation_batches} validation batches per epoch"
        )


WORKLOADS = {
    "tiny": Workload(64, (64,), 10, 32, train_batches=500, validation_batches=50, epochs=3),
    "medium": Workload(784, (1024, 1024), 10, 256, train_batches=20, validation_batches=4, epochs=2),
}
QUICK_WORKLOADS = {
    "tiny": Workload(64, (64,), 10, 32, train_batches=150, validation_batches=20, epochs=2),
    "medium": Workload(784, (1024, 1024), 10, 256, train_batches=6, validation_batches=2, epochs=2),
}

# key -> label; "hand" (the floor) is the baseline and must come first.
CONTENDERS = {
    "hand": "floor: hand-written loop over ready-made batches",
    "hand_dataloader": "hand-written loop, torch DataLoader over instances",
    "regimen_bare": "regimen: no checkpoints, no progress bar",
    "regimen_defaults": "regimen defaults: progress bar + checkpoints at epoch ends",
    "regimen_tensorboard": "regimen defaults + tensorboard callback",
    "regimen_mlp_classifier": "regimen defaults, built-in mlp_classifier model",
    "regimen_loader": "regimen defaults, regimen's DataLoader over instances",
    "lightning": "Lightning: progress bar + checkpoints, no logger, self.log per step",
}
# The targets for the ratio of medians to the hand-written loop, by workload and contender.
# regimen_defaults: the trainer alone (earlier parts of the issue); regimen_loader: as a user runs it (part 6).
TIME_TARGETS = {
    ("tiny", "regimen_defaults"): 1.10,
    ("medium", "regimen_defaults"): 1.02,
    ("tiny", "regimen_loader"): 1.15,
    ("medium", "regimen_loader"): 1.02,
}
MEMORY_TARGET = 1.10  # peak memory of a regimen run ≤ the hand-written loop's + 10 %
LIGHTNING_REFERENCE = {"tiny": "2.5-2.6x (issue)", "medium": "≈1.0x (issue)"}
# Contenders that get the data as per-instance dicts and batch it themselves.
OVER_INSTANCES = frozenset(("hand_dataloader", "regimen_loader"))


def lightning_installed() -> bool:
    return importlib.util.find_spec("lightning") is not None


# ---- the suite (parent process) ----------------------------------------------------------------------------------
def run(options: Options) -> dict[str, Any]:
    workloads = QUICK_WORKLOADS if options.quick else WORKLOADS
    contenders = [key for key in CONTENDERS if key != "lightning" or lightning_installed()]
    data: dict[str, Any] = {"repeats": options.repeats, "quick": options.quick, "workloads": {}}
    for name, workload in workloads.items():
        args = ["--workload", name] + (["--quick"] if options.quick else [])
        samples, errors = alternating_rounds(
            options.repeats,
            f"step_overhead/{name}",
            contenders,
            lambda key, _, args=args: run_worker(f"benchmarks.{NAME}", key, *args),
        )
        data["workloads"][name] = _summarise(name, workload, samples, errors)
        print(render_workload(name, data["workloads"][name]), flush=True)
    return data


def paired_ratios(seconds: list[float], baseline: list[float]) -> dict[str, Any]:
    """The contender's time over the baseline's, round by round (both were measured side by side in each round):
    ``time_ratio`` is their median, ``time_ratio_range`` their (min, max), and ``resolved`` is False when the rounds
    disagree on which is faster (the range holds 1), i.e. the difference is below what the run can resolve."""
    ratios = [value / base for value, base in zip(seconds, baseline) if base > 0]
    if not ratios:
        return {"time_ratio": None, "time_ratio_range": None, "paired_ratios": [], "resolved": None}
    low, high = min(ratios), max(ratios)
    return {
        "time_ratio": statistics.median(ratios),
        "time_ratio_range": [low, high],
        "paired_ratios": ratios,
        "resolved": not low <= 1.0 <= high,
    }


def resolution_note(entry: dict[str, Any], target: float | None = None) -> str:
    """A short cell: whether the run resolves the difference from the floor (and, with a target, the verdict)."""
    spread = entry.get("time_ratio_range")
    if entry.get("time_ratio") is None or not spread:
        return ""
    if target is not None and spread[0] <= target <= spread[1]:
        return "unresolved"  # some rounds meet the target, others miss it
    return "" if entry.get("resolved") else "below noise"


def _summarise(
    name: str, workload: Workload, samples: dict[str, list[dict[str, Any]]], errors: dict[str, str]
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for key, runs in samples.items():
        results[key] = {
            "label": CONTENDERS[key],
            "us_per_step": summary([run["seconds"] * 1e6 / workload.steps for run in runs]),
            "peak_rss_mb": summary([run["peak_rss_mb"] for run in runs]),
            "final_loss": runs[0]["final_loss"] if runs else None,
            "final_loss_stable": len({run["final_loss"] for run in runs}) <= 1,
            "error": errors.get(key),
        }
    hand = results.get("hand", {})
    hand_rounds = [run["seconds"] for run in samples.get("hand", [])]
    for key, result in results.items():
        median, hand_median = result["us_per_step"]["median"], hand.get("us_per_step", {}).get("median")
        result.update(paired_ratios([run["seconds"] for run in samples[key]], hand_rounds))
        result["overhead_us"] = None if median is None or hand_median is None else median - hand_median
        result["memory_ratio"] = ratio(result["peak_rss_mb"]["median"], hand.get("peak_rss_mb", {}).get("median"))
        loss, base = result["final_loss"], hand.get("final_loss")
        result["loss_agrees"] = None if loss is None or base is None else abs(loss - base) <= LOSS_TOLERANCE * abs(base)
    if not lightning_installed():
        results["lightning"] = {"label": CONTENDERS["lightning"], "error": "not installed"}
    return {"workload": asdict(workload), "description": workload.describe(), "contenders": results}


# ---- rendering ---------------------------------------------------------------------------------------------------
def render_workload(name: str, result: dict[str, Any]) -> str:
    hand_median = result["contenders"].get("hand", {}).get("us_per_step", {}).get("median")
    rows = []
    for key, entry in result["contenders"].items():
        if entry.get("error") or not entry.get("us_per_step", {}).get("n"):
            rows.append([entry["label"], "unavailable", "", "", "", "", "", "", "", "", "", "", ""])
            continue
        median, low, high = fmt_stats(entry["us_per_step"])
        target = TIME_TARGETS.get((name, key))
        if key == "lightning":
            time_target = LIGHTNING_REFERENCE[name]
        elif target is not None:
            time_target = verdict(entry["time_ratio"], target)
        else:
            time_target = ""
        spread = entry.get("time_ratio_range")
        ratio_range = f"{spread[0]:.2f}-{spread[1]:.2f}" if spread and key != "hand" else ""
        memory_target = verdict(entry["memory_ratio"], MEMORY_TARGET) if key.startswith("regimen") else ""
        agrees = {True: "✓", False: "✗ differs", None: "?"}[entry["loss_agrees"]]
        if not entry["final_loss_stable"]:
            agrees += " (varies between runs)"
        rows.append(
            [
                entry["label"],
                median,
                f"{low}-{high}",
                fmt(entry["time_ratio"], 2, "x"),
                ratio_range,
                "" if key == "hand" else resolution_note(entry, target),
                fmt(entry["us_per_step"]["median"] - hand_median if hand_median is not None else None, 0),
                time_target,
                fmt(entry["peak_rss_mb"]["median"], 0),
                fmt(entry["memory_ratio"], 2, "x"),
                memory_target,
                fmt(entry["final_loss"], 6),
                agrees,
            ]
        )
    headers = ["contender", "µs/step", "min-max", "x floor", "range", "noise", "+µs/step", "target", "peak MiB"]
    headers += ["x floor", "target", "final loss", "="]
    errors = [f"- {e['label']}: {last_line(e['error'])}" for e in result["contenders"].values() if e.get("error")]
    lines = [f"### {name}: {result['description']}", "", markdown_table(headers, rows)]
    if errors:
        lines += ["", *errors]
    return "\n".join(lines) + "\n"


def render(data: dict[str, Any]) -> str:
    lines = [
        f"## {TITLE}",
        "",
        f"Median, min and max of {data['repeats']} fresh processes per contender, alternating; one thread. "
        "µs/step: wall time of the training call (epochs with their validation passes) / steps.",
        "",
        "- x floor: the median of the per-round ratios to the floor (the hand-written loop over ready-made "
        "batches, run in the same round); range: their min-max.",
        "- noise: 'below noise' when the rounds disagree on which is faster (the range holds 1.00), "
        "'unresolved' when the range holds the target; the instructions table resolves those.",
        "- +µs/step: difference of medians from the floor. Peak MiB: the worker's ru_maxrss (imports included).",
        f"- final loss: the mean training loss of the final weights; '=' is ✓ within {LOSS_TOLERANCE:g} "
        "(relative) of the floor's.",
        "- The rows 'over instances' batch per-instance dicts themselves; the others get the floor's batches. "
        "All train the floor's network; the mlp_classifier row uses regimen's built-in model (same weights, plus "
        "softmax and an accuracy metric).",
        "",
    ]
    for name, result in data["workloads"].items():
        lines.append(render_workload(name, result))
    return "\n".join(lines)


# ---- the worker (a fresh process per measurement) -----------------------------------------------------------------
def make_batches(workload: Workload, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` batches of a learnable task: labels from a fixed random linear teacher plus noise."""
    import torch

    teacher = torch.randn(workload.input_dim, workload.num_classes, generator=torch.Generator().manual_seed(1234))
    generator = torch.Generator().manual_seed(seed)
    size = count * workload.batch_size
    features = torch.randn(size, workload.input_dim, generator=generator)
    noise = torch.randn(size, workload.num_classes, generator=generator)
    labels = (features @ teacher / workload.input_dim**0.5 + 0.1 * noise).argmax(-1)
    return [
        {"features": features[i : i + workload.batch_size], "label": labels[i : i + workload.batch_size]}
        for i in range(0, size, workload.batch_size)
    ]


def make_network(workload: Workload):
    """Linear/ReLU layers, created in the same order (so from the same random draws) as regimen's mlp_classifier."""
    import torch

    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    width = workload.input_dim
    for hidden in workload.hidden_dims:
        layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
        width = hidden
    layers.append(torch.nn.Linear(width, workload.num_classes))
    return torch.nn.Sequential(*layers)


def mean_loss(network, batches: list[dict[str, Any]]) -> float:
    import torch
    import torch.nn.functional as F

    network.eval()
    with torch.inference_mode():
        total = sum(F.cross_entropy(network(b["features"]), b["label"]) for b in batches)
    return float(total) / len(batches)


def prepare_hand(workload: Workload, train, validation) -> tuple[Callable[[], None], Any]:
    """The loop a PyTorch user writes: no per-step .item(), validation under inference_mode."""
    import torch
    import torch.nn.functional as F

    model = make_network(workload)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)

    def fit() -> None:
        for _ in range(workload.epochs):
            model.train()
            for batch in train:
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(batch["features"]), batch["label"])
                loss.backward()
                optimizer.step()
            model.eval()
            with torch.inference_mode():
                total = torch.zeros(())
                for batch in validation:
                    total += F.cross_entropy(model(batch["features"]), batch["label"])
                print(f"validation loss {float(total) / len(validation):.4f}")  # one read per epoch, as users do

    return fit, model


def instances_of(batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The batches' rows as per-instance dicts, as a dataset reader yields them: a feature tensor and an int label."""
    return [
        {"features": features, "label": label}
        for batch in batches
        for features, label in zip(batch["features"], batch["label"].tolist())
    ]


def prepare_hand_dataloader(workload: Workload, train, validation) -> tuple[Callable[[], None], Any]:
    """The hand-written loop as most PyTorch users write it: torch's DataLoader over a list of instances, with
    its default per-sample collate (the same batches as the floor's, made on the fly)."""
    import torch.utils.data

    fit, model = prepare_hand(
        workload,
        torch.utils.data.DataLoader(instances_of(train), batch_size=workload.batch_size),
        torch.utils.data.DataLoader(instances_of(validation), batch_size=workload.batch_size),
    )
    return fit, model


def regimen_loader(instances: list[dict[str, Any]], batch_size: int, name: str, num_workers: int = 0):
    """regimen's default DataLoader over ``instances`` in memory (a reader that yields them), in file order."""
    from regimen.data import DatasetReader
    from regimen.data.data_loader import DefaultDataLoader

    class InMemoryReader(DatasetReader):
        """Yields the instances it was given, whatever the path (benchmarks only; not registered)."""

        def _read(self, path: str):
            return iter(instances)

    return DefaultDataLoader(InMemoryReader(), name, batch_size=batch_size, num_workers=num_workers)


def _register_benchmark_model() -> None:
    """Register a regimen Model around ``make_network``'s network that computes only the hand-written loop's loss."""
    import torch.nn.functional as F

    from regimen.models import Model

    if "benchmark_mlp" in Model.list_available():
        return

    @Model.register("benchmark_mlp")
    class BenchmarkMlp(Model):
        """The hand-written loop's network as a regimen Model (benchmarks only).

        Registered as a `Model` with name "benchmark_mlp". Config key: `workload` ("tiny" | "medium"),
        `quick` (bool, false).
        """

        def __init__(self, workload: str, quick: bool = False) -> None:
            super().__init__()
            self.network = make_network((QUICK_WORKLOADS if quick else WORKLOADS)[workload])

        def forward(self, features, label=None, **extra):
            logits = self.network(features)
            return {"logits": logits} if label is None else {"logits": logits, "loss": F.cross_entropy(logits, label)}


def prepare_regimen(
    key: str, name: str, quick: bool, train, validation, directory: str, workload: Workload | None = None
) -> tuple[Callable[[], None], Any]:
    from regimen.models import Model
    from regimen.registry import Params
    from regimen.trainers import Trainer

    workload = workload or (QUICK_WORKLOADS if quick else WORKLOADS)[name]
    if key in OVER_INSTANCES:
        train = regimen_loader(instances_of(train), workload.batch_size, f"{name}-train")
        validation = regimen_loader(instances_of(validation), workload.batch_size, f"{name}-validation")
    _register_benchmark_model()
    if key == "regimen_mlp_classifier":
        classifier = {
            "type": "mlp_classifier",
            "input_dim": workload.input_dim,
            "hidden_dims": list(workload.hidden_dims),
            "num_classes": workload.num_classes,
        }
        import torch

        torch.manual_seed(0)
        model = Model.from_params(Params(classifier))
    else:
        model = Model.from_params(Params({"type": "benchmark_mlp", "workload": name, "quick": quick}))
    config: dict[str, Any] = {
        "num_epochs": workload.epochs,
        "cuda_device": -1,
        "optimizer": {"type": "adamw", "lr": LR, "weight_decay": WEIGHT_DECAY},
    }
    serialization_dir: str | None = directory
    if key == "regimen_bare":
        config.update(progress_bar=False, checkpointer=None)
        serialization_dir = None  # nothing written at all: no checkpoints, no best.th, no metrics files
    elif key == "regimen_tensorboard":
        config["callbacks"] = [{"type": "tensorboard"}]
    trainer = Trainer.from_params(
        Params(config, "trainer"),
        model=model,
        data_loader=train,
        validation_data_loader=validation,
        serialization_dir=serialization_dir,
    )
    return trainer.train, model.network


class Batches:
    """Pre-collated batches as one iterable with a length (not a Sequence, which Lightning reads as many loaders)."""

    def __init__(self, batches: list[dict[str, Any]]) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def prepare_lightning(workload: Workload, train, validation, directory: str) -> tuple[Callable[[], None], Any]:
    """A LightningModule as Lightning users write it, with the Trainer's features matched to regimen's defaults."""
    import lightning
    import torch
    import torch.nn.functional as F

    class Module(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.network = make_network(workload)

        def training_step(self, batch, batch_idx):
            loss = F.cross_entropy(self.network(batch["features"]), batch["label"])
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", F.cross_entropy(self.network(batch["features"]), batch["label"]))

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)

    module = Module()
    # A list would be taken for a list of data loaders: wrap it as one iterable (no DataLoader costs, as for the rest).
    trainer = lightning.Trainer(
        max_epochs=workload.epochs,
        accelerator="cpu",
        devices=1,
        enable_checkpointing=True,
        enable_progress_bar=True,
        logger=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,  # regimen has no sanity pass; the same validation work for both
        default_root_dir=directory,
    )

    def fit() -> None:
        trainer.fit(module, train_dataloaders=Batches(train), val_dataloaders=Batches(validation))

    return fit, module.network


def worker(
    key: str, name: str, quick: bool, profile: str | None = None, lengths: dict[str, int] | None = None
) -> dict[str, Any]:
    """Build the contender (untimed), time its training call, then measure its final loss (untimed).

    With ``profile``, the training call runs under cProfile and its statistics are written to that file
    (the time reported then includes the profiler's overhead). ``lengths`` replaces some of the workload's
    ``epochs``, ``train_batches`` and ``validation_batches``.
    """
    set_single_thread()
    workload = replace((QUICK_WORKLOADS if quick else WORKLOADS)[name], **(lengths or {}))
    train = make_batches(workload, workload.train_batches, seed=1)
    validation = make_batches(workload, workload.validation_batches, seed=2)
    with scratch_dir(f"step-{key}-") as directory:
        if key == "hand":
            fit, network = prepare_hand(workload, train, validation)
        elif key == "hand_dataloader":
            fit, network = prepare_hand_dataloader(workload, train, validation)
        elif key == "lightning":
            fit, network = prepare_lightning(workload, train, validation, str(directory))
        else:
            fit, network = prepare_regimen(key, name, quick, train, validation, str(directory), workload)
        profiler = cProfile.Profile() if profile else None
        start = time.perf_counter()
        if profiler is not None:
            profiler.runcall(fit)
        else:
            fit()
        seconds = time.perf_counter() - start
    if profiler is not None:
        profiler.dump_stats(profile)
    return {"seconds": seconds, "final_loss": mean_loss(network, train), "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=list(CONTENDERS), required=True)
    parser.add_argument("--workload", choices=list(WORKLOADS), required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", metavar="FILE", help="write cProfile statistics of the training call to FILE")
    for length in ("epochs", "train_batches", "validation_batches"):
        parser.add_argument(f"--{length.replace('_', '-')}", type=int, metavar="N", help=f"override the {length}")
    args = parser.parse_args()
    lengths = {k: getattr(args, k) for k in ("epochs", "train_batches", "validation_batches") if getattr(args, k)}
    report(worker(args.worker, args.workload, args.quick, args.profile, lengths))


if __name__ == "__main__":
    main()

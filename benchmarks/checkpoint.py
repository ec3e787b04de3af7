"""Checkpoint cost: regimen's Checkpointer saving and loading a ~100 M parameter model with its Adam state, against
a bare ``torch.save``/``torch.load`` of the same state dicts, and the time a training step is blocked by a save.

One fresh worker process (one thread) builds a stack of Linear layers (float32, ~400 MB of weights, ~1.2 GB with
Adam's two moments), takes one optimizer step with regimen's GradientDescentTrainer, then alternates: regimen save,
bare save, bare save + fsync (a reference: regimen fsyncs to be crash-safe), and likewise for loading. Dirty pages
are flushed (``os.sync``, untimed) before every measurement; loads read files just written (warm page cache).
Files go to a scratch directory under ``runs/`` on the repository's filesystem.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Options,
    fmt,
    fmt_stats,
    last_line,
    markdown_table,
    peak_rss_mb,
    progress,
    ratio,
    report,
    run_worker,
    scratch_dir,
    set_single_thread,
    summary,
    verdict,
)

NAME = "checkpoint"
TITLE = "Checkpoint cost"
SAVE_TARGET = LOAD_TARGET = 1.2  # ≤ 1.2x a bare torch.save / torch.load of the same state
FULL_SIZE = {"width": 3200, "depth": 10, "batch_size": 16}  # 10 x (3200² + 3200) ≈ 102.4 M parameters
QUICK_SIZE = {"width": 1600, "depth": 10, "batch_size": 16}  # ≈ 25.6 M parameters
BLOCKED_STEPS_FULL, BLOCKED_STEPS_QUICK = 13, 7  # steps of the blocked-by-a-save runs
BLOCKED_EVERY = 3  # a save after every 3rd step: the background write has two steps to finish in


def run(options: Options) -> dict[str, Any]:
    progress(f"checkpoint: one worker, {options.repeats} alternating repeats")
    args = ["--repeats", str(options.repeats)] + (["--quick"] if options.quick else [])
    try:
        result = run_worker(f"benchmarks.{NAME}", *args, timeout=1800)
    except RuntimeError as error:
        result = {"error": str(error)}
    data = {"repeats": options.repeats, "quick": options.quick, **result}
    if "error" not in data:
        for kind in ("save", "load"):
            data[f"{kind}_ratio"] = ratio(data[f"regimen_{kind}"]["median"], data[f"bare_{kind}"]["median"])
    print(render_table(data), flush=True)
    return data


def render_table(data: dict[str, Any]) -> str:
    if "error" in data:
        return f"unavailable: {last_line(data['error'])}"
    rows = []
    for kind, target in (("save", SAVE_TARGET), ("load", LOAD_TARGET)):
        bare = data[f"bare_{kind}"]["median"]
        if kind == "save":
            contenders = [
                ("regimen", "regimen Checkpointer.save_checkpoint until on disk (default: written in the background)"),
                ("regimen_sync", "regimen Checkpointer.save_checkpoint, write_in_background: false"),
                ("bare", "bare torch.save"),
                ("bare_fsync", "bare torch.save + fsync (reference)"),
            ]
        else:
            contenders = [("regimen", "regimen Checkpointer.load_checkpoint"), ("bare", "bare torch.load")]
        for key, label in contenders:
            stats = data.get(f"{key}_{kind}")
            if stats is None:  # results.json from before this contender was measured
                continue
            median, low, high = fmt_stats(stats, 3)
            value = ratio(stats["median"], bare)
            rows.append(
                [label, median, f"{low}-{high}", fmt(value, 2, "x"), verdict(value, target) if key == "regimen" else ""]
            )
    by_mode = data["blocked"] if "blocked_s" not in data["blocked"] else {"sync": data["blocked"]}  # older results
    for mode, blocked in by_mode.items():
        label = "written in the background (default)" if mode == "background" else "write_in_background: false"
        if "error" in blocked:
            rows.append([f"time a step is blocked by a save, {label}", "unavailable", "", "", blocked["error"][:80]])
            continue
        without, with_save = blocked["step_without_save"]["median"], blocked["step_with_save"]["median"]
        rows.append([f"training step without a save, {label}", fmt(without, 3), "", "", ""])
        rows.append([f"training step with a save, {label}", fmt(with_save, 3), "", "", ""])
        rows.append(
            [
                f"time a step is blocked by a save, {label}",
                fmt(blocked["blocked_s"], 3),
                "",
                fmt(ratio(blocked["blocked_s"], data["bare_save"]["median"]), 2, "x bare save"),
                "",
            ]
        )
    return markdown_table(["operation", "median s", "min-max s", "x bare", "target"], rows)


def render(data: dict[str, Any]) -> str:
    lines = [f"## {TITLE}", ""]
    if "error" not in data:
        lines += [
            f"{data['parameters'] / 1e6:.1f} M parameters (float32) with Adam's state after one step: "
            f"model file {data['model_file_mb']:.0f} MB, training-state file {data['training_file_mb']:.0f} MB. "
            f"Median, min and max of {data['repeats']} alternating repeats in one fresh process; dirty pages "
            "flushed before each; loads from a warm page cache. A background save is timed until its files are on "
            "disk (`wait()`). The blocked time is the median step with a checkpoint save (regimen trainer, "
            f"`save_every_num_batches: {BLOCKED_EVERY}`) minus the median step without; "
            f"worker peak memory {data['peak_rss_mb']:.0f} MiB.",
            "",
        ]
    lines += [render_table(data), ""]
    return "\n".join(lines)


# ---- the worker ------------------------------------------------------------------------------------------------
def _register_model():
    import torch

    from regimen.models import Model

    if "benchmark_linear_stack" in Model.list_available():
        return Model.by_name("benchmark_linear_stack")

    @Model.register("benchmark_linear_stack")
    class LinearStack(Model):
        """``depth`` Linear(width, width) + ReLU layers; loss: the mean square of the output (benchmarks only).

        Registered as a `Model` with name "benchmark_linear_stack".
        """

        def __init__(self, width: int, depth: int) -> None:
            super().__init__()
            layers: list[torch.nn.Module] = []
            for _ in range(depth):
                layers += [torch.nn.Linear(width, width), torch.nn.ReLU()]
            self.network = torch.nn.Sequential(*layers)

        def forward(self, features, **extra):
            return {"loss": self.network(features).pow(2).mean()}

    return LinearStack


def _timed(function) -> float:
    os.sync()  # flush what the previous measurement left dirty, so it does not slow this one
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _save_bare(model, optimizer, paths: tuple[Path, Path], fsync: bool) -> None:
    """What a hand-written loop does: ``torch.save`` the model's and the optimizer's state dicts."""
    import torch

    for state, path in zip((model.state_dict(), optimizer.state_dict()), paths):
        with open(path, "wb") as file:
            torch.save(state, file)
            if fsync:
                file.flush()
                os.fsync(file.fileno())


def worker(repeats: int, quick: bool) -> dict[str, Any]:
    set_single_thread()
    import torch

    from regimen.trainers import GradientDescentTrainer, TrainerCallback
    from regimen.trainers.checkpointer import Checkpointer

    size = QUICK_SIZE if quick else FULL_SIZE
    torch.manual_seed(0)
    model = _register_model()(size["width"], size["depth"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    batches = [{"features": torch.randn(size["batch_size"], size["width"])} for _ in range(2)]

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []

        def on_batch(self, trainer, *args, is_training: bool = True, **kwargs) -> None:
            self.times.append(time.perf_counter())

    def trainer(data, **kwargs) -> GradientDescentTrainer:
        return GradientDescentTrainer(
            model=model,
            optimizer=optimizer,
            data_loader=data,
            num_epochs=1,
            progress_bar=False,
            cuda_device=-1,
            **kwargs,
        )

    saver = trainer(batches[:1])
    saver.train()  # one step, so the optimizer has its state
    model_state = model.state_dict()
    samples: dict[str, list[float]] = {
        k: [] for k in ("regimen_save", "regimen_sync_save", "bare_save", "bare_fsync_save")
    }
    samples.update(regimen_load=[], bare_load=[])
    with scratch_dir("checkpoint-") as directory:
        checkpointer = Checkpointer(str(directory / "regimen"))
        in_place = Checkpointer(str(directory / "regimen_sync"), write_in_background=False)

        def save_and_wait(number: int) -> None:
            checkpointer.save_checkpoint(saver, number, 0)
            checkpointer.wait()

        bare_paths: tuple[Path, Path] = (directory / "none", directory / "none")
        for number in range(repeats + 1):  # round 0 warms up (first writes, allocations)
            if number == 1:
                samples = {key: [] for key in samples}
            samples["regimen_save"].append(_timed(lambda n=number: save_and_wait(n)))
            samples["regimen_sync_save"].append(_timed(lambda n=number: in_place.save_checkpoint(saver, n, 0)))
            # A bare loop writes new files per checkpoint too (model_3.th, ...); the old ones go, untimed.
            for fsync in (False, True):
                old_paths = bare_paths
                bare_paths = (directory / f"model_{number}_{fsync}.th", directory / f"optimizer_{number}_{fsync}.th")
                key = "bare_fsync_save" if fsync else "bare_save"
                samples[key].append(_timed(lambda p=bare_paths, f=fsync: _save_bare(model, optimizer, p, fsync=f)))
                for path in old_paths:
                    path.unlink(missing_ok=True)
        model_file, training_file = checkpointer.find_latest_checkpoint()
        for number in range(repeats + 1):
            if number == 1:
                samples["regimen_load"], samples["bare_load"] = [], []
            samples["regimen_load"].append(_timed(checkpointer.load_checkpoint))
            samples["bare_load"].append(_timed(lambda: [torch.load(path) for path in bare_paths]))
        sizes = {
            "model_file_mb": os.path.getsize(model_file) / 1e6,
            "training_file_mb": os.path.getsize(training_file) / 1e6,
        }
        steps = BLOCKED_STEPS_QUICK if quick else BLOCKED_STEPS_FULL
        blocked: dict[str, Any] = {}
        for mode in ("background", "sync"):
            clock = StepClock()
            blocked_dir = directory / f"blocked-{mode}"
            try:
                trainer(
                    [batches[i % 2] for i in range(steps)],
                    serialization_dir=str(blocked_dir),
                    checkpointer=Checkpointer(
                        str(blocked_dir),
                        save_completed_epochs=False,
                        save_every_num_batches=BLOCKED_EVERY,
                        keep_most_recent_by_count=1,
                        write_in_background=mode == "background",
                    ),
                    callbacks=[clock],
                ).train()
                blocked[mode] = _blocked(clock.times)
            except Exception as error:  # a trainer being rewritten must not cost the save/load numbers above
                blocked[mode] = {"error": f"{type(error).__name__}: {error}"}
    return {
        "parameters": sum(p.numel() for p in model_state.values()),
        **sizes,
        **{key: summary(values) for key, values in samples.items()},
        "blocked": blocked,
        "peak_rss_mb": peak_rss_mb(),
    }


def _blocked(times: list[float]) -> dict[str, Any]:
    """Median step with a save minus median step without, from the end time of every step."""
    # Step s (s = 2, 3, ...) lasts from the end of step s-1 to its own end; a save after step s-1 falls into it.
    durations = {s: times[s - 1] - times[s - 2] for s in range(2, len(times) + 1)}
    with_save = summary([d for s, d in durations.items() if (s - 1) % BLOCKED_EVERY == 0])
    without_save = summary([d for s, d in durations.items() if (s - 1) % BLOCKED_EVERY != 0])
    return {
        "step_with_save": with_save,
        "step_without_save": without_save,
        "blocked_s": with_save["median"] - without_save["median"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", required=True)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    report(worker(args.repeats, args.quick))


if __name__ == "__main__":
    main()

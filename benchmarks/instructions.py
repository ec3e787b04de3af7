"""Instructions per step: the step-overhead contenders counted under cachegrind, a measure that resolves 2 %.

On a shared VM a process's wall time and CPU time both spread by ~10 % from run to run, and there are no
hardware counters; valgrind's cachegrind (``--cache-sim=no``) counts the instructions a process executes, and the
count does not depend on the machine's load. Each contender of ``benchmarks.step_overhead`` (the same workers)
runs twice under cachegrind, for ``E`` and ``2E`` epochs of the same batches; the difference of the two counts
divided by the difference in optimizer steps is the instructions per step, with start-up (importing torch, building
the data, the final loss) cancelled. Per-epoch work (validation, checkpoints) is part of it, as in a real run.

The counts are deterministic up to a few hundred instructions in ~10 G (threads and clock reads: the progress bar
refreshes by time, and the process runs ~50x slower under valgrind), so one run per length is enough; a full run
repeats the floor's shorter run once to show the spread. As the counts do not depend on the load, two workers run
at a time. A cachegrind run takes ~2.5 minutes, most of it importing torch.

Run one by hand: ``valgrind --tool=cachegrind --cache-sim=no python -m benchmarks.step_overhead --worker hand
--workload tiny --epochs 2 --train-batches 100 --validation-batches 10``.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULT_MARKER,
    Options,
    fmt,
    last_line,
    markdown_table,
    progress,
    ratio,
    run_process,
    single_thread_env,
    verdict,
)
from benchmarks.step_overhead import CONTENDERS, LOSS_TOLERANCE, WORKLOADS, lightning_installed

NAME = "instructions"
TITLE = "Instructions per step"
VALGRIND = "valgrind"
PARALLEL = 2  # cachegrind workers at a time (their counts do not depend on the load)
TIMEOUT_S = 1800
# Per workload: batches per epoch (training, validation) and the two numbers of epochs.
# Only the tiny workload is counted: under valgrind, which emulates the vector instructions of torch's matrix
# products, one medium step (784x1024x1024, batch 256) takes minutes, and a medium run did not finish in 20 minutes;
# its steps are long enough (~50 ms) for the wall-time table to resolve a few percent.
LENGTHS = {"tiny": {"train_batches": 100, "validation_batches": 10, "epochs": (2, 4)}}
MEDIUM_NOT_COUNTED = (
    "medium: not counted; under valgrind a medium step takes minutes (torch's vectorised matrix products are "
    "emulated instruction by instruction), so the wall-time table measures it instead"
)
QUICK_LENGTHS = {"tiny": {"train_batches": 20, "validation_batches": 4, "epochs": (1, 2)}}
FULL_CONTENDERS = ("hand", "hand_dataloader", "regimen_bare", "regimen_defaults", "regimen_loader", "lightning")
QUICK_CONTENDERS = ("hand", "regimen_loader")
# The targets for regimen against the floor, in instructions per step.
TARGETS = {("tiny", "regimen_loader"): 1.15, ("medium", "regimen_loader"): 1.02}


def run(options: Options) -> dict[str, Any]:
    lengths = QUICK_LENGTHS if options.quick else LENGTHS
    contenders = [
        k for k in (QUICK_CONTENDERS if options.quick else FULL_CONTENDERS) if k != "lightning" or lightning_installed()
    ]
    data: dict[str, Any] = {"quick": options.quick, "workloads": {}}
    if shutil.which(VALGRIND) is None:
        data["error"] = "valgrind is not installed"
        return data
    jobs = [(name, key, epochs) for name in lengths for key in contenders for epochs in lengths[name]["epochs"]]
    if not options.quick:
        jobs.append(("tiny", "hand", lengths["tiny"]["epochs"][0]))  # a second run: the counts' spread
    with ThreadPoolExecutor(PARALLEL) as pool:
        done = list(pool.map(lambda job: (job, count(job[0], job[1], job[2], lengths[job[0]])), jobs))
    for name, spec in lengths.items():
        runs: dict[str, dict[int, list[dict[str, Any]]]] = {}
        for (workload, key, epochs), result in done:
            if workload == name:
                runs.setdefault(key, {}).setdefault(epochs, []).append(result)
        data["workloads"][name] = _summarise(name, spec, runs)
        print(render_workload(name, data["workloads"][name]), flush=True)
    return data


def count(name: str, key: str, epochs: int, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one step-overhead worker under cachegrind; its instruction count and what the worker reported."""
    progress(f"instructions/{name}: {key}, {epochs} epochs")
    with tempfile.TemporaryDirectory(prefix="cachegrind-") as directory:
        out = Path(directory) / "cachegrind.out"
        argv = [VALGRIND, "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}"]
        argv += [
            sys.executable,
            "-m",
            "benchmarks.step_overhead",
            "--worker",
            key,
            "--workload",
            name,
            "--epochs",
            str(epochs),
        ]
        argv += ["--train-batches", str(spec["train_batches"]), "--validation-batches", str(spec["validation_batches"])]
        done = run_process(argv, timeout=TIMEOUT_S, env=single_thread_env())
        reported = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARKER)]
        if done.returncode != 0 or not reported or not out.is_file():
            return {"error": f"exit {done.returncode}:\n{done.tail()}"}
        total = _summary(out.read_text())
    result = json.loads(reported[-1][len(RESULT_MARKER) :])
    return {"instructions": total, "final_loss": result["final_loss"], "valgrind_seconds": done.seconds}


def _summary(text: str) -> int:
    for line in text.splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise ValueError("no 'summary:' line in the cachegrind output")


def _summarise(name: str, spec: dict[str, Any], runs: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, Any]:
    short, long = spec["epochs"]
    steps = (long - short) * spec["train_batches"]
    contenders: dict[str, Any] = {}
    for key, by_epochs in runs.items():
        results = [r for group in by_epochs.values() for r in group]
        error = next((r["error"] for r in results if "error" in r), None)
        entry: dict[str, Any] = {"label": CONTENDERS[key], "error": error}
        if error is None:
            first, second = by_epochs[short][0], by_epochs[long][0]
            entry["instructions"] = {
                str(epochs): [r["instructions"] for r in group] for epochs, group in by_epochs.items()
            }
            entry["per_step"] = (second["instructions"] - first["instructions"]) / steps
            entry["final_loss"] = second["final_loss"]
            entry["valgrind_seconds"] = [round(r["valgrind_seconds"], 1) for r in results]
        contenders[key] = entry
    floor = contenders.get("hand", {}).get("per_step")
    for entry in contenders.values():
        entry["ratio"] = ratio(entry.get("per_step"), floor)
        entry["added_per_step"] = None if entry.get("per_step") is None or floor is None else entry["per_step"] - floor
        loss, base = entry.get("final_loss"), contenders.get("hand", {}).get("final_loss")
        entry["loss_agrees"] = None if loss is None or base is None else abs(loss - base) <= LOSS_TOLERANCE * abs(base)
    spread = contenders.get("hand", {}).get("instructions", {}).get(str(short), [])
    if not lightning_installed() and "lightning" not in contenders:
        contenders["lightning"] = {"label": CONTENDERS["lightning"], "error": "not installed"}
    workload = WORKLOADS[name]
    description = (
        f"{workload.describe().split(',')[0]}, batch {workload.batch_size}, {short} vs {long} epochs of "
        f"{spec['train_batches']} steps, {spec['validation_batches']} validation batches per epoch"
    )
    return {
        "description": description,
        "steps_difference": steps,
        "repeat_spread": (max(spread) - min(spread)) if len(spread) > 1 else None,
        "repeat_total": spread[0] if spread else None,
        "contenders": contenders,
    }


def render_workload(name: str, result: dict[str, Any]) -> str:
    rows = []
    for key, entry in result["contenders"].items():
        if entry.get("error"):
            rows.append([entry["label"], "unavailable", "", "", "", "", ""])
            continue
        target = TARGETS.get((name, key))
        agrees = {True: "✓", False: "✗", None: "?"}[entry["loss_agrees"]]
        rows.append(
            [
                entry["label"],
                fmt(entry["per_step"] / 1e6, 3),
                fmt(entry["ratio"], 3, "x"),
                fmt(entry["added_per_step"] / 1e6, 3) if key != "hand" else "",
                verdict(entry["ratio"], target) if target is not None else "",
                fmt(entry["final_loss"], 6),
                agrees,
            ]
        )
    headers = ["contender", "M instr/step", "x floor", "+M/step", "target", "final loss", "="]
    lines = [f"### {name}: {result['description']}", "", markdown_table(headers, rows)]
    notes = [f"- {e['label']}: {last_line(e['error'])}" for e in result["contenders"].values() if e.get("error")]
    if result.get("repeat_spread") is not None:
        notes.append(
            f"- Two floor runs of the shorter length differed by {result['repeat_spread']:,} of "
            f"{result['repeat_total'] / 1e9:.2f} G instructions."
        )
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def render(data: dict[str, Any]) -> str:
    lines = [
        f"## {TITLE}",
        "",
        "Instructions per optimizer step under cachegrind: (count of the longer run - count of the shorter) / "
        "the steps between them, so start-up cancels. Machine load does not move these counts.",
        "",
        "- x floor: ratio to the floor (the hand-written loop over ready-made batches); +M/step: the difference.",
        "- The rows 'over instances' batch per-instance dicts themselves (collate included); the others get the "
        "floor's batches.",
        f"- '=': the final training loss within {LOSS_TOLERANCE:g} (relative) of the floor's. Under valgrind "
        "torch runs without AVX-512, so the losses differ from the wall-time table's in the last digits.",
        "",
    ]
    if data.get("error"):
        lines += [f"Not measured: {data['error']}.", ""]
    if "medium" not in data.get("workloads", {}):
        lines += [f"- {MEDIUM_NOT_COUNTED}.", ""]
    for name, result in data.get("workloads", {}).items():
        lines.append(render_workload(name, result))
    return "\n".join(lines)

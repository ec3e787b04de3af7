"""Instructions per step: the step-overhead contenders counted under cachegrind, a measure that resolves 2 %.

On a shared VM a process's wall time and CPU time both spread by ~10 % from run to run, and there are no
hardware counters; valgrind's cachegrind (``--cache-sim=no``) counts the instructions a process executes, and the
count does not depend on the machine's load. Each contender of ``benchmarks.step_overhead`` (the same workers)
runs under cachegrind at several lengths, and counts are additive, so differences of runs cancel start-up
(importing torch, building the data, the final loss):

- tiny: ``E`` and ``2E`` epochs of the same batches; the difference divided by the difference in optimizer steps is
  the instructions per step, per-epoch work (validation, checkpoints) included, as in a real run.
- medium: one of its steps takes about a minute under valgrind (torch's vectorised matrix products are emulated),
  so its 20-step epochs are not run whole. Three short runs, A = 1 epoch of ``n`` steps, B = 1 epoch of ``2n`` and
  C = 2 epochs of ``n``, give a step, ``s = (B - A) / n``, and an epoch's own work (its validation, checkpoint and
  bookkeeping), ``e = C - B``; the instructions per step of the workload's epochs of ``L`` steps are
  ``s + e / L``. The second epoch's end is the one counted, as in the steady state of a run.

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
TIMEOUT_S = 3600
# Per workload: the runs, each (epochs, training batches per epoch), with the validation batches of every epoch;
# "steps_per_epoch" set: the medium scheme of the module docstring (runs A, B, C), the epoch length it stands for.
LENGTHS: dict[str, dict[str, Any]] = {
    "tiny": {"runs": ((2, 100), (4, 100)), "validation_batches": 10},
    "medium": {"runs": ((1, 2), (1, 4), (2, 2)), "validation_batches": 4, "steps_per_epoch": 20},
}
QUICK_LENGTHS: dict[str, dict[str, Any]] = {"tiny": {"runs": ((1, 20), (2, 20)), "validation_batches": 4}}
FULL_CONTENDERS = ("hand", "hand_dataloader", "regimen_bare", "regimen_defaults", "regimen_loader", "lightning")
# A medium contender takes ~25 minutes of valgrind: the floor, the bare trainer and the target's row.
MEDIUM_CONTENDERS = ("hand", "regimen_bare", "regimen_loader")
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
    jobs = [
        (name, key, length)
        for name, spec in lengths.items()
        for key in contenders
        if name == "tiny" or key in MEDIUM_CONTENDERS
        for length in spec["runs"]
    ]
    if not options.quick:
        jobs.append(("tiny", "hand", lengths["tiny"]["runs"][0]))  # a second run: the counts' spread
    jobs.sort(key=lambda job: job[0] != "medium")  # the longest first, so the two workers end together
    with ThreadPoolExecutor(PARALLEL) as pool:
        done = list(pool.map(lambda job: (job, count(job[0], job[1], job[2], lengths[job[0]])), jobs))
    for name, spec in lengths.items():
        runs: dict[str, dict[tuple[int, int], list[dict[str, Any]]]] = {}
        for (workload, key, length), result in done:
            if workload == name:
                runs.setdefault(key, {}).setdefault(length, []).append(result)
        data["workloads"][name] = _summarise(name, spec, runs)
        print(render_workload(name, data["workloads"][name]), flush=True)
    return data


def per_step(spec: dict[str, Any], counts: dict[tuple[int, int], int]) -> float:
    """The instructions per optimizer step from the counts of ``spec``'s runs (see the module docstring)."""
    if "steps_per_epoch" not in spec:
        (short, batches), (long, _) = spec["runs"]
        return (counts[(long, batches)] - counts[(short, batches)]) / ((long - short) * batches)
    one, double, two_epochs = (counts[length] for length in spec["runs"])
    steps = spec["runs"][0][1]
    step = (double - one) / steps
    epoch = two_epochs - double
    return step + epoch / spec["steps_per_epoch"]


def count(name: str, key: str, length: tuple[int, int], spec: dict[str, Any]) -> dict[str, Any]:
    """Run one step-overhead worker under cachegrind; its instruction count and what the worker reported."""
    epochs, train_batches = length
    progress(f"instructions/{name}: {key}, {epochs} epochs of {train_batches} steps")
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
        argv += ["--train-batches", str(train_batches), "--validation-batches", str(spec["validation_batches"])]
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


def _summarise(
    name: str, spec: dict[str, Any], runs: dict[str, dict[tuple[int, int], list[dict[str, Any]]]]
) -> dict[str, Any]:
    contenders: dict[str, Any] = {}
    for key, by_length in runs.items():
        results = [r for group in by_length.values() for r in group]
        error = next((r["error"] for r in results if "error" in r), None)
        entry: dict[str, Any] = {"label": CONTENDERS[key], "error": error}
        if error is None:
            entry["instructions"] = {
                _length_name(length): [r["instructions"] for r in group] for length, group in by_length.items()
            }
            counts = {length: group[0]["instructions"] for length, group in by_length.items()}
            entry["per_step"] = per_step(spec, counts)
            entry["final_loss"] = by_length[spec["runs"][-1]][0]["final_loss"]
            entry["valgrind_seconds"] = [round(r["valgrind_seconds"], 1) for r in results]
        contenders[key] = entry
    floor = contenders.get("hand", {}).get("per_step")
    for entry in contenders.values():
        entry["ratio"] = ratio(entry.get("per_step"), floor)
        entry["added_per_step"] = None if entry.get("per_step") is None or floor is None else entry["per_step"] - floor
        loss, base = entry.get("final_loss"), contenders.get("hand", {}).get("final_loss")
        entry["loss_agrees"] = None if loss is None or base is None else abs(loss - base) <= LOSS_TOLERANCE * abs(base)
    spread = contenders.get("hand", {}).get("instructions", {}).get(_length_name(spec["runs"][0]), [])
    if name == "tiny" and not lightning_installed() and "lightning" not in contenders:
        contenders["lightning"] = {"label": CONTENDERS["lightning"], "error": "not installed"}
    workload = WORKLOADS[name]
    runs_text = " vs ".join(f"{epochs} x {batches}" for epochs, batches in spec["runs"])
    scheme = (
        f"epochs of {spec['steps_per_epoch']} steps from runs of {runs_text} (epochs x steps): a step and an epoch's "
        "own work counted apart"
        if "steps_per_epoch" in spec
        else f"runs of {runs_text} (epochs x steps)"
    )
    description = (
        f"{workload.describe().split(',')[0]}, batch {workload.batch_size}, {scheme}, "
        f"{spec['validation_batches']} validation batches per epoch"
    )
    return {
        "description": description,
        "repeat_spread": (max(spread) - min(spread)) if len(spread) > 1 else None,
        "repeat_total": spread[0] if spread else None,
        "contenders": contenders,
    }


def _length_name(length: tuple[int, int]) -> str:
    epochs, batches = length
    return f"{epochs}x{batches}"


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
        "Instructions per optimizer step under cachegrind, from differences of runs of different lengths, so "
        "start-up cancels (tiny: (longer - shorter) / the steps between them; medium: a step plus its epoch's own "
        "work divided by the epoch's 20 steps, see `benchmarks/instructions.py`). Machine load does not move these "
        "counts.",
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
    for name, result in data.get("workloads", {}).items():
        lines.append(render_workload(name, result))
    return "\n".join(lines)

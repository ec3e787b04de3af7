"""``python -m benchmarks``: run the benchmark suites and write ``RESULTS.md`` and ``results.json``.

Suites: step_overhead, instructions, data_loading, startup, checkpoint, scaling (see each module's docstring).
``--only`` runs some of them; the results of the others are kept from the previous ``results.json`` in the output
directory, and ``RESULTS.md`` is always rendered from the whole of ``results.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, Options, load_average, machine, markdown_table

SUITES = [
    "step_overhead",
    "instructions",
    "data_loading",
    "startup",
    "checkpoint",
    "scaling",
    "data_scale",
    "activation_memory",
]
DEFAULT_REPEATS, QUICK_REPEATS = 10, 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"a short smoke run ({QUICK_REPEATS} repeats, less work)")
    parser.add_argument("--only", action="append", choices=SUITES, metavar="NAME", help=f"run only NAME ({SUITES})")
    parser.add_argument("--repeats", type=int, help=f"rounds of each measurement (default {DEFAULT_REPEATS})")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "benchmarks", help="where the results go")
    parser.add_argument("--render", action="store_true", help="only rewrite RESULTS.md from results.json")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(quick=args.quick, repeats=args.repeats)
    output = args.output_dir
    output.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = output / "results.json", output / "RESULTS.md"
    if args.render:
        markdown_path.write_text(render(json.loads(json_path.read_text())))
        print(f"wrote {markdown_path}")
        return 0
    previous: dict[str, Any] = json.loads(json_path.read_text()) if json_path.is_file() else {}
    results: dict[str, Any] = previous if args.only else {}
    results.setdefault("suites", {})
    for key in ("profile", "target_notes"):  # written by benchmarks.profile_steps and by hand; dated, kept
        if key in previous:
            results[key] = previous[key]
    results["machine"] = machine()
    started = time.monotonic()
    for name in args.only or SUITES:
        print(f"\n== {name} ==", flush=True)
        suite_start = time.monotonic()
        data = importlib.import_module(f"benchmarks.{name}").run(options)
        data["seconds"] = round(time.monotonic() - suite_start, 1)
        data["load_average_at_end"] = load_average()
        data["date"] = results["machine"]["date"]
        data["git_commit"] = results["machine"]["git_commit"]
        results["suites"][name] = data
        json_path.write_text(json.dumps(results, indent=2) + "\n")  # after each suite, so a crash keeps the rest
        markdown_path.write_text(render(results))
    print(f"\nall done in {time.monotonic() - started:.0f} s; wrote {markdown_path} and {json_path}", flush=True)
    return 0


def render(results: dict[str, Any]) -> str:
    """RESULTS.md: the machine, then each suite's tables (in suite order)."""
    info = results["machine"]
    rows = [
        ["CPU", f"{info['cpu']} ({info['cores']} cores, {info['memory_gib']} GiB)"],
        ["Python / platform", f"{info['python']} / {info['platform']}"],
        ["torch", info["torch"]],
        ["regimen", f"{info['regimen']} (git {info['git_commit']})"],
        ["Lightning", info["lightning"] or "not installed"],
        ["date", info["date"]],
        ["load average at start (1, 5, 15 min)", ", ".join(map(str, info.get("load_average_at_start") or []))],
    ]
    lines = [
        "# regimen benchmarks",
        "",
        "Written by `python -m benchmarks` (`make bench`); the raw numbers are in `results.json`. Targets are the "
        "ones of the performance issue; a ✓ or ✗ says whether the measured value meets them. Every measurement is "
        "a fresh process with one thread, contenders alternating, so ratios compare runs taken side by side.",
        "",
        markdown_table(["machine", ""], rows, align="ll"),
        "",
        render_targets(results),
    ]
    for name in SUITES:
        data = results["suites"].get(name)
        if data is None:
            continue
        module = importlib.import_module(f"benchmarks.{name}")
        lines.append(module.render(data))
        kind = "quick (smoke) run" if data.get("quick") else "full run"
        load = ", ".join(map(str, data.get("load_average_at_end") or []))
        commit = f" at git {data['git_commit']}" if data.get("git_commit") else ""
        lines.append(
            f"_{kind}{commit}, {data.get('date')}, took {data.get('seconds')} s; load average at its end: {load}._\n"
        )
        if name == "step_overhead" and results.get("profile"):
            from benchmarks.profile_steps import render as render_profile

            lines.append(render_profile(results["profile"]))
    return "\n".join(lines)


def _targets(results: dict[str, Any]) -> list[tuple[str, str, float | None, float, bool, str]]:
    """(id, what, measured, target, higher is better, unit) for each target of the performance issue."""
    suites = results["suites"]
    rows: list[tuple[str, str, float | None, float, bool, str]] = []
    workloads = suites.get("step_overhead", {}).get("workloads", {})
    counted = suites.get("instructions", {}).get("workloads", {})
    for name, target in (("tiny", 1.15), ("medium", 1.02)):
        entry = counted.get(name, {}).get("contenders", {}).get("regimen_loader", {})
        what = f"{name}: regimen defaults + its loader vs floor, instructions"
        rows.append((f"instr_{name}", what, entry.get("ratio"), target, False, "x"))
    for key, label, targets in (
        ("regimen_loader", "regimen defaults + its loader", (("tiny", 1.15), ("medium", 1.02))),
        ("regimen_defaults", "regimen defaults, floor's batches", (("tiny", 1.10), ("medium", 1.02))),
    ):
        for name, target in targets:
            entry = workloads.get(name, {}).get("contenders", {}).get(key, {})
            what = f"{name}: {label} vs floor, wall time"
            suffix = "" if key == "regimen_loader" else "_batches"
            rows.append((f"step_{name}{suffix}", what, entry.get("time_ratio"), target, False, "x"))
    memory = [
        entry.get("memory_ratio")
        for result in workloads.values()
        for key, entry in result.get("contenders", {}).items()
        if key.startswith("regimen") and entry.get("memory_ratio") is not None
    ]
    what = "peak memory of a regimen run vs hand-written loop (worst regimen row, both workloads)"
    rows.append(("memory", what, max(memory) if memory else None, 1.10, False, "x"))
    commands = suites.get("startup", {}).get("commands", {})
    what = "`import regimen` added to `import torch` + AdamW (fair comparison)"
    rows.append(("import", what, commands.get("regimen_optimizer", {}).get("added_s"), 0.15, False, " s"))
    what = "`import regimen` added to a bare `import torch`"
    rows.append(("import_plain", what, commands.get("torch_regimen", {}).get("added_s"), 0.15, False, " s"))
    rows.append(
        (
            "help",
            "`regimen --help` wall time",
            commands.get("help", {}).get("seconds", {}).get("median"),
            0.5,
            False,
            " s",
        )
    )
    checkpoint = suites.get("checkpoint", {})
    rows.append(("save", "checkpoint save vs bare torch.save", checkpoint.get("save_ratio"), 1.2, False, "x"))
    rows.append(("load", "checkpoint load vs bare torch.load", checkpoint.get("load_ratio"), 1.2, False, "x"))
    what = "two regimen CPU workers vs the hand-written DDP loop, throughput (also issue 6)"
    rows.append(("scaling", what, suites.get("scaling", {}).get("regimen_2_vs_hand_2"), 0.95, True, "x"))
    for workers, row in suites.get("data_loading", {}).get("rows", {}).items():
        what = f"regimen loader vs torch DataLoader, num_workers {workers}, throughput"
        rows.append((f"loading_{workers}", what, row.get("ratio", {}).get("time_ratio"), 0.95, True, "x"))
    what = "activation checkpointing: a step's peak memory vs without it"
    rows.append(("activation_memory", what, suites.get("activation_memory", {}).get("ratio"), 1.0, False, "x"))
    return rows


def _unresolved_rows(results: dict[str, Any]) -> set[str]:
    """The wall-time target rows whose per-round ratios fall on both sides of the target."""
    rows = set()
    workloads = results["suites"].get("step_overhead", {}).get("workloads", {})
    for key, suffix, targets in (("regimen_loader", "", (1.15, 1.02)), ("regimen_defaults", "_batches", (1.10, 1.02))):
        for name, target in zip(("tiny", "medium"), targets):
            spread = workloads.get(name, {}).get("contenders", {}).get(key, {}).get("time_ratio_range")
            if spread and spread[0] <= target <= spread[1]:
                rows.add(f"step_{name}{suffix}")
    for workers, row in results["suites"].get("data_loading", {}).get("rows", {}).items():
        spread = row.get("ratio", {}).get("time_ratio_range")
        if spread and spread[0] <= 0.95 <= spread[1]:
            rows.add(f"loading_{workers}")
    return rows


def render_targets(results: dict[str, Any]) -> str:
    """The issue's targets in one table of short cells: measured value, ✓/✗, by how much a missed one is missed;
    the notes (``target_notes`` in ``results.json``, written by hand) are numbered under the table."""
    notes = results.get("target_notes", {})
    rows, footnotes = [], []
    for key, what, value, target, higher, unit in _targets(results):
        sign = "≥" if higher else "≤"
        note = ""
        if notes.get(key):
            footnotes.append(notes[key])
            note = f"[{len(footnotes)}]"
        if value is None:
            rows.append([what, f"{sign} {target:g}{unit}", "not measured", "", "", note])
            continue
        met = value >= target if higher else value <= target
        digits = 3 if unit == " s" else 2
        if not met and round(value, digits) == round(target, digits):
            digits += 1  # a miss that two decimals would show as the target itself
        miss = "" if met else f"{abs(value - target):.{digits}f}{unit} ({abs(value / target - 1) * 100:.1f} %)"
        mark = ("✓" if met else "✗") + ("?" if key in _unresolved_rows(results) else "")
        rows.append([what, f"{sign} {target:g}{unit}", f"{value:.{digits}f}{unit}", mark, miss, note])
    lines = [
        "## Targets",
        "",
        "The performance issue's targets (and the scaling benchmark of the distributed issue), from the tables "
        "below; 'missed by' is the distance to the target, absolute and relative to it; a '?' after ✓ or ✗: the "
        "run does not resolve it (its rounds fall on both sides of the target). The floor is a hand-written "
        "loop over ready-made batches. The notes are written into `results.json` (`target_notes`) by hand.",
        "",
        markdown_table(["what", "target", "measured", "", "missed by", "note"], rows, align="llrlrl"),
        "",
    ]
    lines += [f"{number}. {text}" for number, text in enumerate(footnotes, start=1)]
    return "\n".join([*lines, ""])


if __name__ == "__main__":
    sys.exit(main())

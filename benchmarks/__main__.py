"""``python -m benchmarks``: run the benchmark suites and write ``RESULTS.md`` and ``results.json``.

Suites: step_overhead, startup, checkpoint, scaling (see each module's docstring). ``--only`` runs some of them;
the results of the others are kept from the previous ``results.json`` in the output directory, and ``RESULTS.md``
is always rendered from the whole of ``results.json``.
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

SUITES = ["step_overhead", "startup", "checkpoint", "scaling"]
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
    results: dict[str, Any] = json.loads(json_path.read_text()) if json_path.is_file() and args.only else {}
    results.setdefault("suites", {})
    results["machine"] = machine()
    started = time.monotonic()
    for name in args.only or SUITES:
        print(f"\n== {name} ==", flush=True)
        suite_start = time.monotonic()
        data = importlib.import_module(f"benchmarks.{name}").run(options)
        data["seconds"] = round(time.monotonic() - suite_start, 1)
        data["load_average_at_end"] = load_average()
        data["date"] = results["machine"]["date"]
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
    ]
    for name in SUITES:
        data = results["suites"].get(name)
        if data is None:
            continue
        module = importlib.import_module(f"benchmarks.{name}")
        lines.append(module.render(data))
        kind = "quick (smoke) run" if data.get("quick") else "full run"
        load = ", ".join(map(str, data.get("load_average_at_end") or []))
        lines.append(f"_{kind}, {data.get('date')}, took {data.get('seconds')} s; load average at its end: {load}._\n")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

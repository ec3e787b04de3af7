"""Where regimen's per-step overhead goes: cProfile one step-overhead worker and list the costs inside regimen.

``python -m benchmarks.profile_steps`` runs the step-overhead worker of ``--contender`` (default
``regimen_defaults``) on ``--workload`` (default ``tiny``) under cProfile (the suite's ``--profile`` option), and the
hand-written loop likewise for reference, then lists per optimizer step:

- regimen's own functions by self time (time in their own Python lines, not in what they call);
- calls from regimen's code into other code (torch, tqdm, the standard library) by the time spent in them when
  regimen called them, leaving out the training work the hand-written loop does too (the model's forward pass,
  ``backward``, the optimizer's ``step`` and ``zero_grad``), which is listed apart.

The result goes into ``results.json`` (key ``profile``) and ``RESULTS.md`` is re-rendered. cProfile adds a cost to
every Python call, so the absolute numbers are inflated (compare the profiled µs/step with the unprofiled ones in
the step-overhead table); the ranking is what matters.
"""

from __future__ import annotations

import argparse
import json
import pstats
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, load_average, markdown_table, run_worker
from benchmarks.step_overhead import CONTENDERS, QUICK_WORKLOADS, WORKLOADS

REGIMEN_DIR = str(REPO_ROOT / "regimen") + "/"
# Training work that the hand-written loop does as well (file suffix, function): not overhead, listed apart.
WORK = {
    ("torch/nn/modules/module.py", "_wrapped_call_impl"): "forward pass (Module.__call__)",
    ("torch/nn/modules/module.py", "_call_impl"): "forward pass (Module.__call__)",
    ("torch/_tensor.py", "backward"): "backward",
    ("torch/optim/optimizer.py", "wrapper"): "optimizer.step",
    ("torch/_compile.py", "inner"): "optimizer.zero_grad (behind torch's no-dynamo wrapper)",
}


def _name(key: tuple[str, int, str]) -> str:
    filename, line, function = key
    if filename.startswith(REGIMEN_DIR):
        return f"{filename[len(REGIMEN_DIR) :]}:{line}({function})"
    if filename == "~":
        return function  # a built-in, e.g. <method 'add_' of 'torch._C.TensorBase' objects>
    parts = Path(filename).parts
    short = "/".join(parts[parts.index("site-packages") + 1 :]) if "site-packages" in parts else Path(filename).name
    return f"{short}:{line}({function})"


def _in_regimen(key: tuple[str, int, str]) -> bool:
    return key[0].startswith(REGIMEN_DIR)


def _work(key: tuple[str, int, str]) -> str | None:
    """What training work ``key`` is, or None."""
    for (suffix, function), label in WORK.items():
        if key[2] == function and key[0].endswith(suffix):
            return label
    return None


def _work_totals(stats: dict[Any, Any], steps: int) -> dict[str, float]:
    """µs per step of each kind of training work, wherever it was called from (outermost calls only)."""
    totals: dict[str, float] = {}
    for key, (_, _, _, _, callers) in stats.items():
        label = _work(key)
        if label is None:
            continue
        outer = sum(entry[3] for caller, entry in callers.items() if _work(caller) is None)
        totals[label] = totals.get(label, 0.0) + outer * 1e6 / steps
    return totals


def analyse(profile_file: str, steps: int, top: int) -> dict[str, Any]:
    stats = pstats.Stats(profile_file).stats  # type: ignore[attr-defined]
    total = max(ct for (_, _, _, ct, _) in stats.values())  # the profiled training call
    own = []
    for key, (_, calls, self_time, cumulative, _) in stats.items():
        if _in_regimen(key):
            own.append(
                {
                    "function": _name(key),
                    "calls_per_step": calls / steps,
                    "self_us_per_step": self_time * 1e6 / steps,
                    "cumulative_us_per_step": cumulative * 1e6 / steps,
                }
            )
    external = []
    for key, (_, _, _, _, callers) in stats.items():
        if _in_regimen(key) or _work(key) is not None:
            continue
        for caller, (_, calls, _, cumulative) in callers.items():
            if not _in_regimen(caller):
                continue
            entry = {
                "function": _name(key),
                "called_from": _name(caller),
                "calls_per_step": calls / steps,
                "us_per_step": cumulative * 1e6 / steps,
            }
            external.append(entry)
    own.sort(key=lambda e: -e["self_us_per_step"])
    external.sort(key=lambda e: -e["us_per_step"])
    return {
        "profiled_us_per_step": total * 1e6 / steps,
        "regimen_self": own[:top],
        "regimen_self_total_us_per_step": sum(e["self_us_per_step"] for e in own),
        "calls_from_regimen": external[:top],
        "work": _work_totals(stats, steps),
    }


def profile(contender: str, workload: str, quick: bool, top: int) -> dict[str, Any]:
    steps = (QUICK_WORKLOADS if quick else WORKLOADS)[workload].steps
    result: dict[str, Any] = {"contender": contender, "label": CONTENDERS[contender], "workload": workload}
    result.update(quick=quick, steps=steps)
    with tempfile.TemporaryDirectory() as directory:
        for key in ("hand", contender):
            path = str(Path(directory) / f"{key}.prof")
            args = [key, "--workload", workload, "--profile", path] + (["--quick"] if quick else [])
            run = run_worker("benchmarks.step_overhead", *args)
            analysis = analyse(path, steps, top)
            if key == "hand":
                result["hand_profiled_us_per_step"] = analysis["profiled_us_per_step"]
                result["hand_work"] = analysis["work"]
            else:
                result.update(analysis)
                result["final_loss"] = run["final_loss"]
    result["load_average_at_end"] = load_average()
    result["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return result


def render(data: dict[str, Any]) -> str:
    def us(value: float) -> str:
        return f"{value:,.1f}"

    own = [
        [e["function"], us(e["self_us_per_step"]), us(e["cumulative_us_per_step"]), f"{e['calls_per_step']:.2f}"]
        for e in data["regimen_self"]
    ]
    external = [
        [e["function"], e["called_from"], us(e["us_per_step"]), f"{e['calls_per_step']:.2f}"]
        for e in data["calls_from_regimen"]
    ]
    work = [
        [label, us(value), us(data["hand_work"].get(label, 0.0)), us(value - data["hand_work"].get(label, 0.0))]
        for label, value in data["work"].items()
    ]
    load = ", ".join(map(str, data.get("load_average_at_end") or []))
    return "\n".join(
        [
            "### Profile: where regimen's per-step time goes",
            "",
            f"`python -m benchmarks.profile_steps`: one {data['label']} run of the {data['workload']} workload "
            f"({data['steps']} steps) under cProfile (the step-overhead worker's `--profile`), and one hand-written "
            f"loop for reference: {data['profiled_us_per_step']:,.0f} µs/step profiled against "
            f"{data['hand_profiled_us_per_step']:,.0f} µs/step for the hand-written loop (cProfile inflates every "
            "Python call, so compare rankings, not the absolute values, with the table above). regimen's own "
            f"functions spend {data['regimen_self_total_us_per_step']:,.0f} µs/step in their own lines. Load "
            f"average at its end: {load}; {data.get('date')}.",
            "",
            "regimen's functions by self time (µs per optimizer step):",
            "",
            markdown_table(["function (regimen/…)", "self µs/step", "cumulative µs/step", "calls/step"], own),
            "",
            "Calls from regimen's code into torch, tqdm and the standard library, other than the training work "
            "(µs per step spent in them when regimen called them):",
            "",
            markdown_table(["function", "called from", "µs/step", "calls/step"], external),
            "",
            "The training work, done by the hand-written loop too: the same torch calls, timed in both profiles "
            "(µs per step; a difference here is not regimen's Python code but the same work running slower or "
            "faster, e.g. because of the machine's other load; regimen's forward pass includes the loss, which the "
            "model computes in `forward`, while the hand-written loop calls `cross_entropy` after it):",
            "",
            markdown_table(["work", "regimen µs/step", "hand-written µs/step", "difference"], work),
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contender", default="regimen_defaults", choices=[k for k in CONTENDERS if k != "hand"])
    parser.add_argument("--workload", default="tiny", choices=list(WORKLOADS))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "benchmarks")
    args = parser.parse_args()
    data = profile(args.contender, args.workload, args.quick, args.top)
    print(render(data))
    json_path = args.output_dir / "results.json"
    if json_path.is_file():
        from benchmarks.__main__ import render as render_all

        results = json.loads(json_path.read_text())
        results["profile"] = data
        json_path.write_text(json.dumps(results, indent=2) + "\n")
        (args.output_dir / "RESULTS.md").write_text(render_all(results))
        print(f"wrote {json_path} and {args.output_dir / 'RESULTS.md'}")


if __name__ == "__main__":
    main()

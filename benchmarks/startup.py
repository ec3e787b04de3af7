"""Start-up: wall time of fresh processes that import torch, regimen or Lightning, and of regimen's commands.

torch loads part of itself lazily when the first optimizer is built, so ``import X`` alone would credit a framework
that builds an optimizer at import time with torch's own cost. The fair comparison is "up to the point where an
optimizer can be built": ``import torch; <import X>; torch.optim.AdamW([...])`` against the same without X.
Each command runs once per round, the commands alternating, for ``--repeats`` rounds.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from benchmarks.common import (
    REPO_ROOT,
    Options,
    alternating_rounds,
    fmt,
    fmt_stats,
    last_line,
    markdown_table,
    run_process,
    scratch_dir,
    summary,
    verdict,
)

NAME = "startup"
TITLE = "Start-up"
OPTIMIZER = "torch.optim.AdamW([torch.zeros(1, requires_grad=True)])"
DRY_RUN_CONFIG = REPO_ROOT / "benchmarks" / "small_experiment.jsonnet"
IMPORT_TARGET_S = 0.15  # `import regimen` adds at most this to `import torch`, compared fairly
HELP_TARGET_S = 0.5  # `regimen --help`

# key -> (label, python -c code or None for a command, the key it is compared with, target on the difference)
COMMANDS: dict[str, tuple[str, str | None, str | None, float | None]] = {
    "python": ("python -c pass (the interpreter alone)", "pass", None, None),
    "torch": ("import torch", "import torch", None, None),
    "regimen": ("import regimen", "import regimen", None, None),
    "torch_regimen": ("import torch; import regimen", "import torch; import regimen", "torch", IMPORT_TARGET_S),
    "torch_optimizer": ("import torch + build AdamW (fair baseline)", f"import torch; {OPTIMIZER}", None, None),
    "regimen_optimizer": (
        "… + import regimen",
        f"import torch; import regimen; {OPTIMIZER}",
        "torch_optimizer",
        IMPORT_TARGET_S,
    ),
    "regimen_stack_optimizer": (
        "… + import regimen.trainers, .models, .data (what training needs)",
        f"import torch; import regimen.trainers, regimen.models, regimen.data; {OPTIMIZER}",
        "torch_optimizer",
        IMPORT_TARGET_S,
    ),
    "lightning_optimizer": (
        "… + import lightning",
        f"import torch; import lightning; {OPTIMIZER}",
        "torch_optimizer",
        None,
    ),
    "help": ("regimen --help (python -m regimen --help)", None, None, HELP_TARGET_S),
    "dry_run": ("regimen train small_experiment.jsonnet -s DIR --dry-run", None, None, None),
}


def _argv(key: str, directory: str) -> list[str]:
    code = COMMANDS[key][1]
    if code is not None:
        return [sys.executable, "-c", code]
    if key == "help":
        return [sys.executable, "-m", "regimen", "--help"]
    return [sys.executable, "-m", "regimen", "train", str(DRY_RUN_CONFIG), "-s", directory, "--dry-run"]


def run(options: Options) -> dict[str, Any]:
    keys = [k for k in COMMANDS if not k.startswith("lightning") or importlib.util.find_spec("lightning")]
    with scratch_dir("startup-") as scratch:

        def measure(key: str, round_number: int) -> float:
            done = run_process(_argv(key, str(scratch / f"dry-run-{round_number}")))
            if done.returncode != 0:
                raise RuntimeError(f"exit {done.returncode}: {done.tail(3)}")
            return done.seconds

        times, errors = alternating_rounds(options.repeats, "startup", keys, measure)
    results: dict[str, Any] = {}
    for key, (label, _code, baseline, target) in COMMANDS.items():
        if key not in keys:
            results[key] = {"label": label, "error": "not installed"}
            continue
        stats = summary(times[key])
        results[key] = {"label": label, "seconds": stats, "baseline": baseline, "target": target}
        results[key]["error"] = errors.get(key)
        base = results.get(baseline, {}).get("seconds", {}).get("median") if baseline else None
        results[key]["added_s"] = None if base is None or stats["median"] is None else stats["median"] - base
    data = {"repeats": options.repeats, "quick": options.quick, "commands": results}
    print(render_table(data), flush=True)
    return data


def render_table(data: dict[str, Any]) -> str:
    rows = []
    for key, entry in data["commands"].items():
        if entry.get("error"):
            rows.append([entry["label"], "unavailable", "", "", last_line(entry["error"])[:100]])
            continue
        median, low, high = fmt_stats(entry["seconds"], 3)
        added = entry["added_s"]
        note = ""
        if key == "lightning_optimizer":
            note = "issue: ~0.3-0.4 s"
        if entry["target"] is not None:
            value = added if entry["baseline"] else entry["seconds"]["median"]
            note = verdict(value, entry["target"], unit=" s")
        rows.append([entry["label"], median, f"{low}-{high}", fmt(added, 3, " s") if added is not None else "", note])
    return markdown_table(["command (fresh process)", "median s", "min-max s", "added", "target / note"], rows)


def render(data: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"## {TITLE}",
            "",
            f"Wall time from spawn to exit of fresh processes, median, min and max of {data['repeats']} alternating "
            "rounds. 'added' is the median minus the median of the row it builds on (the row above marked as "
            "baseline): `import torch` for `import torch; import regimen`, torch + AdamW for the rows starting with "
            "'…'. torch loads part of itself lazily at the first optimizer, so the fair comparison builds one.",
            "",
            render_table(data),
            "",
        ]
    )

"""Train the fixture experiment with every AllenNLP trainer block of corpus.json and report which regimen accepts.

Each block of ``scripts/allennlp_blocks/corpus.json`` (the distinct ``"trainer"`` blocks of AllenNLP's own
experiment configs, with where each came from) replaces the trainer of ``fixtures/experiments/blobs.jsonnet``
(a csv reader, two noisy blobs, a small MLP). A block is changed only where it cannot run outside its original
setting, and each change is recorded in the report:

- ``num_epochs`` is capped at 1 (set to 1 when absent: AllenNLP's default is 20);
- ``cuda_device`` is forced to -1 (CPU), whatever it named (a GPU, a list of GPUs);
- ``validation_metric`` naming a metric the fixture model does not compute (it reports ``accuracy`` and
  ``loss``) becomes ``accuracy`` with the block's sign; such a name belongs to the original model. In a list
  of metrics (AllenNLP 2.x accepts one) each such name is replaced so, and repeats are dropped.

Parameter-group regexes are left as written: AllenNLP warns about a regex that matches no parameter and so
does regimen. ``regimen train`` says whether a block trains (exit 0); for one that does not,
``regimen train --dry-run`` says whether its config is accepted (built before training
starts). Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python -m scripts.allennlp_blocks.measure --jobs 2
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _jsonnet

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).with_name("corpus.json")
FIXTURE = ROOT / "fixtures" / "experiments" / "blobs.jsonnet"
FIXTURE_METRICS = {"accuracy", "loss"}
ERROR_LINES = 3


@dataclass
class Outcome:
    """What happened to one block: accepted (dry run exit 0), trained (training exit 0), and why not."""

    block_id: str
    era: str
    source: str
    adjustments: list[str] = field(default_factory=list)
    accepted: bool = False
    trained: bool = False
    error: str = ""


def adjust(trainer: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The block made runnable on the fixture on CPU for one epoch, and a note of each change made."""
    block = copy.deepcopy(trainer)
    notes: list[str] = []
    epochs = block.get("num_epochs")
    if not isinstance(epochs, int) or epochs > 1:
        block["num_epochs"] = 1
        notes.append(f"num_epochs {epochs} -> 1")
    if "cuda_device" in block and block["cuda_device"] != -1:
        notes.append(f"cuda_device {block['cuda_device']} -> -1")
        block["cuda_device"] = -1
    metric = block.get("validation_metric")
    names = [metric] if isinstance(metric, str) else metric if isinstance(metric, list) else []
    if any(isinstance(name, str) and name.lstrip("+-") not in FIXTURE_METRICS for name in names):
        replaced = list(dict.fromkeys(fixture_metric(name) for name in names))
        block["validation_metric"] = replaced[0] if isinstance(metric, str) else replaced
        notes.append(f"validation_metric {json.dumps(metric)} -> {json.dumps(block['validation_metric'])}")
    return block, notes


def fixture_metric(name: str) -> str:
    """``name`` if the fixture model computes it, else ``accuracy`` with ``name``'s sign."""
    if name.lstrip("+-") in FIXTURE_METRICS:
        return name
    return ("-" if name.startswith("-") else "+") + "accuracy"


def error_lines(output: str) -> str:
    """The first lines of a failed run's error: from the first line naming an error, else the last lines."""
    lines = [line for line in output.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if "Error" in line or "error:" in line:
            return " | ".join(lines[index : index + ERROR_LINES])
    return " | ".join(lines[-ERROR_LINES:])


def run_regimen(config: Path, serialization_dir: Path, dry_run: bool) -> subprocess.CompletedProcess[str]:
    """``regimen train`` on ``config`` in a subprocess, single-threaded, with W&B kept offline."""
    command = [sys.executable, "-m", "regimen", "train", str(config), "-s", str(serialization_dir), "-f"]
    if dry_run:
        command.append("--dry-run")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def measure(block: dict[str, Any], fixture: dict[str, Any], workdir: Path) -> Outcome:
    """Write the fixture experiment with ``block``'s trainer, dry-run it, then train it."""
    source = block["sources"][0]
    outcome = Outcome(block["id"], block["era"], f"{source['repo']}:{source['path']}@{source['commit'][:8]}")
    trainer, outcome.adjustments = adjust(block["trainer"])
    experiment = {**fixture, "trainer": trainer}
    config = workdir / f"{block['id']}.json"
    config.write_text(json.dumps(experiment, indent=1))
    # Training first: a run that exits 0 was accepted too, so only a failed run needs the dry run's verdict.
    result = run_regimen(config, workdir / f"{block['id']}_run", dry_run=False)
    if result.returncode == 0:
        outcome.accepted = outcome.trained = True
        return outcome
    outcome.error = error_lines(result.stdout + "\n" + result.stderr)
    outcome.accepted = run_regimen(config, workdir / f"{block['id']}_dry", dry_run=True).returncode == 0
    return outcome


def report(outcomes: list[Outcome]) -> str:
    """The table: counts per era, then each failure with its reason and each adjustment made."""
    lines = [f"{'era':<8}{'blocks':>8}{'accepted':>10}{'trained':>10}"]
    for era in ("HEAD", "older", "all"):
        chosen = [o for o in outcomes if era in ("all", o.era)]
        accepted = sum(o.accepted for o in chosen)
        trained = sum(o.trained for o in chosen)
        share = f"  ({100 * trained / len(chosen):.1f}% trained)" if chosen else ""
        lines.append(f"{era:<8}{len(chosen):>8}{accepted:>10}{trained:>10}{share}")
    failures = [o for o in outcomes if not o.trained]
    if failures:
        lines += ["", "failures:"]
        for outcome in failures:
            stage = "not accepted" if not outcome.accepted else "accepted, did not train"
            lines.append(f"  {outcome.block_id} [{outcome.era}] {outcome.source}: {stage}")
            lines.append(f"      {outcome.error}")
    counted = Counter(note.split(" ")[0] for outcome in outcomes for note in outcome.adjustments)
    lines += ["", "adjustments: " + ", ".join(f"{key} in {count} blocks" for key, count in sorted(counted.items()))]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="blocks measured at once (at most 2 on a shared box)")
    parser.add_argument("--only", nargs="*", default=None, help="block ids to measure (default: all)")
    parser.add_argument("--json", type=Path, default=None, help="also write every outcome to this JSON file")
    args = parser.parse_args()

    corpus = json.loads(CORPUS.read_text())
    blocks = [b for b in corpus["blocks"] if args.only is None or b["id"] in args.only]
    fixture = json.loads(_jsonnet.evaluate_file(str(FIXTURE)))
    with tempfile.TemporaryDirectory(prefix="allennlp_blocks_") as directory:
        with ThreadPoolExecutor(max_workers=max(1, min(args.jobs, 2))) as pool:
            outcomes = list(pool.map(lambda block: measure(block, fixture, Path(directory)), blocks))
    print(report(outcomes))
    if corpus["could_not_evaluate"]:
        print("\ncould not evaluate (not counted):")
        for entry in corpus["could_not_evaluate"]:
            print(f"  {entry['repo']}:{entry['path']}@{entry['commit'][:8]}: {entry['error']}")
    if args.json is not None:
        args.json.write_text(json.dumps([outcome.__dict__ for outcome in outcomes], indent=1))


if __name__ == "__main__":
    main()

"""Shared benchmark plumbing: fresh-process runners, summary statistics, Markdown tables and the machine's description.

Every measurement runs in a fresh Python process with one intra-op thread (``OMP_NUM_THREADS=1`` and
``torch.set_num_threads(1)`` in the worker), so contenders cannot warm each other's caches or allocators, and a
worker reports its result as one JSON line starting with ``RESULT_MARKER`` on stdout.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# Scratch files go under runs/ (ignored by git) so they are on the repository's filesystem, as a real run's are.
SCRATCH_ROOT = REPO_ROOT / "runs" / "benchmarks"
RESULT_MARKER = "@@BENCHMARK_RESULT "
WORKER_TIMEOUT_S = 600


@dataclass
class Options:
    """What ``python -m benchmarks`` was asked for, handed to every suite."""

    quick: bool
    repeats: int


# ---- environments and processes --------------------------------------------------------------------------------
def single_thread_env(**extra: str) -> dict[str, str]:
    """The environment of a worker: one OpenMP/MKL thread, no tokenizer/tqdm surprises, the repo importable."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@dataclass
class Completed:
    """A finished subprocess: its exit status, wall time in seconds, and output."""

    returncode: int
    seconds: float
    stdout: str
    stderr: str

    def tail(self, lines: int = 8) -> str:
        return "\n".join((self.stderr or self.stdout).strip().splitlines()[-lines:])


def run_process(argv: Sequence[str], timeout: float = WORKER_TIMEOUT_S, env: dict[str, str] | None = None) -> Completed:
    """Run ``argv`` from the repository root and time it from spawn to exit (wall clock)."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            list(argv),
            cwd=REPO_ROOT,
            env=env or single_thread_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as expired:
        return Completed(124, time.perf_counter() - start, _text(expired.stdout), _text(expired.stderr) + "\ntimeout")
    return Completed(done.returncode, time.perf_counter() - start, done.stdout, done.stderr)


def _text(value: str | bytes | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def run_worker(module: str, *args: str, timeout: float = WORKER_TIMEOUT_S) -> dict[str, Any]:
    """Run ``python -m module --worker args...`` in a fresh process and return the JSON it reported.

    Raises RuntimeError with the worker's last lines of output when it fails or reports nothing.
    """
    done = run_process([sys.executable, "-m", module, "--worker", *args], timeout=timeout)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    raise RuntimeError(f"worker {module} {' '.join(args)} failed (exit {done.returncode}):\n{done.tail()}")


def report(result: dict[str, Any]) -> None:
    """Called by a worker: hand ``result`` back to the parent process."""
    print(RESULT_MARKER + json.dumps(result), flush=True)


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@contextmanager
def scratch_dir(prefix: str):
    """A temporary directory on the repository's filesystem, removed afterwards."""
    SCRATCH_ROOT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=prefix, dir=SCRATCH_ROOT) as path:
        yield Path(path)


def set_single_thread() -> None:
    """Called first thing by a worker that imports torch."""
    import torch

    torch.set_num_threads(1)


# ---- statistics ------------------------------------------------------------------------------------------------
def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and the raw values (or None when nothing was measured)."""
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0, "values": []}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": list(values),
    }


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


# ---- formatting ------------------------------------------------------------------------------------------------
def fmt(value: float | None, digits: int = 0, suffix: str = "") -> str:
    """A number for a table, or an en dash when there is none."""
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def fmt_stats(stats: dict[str, Any], digits: int = 0, scale: float = 1.0) -> tuple[str, str, str]:
    """(median, min, max) formatted, each multiplied by ``scale``."""
    return tuple(
        fmt(None if stats.get(key) is None else stats[key] * scale, digits) for key in ("median", "min", "max")
    )  # type: ignore[return-value]


def last_line(text: str) -> str:
    """The last non-blank line of an error report (a traceback's exception), for a table or a list item."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def verdict(value: float | None, target: float, higher_is_better: bool = False, unit: str = "") -> str:
    """'≤ 1.1 ✓' style: the target (with its unit) and whether ``value`` meets it."""
    sign = "≥" if higher_is_better else "≤"
    if value is None:
        return f"{sign} {target:g}{unit}"
    met = value >= target if higher_is_better else value <= target
    return f"{sign} {target:g}{unit} {'✓' if met else '✗'}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub Markdown table; ``align`` is one character per column, 'l' or 'r' (default: first left, rest right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = [v.ljust(w) if a == "l" else v.rjust(w) for v, w, a in zip(values, widths, align)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1)) for w, a in zip(widths, align))
    return "\n".join([line(headers), rule + "|", *(line(row) for row in cells)])


def progress(message: str) -> None:
    """A line of progress on stderr while a suite runs."""
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def alternating_rounds(
    rounds: int, label: str, contenders: Sequence[str], measure: Callable[[str, int], Any]
) -> tuple[dict[str, list[Any]], dict[str, str]]:
    """``measure(contender, round_number)`` for each contender in turn, ``rounds`` times, so that each round's
    measurements are taken side by side; the samples per contender, and the error of each contender whose
    measurement raised a RuntimeError (it is left out of the later rounds)."""
    samples: dict[str, list[Any]] = {key: [] for key in contenders}
    errors: dict[str, str] = {}
    for round_number in range(1, rounds + 1):
        progress(f"{label}: round {round_number}/{rounds}")
        for key in contenders:
            if key in errors:
                continue
            try:
                samples[key].append(measure(key, round_number))
            except RuntimeError as error:
                errors[key] = str(error)
                progress(f"  {key} unavailable: {error}")
    return samples, errors


# ---- the machine -----------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """The machine and versions the results were measured with (versions read in a fresh worker-like process)."""
    versions = json.loads(
        run_process(
            [
                sys.executable,
                "-c",
                "import json, torch, regimen\n"
                "try:\n    import lightning; lv = lightning.__version__\n"
                "except ImportError:\n    lv = None\n"
                "print(json.dumps({'torch': torch.__version__, 'regimen': regimen.__version__, 'lightning': lv}))",
            ]
        ).stdout.strip()
        or "{}"
    )
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": versions.get("torch"),
        "regimen": versions.get("regimen"),
        "lightning": versions.get("lightning"),
        "git_commit": _git_commit(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_at_start": load_average(),
    }


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages: above ~0 on an idle machine, other work competed with the runs."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    done = run_process(["git", "rev-parse", "--short", "HEAD"], timeout=30)
    if done.returncode != 0:
        return None
    dirty = run_process(["git", "status", "--porcelain", "--untracked-files=no"], timeout=30).stdout.strip()
    return done.stdout.strip() + (" (with uncommitted changes)" if dirty else "")

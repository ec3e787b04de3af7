"""The ``print-results`` command: one row of key metrics per run directory, as an aligned table or as CSV."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

from regimen.commands.subcommand import Subcommand
from regimen.registry import ConfigurationError
from regimen.registry.errors import unknown_name_message
from regimen.tuning.study import STUDY_FILE

logger = logging.getLogger(__name__)

FIXED_COLUMNS = ["run", "status", "epochs", "best_epoch"]
_PROGRESS_FILE = re.compile(r"metrics_(epoch|step)_(\d+)\.json")
_BOOKKEEPING = {
    "training_duration",
    "training_duration_this_run",
    "training_start_epoch",
    "training_epochs",
}  # training_* but not metrics
_GROUPS = ("best_validation_", "validation_", "training_", "test_")  # the order of the default metric columns


def find_runs(directory: str) -> list[str]:
    """``directory`` itself when it is a run (holds a config.json), else every run below it, sorted by path."""
    if not os.path.isdir(directory):
        reason = "is not a directory" if os.path.exists(directory) else "directory does not exist"
        raise ConfigurationError(reason, directory)
    if os.path.isfile(os.path.join(directory, "config.json")):
        return [directory]
    runs = []
    for parent, children, files in os.walk(directory):
        if "config.json" in files:
            runs.append(parent)
            children.clear()  # a run's own subdirectories are not runs
    if not runs:
        raise ConfigurationError("no run found: no config.json in it or in any directory below it", directory)
    return sorted(runs, key=Path)


def read_run(run: str) -> tuple[str, dict[str, Any]]:
    """The run's status and its final metrics: metrics.json, else the newest metrics_epoch_N/metrics_step_S.

    The status is ``finished``, ``running``, ``preempted at epoch N`` (stopped by a signal: ``--recover``
    continues it), ``failed at epoch N: <error>``, ``stopped at epoch N`` (killed, or from before regimen kept
    outcomes) or ``no metrics``, from the metrics files and the last outcome ``meta.json`` records."""
    progress = [(int(m[2]), m[1], name) for name in os.listdir(run) if (m := _PROGRESS_FILE.fullmatch(name))]
    outcome = _outcome(run)
    if outcome == "running":
        status, name = "running", "metrics.json"
        if progress:
            number, kind, name = max(progress)
            status = f"running (at {kind} {number})"
    elif os.path.exists(os.path.join(run, "metrics.json")):
        status, name = "finished", "metrics.json"
    elif progress:
        number, kind, name = max(progress)  # by number: epoch 10 is newer than epoch 9
        status = f"{outcome or 'stopped'} at {kind} {number}"
        if outcome is not None and outcome.startswith("failed:"):
            status = f"failed at {kind} {number}:{outcome.removeprefix('failed:')}"
    else:
        return outcome or "no metrics", {}
    if not os.path.exists(os.path.join(run, name)):
        return status, {}
    try:
        with open(os.path.join(run, name), encoding="utf-8") as file:
            metrics = json.load(file)
        if not isinstance(metrics, dict):
            raise ValueError(f"expected a JSON object, found {type(metrics).__name__}")
    except (OSError, ValueError) as error:
        logger.warning("%s: unreadable metrics (%s)", os.path.join(run, name), error)
        return "unreadable metrics", {}
    return status, metrics


def _outcome(run: str) -> str | None:
    """``running`` (its process is alive), ``preempted``, ``failed: <error>``, ``stopped`` (it died while
    running) from meta.json's outcome; None without one (a run made before outcomes were kept, or finished)."""
    try:
        with open(os.path.join(run, "meta.json"), encoding="utf-8") as file:
            outcome = json.load(file).get("outcome") or {}
    except (OSError, ValueError, AttributeError):
        return None
    status = outcome.get("status")
    if status == "running":
        if outcome.get("host") != platform.node():
            return "running"  # on another machine: its process cannot be looked at from here
        try:
            pid = int(outcome.get("pid", 0))
            if pid <= 0:
                raise ValueError(pid)
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
        except (OSError, ValueError):
            return "stopped"  # killed: no process of that id is left
        return "running"
    if status == "failed":
        return f"failed: {outcome.get('error', '')}"
    return "preempted" if status == "preempted" else None


def result_row(run: str) -> dict[str, Any]:
    """The run's final metrics plus its ``run``, ``status`` and ``epochs`` (all epochs trained, resumes included)."""
    status, metrics = read_run(run)
    if isinstance(metrics.get("training_epochs"), int):
        epochs = metrics.get("training_start_epoch", 0) + metrics["training_epochs"]
    else:
        epochs = metrics["epoch"] + 1 if isinstance(metrics.get("epoch"), int) else None
    return {**metrics, "run": run, "status": status, "epochs": epochs}


def key_metrics(metrics: dict[str, Any]) -> list[str]:
    """best_validation_* and test_* keys; without best_validation_*, validation_* or else training_* instead."""
    for group in _GROUPS[:3]:
        chosen = [key for key in metrics if key.startswith(group) and key not in _BOOKKEEPING]
        if chosen:
            break
    return chosen + [key for key in metrics if key.startswith("test_")]


def metric_columns(rows: list[dict[str, Any]], requested: str | None) -> list[str]:
    """The ``--metrics`` columns, each checked against the runs' keys; by default the key metrics of every run."""
    if requested is not None:
        available = sorted({key for row in rows for key in row} - set(FIXED_COLUMNS))
        names = [name.strip() for name in requested.split(",") if name.strip()]
        for name in names:
            if name not in available:
                raise ConfigurationError(unknown_name_message("metric", name, available), "--metrics")
        return names
    union = {key for row in rows for key in key_metrics(row)}
    group = {key: next(i for i, prefix in enumerate(_GROUPS) if key.startswith(prefix)) for key in union}
    return [*sorted(union, key=lambda key: (group[key], key)), "training_duration"]


def sort_rows(rows: list[dict[str, Any]], column: str, descending: bool) -> list[dict[str, Any]]:
    """Rows by ``column`` (numbers before text); rows without a value come last in either direction."""

    def key(row: dict[str, Any]) -> tuple[int, Any]:
        value = row[column]
        return (0, value) if isinstance(value, (int, float)) else (1, str(value))

    present = sorted((row for row in rows if row.get(column) is not None), key=key, reverse=descending)
    return present + [row for row in rows if row.get(column) is None]


def format_cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Aligned columns: text left, numbers right, ``-`` where a run has no value."""
    cells = [[format_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(text) for text in [column, *(line[i] for line in cells)]) for i, column in enumerate(columns)]
    numeric = [all(isinstance(row.get(c), (int, float)) for row in rows if row.get(c) is not None) for c in columns]

    def line(texts: list[str]) -> str:
        padded = [t.rjust(w) if n else t.ljust(w) for t, w, n in zip(texts, widths, numeric)]
        return "  ".join(padded).rstrip()

    print(line(columns))
    print(line(["-" * width for width in widths]))
    for texts in cells:
        print(line(texts))


def print_study(directory: str, as_csv: bool) -> None:
    """The trials of the study ``regimen tune`` ran in ``directory``: best first, the best one marked ``*``."""
    from regimen.tuning.results import study_rows

    rows, names, metric = study_rows(directory)
    columns = ["best", "trial", "state", *names, metric]
    if as_csv:
        writer = csv.DictWriter(sys.stdout, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return
    print(f"study in {directory}: {len(rows)} trials")
    print_table(rows, columns)


@Subcommand.register("print-results")
class PrintResults(Subcommand):
    """Summarise training runs, one row per serialization directory (see ``description`` for the details).

    By default the metric columns are every ``best_validation_*`` and ``test_*`` key of any run (``validation_*``
    or else ``training_*`` for a run without best_validation_*), then ``training_duration``.
    """

    description = (
        "Print one row per run directory: status, epochs, best epoch and key metrics (a directory that is not a run "
        "stands for every run below it). Unfinished runs show their newest metrics_epoch/step file; a missing value "
        "shows as '-'. A study directory (regimen tune) lists its trials instead, best first. Rows keep the order "
        "given (runs found below a directory sorted by path) unless --sort COLUMN "
        "sorts them, smallest first (--descending: largest first); runs without that value come last."
    )

    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        subparser = parser.add_parser(
            "print-results", description=self.description, help="Print one row of key metrics per run directory."
        )
        subparser.add_argument("directories", nargs="+", metavar="DIR", help="a run directory, or one holding runs")
        subparser.add_argument("--metrics", help="comma-separated metric columns, e.g. test_accuracy,test_loss")
        subparser.add_argument("--sort", metavar="COLUMN", help="sort rows by this column, smallest first")
        subparser.add_argument("--descending", action="store_true", help="with --sort: largest first")
        subparser.add_argument("--csv", action="store_true", help="print CSV, full precision, no value: empty cell")
        subparser.set_defaults(func=self.run)
        return subparser

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        studies = [directory for directory in args.directories if os.path.isfile(os.path.join(directory, STUDY_FILE))]
        for directory in studies:
            print_study(directory, args.csv)
        runs = [directory for directory in args.directories if directory not in studies]
        if not runs:
            return 0
        rows = [result_row(run) for directory in runs for run in find_runs(directory)]
        columns = FIXED_COLUMNS + metric_columns(rows, args.metrics)
        if args.sort is not None:
            if args.sort not in columns:
                raise ConfigurationError(unknown_name_message("column", args.sort, columns), "--sort")
            rows = sort_rows(rows, args.sort, args.descending)
        if args.csv:
            writer = csv.DictWriter(sys.stdout, columns, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)  # DictWriter writes None as "" and floats with repr: exact round trip
        else:
            print_table(rows, columns)
        return 0

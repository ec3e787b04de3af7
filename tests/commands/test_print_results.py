"""``regimen print-results`` as a user runs it, over run directories written the way ``regimen train`` writes them."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tests.conftest import run_cli

FINISHED = {
    "best_epoch": 7,
    "peak_worker_0_memory_MB": 512.3,
    "training_duration": "00:00:41.123456",
    "training_start_epoch": 0,
    "training_epochs": 12,
    "epoch": 11,
    "training_loss": 0.2012,
    "training_accuracy": 0.95,
    "validation_loss": 0.3,
    "validation_accuracy": 0.91,
    "best_validation_loss": 0.28123456789,
    "best_validation_accuracy": 0.925,
    "test_loss": 0.31,
    "test_accuracy": 0.9,
}


def make_run(directory: Path, final: dict | None = None, **progress: dict) -> Path:
    """A run directory: config.json, ``metrics_epoch_N.json`` files (``epoch_3={...}``) and ``metrics.json``."""
    directory.mkdir(parents=True)
    (directory / "config.json").write_text('{"trainer": {"num_epochs": 12}}')
    for name, metrics in progress.items():
        (directory / f"metrics_{name}.json").write_text(json.dumps(metrics))
    if final is not None:
        (directory / "metrics.json").write_text(json.dumps(final))
    return directory


def columns(*metrics: str) -> list[str]:
    return ["run", "status", "epochs", "best_epoch", *metrics]


def epoch_metrics(epoch: int, **values: float) -> dict:
    return {"best_epoch": 2, "epoch": epoch, "training_loss": 0.5, **values}


def test_finished_and_unfinished_runs_side_by_side(tmp_path):
    make_run(tmp_path / "done", FINISHED, epoch_11=epoch_metrics(11))
    # Epoch 10 is newer than epoch 9 although "10" < "9" as text; the newest file's values are shown.
    early = epoch_metrics(9, best_validation_loss=0.4, best_validation_accuracy=0.8)
    latest = epoch_metrics(10, best_validation_loss=0.33, best_validation_accuracy=0.87)
    make_run(tmp_path / "cut", epoch_9=early, epoch_10=latest)

    result = run_cli("print-results", "done", "cut", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "run   status               epochs  best_epoch  best_validation_accuracy  best_validation_loss"
        "  test_accuracy  test_loss  training_duration",
        "----  -------------------  ------  ----------  ------------------------  --------------------"
        "  -------------  ---------  -----------------",
        "done  finished                 12           7                    0.9250                0.2812"
        "         0.9000     0.3100  00:00:41.123456",
        "cut   stopped at epoch 10      11           2                    0.8700                0.3300"
        "              -          -  -",
    ]


def test_a_directory_of_runs_stands_for_every_run_below_it_sorted_by_path(tmp_path):
    make_run(tmp_path / "runs" / "b", FINISHED)
    make_run(tmp_path / "runs" / "a" / "lr_0.1", step_200=epoch_metrics(0), step_1000=epoch_metrics(1))
    make_run(tmp_path / "runs" / "a" / "lr_0.01")
    (tmp_path / "runs" / "notes").mkdir()  # neither a run nor holding one: skipped

    result = run_cli("print-results", "runs/", "--csv", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    rows = [(row["run"], row["status"], row["epochs"]) for row in csv.DictReader(io.StringIO(result.stdout))]
    assert rows == [
        ("runs/a/lr_0.01", "no metrics", ""),
        ("runs/a/lr_0.1", "stopped at step 1000", "2"),
        ("runs/b", "finished", "12"),
    ]


def test_csv_round_trips_the_exact_values(tmp_path):
    make_run(tmp_path / "done", FINISHED)
    make_run(tmp_path / "cut", epoch_0=epoch_metrics(0, best_validation_loss=1 / 3))

    result = run_cli("print-results", "done", "cut", "--csv", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    done, cut = csv.DictReader(io.StringIO(result.stdout))
    assert float(done["best_validation_loss"]) == FINISHED["best_validation_loss"]
    assert float(cut["best_validation_loss"]) == 1 / 3
    assert done["training_duration"] == "00:00:41.123456" and done["epochs"] == "12"
    assert cut["status"] == "stopped at epoch 0" and cut["epochs"] == "1"
    assert cut["test_accuracy"] == "" and cut["training_duration"] == ""  # no value: an empty cell


def test_without_validation_data_the_final_training_metrics_are_shown(tmp_path):
    no_validation = {k: v for k, v in FINISHED.items() if "validation" not in k and not k.startswith("test_")}
    resumed = {**no_validation, "training_start_epoch": 5, "training_epochs": 7}
    make_run(tmp_path / "run", resumed)

    result = run_cli("print-results", "run", "--csv", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    (row,) = csv.DictReader(io.StringIO(result.stdout))
    assert list(row) == columns("training_accuracy", "training_loss", "training_duration")
    assert row["epochs"] == "12"  # 5 epochs before the resume and 7 after


def test_metrics_and_sort_choose_the_columns_and_the_order(tmp_path):
    for name, accuracy in [("a", 0.8), ("b", 0.95), ("c", 0.9)]:
        make_run(tmp_path / name, {**FINISHED, "test_accuracy": accuracy})
    make_run(tmp_path / "d")

    result = run_cli(
        "print-results", "a", "b", "c", "d", "--metrics", "test_accuracy,peak_worker_0_memory_MB",
        "--sort", "test_accuracy", "--descending", "--csv", cwd=tmp_path,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == columns("test_accuracy", "peak_worker_0_memory_MB")
    assert [(row["run"], row["test_accuracy"]) for row in rows] == [
        ("b", "0.95"),
        ("c", "0.9"),
        ("a", "0.8"),
        ("d", ""),
    ]


def test_an_unknown_metric_or_sort_column_exits_2_naming_it_and_listing_the_valid_ones(tmp_path):
    make_run(tmp_path / "run", FINISHED)

    metric = run_cli("print-results", "run", "--metrics", "test_acuracy", cwd=tmp_path)
    column = run_cli("print-results", "run", "--sort", "best_validaton_loss", cwd=tmp_path)

    assert metric.returncode == 2 and metric.stdout == ""
    assert metric.stderr.startswith(
        'regimen: configuration error: --metrics: unknown metric "test_acuracy"; did you mean "test_accuracy"? '
        "valid metrics: best_validation_accuracy, best_validation_loss, epoch, peak_worker_0_memory_MB,"
    )
    assert column.returncode == 2 and column.stdout == ""
    assert column.stderr == (
        'regimen: configuration error: --sort: unknown column "best_validaton_loss"; did you mean '
        '"best_validation_loss"? valid columns: run, status, epochs, best_epoch, best_validation_accuracy, '
        "best_validation_loss, test_accuracy, test_loss, training_duration\n"
    )


def test_a_missing_directory_a_file_or_a_directory_without_runs_exits_2_naming_it(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "metrics.json").write_text("{}")

    missing = run_cli("print-results", "runs/exp1", cwd=tmp_path)
    empty = run_cli("print-results", "empty", cwd=tmp_path)
    file = run_cli("print-results", "metrics.json", cwd=tmp_path)

    assert missing.returncode == empty.returncode == file.returncode == 2
    assert missing.stderr == "regimen: configuration error: runs/exp1: directory does not exist\n"
    assert empty.stderr.startswith("regimen: configuration error: empty: no run found: no config.json in it")
    assert file.stderr == "regimen: configuration error: metrics.json: is not a directory\n"


def test_a_corrupt_metrics_file_marks_its_run_and_the_others_still_print(tmp_path):
    make_run(tmp_path / "good", FINISHED)
    (make_run(tmp_path / "bad", epoch_0=epoch_metrics(0)) / "metrics.json").write_text('{"best_epoch": 3, "tes')

    result = run_cli("print-results", "bad", "good", "--csv", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    bad, good = csv.DictReader(io.StringIO(result.stdout))
    assert bad["status"] == "unreadable metrics" and bad["best_epoch"] == ""
    assert good["status"] == "finished" and good["test_accuracy"] == "0.9"
    assert "bad/metrics.json: unreadable metrics" in result.stderr

"""A bad row in any data file the run reads (train, validation, a named set, test) is found before training:
exit 2 naming the key, ``file:line`` and the column, no traceback, the serialization directory untouched, and
``--dry-run`` says the same."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FIXTURES, run_cli

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")
BAD = str(FIXTURES / "data" / "bad_value.csv")
MESSAGE = "bad_value.csv:3: column \"x2\": expected a number, got 'oops'"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"test_data_path": BAD}, "test_data_path"),
        (
            {
                "validation_data_path": {"fine": str(FIXTURES / "data" / "blobs" / "validation.csv"), "odd": BAD},
                "trainer.validation_metric": "+fine_accuracy",
            },
            "validation_data_path.odd",
        ),
    ],
    ids=["test data", "a named validation set"],
)
def test_a_bad_row_is_exit_2_before_training_and_the_directory_is_untouched(tmp_path, override, key):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("an earlier run's notes")
    for extra in (["--force"], ["--force", "--dry-run"]):
        result = run_cli("train", CONFIG, "-s", str(run), "-o", json.dumps(override), *extra)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"regimen: configuration error: {key}: " in result.stderr and MESSAGE in result.stderr
        assert [path.name for path in run.iterdir()] == ["notes.txt"]  # --force replaced nothing

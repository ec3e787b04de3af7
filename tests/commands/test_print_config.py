"""The command line as a user runs it: ``regimen --help`` and ``regimen print-config`` in a subprocess."""

from __future__ import annotations

import json

from tests.conftest import FIXTURES, run_cli

ENV = {"REGIMEN_TEST_LR": "0.01", "REGIMEN_TEST_DATA": "train.csv"}


def test_help_lists_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "print-config" in result.stdout


def test_print_config_prints_the_evaluated_config_with_overrides():
    path = FIXTURES / "registry" / "experiment.jsonnet"
    result = run_cli("print-config", str(path), "-o", '{"trainer.optimizer.lr": 0.2}', env=ENV)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["trainer"]["optimizer"] == {"type": "adam", "lr": 0.2}
    assert list(config) == ["train_data_path", "model", "trainer"]


def test_a_bad_override_exits_2_with_one_line_naming_the_key():
    path = FIXTURES / "registry" / "experiment.jsonnet"
    result = run_cli("print-config", str(path), "-o", '{"trainer.optimzer.lr": 0.2}', env=ENV)
    assert result.returncode == 2
    assert result.stderr.startswith("regimen: configuration error: trainer.optimzer: override path does not exist")
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_a_jsonnet_syntax_error_exits_2_naming_file_and_line():
    result = run_cli("print-config", str(FIXTURES / "registry" / "syntax_error.jsonnet"))
    assert result.returncode == 2
    assert "syntax_error.jsonnet:3:29" in result.stderr and "Traceback" not in result.stderr


def test_regimen_debug_shows_the_traceback():
    result = run_cli("print-config", "missing.jsonnet", env={"REGIMEN_DEBUG": "1"})
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "config file not found: missing.jsonnet" in result.stderr

"""``regimen tune``, ``best-params``, ``retrain`` and ``print-results`` on a study, through the CLI, against a real
SQLite study database.

The interface is allennlp-optuna's (himkt/allennlp-optuna ``allennlp_optuna/commands/tune.py``, ``best_params.py``
and ``retrain.py``): trials in ``DIR/trial_<number>``, the objective read from each trial's ``metrics.json`` by the
``--metrics`` key, suggested values passed as external variables, best-params printing ``name=value`` pairs joined
by spaces. The pruner callback reports the monitored metric after each epoch with the epoch as the step, as
optuna-integration's ``optuna_integration/allennlp/_pruner.py`` does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import FIXTURES, ROOT, run_cli

EXPERIMENT = FIXTURES / "tuning" / "blobs_tune.jsonnet"
HPARAMS = FIXTURES / "tuning" / "hparams.json"
OPTUNA_CONFIG = FIXTURES / "tuning" / "optuna.json"  # TPE (seeded) and the median pruner


def tune(directory: Path, *extra: str, epochs: int = 3, hparams: Path = HPARAMS) -> subprocess.CompletedProcess:
    arguments = ["tune", str(EXPERIMENT), str(hparams), "-s", str(directory), *extra]
    return run_cli(*arguments, env={"REGIMEN_TEST_EPOCHS": str(epochs)})


def start_tune(directory: Path, *extra: str, epochs: int) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "REGIMEN_TEST_EPOCHS": str(epochs)}
    command = [sys.executable, "-m", "regimen", "tune", str(EXPERIMENT), str(HPARAMS), "-s", str(directory), *extra]
    return subprocess.Popen(
        command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def load(directory: Path) -> optuna.Study:
    return optuna.load_study(study_name=directory.name, storage=f"sqlite:///{directory}/study.db")


def wait_for(condition, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def assert_trial_ran_with_its_values(directory: Path, trial: optuna.trial.FrozenTrial) -> None:
    run = directory / f"trial_{trial.number}"
    config = json.loads((run / "config.json").read_text())
    assert config["trainer"]["optimizer"] == {"type": trial.params["optimizer"], "lr": trial.params["lr"]}
    assert config["model"]["hidden_dims"] == [trial.params["hidden"]]
    assert trial.user_attrs["directory"] == str(run)


def test_a_study_searches_records_every_trial_and_its_best_values_retrain(tmp_path):
    study_dir = tmp_path / "study"
    metric = ["--metrics", "best_validation_accuracy", "--direction", "maximize"]
    result = tune(study_dir, "--optuna-param-path", str(OPTUNA_CONFIG), "--n-trials", "3", *metric)
    assert result.returncode == 0, result.stderr

    study = load(study_dir)
    assert isinstance(study.sampler, optuna.samplers.TPESampler)
    assert [trial.number for trial in study.trials] == [0, 1, 2]
    for trial in study.trials:
        assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED), trial
        assert_trial_ran_with_its_values(study_dir, trial)
        run = study_dir / f"trial_{trial.number}"
        metrics = json.loads((run / "metrics.json").read_text())
        # The pruner saw each validated epoch's metric, the epoch being the step.
        assert sorted(trial.intermediate_values) == list(range(metrics["training_epochs"]))
        if trial.state == TrialState.COMPLETE:
            assert trial.value == metrics["best_validation_accuracy"]
            assert not (run / "pruned.json").exists() and (run / "model.tar.gz").is_file()
        else:
            assert json.loads((run / "pruned.json").read_text())["epoch"] == max(trial.intermediate_values)
    best = study.best_trial
    assert f"best trial: {best.number} (best_validation_accuracy = {best.value})" in result.stdout

    # best-params: allennlp-optuna's one line of name=value pairs, from the database.
    shown = run_cli("best-params", "--study-name", "study", "--storage", f"sqlite:///{study_dir}/study.db")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == " ".join(f"{name}={value}" for name, value in study.best_params.items())

    # print-results on the study directory: every trial, the complete ones best first, the best marked.
    table = run_cli("print-results", str(study_dir))
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()[3:]]
    assert len(rows) == 3 and rows[0][:3] == ["*", str(best.number), "complete"]

    # retrain: the experiment with the best values; its config.json holds them, and it reproduces the best trial.
    retrained = tmp_path / "retrained"
    result = run_cli(
        "retrain", str(EXPERIMENT), "-s", str(retrained), "--study-name", "study", "--storage", str(study_dir),
        env={"REGIMEN_TEST_EPOCHS": "3"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads((retrained / "config.json").read_text()) == json.loads(
        (study_dir / f"trial_{best.number}" / "config.json").read_text()
    )
    assert json.loads((retrained / "metrics.json").read_text())["best_validation_accuracy"] == best.value
    assert "not a trial of `regimen tune`, so nothing is pruned" in result.stderr

    # Continued with --skip-if-exists: the study goes on to the requested number of trials, in the same database.
    again = tune(study_dir, "--optuna-param-path", str(OPTUNA_CONFIG), "--n-trials", "4", "--skip-if-exists", *metric)
    assert again.returncode == 0, again.stderr
    study = load(study_dir)
    assert [trial.number for trial in study.trials] == [0, 1, 2, 3]
    assert_trial_ran_with_its_values(study_dir, study.trials[3])
    # Without --skip-if-exists an existing study is refused, and nothing changes.
    refused = tune(study_dir, "--n-trials", "5", *metric)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "already exists and is not empty: use --skip-if-exists" in refused.stderr
    assert len(load(study_dir).trials) == 4


def test_a_trial_the_pruner_rejects_stops_early_and_is_recorded_pruned(tmp_path):
    config = tmp_path / "optuna.json"
    # Accuracy never reaches 1.5: the threshold pruner rejects every trial at its first report.
    config.write_text(json.dumps({"pruner": {"type": "ThresholdPruner", "attributes": {"lower": 1.5}}}))
    study_dir = tmp_path / "pruned"
    metric = ["--metrics", "best_validation_accuracy", "--direction", "maximize"]
    result = tune(study_dir, "--optuna-param-path", str(config), "--n-trials", "1", *metric, epochs=5)
    assert result.returncode == 0, result.stderr
    (trial,) = load(study_dir).trials
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [0]
    run = study_dir / "trial_0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["training_epochs"] == 1  # of 5: training ended after the pruned epoch
    marker = json.loads((run / "pruned.json").read_text())
    assert marker == {"epoch": 0, "monitor": "best_validation_accuracy", "value": trial.intermediate_values[0]}
    assert (run / "model.tar.gz").is_file()  # the directory is kept, a complete run
    table = run_cli("print-results", str(study_dir))
    assert "pruned" in table.stdout


def test_a_killed_tune_leaves_its_trial_to_resume_exactly(tmp_path):
    study_dir = tmp_path / "killed"
    process = start_tune(study_dir, "--n-trials", "1", epochs=40)
    wait_for(lambda: any((study_dir / "trial_0").glob("model_state_e*")))
    process.kill()  # SIGKILL: tune cannot clean up; its trial gets SIGTERM from the kernel, saves and stops
    process.communicate()  # returns once the trial process has exited too: it holds the same stderr
    assert "received SIGTERM: finishing the current optimizer step" in (study_dir / "trial_0" / "out.log").read_text()
    (trial,) = load(study_dir).trials
    assert trial.state == TrialState.RUNNING

    result = tune(study_dir, "--n-trials", "1", "--skip-if-exists", epochs=40)
    assert result.returncode == 0, result.stderr
    assert "trial 0: resuming the interrupted run" in result.stderr
    (trial,) = load(study_dir).trials
    assert trial.state == TrialState.COMPLETE
    meta = json.loads((study_dir / "trial_0" / "meta.json").read_text())
    assert meta["recoveries"][0]["command"][-1] == "--recover"
    resumed = json.loads((study_dir / "trial_0" / "metrics.json").read_text())
    assert resumed["training_start_epoch"] + resumed["training_epochs"] == 40

    # Exact: the same trial trained without interruption gives the same result.
    values = {name: str(value) for name, value in trial.params.items()}
    straight = run_cli(
        "train", str(EXPERIMENT), "-s", str(tmp_path / "straight"), env={**values, "REGIMEN_TEST_EPOCHS": "40"}
    )
    assert straight.returncode == 0, straight.stderr
    metrics = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert metrics["best_validation_loss"] == resumed["best_validation_loss"] == trial.value


def test_a_signal_to_tune_reaches_the_trial_once_and_exits_75(tmp_path):
    study_dir = tmp_path / "signalled"
    process = start_tune(study_dir, "--n-trials", "2", epochs=40)
    wait_for(lambda: any((study_dir / "trial_0").glob("model_state_e*")))
    process.send_signal(signal.SIGTERM)  # to tune's PID alone, as Kubernetes does
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 75, stderr
    assert stderr.count("received SIGTERM: finishing the current optimizer step") == 1
    assert "continue it with the same command and --skip-if-exists" in stderr and "Traceback" not in stderr
    assert [trial.state for trial in load(study_dir).trials] == [TrialState.RUNNING]
    assert any((study_dir / "trial_0").glob("training_state_e*"))


def test_two_processes_share_one_study(tmp_path):
    study_dir = tmp_path / "shared"
    processes = [start_tune(study_dir, "--n-trials", "4", "--skip-if-exists", epochs=3) for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr
    study = load(study_dir)
    numbers = [trial.number for trial in study.trials]
    # Each process checks the count before it asks for a trial: at most one extra when both ask at once.
    assert numbers == list(range(len(numbers))) and len(numbers) in (4, 5)
    assert all(trial.state == TrialState.COMPLETE for trial in study.trials)
    started = [{int(line.split("trial ")[1].split(":")[0]) for line in stderr.splitlines() if ": lr=" in line}
               for _, stderr in outputs]  # fmt: skip
    assert started[0] and started[1] and not started[0] & started[1]
    assert started[0] | started[1] == set(numbers)


def bad_file(tmp_path, entries) -> Path:
    path = tmp_path / "hparams.json"
    path.write_text(json.dumps(entries))
    return path


LR = {"type": "float", "attributes": {"name": "lr", "low": 0.001, "high": 0.1}}
HIDDEN = {"type": "int", "attributes": {"name": "hidden", "low": 2, "high": 8}}
OPTIMIZER = {"type": "categorical", "attributes": {"name": "optimizer", "choices": ["adam"]}}


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([{**LR, "type": "uniformm"}, HIDDEN, OPTIMIZER], "[0]: unknown type 'uniformm'"),
        ([{"type": "float", "attributes": {"low": 1, "high": 2}}, HIDDEN, OPTIMIZER], "[0].attributes: missing 'name'"),
        ([LR, {**HIDDEN, "attributes": {"name": "hidden", "low": 9, "high": 2}}, OPTIMIZER], "low (9) is above high"),
        ([LR, OPTIMIZER], "the experiment reads std.extVar('hidden'), but"),
    ],
)
def test_a_bad_hparams_file_is_exit_2_before_any_trial(tmp_path, entries, expected):
    study_dir = tmp_path / "never"
    result = tune(study_dir, hparams=bad_file(tmp_path, entries))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert not study_dir.exists()  # nothing was created


def test_a_metrics_key_no_trial_has_stops_the_study_with_the_keys_it_has(tmp_path):
    study_dir = tmp_path / "typo"
    result = tune(study_dir, "--n-trials", "3", "--metrics", "best_validation_acuracy")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--metrics: 'best_validation_acuracy' is not a number in" in result.stderr
    assert "best_validation_accuracy" in result.stderr
    assert [trial.state for trial in load(study_dir).trials] == [TrialState.FAIL]


def test_a_trial_that_crashes_is_recorded_failed_and_the_study_goes_on(tmp_path):
    sgd = {**OPTIMIZER, "attributes": {"name": "optimizer", "choices": ["sgd"]}}
    diverging = [{**LR, "attributes": {"name": "lr", "low": 1e8, "high": 1e9}}, HIDDEN, sgd]  # the loss becomes NaN
    study_dir = tmp_path / "crashing"
    result = tune(study_dir, "--n-trials", "2", hparams=bad_file(tmp_path, diverging))
    assert "trial 0 failed (exit status 1): see" in result.stderr and "trial 1 failed (exit status 1)" in result.stderr
    assert [trial.state for trial in load(study_dir).trials] == [TrialState.FAIL, TrialState.FAIL]
    assert "the training loss became nan" in (study_dir / "trial_1" / "out.log").read_text()
    assert result.returncode == 1 and "every trial failed" in result.stdout


def test_the_readme_example_study_runs_as_shown(tmp_path):
    config = ROOT / "training_config"
    result = run_cli(
        "tune", str(config / "digits_tune.jsonnet"), str(config / "digits_tune_hparams.json"),
        "--optuna-param-path", str(config / "digits_tune_optuna.json"), "-s", str(tmp_path / "digits_tune"),
        "--n-trials", "1", "--metrics", "best_validation_accuracy", "--direction", "maximize",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "study digits_tune: 1 trials (1 complete) in" in result.stdout
    (trial,) = load(tmp_path / "digits_tune").trials
    assert result.stdout.strip().splitlines()[-1] == " ".join(f"{k}={v}" for k, v in trial.params.items())
    assert trial.value > 0.9  # the README's trial 0


def test_a_storage_that_cannot_be_opened_is_exit_2_and_leaves_no_directory(tmp_path):
    study_dir = tmp_path / "never"
    result = tune(study_dir, "--storage", "nosuchdb://localhost/study")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--storage: cannot open the study storage nosuchdb://localhost/study" in result.stderr
    assert not study_dir.exists()


def test_a_trial_whose_config_proves_wrong_stops_the_study(tmp_path):
    # The check before the study uses each hyper-parameter's first choice (adam, valid); trial 0 draws the second.
    choices = {**OPTIMIZER, "attributes": {"name": "optimizer", "choices": ["adam", "nosuch"]}}
    config = tmp_path / "optuna.json"
    config.write_text(json.dumps({"sampler": {"type": "RandomSampler", "attributes": {"seed": 1}}}))
    study_dir = tmp_path / "wrong"
    hparams = bad_file(tmp_path, [LR, HIDDEN, choices])
    result = tune(study_dir, "--n-trials", "3", "--optuna-param-path", str(config), hparams=hparams)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert 'unknown Optimizer type "nosuch"' in result.stderr
    assert "trial 0 stopped with a configuration error (above); every trial would fail, so the study stops" in (
        result.stderr
    )
    assert [trial.state for trial in load(study_dir).trials] == [TrialState.FAIL]

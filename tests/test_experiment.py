"""The experiment layer in-process: the top-level keys, a custom experiment type, and what is checked up front."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from regimen.experiment import Experiment, TrainModel, check_experiment, train_model
from regimen.registry import ConfigurationError, Params
from regimen.run_directory import config_differences
from tests.conftest import FIXTURES

DATA = FIXTURES / "data" / "blobs"


def build_experiment(params: Params, directory: Any) -> Experiment:
    experiment = check_experiment(params, directory)
    experiment.build()
    return experiment


def config(**changes: Any) -> Params:
    base = {
        "dataset_reader": {"type": "csv", "label_column": "label"},
        "train_data_path": str(DATA / "train.csv"),
        "validation_data_path": str(DATA / "validation.csv"),
        "data_loader": {"batch_size": 16},
        "model": {"type": "mlp_classifier", "input_dim": 4, "num_classes": 2},
        "trainer": {"num_epochs": 1, "progress_bar": False, "cuda_device": -1},
    }
    return Params({**base, **changes})


def test_every_mistake_in_the_components_is_reported_together_before_any_data_is_read(tmp_path):
    params = config(
        data_loader={"batch_size": 16, "shufle": True},
        trainer={"optimizer": {"type": "adamm"}},
        random_seed="one",
        train_data_path=str(tmp_path / "missing.csv"),
    )
    with pytest.raises(ConfigurationError) as info:
        build_experiment(params, tmp_path / "run")
    messages = "\n".join(str(error) for error in info.value.errors)
    assert 'data_loader.shufle: unknown key "shufle"; did you mean "shuffle"?' in messages
    assert 'trainer.optimizer.type: unknown Optimizer type "adamm"' in messages
    assert 'random_seed: expected int, got "one"' in messages
    assert not (tmp_path / "run").exists()


def test_the_experiment_checks_its_own_keys_together(tmp_path):
    params = config(
        evaluate_on_test=True, include_in_archive=["weights.th"], train_data_path=str(tmp_path / "missing.csv")
    )
    with pytest.raises(ConfigurationError) as info:
        build_experiment(params, tmp_path / "run")
    messages = [str(error) for error in info.value.errors]
    assert messages == [
        f'train_data_path: file not found: {tmp_path / "missing.csv"} (read by the "csv" reader, which reads a '
        f"local file or a URL; relative paths are read from {Path.cwd()})",
        "evaluate_on_test: is true but there is no test_data_path",
        "include_in_archive: ['weights.th'] would overwrite the archive's own files",
    ]


def test_validation_and_test_data_use_the_validation_reader_and_loader(tmp_path):
    params = config(
        test_data_path=str(DATA / "test.csv"),
        evaluate_on_test=True,
        validation_dataset_reader={"type": "csv", "label_column": "label", "max_instances": 10},
        validation_data_loader={"batch_size": 5},
    )
    experiment = build_experiment(params, tmp_path / "run")
    assert isinstance(experiment, TrainModel)
    assert [len(experiment.loaders[split]) for split in ("train", "validation", "test")] == [25, 2, 2]
    metrics = train_model(params, tmp_path / "run")
    assert {"test_loss", "test_accuracy", "validation_accuracy"} <= set(metrics)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics


def test_the_seeds_make_two_builds_identical(tmp_path):
    first = build_experiment(config(pytorch_seed=5), tmp_path / "a").model.state_dict()
    second = build_experiment(config(pytorch_seed=5), tmp_path / "b").model.state_dict()
    other = build_experiment(config(pytorch_seed=6), tmp_path / "c").model.state_dict()
    assert all(first[name].equal(second[name]) for name in first)
    assert not all(first[name].equal(other[name]) for name in first)


@Experiment.register("count_instances")
class CountInstances(Experiment):
    """Counts the instances of a data file (a custom experiment type for the test below)."""

    def __init__(self, train_data_path: str, serialization_dir: str | None = None) -> None:
        self.path = train_data_path

    def build(self, distributed: Any = None) -> None:
        pass

    def run(self) -> dict[str, Any]:
        with open(self.path) as file:
            return {"instances": sum(1 for _ in file) - 1}


def test_a_custom_experiment_type_is_chosen_by_the_top_level_type(tmp_path):
    experiment = build_experiment(
        Params({"type": "count_instances", "train_data_path": str(DATA / "train.csv")}), tmp_path
    )
    assert experiment.run() == {"instances": 400}


def test_config_differences_list_each_changed_key_and_allow_raising_the_budget():
    old = {"trainer.num_epochs": 3, "trainer.optimizer.lr": 0.1, "model.dropout": 0.5}
    new = {"trainer.num_epochs": 5, "trainer.optimizer.lr": 0.2, "trainer.num_steps": 100}
    assert config_differences(old, new) == ["model.dropout: 0.5 -> (absent)", "trainer.optimizer.lr: 0.1 -> 0.2"]
    assert config_differences({"trainer.num_epochs": 3}, {"trainer.num_epochs": 2}) == ["trainer.num_epochs: 3 -> 2"]


def test_a_replaced_subtree_is_one_line_not_two_that_contradict_each_other():
    old = {"distributed": {"cuda_devices": [-1, -1]}, "trainer": {"callbacks": ["tensorboard"]}}
    new = {"distributed": None, "trainer": {"callbacks": ["tensorboard", "track_epoch"]}}
    assert config_differences(old, new) == [
        'distributed: {"cuda_devices": [-1, -1]} -> null',
        'trainer.callbacks: ["tensorboard"] -> ["tensorboard", "track_epoch"]',
    ]

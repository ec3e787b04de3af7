"""``regimen schema``: the JSON Schema of experiment files. Every example experiment of the repository is valid
under it, it agrees with regimen's own check on what is a mistake, its errors name the path, and plugins are in it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from regimen.registry import ConfigurationError, Params
from tests.conftest import FIXTURES, ROOT, run_cli

# The external variables the example experiments read (regimen tune sets them per trial); unused ones are ignored.
EXT_VARS = {"lr": "0.01", "hidden": "8", "dropout": "0.1", "optimizer": "adam", "REGIMEN_TEST_EPOCHS": "2"}
EXAMPLES = sorted(
    [
        *ROOT.glob("training_config/*.jsonnet"),
        *FIXTURES.glob("experiments/*.jsonnet"),
        *FIXTURES.glob("tuning/*.jsonnet"),
    ]
)
BLOBS = FIXTURES / "experiments" / "blobs.jsonnet"

PLUGIN = '''
from typing import Literal

from regimen.trainers.callbacks import TrainerCallback


@TrainerCallback.register("notify_me")
class NotifyMe(TrainerCallback):
    """Sends a message when the run ends.

    Config keys:
        channel: "email" | "slack" = "email"
            Where the message goes.
    """

    def __init__(self, serialization_dir: str | None = None, channel: Literal["email", "slack"] = "email") -> None:
        super().__init__(serialization_dir)
'''


@pytest.fixture(scope="module")
def schema_file(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("schema")
    result = run_cli("schema", "-o", str(directory / "experiment.schema.json"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert [path.name for path in directory.iterdir()] == ["experiment.schema.json"]  # no temporary file left
    return directory / "experiment.schema.json"


@pytest.fixture(scope="module")
def validator(schema_file) -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_file.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _config(path: Path) -> dict:
    """The experiment as regimen reads it: Jsonnet evaluated with the external variables."""
    return Params.from_file(path, ext_vars=EXT_VARS).as_dict()


def _regimen_accepts(config: dict, tmp_path: Path) -> bool:
    """Whether ``regimen train`` would accept the config (checked, nothing built), run from the repository root."""
    from regimen.experiment import check_experiment

    try:
        check_experiment(Params(copy.deepcopy(config)), tmp_path / "run")
    except ConfigurationError:
        return False
    return True


def _best_error(validator: jsonschema.Draft202012Validator, config: dict) -> tuple[str, str]:
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    assert error is not None, "the config is valid"
    return error.json_path, error.message


def test_the_top_level_is_the_experiments_keys_and_strict(validator):
    schema = validator.schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$ref"] == "#/$defs/Experiment"
    default = next(branch for branch in schema["$defs"]["Experiment"]["oneOf"] if branch.get("title") == "default")
    top = default["then"]
    assert top["additionalProperties"] is False
    assert top["required"] == ["dataset_reader", "train_data_path", "data_loader", "model"]
    assert set(top["properties"]) >= {
        "type", "dataset_reader", "validation_dataset_reader", "train_data_path", "validation_data_path",
        "test_data_path", "data_loader", "validation_data_loader", "model", "trainer", "evaluate_on_test",
        "random_seed", "numpy_seed", "pytorch_seed", "distributed", "include_in_archive",
    }  # fmt: skip
    assert top["properties"]["model"] == {"$ref": "#/$defs/Model", "description": "the model to train."}
    assert top["properties"]["random_seed"]["type"] == ["integer", "null"]
    assert top["properties"]["random_seed"]["default"] == 13370
    distributed = schema["$defs"]["DistributedConfig"]
    assert {"cuda_devices", "master_address", "master_port"} <= set(distributed["properties"])  # legacy keys too
    adam = next(branch for branch in schema["$defs"]["Optimizer"]["oneOf"] if branch.get("title") == "adam")
    assert adam["then"]["properties"]["type"]["const"] == "adam"
    assert "model_parameters" not in adam["then"]["properties"]  # injected by the trainer


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(path.relative_to(ROOT)) for path in EXAMPLES])
def test_every_example_experiment_is_valid_and_regimen_accepts_it(path, validator, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the examples' data paths are relative to the repository root
    config = _config(path)
    assert _regimen_accepts(config, tmp_path)
    errors = [f"{error.json_path}: {error.message}" for error in validator.iter_errors(config)]
    assert not errors


def test_mistakes_are_rejected_with_the_path_of_the_mistake(validator):
    config = _config(BLOBS)
    typo = copy.deepcopy(config)
    typo["trainer"]["num_epoch"] = 3
    assert _best_error(validator, typo) == (
        "$.trainer",
        "Additional properties are not allowed ('num_epoch' was unexpected)",
    )
    wrong_type = copy.deepcopy(config)
    wrong_type["trainer"]["num_epochs"] = "three"
    assert _best_error(validator, wrong_type) == ("$.trainer.num_epochs", "'three' is not of type 'integer'")
    bad_choice = copy.deepcopy(config)
    bad_choice["model"]["activation"] = "relu6"
    assert _best_error(validator, bad_choice) == (
        "$.model.activation",
        "'relu6' is not one of ['relu', 'gelu', 'tanh']",
    )
    unknown = copy.deepcopy(config)
    unknown["trainer"]["optimizer"]["type"] = "adamm"
    path, message = _best_error(validator, unknown)
    assert path == "$.trainer.optimizer.type" and message.startswith("'adamm' is not one of ['adam', 'adamw', 'sgd'")
    nested = copy.deepcopy(config)
    nested["trainer"]["callbacks"] = ["tensorboard", {"type": "tensorboard", "summary_intervall": 10}]
    assert _best_error(validator, nested) == (
        "$.trainer.callbacks[1]",
        "Additional properties are not allowed ('summary_intervall' was unexpected)",
    )


def _set(config: dict, dotted: str, value: object) -> dict:
    changed = copy.deepcopy(config)
    *parents, last = dotted.split(".")
    target = changed
    for key in parents:
        target = target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return changed


class _Delete:
    """The value of a case that removes the key (named, so that every xdist worker collects the same test ids)."""

    def __repr__(self) -> str:
        return "<deleted>"


DELETE = _Delete()
# Changes to the blobs experiment, each accepted or refused alike by regimen's check and by the schema.
CHANGES = [
    ("trainer", DELETE, True),  # the default trainer
    ("trainer.optimizer", "sgd", True),  # a component by its name alone
    ("trainer.optimizer", {"lr": 0.1}, True),  # the default optimizer, without "type"
    ("trainer.callbacks", ["tensorboard", {"type": "should_validate_callback", "validation_start": 1}], True),
    ("trainer.learning_rate_scheduler", {"type": "slanted_triangular", "num_epochs": 3}, True),  # overrides it
    ("trainer.num_epochs", 3.0, True),  # a whole float is an int
    ("data_loader.shuffle", "true", True),  # AllenNLP's string bools
    ("model.type", "regimen.models.mlp_classifier.MlpClassifier", True),  # a dotted import path
    ("trainer.checkpointer", None, True),
    ("trainer.num_serialized_models_to_keep", 3, True),  # AllenNLP 0.9's trainer-level key
    ("distributed", {"cuda_devices": [-1, -1], "master_port": 29500}, True),  # AllenNLP's name for primary_port
    ("trainer.num_epoch", 3, False),
    ("trainer.num_epochs", "three", False),
    ("model.activation", "relu6", False),
    ("trainer.optimizer.type", "adamm", False),
    ("trainer.type", "callback", False),  # a removed trainer type
    ("model.type", DELETE, False),  # models have no default
    ("data_loader.batch_size", "8", False),
    ("trainer.callbacks", [{"type": "tensorboard", "summary_intervall": 10}], False),
    ("vocabulary", {"type": "from_instances"}, False),  # AllenNLP's vocabulary: regimen has none
    ("$schema", "./experiment.schema.json", False),  # regimen refuses unknown top-level keys, this one too
]


@pytest.mark.parametrize(("dotted", "value", "valid"), CHANGES, ids=[f"{d}={v!r}"[:60] for d, v, _ in CHANGES])
def test_the_schema_agrees_with_regimens_own_check(dotted, value, valid, validator, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    config = _set(_config(BLOBS), dotted, value)
    assert _regimen_accepts(config, tmp_path) is valid  # the case itself says what regimen does
    assert validator.is_valid(config) is valid


def test_a_plugin_component_is_in_the_printed_schema(tmp_path, schema_file):
    (tmp_path / "notify_plugin.py").write_text(PLUGIN)
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}"}
    result = run_cli("schema", "--include-package", "notify_plugin", env=env)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    branch = next(
        branch for branch in schema["$defs"]["TrainerCallback"]["oneOf"] if branch.get("title") == "notify_me"
    )
    assert branch["description"] == "Sends a message when the run ends."
    assert branch["then"]["properties"]["channel"] == {
        "enum": ["email", "slack"], "description": "Where the message goes.", "default": "email",
    }  # fmt: skip
    assert schema["$defs"]["Experiment"] == json.loads(schema_file.read_text())["$defs"]["Experiment"]
    validator = jsonschema.Draft202012Validator(schema)
    config = _config(BLOBS)
    config["trainer"]["callbacks"] = [{"type": "notify_me", "channel": "slack"}]
    assert validator.is_valid(config)
    config["trainer"]["callbacks"] = [{"type": "notify_me", "channel": "fax"}]
    assert _best_error(validator, config) == (
        "$.trainer.callbacks[0].channel",
        "'fax' is not one of ['email', 'slack']",
    )


def test_an_unwritable_output_is_a_one_line_error(tmp_path):
    result = run_cli("schema", "-o", str(tmp_path / "missing" / "schema.json"))
    assert result.returncode == 2
    assert result.stderr == (
        f"regimen: configuration error: cannot write the schema to {tmp_path / 'missing' / 'schema.json'}: "
        "No such file or directory\n"
    )

"""The HPARAMS file and the Optuna config file of ``regimen tune``, read and checked (no trial runs).

The formats are allennlp-optuna's (himkt/allennlp-optuna: ``config/hparams.json`` and ``config/optuna.json``, read
by ``allennlp_optuna/commands/tune.py``, which calls ``trial.suggest_<type>(**attributes)`` and
``getattr(optuna.samplers, type)``); suggested values reach Jsonnet as strings, as optuna-integration's
``AllenNLPExecutor`` passes ``str(value)`` (``optuna_integration/allennlp/_executor.py``).
"""

from __future__ import annotations

import json

import optuna
import pytest

from regimen.registry import ConfigurationError
from regimen.tuning.optuna_config import build, read_optuna_config
from regimen.tuning.search_space import as_ext_var, read_search_space


def write(tmp_path, name, value):
    path = tmp_path / name
    path.write_text(json.dumps(value) if not isinstance(value, str) else value)
    return path


def test_each_type_is_the_trials_suggest_method_and_values_match_optunas(tmp_path):
    path = write(
        tmp_path,
        "hparams.json",
        [
            {"type": "float", "attributes": {"name": "lr", "low": 1e-4, "high": 0.1, "log": True}},
            {"type": "int", "attributes": {"name": "hidden", "low": 8, "high": 64, "step": 8}},
            {"type": "categorical", "attributes": {"name": "optimizer", "choices": ["adam", "sgd"]}},
        ],
    )
    space = read_search_space(path)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    trial = study.ask()
    values = {parameter.name: parameter.suggest(trial) for parameter in space}
    assert values == trial.params
    assert 1e-4 <= values["lr"] <= 0.1 and values["hidden"] % 8 == 0 and values["optimizer"] in ("adam", "sgd")
    assert isinstance(study.trials[0].distributions["lr"], optuna.distributions.FloatDistribution)
    assert study.trials[0].distributions["lr"].log


def test_every_mistake_in_the_file_is_reported_at_its_index(tmp_path):
    path = write(
        tmp_path,
        "hparams.json",
        [
            {"type": "floatt", "attributes": {"name": "lr", "low": 0.1, "high": 1}},
            {"type": "float", "attributes": {"low": 0.1, "high": 1}},
            {"type": "float", "attributes": {"name": "dropout", "low": 0.9, "high": 0.1}},
            {"type": "int", "attributes": {"name": "hidden", "low": 1, "high": 8, "stepp": 2}},
            {"type": "categorical", "attributes": {"name": "act", "choices": []}},
            {"type": "float", "attributes": {"name": "wd", "low": 0, "high": 1, "log": True}},
            {"type": "int", "attributes": {"name": "wd", "low": 1, "high": 2}},
        ],
    )
    with pytest.raises(ConfigurationError) as caught:
        read_search_space(path)
    text = str(caught.value)
    assert f"{path}[0]: unknown type 'floatt'; Optuna suggests" in text and "float, int" in text
    assert f"{path}[1].attributes: missing 'name'" in text
    assert f"{path}[2].attributes: low (0.9) is above high (0.1)" in text
    assert f"{path}[3].attributes: unknown attribute 'stepp'" in text
    assert f"{path}[4].attributes: 'choices' must be a non-empty list" in text
    assert f"{path}[5].attributes: a log scale needs low > 0" in text
    assert "problems in the configuration" in text


@pytest.mark.parametrize(
    ("content", "expected"),
    [("not json", "not JSON"), ("{}", "expected a non-empty JSON list"), ("[]", "expected a non-empty JSON list")],
)
def test_a_file_that_is_not_a_list_says_what_is_expected(tmp_path, content, expected):
    with pytest.raises(ConfigurationError, match=expected):
        read_search_space(write(tmp_path, "hparams.json", content))


def test_a_name_suggested_twice_is_an_error(tmp_path):
    entry = {"type": "int", "attributes": {"name": "hidden", "low": 1, "high": 8}}
    with pytest.raises(ConfigurationError, match="'hidden' is suggested 2 times"):
        read_search_space(write(tmp_path, "hparams.json", [entry, entry]))


def test_values_become_the_strings_jsonnet_reads():
    # Numbers as str() gives them (what allennlp-optuna's users parse with std.parseJson / std.parseInt); text as
    # it is; booleans and null as JSON, which std.parseJson reads (str() would give Python's True/None).
    assert [as_ext_var(v) for v in (0.001, 1e-05, 64, "adam", True, None)] == [
        "0.001",
        "1e-05",
        "64",
        "adam",
        "true",
        "null",
    ]


def test_the_optuna_config_builds_the_named_sampler_and_pruner_with_either_spelling(tmp_path):
    path = write(
        tmp_path,
        "optuna.json",
        {
            "sampler": {"type": "TPESampler", "attributes": {"n_startup_trials": 5, "seed": 1}},
            "pruner": {"type": "HyperbandPruner", "keyword": {"min_resource": 1, "reduction_factor": 5}},
        },
    )
    config = read_optuna_config(path)
    assert config["pruner"] == {"type": "HyperbandPruner", "attributes": {"min_resource": 1, "reduction_factor": 5}}
    assert isinstance(build(config["sampler"], "sampler"), optuna.samplers.TPESampler)
    pruner = build(config["pruner"], "pruner")
    assert isinstance(pruner, optuna.pruners.HyperbandPruner) and pruner._reduction_factor == 5


def test_optuna_config_mistakes_name_the_section_and_suggest_the_class(tmp_path):
    path = write(
        tmp_path,
        "optuna.json",
        {
            "sampler": {"type": "TPESamplr"},
            "pruner": {"type": "MedianPruner", "attributes": {"n_startup_trial": 1}},
            "samplers": {},
        },
    )
    with pytest.raises(ConfigurationError) as caught:
        read_optuna_config(path)
    text = str(caught.value)
    assert f'{path}: samplers: unknown section "samplers"; did you mean "sampler"?' in text
    assert f'{path}: sampler: unknown optuna.samplers class "TPESamplr"; did you mean "TPESampler"?' in text
    assert f"{path}: pruner.attributes: " in text and "n_startup_trial" in text and "MedianPruner takes" in text


def test_a_missing_optuna_config_file_is_an_error_not_a_silent_default(tmp_path):
    # allennlp-optuna ignores a path that is not a file; a typo there would silently search with the defaults.
    with pytest.raises(ConfigurationError, match="--optuna-param-path: Optuna config file not found"):
        read_optuna_config(tmp_path / "optuna.jsn")

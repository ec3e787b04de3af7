"""Params: reading Jsonnet, overrides, typed pops, key paths and writing configs back."""

from __future__ import annotations

import json

import pytest

from regimen.registry import ConfigurationError, Params

ENV = {"REGIMEN_TEST_LR": "0.01", "REGIMEN_TEST_DATA": "/data/train.csv"}


@pytest.fixture
def experiment(fixtures, monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    return fixtures / "registry" / "experiment.jsonnet"


def test_from_file_evaluates_jsonnet_with_env_ext_vars_and_relative_imports(experiment):
    params = Params.from_file(experiment)
    assert params["trainer"]["optimizer"].as_dict() == {"type": "adam", "lr": 0.01}
    assert params["model"]["hidden_sizes"] == [64, 32]
    assert params["train_data_path"] == "/data/train.csv"


def test_explicit_ext_vars_win_over_the_environment(experiment):
    params = Params.from_file(experiment, ext_vars={"REGIMEN_TEST_LR": "0.5"})
    assert params["trainer"]["optimizer"]["lr"] == 0.5


def test_plain_json_files_are_read_by_the_same_binding(fixtures):
    params = Params.from_file(fixtures / "registry" / "plain.json")
    assert params.as_dict() == {
        "trainer": {"type": "gradient_descent", "num_epochs": 3},
        "model": {"type": "mlp"},
    }


def test_a_syntax_error_names_file_line_and_column(fixtures):
    with pytest.raises(ConfigurationError) as info:
        Params.from_file(fixtures / "registry" / "syntax_error.jsonnet")
    assert "syntax_error.jsonnet:3:29" in str(info.value)
    assert "STATIC ERROR" in str(info.value)


def test_a_runtime_error_names_file_line_and_column(fixtures):
    with pytest.raises(ConfigurationError) as info:
        Params.from_file(fixtures / "registry" / "runtime_error.jsonnet")
    assert "runtime_error.jsonnet:3:18" in str(info.value)
    assert "array bounds error" in str(info.value)


def test_a_missing_ext_var_is_a_configuration_error(fixtures, monkeypatch):
    monkeypatch.delenv("REGIMEN_TEST_LR", raising=False)
    monkeypatch.setenv("REGIMEN_TEST_DATA", "x")
    with pytest.raises(ConfigurationError, match="(?i)undefined external variable: REGIMEN_TEST_LR") as info:
        Params.from_file(fixtures / "registry" / "experiment.jsonnet")
    assert "set it in the environment (REGIMEN_TEST_LR=... regimen ...)" in str(info.value)


def test_a_missing_file_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="config file not found"):
        Params.from_file(tmp_path / "nope.jsonnet")


def test_a_file_that_is_not_an_object_is_rejected(tmp_path):
    path = tmp_path / "list.jsonnet"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigurationError, match="must evaluate to an object, got list"):
        Params.from_file(path)


# ---- overrides ---------------------------------------------------------------------------------------------
def test_dotted_override_patches_one_leaf_and_keeps_its_siblings(experiment):
    params = Params.from_file(experiment, overrides='{"trainer.optimizer.lr": 0.1}')
    assert params["trainer"]["optimizer"].as_dict() == {"type": "adam", "lr": 0.1}
    assert params["trainer"]["num_epochs"] == 10


def test_dotted_override_indexes_lists(experiment):
    params = Params.from_file(experiment, overrides={"trainer.callbacks.0.summary_interval": 5})
    assert params["trainer"]["callbacks"][0].as_dict() == {"type": "tensorboard", "summary_interval": 5}
    params = Params.from_file(experiment, overrides={"trainer.callbacks.1": "tensorboard"})
    assert params.as_dict()["trainer"]["callbacks"][1] == "tensorboard"


def test_plain_override_key_replaces_the_whole_subtree(experiment):
    params = Params.from_file(experiment, overrides='{"trainer": {"num_epochs": 2}}')
    assert params["trainer"].as_dict() == {"num_epochs": 2}


def test_overrides_may_be_jsonnet(experiment):
    params = Params.from_file(experiment, overrides="{'trainer.num_epochs': 2 * 3, model+: {}}")
    assert params["trainer"]["num_epochs"] == 6


def test_an_override_may_add_a_new_leaf_to_an_existing_object(experiment):
    params = Params.from_file(experiment, overrides={"trainer.patience": 3})
    assert params["trainer"]["patience"] == 3


def test_an_override_path_that_does_not_exist_is_an_error_naming_it(experiment):
    with pytest.raises(ConfigurationError) as info:
        Params.from_file(experiment, overrides={"trainer.optimzer.lr": 0.1})
    message = str(info.value)
    assert message.startswith("trainer.optimzer: override path does not exist")
    assert 'did you mean "optimizer"?' in message


def test_an_override_index_out_of_range_is_an_error(experiment):
    with pytest.raises(ConfigurationError, match=r"trainer.callbacks.7: .*list of 2"):
        Params.from_file(experiment, overrides={"trainer.callbacks.7.type": "x"})


def test_an_override_through_a_scalar_is_an_error(experiment):
    with pytest.raises(ConfigurationError, match=r"trainer.num_epochs.x: override path does not exist"):
        Params.from_file(experiment, overrides={"trainer.num_epochs.x": 1})


def test_all_bad_override_paths_are_reported_together(experiment):
    with pytest.raises(ConfigurationError) as info:
        Params.from_file(experiment, overrides={"a.b": 1, "trainer.x.y": 2})
    assert len(info.value.errors) == 2


@pytest.mark.parametrize("overrides", ['{"trainer.num_epochs": }', "[1, 2]"])
def test_bad_override_text_is_a_configuration_error(experiment, overrides):
    with pytest.raises(ConfigurationError, match="overrides"):
        Params.from_file(experiment, overrides=overrides)


# ---- reading values ----------------------------------------------------------------------------------------
def test_nested_values_know_their_key_path():
    params = Params({"trainer": {"optimizer": {"lr": 1}, "callbacks": [{"type": "a"}]}})
    trainer = params["trainer"]
    assert trainer.path == "trainer"
    assert trainer["optimizer"].path == "trainer.optimizer"
    assert trainer["callbacks"][0].path == "trainer.callbacks.0"
    assert trainer["optimizer"].path_of("lr") == "trainer.optimizer.lr"


def test_pop_removes_and_a_missing_required_key_names_its_path():
    params = Params({"a": 1}, "trainer")
    assert params.pop("a") == 1
    assert "a" not in params
    assert params.pop("b", 5) == 5
    with pytest.raises(ConfigurationError, match=r"^trainer.b: missing required key$"):
        params.pop("b")


def test_pop_keep_as_dict_returns_plain_dicts():
    params = Params({"a": {"b": [{"c": 1}]}})
    value = params.pop("a", keep_as_dict=True)
    assert type(value) is dict and value == {"b": [{"c": 1}]}


def test_typed_pops_convert_and_reject_with_paths():
    params = Params({"i": 2.0, "f": 3, "b": "true", "bad_i": 2.5, "bad_f": "fast", "bad_b": 1}, "t")
    assert params.pop_int("i") == 2 and isinstance(params.pop_float("f"), float)
    assert params.pop_bool("b") is True
    assert params.pop_int("missing", None) is None
    with pytest.raises(ConfigurationError, match=r"^t.bad_i: expected int, got 2.5$"):
        params.pop_int("bad_i")
    with pytest.raises(ConfigurationError, match=r'^t.bad_f: expected float, got "fast"$'):
        params.pop_float("bad_f")
    with pytest.raises(ConfigurationError, match=r"^t.bad_b: expected bool, got 1$"):
        params.pop_bool("bad_b")


def test_a_number_written_as_a_string_gets_a_hint():
    with pytest.raises(ConfigurationError, match=r"std.parseJson"):
        Params({"n": "10"}).pop_int("n")


def test_pop_choice():
    params = Params({"mode": "max", "bad": "maxx"}, "s")
    assert params.pop_choice("mode", ["min", "max"]) == "max"
    assert params.pop_choice("absent", ["min", "max"], default_to_first_choice=True) == "min"
    with pytest.raises(ConfigurationError, match=r'^s.bad: unknown value "maxx"; did you mean "max"\?'):
        params.pop_choice("bad", ["min", "max"])


def test_get_wraps_like_pop_without_removing():
    params = Params({"a": {"b": 1}})
    assert params.get("a").path == "a"
    assert params.get("zzz", 3) == 3
    assert "a" in params


def test_assert_empty_names_every_leftover_key_with_a_suggestion():
    params = Params({"optimiser": 1, "num_epoch": 2}, "trainer")
    with pytest.raises(ConfigurationError) as info:
        params.assert_empty("Trainer", ["optimizer", "num_epochs", "patience"])
    messages = [str(error) for error in info.value.errors]
    assert messages[0].startswith('trainer.optimiser: unknown key "optimiser"; did you mean "optimizer"?')
    assert messages[1].startswith('trainer.num_epoch: unknown key "num_epoch"; did you mean "num_epochs"?')
    Params({}).assert_empty("Trainer")


def test_as_flat_dict_uses_dotted_keys_that_work_as_overrides(experiment):
    params = Params.from_file(experiment)
    flat = params.as_flat_dict()
    assert flat["trainer.optimizer.lr"] == 0.01
    assert flat["trainer.callbacks.0.type"] == "tensorboard"
    assert flat["model.hidden_sizes.1"] == 32
    flat["trainer.optimizer.lr"] = 0.3
    assert (
        Params.from_file(experiment, overrides=flat).as_dict()
        == Params(
            {
                **params.as_dict(),
                "trainer": {**params.as_dict()["trainer"], "optimizer": {"type": "adam", "lr": 0.3}},
            }
        ).as_dict()
    )


def test_duplicate_is_deep_and_keeps_the_path():
    params = Params({"a": {"b": 1}}, "x")
    copy = params.duplicate()
    copy["a"].pop("b")
    assert params.as_dict() == {"a": {"b": 1}} and copy.path == "x"


def test_mutable_mapping_protocol():
    params = Params({})
    params["a"] = Params({"b": 1})
    params["c"] = 2
    assert len(params) == 2 and list(params) == ["a", "c"]
    del params["c"]
    assert params.as_dict() == {"a": {"b": 1}}


def test_to_file_writes_type_first_and_a_readable_order(tmp_path):
    params = Params({"trainer": {"optimizer": {"lr": 1, "type": "adam"}}, "model": {"z": 1, "type": "m"}, "aaa": 1})
    path = tmp_path / "config.json"
    params.to_file(path)
    text = path.read_text()
    written = json.loads(text)
    assert list(written) == ["model", "trainer", "aaa"]
    assert list(written["model"]) == ["type", "z"]
    assert list(written["trainer"]["optimizer"]) == ["type", "lr"]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind

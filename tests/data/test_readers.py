"""The csv and jsonl readers: the instances they yield from real files, and the errors that name file and line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from regimen.data import CsvReader, DatasetReader, JsonLinesReader
from regimen.registry import ConfigurationError, Params
from tests.conftest import FIXTURES

CLASSIFICATION = str(FIXTURES / "data" / "classification.csv")
SEQUENCES = str(FIXTURES / "data" / "sequences.jsonl")


def plain(instances):
    """The csv reader's instances with each feature tensor as a list, once checked to be float32."""
    converted = []
    for instance in instances:
        assert instance["features"].dtype == torch.float32
        converted.append({**instance, "features": instance["features"].tolist()})
    return converted


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---- csv -----------------------------------------------------------------------------------------------------------
def test_csv_yields_features_in_file_order_and_int_labels():
    instances = plain(CsvReader().read(CLASSIFICATION))
    assert len(instances) == 12
    assert instances[0] == {"features": [0.5, 1.0, -2.0], "label": 0}
    assert instances[2] == {"features": [-0.75, 2.0, 0.0], "label": 2}
    assert instances[-1] == {"features": [0.25, -0.25, 0.5], "label": 2}
    assert all(type(instance["label"]) is int for instance in instances)


def test_csv_is_the_default_reader_and_reads_its_config_keys():
    reader = DatasetReader.from_params(
        Params({"feature_columns": ["x3", "x1"], "label_type": "float", "max_instances": 2}, "dataset_reader")
    )
    assert isinstance(reader, CsvReader)
    assert plain(reader.read(CLASSIFICATION)) == [
        {"features": [-2.0, 0.5], "label": 0.0},
        {"features": [3.0, 1.5], "label": 1.0},
    ]


def test_csv_without_a_label_column_yields_features_only(tmp_path):
    assert plain(CsvReader(label_column=None, feature_columns=["x1"]).read(CLASSIFICATION))[0] == {"features": [0.5]}
    # Every column but the label is a feature; null drops the label but keeps the column as a feature.
    assert plain(CsvReader(label_column=None).read(CLASSIFICATION))[0] == {"features": [0.5, 1.0, -2.0, 0.0]}
    unlabeled = write(tmp_path, "test.csv", "x1,x2\n1,2\n3,4\n")
    assert plain(CsvReader().read(unlabeled)) == [{"features": [1.0, 2.0]}, {"features": [3.0, 4.0]}]


def test_csv_delimiter_string_labels_blank_lines_and_padded_header(tmp_path):
    path = write(tmp_path, "data.tsv", "a\t b \tlabel\n1\t2\tcat\n\n3\t4\tdog\n")
    reader = CsvReader(delimiter="\t", label_type="str", feature_columns=["b"])
    assert plain(reader.read(path)) == [{"features": [2.0], "label": "cat"}, {"features": [4.0], "label": "dog"}]


def test_csv_reads_lazily(tmp_path):
    path = write(tmp_path, "late_error.csv", "x,label\n1,0\n2,0\noops,1\n")
    instances = CsvReader().read(path)
    assert plain([next(instances), next(instances)]) == [
        {"features": [1.0], "label": 0},
        {"features": [2.0], "label": 0},
    ]
    with pytest.raises(ValueError, match=r"late_error\.csv:4"):
        next(instances)


def test_a_missing_data_file_is_a_configuration_error_naming_it(tmp_path):
    missing = str(tmp_path / "nope.csv")
    with pytest.raises(ConfigurationError, match=f"data file not found: {re.escape(missing)}"):
        list(CsvReader().read(missing))
    with pytest.raises(ConfigurationError, match="is a directory"):
        list(JsonLinesReader().read(str(tmp_path)))


def test_a_feature_column_the_file_lacks_names_file_line_column_and_suggestion():
    with pytest.raises(ConfigurationError) as info:
        list(CsvReader(feature_columns=["x1", "x_2"]).read(CLASSIFICATION))
    message = str(info.value)
    assert f"{CLASSIFICATION}:1: feature_columns names" in message
    assert '"x_2" (did you mean "x2"?)' in message
    assert "columns in the file: x1, x2, x3, label" in message


def test_a_value_that_is_not_a_number_names_file_line_and_column(tmp_path):
    path = write(tmp_path, "bad.csv", "x1,x2,label\n1,2,0\n\n3,abc,1\n")
    with pytest.raises(ValueError, match=r"""bad\.csv:4: column "x2": expected a number, got 'abc'"""):
        list(CsvReader().read(path))


def test_a_row_with_the_wrong_number_of_fields_names_file_and_line(tmp_path):
    path = write(tmp_path, "short.csv", "x1,x2,label\n1,2,0\n3,1\n")
    with pytest.raises(ValueError, match=r"short\.csv:3: expected 3 fields as in the header, got 2"):
        list(CsvReader().read(path))


def test_a_fractional_int_label_suggests_float_labels(tmp_path):
    path = write(tmp_path, "target.csv", "x,label\n1,2.0\n2,0.5\n")
    with pytest.raises(ValueError, match=r'target\.csv:3: column "label": expected an int label, got .0\.5.*"float"'):
        list(CsvReader().read(path))
    assert [instance["label"] for instance in CsvReader(label_type="float").read(path)] == [2.0, 0.5]


def test_empty_files_and_repeated_header_columns_are_errors(tmp_path):
    with pytest.raises(ValueError, match=r"empty\.csv: the file is empty; expected a header row"):
        list(CsvReader().read(write(tmp_path, "empty.csv", "\n")))
    with pytest.raises(ValueError, match=r"twice\.csv:1: the header names column\(s\) x twice"):
        list(CsvReader().read(write(tmp_path, "twice.csv", "x,x,label\n1,2,3\n")))


def test_csv_config_mistakes_are_reported_together_at_their_paths():
    config = {"type": "csv", "delimiter": ";;", "feature_columns": ["label"], "max_instances": 0}
    with pytest.raises(ConfigurationError) as info:
        DatasetReader.from_params(Params(config, "dataset_reader"))
    message = str(info.value)
    assert "dataset_reader.delimiter: must be one character, got ';;'" in message
    assert 'dataset_reader.feature_columns: includes the label column "label"' in message
    assert "dataset_reader.max_instances: must be a positive int or null, got 0" in message


# ---- jsonl ---------------------------------------------------------------------------------------------------------
def test_jsonl_yields_each_object_as_is_skipping_blank_lines():
    instances = list(JsonLinesReader().read(SEQUENCES))
    assert len(instances) == 20
    assert instances[0] == {"id": "s00", "tokens": [4, 8, 15], "label": 0}
    assert [instance["id"] for instance in instances] == [f"s{index:02d}" for index in range(20)]


def test_jsonl_keeps_only_the_listed_fields_and_max_instances():
    reader = DatasetReader.from_params(Params({"type": "jsonl", "fields": ["tokens"], "max_instances": 2}))
    assert list(reader.read(SEQUENCES)) == [{"tokens": [4, 8, 15]}, {"tokens": [16, 23, 42, 4, 8, 15, 16]}]


def test_jsonl_bad_json_names_file_line_and_column(tmp_path):
    path = write(tmp_path, "bad.jsonl", '{"a": 1}\n\n{"a": 2,}\n')
    instances = JsonLinesReader().read(path)
    assert next(instances) == {"a": 1}
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: invalid JSON: .* \(column 9\)"):
        next(instances)


def test_jsonl_lines_must_be_objects(tmp_path):
    path = write(tmp_path, "lists.jsonl", "[1, 2]\n")
    with pytest.raises(ValueError, match=r"lists\.jsonl:1: expected a JSON object, got a list"):
        list(JsonLinesReader().read(path))


def test_jsonl_a_listed_field_a_line_lacks_names_file_line_and_suggestion():
    with pytest.raises(ConfigurationError) as info:
        list(JsonLinesReader(fields=["token"]).read(SEQUENCES))
    message = str(info.value)
    assert f'{SEQUENCES}:1: the object has no field "token" (did you mean "tokens"?) named in fields' in message
    assert "its keys: id, tokens, label" in message

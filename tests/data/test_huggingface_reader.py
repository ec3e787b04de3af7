"""The ``huggingface`` reader on local files, offline: the instances it makes of CSV, JSON-lines and image-folder
datasets, split slicing, the loader's workers over it, and every error a user can hit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from regimen.data import CsvReader, DataLoader, DatasetReader, HuggingFaceReader
from regimen.registry import ConfigurationError, Params
from tests.conftest import FIXTURES, ROOT

BLOBS = FIXTURES / "data" / "blobs"
BLOB_FIELDS = {"features": ["x0", "x1", "x2", "x3"], "label": "label"}


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """Nothing reaches the network or ~/.cache: datasets' home and cache are in tmp_path, and it runs offline."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def reader(tmp_path: Path, **config) -> DatasetReader:
    params = {"type": "huggingface", "cache_dir": str(tmp_path / "hf_cache"), **config}
    return DatasetReader.from_params(Params(params, "dataset_reader"))


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


JSON_LINES = [
    {"vector": [1.0, 2.5], "ids": [4, 5, 6], "label": 1, "text": "one", "flag": True},
    {"vector": [3.0, 4.0], "ids": [7], "label": 0, "text": "two", "flag": False},
    {"vector": [5.0, 6.0], "ids": [], "label": 1, "text": "three", "flag": True},
    {"vector": [7.0, 8.0], "ids": [8, 9], "label": 0, "text": "four", "flag": False},
]


@pytest.fixture
def json_lines(tmp_path) -> str:
    return write(tmp_path, "rows.jsonl", "".join(json.dumps(row) + "\n" for row in JSON_LINES))


# ---- instances ---------------------------------------------------------------------------------------------------
def test_stacked_csv_columns_are_the_instances_the_csv_reader_makes(tmp_path):
    path = str(BLOBS / "validation.csv")
    hugging = reader(tmp_path, path="csv", data_files=path, fields=BLOB_FIELDS)
    assert isinstance(hugging, HuggingFaceReader)
    ours, theirs = list(hugging.read("train")), list(CsvReader().read(path))
    assert len(ours) == len(theirs) == 64
    for mine, expected in zip(ours, theirs):
        assert mine["features"].dtype == torch.float32 and torch.equal(mine["features"], expected["features"])
        assert type(mine["label"]) is int and mine["label"] == expected["label"]
        assert set(mine) == {"features", "label"}


def test_columns_are_converted_by_their_type(tmp_path, json_lines):
    first, second, third, _ = reader(tmp_path, path="json", data_files=json_lines).read("train")
    assert first["vector"].dtype == torch.float32 and first["vector"].tolist() == [1.0, 2.5]
    assert first["ids"].dtype == torch.int64 and first["ids"].tolist() == [4, 5, 6]
    assert second["ids"].tolist() == [7] and third["ids"].shape == (0,)  # ragged: collate pads them
    assert (first["label"], first["text"], first["flag"]) == (1, "one", True)
    assert type(first["label"]) is int and type(first["flag"]) is bool


def test_fields_as_a_list_keeps_those_columns_and_as_an_object_renames(tmp_path, json_lines):
    kept = list(reader(tmp_path, path="json", data_files=json_lines, fields=["text", "label"]).read("train"))
    assert kept[1] == {"text": "two", "label": 0}
    renamed = reader(tmp_path, path="json", data_files=json_lines, fields={"features": "vector", "y": "label"})
    instance = next(renamed.read("train"))
    assert set(instance) == {"features", "y"} and instance["features"].tolist() == [1.0, 2.5]


def test_a_data_path_is_a_split_with_the_datasets_slicing_syntax(tmp_path):
    files = {"train": str(BLOBS / "train.csv"), "test": str(BLOBS / "test.csv")}
    hugging = reader(tmp_path, path="csv", data_files=files, fields=BLOB_FIELDS)
    train = list(hugging.read("train"))
    head, tail = list(hugging.read("train[:75%]")), list(hugging.read("train[75%:]"))
    assert (len(train), len(head), len(tail)) == (400, 300, 100)
    assert all(torch.equal(a["features"], b["features"]) for a, b in zip(head + tail, train))
    assert len(list(hugging.read("train[:10]+test"))) == 10 + 64
    assert len(list(hugging.read("train[:33%](pct1_dropremainder)"))) == 132


def test_streaming_gives_the_same_instances(tmp_path, json_lines):
    prepared = list(reader(tmp_path, path="json", data_files=json_lines).read("train"))
    streamed = list(reader(tmp_path, path="json", data_files=json_lines, streaming=True).read("train"))
    assert len(streamed) == 4
    for one, other in zip(prepared, streamed):
        assert one.keys() == other.keys()
        assert all(
            torch.equal(one[k], other[k]) if isinstance(one[k], torch.Tensor) else one[k] == other[k] for k in one
        )


def test_max_instances_and_transforms(tmp_path, json_lines):
    hugging = reader(tmp_path, path="json", data_files=json_lines, max_instances=2, transforms={"vector": "torch.neg"})
    assert [instance["vector"].tolist() for instance in hugging.read("train")] == [[-1.0, -2.5], [-3.0, -4.0]]


def test_an_image_folder_dataset_with_an_image_transform(tmp_path):
    shapes = reader(
        tmp_path,
        path="imagefolder",
        data_dir=str(ROOT / "data" / "shapes"),
        fields={"features": "image", "label": "label"},
        transforms={"features": "regimen.data.image_folder.image_to_tensor"},
    )
    instances = list(shapes.read("validation"))
    assert len(instances) == 80 and instances[0]["features"].shape == (1, 16, 16)
    assert sorted({instance["label"] for instance in instances}) == [0, 1, 2, 3]
    untransformed = reader(tmp_path, path="imagefolder", data_dir=str(ROOT / "data" / "shapes"))
    with pytest.raises(ValueError, match=r'row 0 of .*: the field "image" is a PIL image, which cannot be batched'):
        next(untransformed.read("test"))


def test_worker_processes_give_the_same_batches(tmp_path):
    hugging = reader(tmp_path, path="csv", data_files=str(BLOBS / "train.csv"), fields=BLOB_FIELDS)

    def batches(**config):
        built = DataLoader.from_params(
            Params({"batch_size": 16, "shuffle": True, **config}, "data_loader"), reader=hugging, data_path="train"
        )
        return list(built.iter_epoch(2))

    in_process, with_workers = batches(), batches(num_workers=2)
    assert len(in_process) == len(with_workers) == 25
    for one, other in zip(in_process, with_workers):
        assert torch.equal(one["features"], other["features"]) and torch.equal(one["label"], other["label"])


# ---- mistakes ------------------------------------------------------------------------------------------------------
def test_an_unknown_split_is_an_error_listing_the_splits(tmp_path):
    files = {"train": str(BLOBS / "train.csv"), "validation": str(BLOBS / "validation.csv")}
    named = reader(tmp_path, path="csv", data_files=files)
    assert named.check_data_path("validation[:50%]") is None
    # data_files names the splits: found before anything is read.
    assert str(named.check_data_path("valid")) == (
        'unknown split "valid"; valid splits: train, validation (of the HuggingFace dataset "csv")'
    )
    assert 'unknown split "tset"' in str(named.check_data_path("train+tset"))
    # Otherwise the dataset knows its splits once loaded.
    single = reader(tmp_path, path="csv", data_files=str(BLOBS / "train.csv"))
    assert single.check_data_path("trian") is None
    with pytest.raises(ConfigurationError) as info:
        next(single.read("trian"))
    assert str(info.value) == (
        'unknown split "trian"; did you mean "train"? valid splits: train (of the HuggingFace dataset "csv")'
    )


def test_a_data_path_that_is_no_split_expression_is_found_early(tmp_path):
    error = reader(tmp_path, path="csv", data_files=str(BLOBS / "train.csv")).check_data_path("data/train.csv")
    assert str(error) == (
        '"data/train.csv" is not a split of a HuggingFace dataset: write a split\'s name, optionally sliced and '
        'joined with +: "train", "train[:80%]", "train[80%:]+validation"'
    )


def test_a_slice_the_split_cannot_give_names_it(tmp_path):
    hugging = reader(tmp_path, path="csv", data_files=str(BLOBS / "test.csv"))
    with pytest.raises(ValueError) as info:
        next(hugging.read("train[500:]"))
    assert str(info.value).startswith(
        f'the HuggingFace dataset "csv" (data_files {BLOBS / "test.csv"}), split "train[500:]": cannot load the '
        'split "train[500:]": '
    )


def test_a_missing_column_is_named_with_the_columns_there_are(tmp_path):
    hugging = reader(
        tmp_path, path="csv", data_files=str(BLOBS / "test.csv"), fields={"features": ["x0"], "y": "lable"}
    )
    with pytest.raises(ConfigurationError) as info:
        next(hugging.read("train"))
    assert str(info.value) == (
        'the reader\'s fields name the column(s) "lable" (did you mean "label"?), which the HuggingFace dataset "csv" '
        f'(data_files {BLOBS / "test.csv"}), split "train" does not have; its columns: x0, x1, x2, x3, label'
    )


def test_only_number_columns_stack(tmp_path, json_lines):
    hugging = reader(tmp_path, path="json", data_files=json_lines, fields={"features": ["label", "text"]})
    with pytest.raises(ConfigurationError, match='stack the column "text" into the field "features", but it is not a'):
        next(hugging.read("train"))


def test_a_missing_value_in_a_stacked_column_names_the_row(tmp_path):
    path = write(tmp_path, "gaps.csv", "a,b,label\n1,2,0\n3,,1\n")
    hugging = reader(tmp_path, path="csv", data_files=path, fields={"features": ["a", "b"], "label": "label"})
    with pytest.raises(ValueError) as info:
        list(hugging.read("train"))
    assert str(info.value) == (
        f'row 1 of the HuggingFace dataset "csv" (data_files {path}), split "train": column "b" has no value '
        '(stacked into "features")'
    )


def test_missing_files_and_rejected_arguments_are_configuration_errors(tmp_path):
    missing = reader(tmp_path, path="csv", data_files=str(tmp_path / "nope.csv"))
    with pytest.raises(ConfigurationError, match=r'the HuggingFace dataset "csv" .*: cannot load it: Unable to find'):
        next(missing.read("train"))
    rejected = reader(tmp_path, path="csv", data_files=str(BLOBS / "test.csv"), kwargs={"delimitr": ";"})
    with pytest.raises(ConfigurationError) as info:
        next(rejected.read("train"))
    assert "load_dataset rejected the reader's arguments: " in str(info.value) and "'delimitr'" in str(info.value)
    assert str(info.value).endswith("(check its kwargs)")


def test_a_dataset_not_on_the_hub_while_offline_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match=r'the HuggingFace dataset "no-such-user/no-such-data", split "train"'):
        next(reader(tmp_path, path="no-such-user/no-such-data").read("train"))


CONFIG_ERRORS = {
    "split in kwargs": ({"kwargs": {"split": "train"}}, "dataset_reader.kwargs.split: is given by the data path"),
    "own key in kwargs": (
        {"kwargs": {"streaming": True}},
        "dataset_reader.kwargs.streaming: is given by the reader's own key streaming, not in kwargs",
    ),
    "no fields": ({"fields": []}, "dataset_reader.fields: must name at least one column, or be null"),
    "repeated fields": ({"fields": ["a", "a"]}, "dataset_reader.fields: names a twice"),
    "empty stack": ({"fields": {"features": []}}, "dataset_reader.fields.features: must name at least one column"),
    "repeated column": ({"fields": {"f": ["a", "a"]}}, "dataset_reader.fields.f: names a twice"),
    "bad transform": ({"transforms": {"f": "no_such_module.f"}}, "dataset_reader.transforms.f: cannot import"),
    "max_instances": ({"max_instances": -1}, "dataset_reader.max_instances: must be a positive int or null, got -1"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_ERRORS))
def test_a_config_mistake_is_a_configuration_error_at_its_key(tmp_path, case):
    changes, message = CONFIG_ERRORS[case]
    with pytest.raises(ConfigurationError) as info:
        reader(tmp_path, path="csv", **changes)
    assert message in str(info.value)


def test_without_the_datasets_package_the_reader_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets now raises ImportError
    with pytest.raises(ConfigurationError) as info:
        reader(tmp_path, path="csv")
    assert str(info.value) == (
        'dataset_reader: the "huggingface" reader needs the datasets package, not installed: '
        "pip install 'regimen[datasets]'"
    )

"""The ``torch_dataset`` reader: the instances it makes of map-style and iterable datasets' items, how the data path
picks a split, the loader's shuffling, workers, sharding and resume over it, and every error a user can hit."""

from __future__ import annotations

import importlib.util
import itertools
from collections import namedtuple

import pytest
import torch
import torch.utils.data
from PIL import Image

from regimen.data import DataLoader, DatasetReader, TorchDatasetReader
from regimen.registry import ConfigurationError, Params

HERE = __name__  # the dotted path of this module, where the datasets below are found


class Squares(torch.utils.data.Dataset):
    """A map-style dataset of ``(tensor([i, i*i]), i % 3)`` for i in ``offset .. offset + size - 1``."""

    def __init__(self, size: int, offset: int = 0, train: bool = True) -> None:
        self.size, self.offset, self.train = size, offset, train

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        value = self.offset + index + (0 if self.train else 1000)
        return torch.tensor([value, value * value], dtype=torch.float32), value % 3


class Counting(torch.utils.data.IterableDataset):
    """An iterable dataset of dicts; endless with ``size`` None. ``produced`` counts the items made so far."""

    produced = 0

    def __init__(self, size: int | None = None) -> None:
        self.size = size

    def __iter__(self):
        for index in itertools.count() if self.size is None else range(self.size):
            Counting.produced += 1
            yield {"x": index, "name": f"item{index}"}


Point = namedtuple("Point", ["x", "y"])


def points(split: str) -> list:
    """A factory returning a plain list of named tuples."""
    return [Point(index, split) for index in range(3)]


def plain_values(root: str) -> list:
    return [torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])]


def triples(root: str) -> list:
    return [(1, 2, 3)]


def images(root: str) -> list:
    return [(Image.new("L", (4, 3), 255), 0)]


def a_dict(root: str) -> dict:
    return {"a": 1}


def a_number(root: str) -> int:
    return 7


class NoLength(torch.utils.data.Dataset):
    def __getitem__(self, index: int) -> int:
        return index


def no_length(root: str) -> NoLength:
    return NoLength()


def missing_files(root: str) -> list:
    raise FileNotFoundError(f"no dataset under {root}")


class StandInMNIST(torch.utils.data.Dataset):
    """torchvision's MNIST as far as the reader sees it: its signature, and (PIL image, int) items."""

    def __init__(self, root: str, train: bool = True, transform=None, target_transform=None, download: bool = False):
        self.digits = list(range(3)) if train else [7]

    def __len__(self) -> int:
        return len(self.digits)

    def __getitem__(self, index: int) -> tuple:
        return Image.new("L", (28, 28), 10 * self.digits[index]), self.digits[index]


NOT_A_DATASET = 42


def reader(**config) -> DatasetReader:
    return DatasetReader.from_params(Params({"type": "torch_dataset", **config}, "dataset_reader"))


def plain(instances) -> list[dict]:
    return [{k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in i.items()} for i in instances]


# ---- instances ---------------------------------------------------------------------------------------------------
def test_a_map_style_dataset_s_tuples_become_features_and_label_in_index_order():
    squares = reader(dataset=f"{HERE}.Squares", kwargs={"size": 4}, splits={"train": {}, "test": {"train": False}})
    instances = list(squares.read("train"))
    assert isinstance(squares, TorchDatasetReader)
    assert instances[0]["features"].dtype == torch.float32 and type(instances[0]["label"]) is int
    assert plain(instances) == [
        {"features": [0.0, 0.0], "label": 0},
        {"features": [1.0, 1.0], "label": 1},
        {"features": [2.0, 4.0], "label": 2},
        {"features": [3.0, 9.0], "label": 0},
    ]
    assert plain(squares.read("test"))[1] == {"features": [1001.0, 1002001.0], "label": 1001 % 3}


def test_splits_add_their_arguments_to_kwargs_and_data_path_argument_passes_the_path():
    split_reader = reader(dataset=f"{HERE}.Squares", kwargs={"size": 2, "offset": 5}, splits={"x": {"offset": 10}})
    assert [instance["label"] for instance in split_reader.read("x")] == [10 % 3, 11 % 3]
    by_path = reader(dataset=f"{HERE}.points", data_path_argument="split")
    assert list(by_path.read("dev")) == [{"x": 0, "y": "dev"}, {"x": 1, "y": "dev"}, {"x": 2, "y": "dev"}]


def test_dicts_keep_their_keys_other_items_become_the_first_field_and_fields_renames():
    counting = reader(dataset=f"{HERE}.Counting", kwargs={"size": 2}, splits={"all": {}})
    assert list(counting.read("all")) == [{"x": 0, "name": "item0"}, {"x": 1, "name": "item1"}]
    single = reader(dataset=f"{HERE}.plain_values", data_path_argument="root", fields=["image"])
    assert plain(single.read("a")) == [{"image": [1.0, 2.0]}, {"image": [3.0, 4.0]}]
    named = reader(dataset=f"{HERE}.triples", data_path_argument="root", fields=["a", "b", "c"])
    assert list(named.read("a")) == [{"a": 1, "b": 2, "c": 3}]


def test_an_endless_iterable_dataset_is_read_only_as_far_as_max_instances():
    Counting.produced = 0
    endless = reader(dataset=f"{HERE}.Counting", splits={"train": {}}, max_instances=5)
    assert [instance["x"] for instance in endless.read("train")] == [0, 1, 2, 3, 4]
    assert Counting.produced == 5


def test_transforms_apply_a_function_named_by_dotted_path_to_a_field():
    negated = reader(
        dataset=f"{HERE}.Squares", kwargs={"size": 2}, splits={"t": {}}, transforms={"features": "torch.neg"}
    )
    assert plain(negated.read("t"))[1] == {"features": [-1.0, -1.0], "label": 1}
    converted = reader(
        dataset=f"{HERE}.images",
        data_path_argument="root",
        transforms={"features": "regimen.data.image_folder.image_to_tensor"},
    )
    (instance,) = converted.read("x")
    assert instance["features"].shape == (1, 3, 4) and torch.all(instance["features"] == 1.0)


def test_the_documented_torchvision_mnist_form():
    mnist = reader(
        dataset=f"{HERE}.StandInMNIST",  # in the README: torchvision.datasets.MNIST
        kwargs={"root": "data/mnist", "download": True},
        splits={"train": {"train": True}, "test": {"train": False}},
        transforms={"features": "regimen.data.image_folder.image_to_tensor"},
    )
    train, test = list(mnist.read("train")), list(mnist.read("test"))
    assert [instance["label"] for instance in train] == [0, 1, 2] and test[0]["label"] == 7
    assert train[1]["features"].shape == (1, 28, 28) and torch.all(train[1]["features"] == 10 / 255)


# ---- through the data loader ------------------------------------------------------------------------------------
def loader(config: dict, **reader_config) -> DataLoader:
    built = reader(**{"dataset": f"{HERE}.Squares", "kwargs": {"size": 23}, "splits": {"train": {}}, **reader_config})
    return DataLoader.from_params(Params(config, "data_loader"), reader=built, data_path="train", seed=4)


def ids(batches) -> list[list[int]]:
    return [batch["features"][:, 0].int().tolist() for batch in batches]


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_worker_processes_shuffle_into_the_same_batches_as_the_main_process(start_method):
    config = {"batch_size": 4, "shuffle": True}
    in_process = list(loader(config).iter_epoch(1))
    with_workers = list(loader({**config, "num_workers": 2, "start_method": start_method}).iter_epoch(1))
    assert ids(with_workers) == ids(in_process) != ids(loader(config).iter_epoch(2))
    for one, other in zip(in_process, with_workers):
        assert torch.equal(one["features"], other["features"]) and torch.equal(one["label"], other["label"])


def test_resuming_mid_epoch_and_sharding_see_the_epoch_s_instances():
    config = {"batch_size": 4, "shuffle": True}
    whole = ids(loader(config).iter_epoch(3))
    assert ids(loader(config).iter_epoch(3, start_batch=2)) == whole[2:]
    shards = []
    for rank in range(2):
        sharded = loader(config)
        sharded.shard(rank, 2)
        shards.append(ids(sharded.iter_epoch(3)))
    assert len(shards[0]) == len(shards[1]) == 3
    seen = sorted(value for shard in shards for batch in shard for value in batch)
    assert seen == list(range(23))


# ---- mistakes in the config, found when it is read ---------------------------------------------------------------
CONFIG_ERRORS = {
    "no such module": (
        {"dataset": "no_such_package.Data"},
        'dataset_reader.dataset: cannot import "no_such_package.Data": there is no module "no_such_package"',
    ),
    "no such attribute": (
        {"dataset": f"{HERE}.Sqares"},
        f'dataset_reader.dataset: "{HERE}" has no attribute "Sqares" (did you mean "{HERE}.Squares"?)',
    ),
    "not dotted": (
        {"dataset": "MNIST"},
        "dataset_reader.dataset: expected a dotted path to a Dataset class or a function returning one, "
        '"package.module.Name", got "MNIST"',
    ),
    "not a dataset class": (
        {"dataset": "datetime.date"},
        'dataset_reader.dataset: "datetime.date" is a class, but not a torch.utils.data.Dataset',
    ),
    "a mapping class": (
        {"dataset": "collections.OrderedDict"},
        'dataset_reader.dataset: "collections.OrderedDict" is a mapping class, not a torch.utils.data.Dataset',
    ),
    "not callable": (
        {"dataset": f"{HERE}.NOT_A_DATASET"},
        f'dataset_reader.dataset: "{HERE}.NOT_A_DATASET" is an int, not a Dataset class or a function returning a',
    ),
    "unknown argument": (
        {"kwargs": {"size": 3, "sise": 4}},
        f'dataset_reader.kwargs.sise: {HERE}.Squares takes no such argument: unknown argument "sise"; did you mean '
        '"size"? valid arguments: size, offset, train',
    ),
    "unknown split argument": (
        {"splits": {"train": {"trian": True}}},
        "dataset_reader.splits.train.trian: ",
    ),
    "missing argument": (
        {"kwargs": {}},
        f'dataset_reader.kwargs: missing: {HERE}.Squares needs the argument "size"; give it in kwargs',
    ),
    "missing in one split": (
        {"kwargs": {}, "splits": {"train": {"size": 2}, "test": {}}},
        'needs the argument "size"; give it in kwargs or splits.test',
    ),
    "unknown data path argument": (
        {"splits": None, "data_path_argument": "root"},
        f'dataset_reader.data_path_argument: {HERE}.Squares takes no such argument: unknown argument "root"',
    ),
    "data path argument in kwargs too": (
        {"splits": None, "data_path_argument": "offset", "kwargs": {"size": 1, "offset": 2}},
        'dataset_reader.kwargs.offset: gives "offset", which the data path is passed as (data_path_argument)',
    ),
    "both ways of choosing the split": (
        {"data_path_argument": "offset"},
        "dataset_reader.data_path_argument: cannot be set together with splits",
    ),
    "neither way": (
        {"splits": None},
        "dataset_reader.splits: missing: say what a data path means, with splits (data path -> arguments",
    ),
    "empty splits": ({"splits": {}}, "dataset_reader.splits: is empty"),
    "no fields": ({"fields": []}, "dataset_reader.fields: must name at least one field"),
    "repeated fields": ({"fields": ["a", "a"]}, "dataset_reader.fields: names a twice"),
    "unimportable transform": (
        {"transforms": {"features": "torch.negg"}},
        'dataset_reader.transforms.features: "torch" has no attribute "negg" (did you mean "torch.neg"?)',
    ),
    "transform not callable": (
        {"transforms": {"features": "math.pi"}},
        'dataset_reader.transforms.features: "math.pi" is a float, not a function to call on the value',
    ),
    "max_instances": ({"max_instances": 0}, "dataset_reader.max_instances: must be a positive int or null, got 0"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_ERRORS))
def test_a_config_mistake_is_a_configuration_error_at_its_key(case):
    changes, message = CONFIG_ERRORS[case]
    config = {"dataset": f"{HERE}.Squares", "kwargs": {"size": 3}, "splits": {"train": {}}, **changes}
    with pytest.raises(ConfigurationError) as info:
        reader(**{key: value for key, value in config.items() if value is not None})
    assert message in str(info.value)


def test_several_mistakes_are_reported_together():
    with pytest.raises(ConfigurationError) as info:
        reader(dataset=f"{HERE}.Squares", kwargs={"sise": 3}, fields=[], transforms={"x": "math.pi"})
    message = str(info.value)
    for key in ("kwargs.sise", "kwargs:", "splits:", "fields:", "transforms.x:"):
        assert f"dataset_reader.{key}" in message, key


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed")
def test_a_torchvision_dataset_without_torchvision_says_how_to_install_it():
    with pytest.raises(
        ConfigurationError, match=r"there is no module \"torchvision\" \(pip install 'regimen\[torchvision\]'\)"
    ):
        reader(dataset="torchvision.datasets.MNIST", splits={"train": {"train": True}})


def test_an_import_error_inside_the_module_is_shown_as_it_is(tmp_path, monkeypatch):
    (tmp_path / "broken_datasets.py").write_text("import no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigurationError) as info:
        reader(dataset="broken_datasets.Data", splits={"train": {}})
    assert str(info.value) == (
        "dataset_reader.dataset: importing \"broken_datasets.Data\" failed: No module named 'no_such_dependency'"
    )


# ---- mistakes found when the data is read -------------------------------------------------------------------------
def test_an_unknown_split_is_found_by_check_data_path_before_reading():
    squares = reader(dataset=f"{HERE}.Squares", kwargs={"size": 3}, splits={"train": {}, "test": {"train": False}})
    assert squares.check_data_path("train") is None
    error = squares.check_data_path("trian")
    assert str(error) == (
        'unknown split "trian"; did you mean "train"? valid splits: train, test (the splits of the "torch_dataset" '
        f"reader for {HERE}.Squares)"
    )
    with pytest.raises(ConfigurationError, match='unknown split "trian"'):
        next(squares.read("trian"))
    assert reader(dataset=f"{HERE}.points", data_path_argument="split").check_data_path("anything") is None


READ_ERRORS = {
    "the dataset fails": (
        f"{HERE}.missing_files",
        f'{HERE}.missing_files(root="somewhere") failed: FileNotFoundError: no dataset under somewhere',
    ),
    "a dict": (f"{HERE}.a_dict", f'{HERE}.a_dict(root="somewhere") gave a dict, not a dataset'),
    "a number": (f"{HERE}.a_number", "gave an int, which is not a dataset: it has neither __getitem__ with __len__"),
    "no __len__": (f"{HERE}.no_length", "is a map-style dataset without __len__, so there is no telling where"),
    "too many values": (
        f"{HERE}.triples",
        f'item 0 of {HERE}.triples(root="somewhere") is a tuple of 3 values, but fields names 2 (features, '
        "label); set the reader's fields to one name per value",
    ),
    "a PIL image": (
        f"{HERE}.images",
        'the field "features" is a PIL image, which cannot be batched; convert it to a tensor with the reader\'s '
        'transforms, e.g. "transforms": {"features": "regimen.data.image_folder.image_to_tensor"}',
    ),
}


@pytest.mark.parametrize("case", sorted(READ_ERRORS))
def test_a_dataset_that_cannot_be_read_is_a_value_error_naming_the_call(case):
    factory, message = READ_ERRORS[case]
    built = reader(dataset=factory, data_path_argument="root")
    with pytest.raises(ValueError) as info:
        list(built.read("somewhere"))
    assert message in str(info.value)


def test_a_transform_of_a_field_the_items_lack_is_named():
    built = reader(dataset=f"{HERE}.Squares", kwargs={"size": 1}, splits={"t": {}}, transforms={"image": "torch.neg"})
    with pytest.raises(ValueError) as info:
        list(built.read("t"))
    assert str(info.value) == (
        f'item 0 of {HERE}.Squares(size=1): transforms names the field "image", which it does not have; its '
        "fields: features, label"
    )

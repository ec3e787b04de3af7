"""The ``torch_dataset`` reader: the items of a ``torch.utils.data.Dataset`` (torchvision's, a user's) as instances."""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch.utils.data

from regimen.data.dataset_reader import DatasetReader, Instance, max_instances_error
from regimen.data.field_transforms import import_dotted, kind_of, resolve_transforms, transformed
from regimen.registry import ConfigurationError
from regimen.registry.errors import unknown_name_message


@DatasetReader.register("torch_dataset")
class TorchDatasetReader(DatasetReader):
    """Reads the items of a ``torch.utils.data.Dataset`` as instances: a torchvision dataset, or a Dataset class
    (or a function returning one) of your own, named by its dotted path.

    Registered as a `DatasetReader` with name "torch_dataset".

    The data path chooses what to build, in one of two ways:

    - ``splits`` maps each data path to the arguments that select it, added to ``kwargs``:
      ``"splits": {"train": {"train": true}, "test": {"train": false}}`` with ``train_data_path: "train"``, for
      datasets that take a flag (torchvision's MNIST, CIFAR10). A data path that is not in ``splits`` is an
      error, before anything is read.
    - ``data_path_argument`` names the argument the data path is passed as: ``"split"`` for datasets that take a
      split's name (torchvision's SVHN, Food101: ``train_data_path: "train"``), ``"root"`` for a folder per
      split (``train_data_path: "data/shapes/train"`` with ``regimen.data.image_folder.ImageFolder``).

    One of the two must be set. The dataset is built (and downloads, if it does) when the data is read, not when
    the config is checked; the config check imports it and compares ``kwargs`` and ``splits`` with its signature.

    Items become instances with named fields: a dict (or a named tuple) keeps its keys, a tuple or list is
    named by ``fields`` in order (``(image, target)`` becomes ``{"features": image, "label": target}``, what
    ``mlp_classifier`` and ``cnn_classifier`` take), and any other item becomes the one field ``fields[0]``.
    Values are kept as they are (tensors stay tensors, numbers numbers), except the fields ``transforms`` names.
    A PIL image cannot be batched: convert it, with ``transforms`` (``regimen.data.image_folder.image_to_tensor``
    needs no torchvision) or the dataset's own ``transform`` argument. A transform that takes arguments (a
    ``Normalize(mean, std)``) cannot be written in JSON: name a function of your own, or a factory that builds
    the dataset with it (``"dataset": "mypkg.make_mnist"``).

    Map-style datasets (``__len__`` and ``__getitem__``) are read at indices 0, 1, ... and iterable ones
    (``IterableDataset``) in their own order; an endless iterable dataset needs ``max_instances``. The data
    loader keeps the instances (as it keeps those of every reader) and shuffles, batches, shards and resumes
    them itself, so a dataset's own random augmentation is drawn once, when it is read; for an exact resume
    the dataset must give the same items every time it is read. In a distributed run every worker builds the
    dataset: download it first (``regimen train ... --dry-run`` reads it in one process).

    Config keys:
        dataset: str
            The dotted path of the Dataset class, or of a function returning a dataset:
            ``"torchvision.datasets.MNIST"``, ``"mypkg.data.Shapes"``.
        kwargs: dict | null = null
            Keyword arguments for every split: ``{"root": "data/mnist", "download": true}``.
        splits: dict[str, dict] | null = null
            Data path -> the keyword arguments that select it, added to ``kwargs``.
        data_path_argument: str | null = null
            The keyword argument the data path is passed as (``"split"``, ``"root"``); not with ``splits``.
        fields: list[str] = ["features", "label"]
            The field names of a tuple item's values, in order.
        transforms: dict[str, str] | null = null
            Field -> the dotted path of a function applied to its value:
            ``{"features": "torchvision.transforms.functional.to_tensor"}``.
        max_instances: int | null = null
            Read at most this many items; null reads them all.
    """

    def __init__(
        self,
        dataset: str,
        kwargs: dict[str, Any] | None = None,
        splits: dict[str, dict[str, Any]] | None = None,
        data_path_argument: str | None = None,
        fields: tuple[str, ...] = ("features", "label"),
        transforms: dict[str, str] | None = None,
        max_instances: int | None = None,
    ) -> None:
        errors: list[ConfigurationError | None] = [max_instances_error(max_instances)]
        factory = None
        try:
            factory = _dataset_factory(dataset)
        except ConfigurationError as error:
            errors.append(error)
        errors += _split_errors(splits, data_path_argument)
        if not fields:
            errors.append(ConfigurationError("must name at least one field", key="fields"))
        repeated = sorted({name for name in fields if fields.count(name) > 1})
        if repeated:
            errors.append(ConfigurationError(f"names {', '.join(repeated)} twice", key="fields"))
        functions, transform_errors = resolve_transforms(transforms)
        errors += transform_errors
        if factory is not None:
            errors += _argument_errors(dataset, factory, kwargs or {}, splits, data_path_argument)
        if any(errors):
            raise ConfigurationError.combine([error for error in errors if error is not None])
        super().__init__(max_instances=max_instances)
        self.dataset = dataset
        self.kwargs = dict(kwargs or {})
        self.splits = splits
        self.data_path_argument = data_path_argument
        self.fields = tuple(fields)
        self.transforms = functions
        self._factory = factory

    def check_data_path(self, path: str) -> ConfigurationError | None:
        """A data path must be one of ``splits`` when they are given; with ``data_path_argument`` it is the
        dataset's to judge when it is built."""
        if self.splits is None or path in self.splits:
            return None
        message = unknown_name_message("split", path, list(self.splits))
        return ConfigurationError(f"{message} (the splits of the {self.reader_name()} for {self.dataset})")

    def _read(self, path: str) -> Iterator[Instance]:
        error = self.check_data_path(path)
        if error is not None:
            raise error
        arguments = self._arguments(path)
        call = _describe_call(self.dataset, arguments)
        try:
            dataset = self._factory(**arguments)
        except (OSError, RuntimeError, ValueError) as failure:  # missing files, torchvision's "Dataset not found"
            raise ValueError(f"{call} failed: {type(failure).__name__}: {failure}") from failure
        items = iter(_items(dataset, call))
        for index in itertools.count():
            try:
                item = next(items)
            except StopIteration:
                return
            except OSError as failure:  # a file that cannot be read (a truncated image, say)
                raise ValueError(f"item {index} of {call}: {type(failure).__name__}: {failure}") from failure
            yield transformed(self._instance(item, index, call), self.transforms, f"item {index} of {call}")

    def _arguments(self, path: str) -> dict[str, Any]:
        if self.splits is not None:
            return {**self.kwargs, **self.splits[path]}
        return {**self.kwargs, str(self.data_path_argument): path}

    def _instance(self, item: Any, index: int, call: str) -> Instance:
        if isinstance(item, Mapping):
            return dict(item)
        if isinstance(item, tuple) and hasattr(item, "_fields"):  # a named tuple: its own names
            return dict(zip(item._fields, item))
        if isinstance(item, (tuple, list)):
            if len(item) != len(self.fields):
                raise ValueError(
                    f"item {index} of {call} is a {type(item).__name__} of {len(item)} values, but fields names "
                    f"{len(self.fields)} ({', '.join(self.fields)}); set the reader's fields to one name per value"
                )
            return dict(zip(self.fields, item))
        return {self.fields[0]: item}


def _dataset_factory(dataset: str) -> Any:
    """The class or function ``dataset`` names, checked as far as it can be without calling it."""
    found = import_dotted(dataset, "dataset", "a Dataset class or a function returning one")
    if isinstance(found, type):
        if issubclass(found, Mapping):
            raise ConfigurationError(
                f'"{dataset}" is a mapping class, not a torch.utils.data.Dataset; name a Dataset class or a function '
                "returning a dataset",
                key="dataset",
            )
        if not (
            issubclass(found, torch.utils.data.Dataset) or hasattr(found, "__getitem__") or hasattr(found, "__iter__")
        ):
            raise ConfigurationError(
                f'"{dataset}" is a class, but not a torch.utils.data.Dataset (it has neither __getitem__ with '
                "__len__ nor __iter__); name a Dataset class or a function returning a dataset",
                key="dataset",
            )
    elif not callable(found):
        raise ConfigurationError(
            f'"{dataset}" is {kind_of(found)}, not a Dataset class or a function returning a dataset',
            key="dataset",
        )
    return found


def _split_errors(splits: dict[str, dict[str, Any]] | None, data_path_argument: str | None) -> list[ConfigurationError]:
    if splits is not None and data_path_argument is not None:
        return [
            ConfigurationError(
                "cannot be set together with splits: the data path either names a split or is passed as an argument",
                key="data_path_argument",
            )
        ]
    if splits is None and data_path_argument is None:
        return [
            ConfigurationError(
                'missing: say what a data path means, with splits (data path -> arguments: {"train": {"train": '
                'true}}) or data_path_argument (the argument the data path is passed as: "split", "root")',
                key="splits",
            )
        ]
    if splits is not None and not splits:
        message = "is empty: give each data path's arguments, or use data_path_argument"
        return [ConfigurationError(message, key="splits")]
    return []


def _argument_errors(
    dataset: str,
    factory: Any,
    kwargs: dict[str, Any],
    splits: dict[str, dict[str, Any]] | None,
    data_path_argument: str | None,
) -> list[ConfigurationError]:
    """The arguments the dataset's signature does not take, and those it needs that no split gives."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin or extension type without a signature: it will tell when called
        return []
    parameters = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    named = [name for name, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    required = [name for name in named if parameters[name].default is inspect.Parameter.empty]
    errors = []

    def unknown(name: str, key: str) -> None:
        if takes_any or name in named:
            return
        message = unknown_name_message("argument", name, named)
        errors.append(ConfigurationError(f"{dataset} takes no such argument: {message}", key=key))

    for name in kwargs:
        unknown(name, f"kwargs.{name}")
    if data_path_argument is not None:
        unknown(data_path_argument, "data_path_argument")
        if data_path_argument in kwargs:
            errors.append(
                ConfigurationError(
                    f'gives "{data_path_argument}", which the data path is passed as (data_path_argument)',
                    key=f"kwargs.{data_path_argument}",
                )
            )
    selections = {"": {data_path_argument: None}} if splits is None else splits
    missing: dict[str, list[str]] = {}
    for split, extra in selections.items():
        if split:
            for name in extra:
                unknown(name, f"splits.{split}.{name}")
        for name in required:
            if name not in kwargs and name not in extra:
                missing.setdefault(name, []).append(split)
    for name, lacking in missing.items():
        where = "kwargs" if splits is None or len(lacking) == len(splits) else f"kwargs or splits.{lacking[0]}"
        errors.append(
            ConfigurationError(f'missing: {dataset} needs the argument "{name}"; give it in {where}', key="kwargs")
        )
    return errors


def _items(dataset: Any, call: str) -> Iterable[Any]:
    """The items of a dataset in order: by index for a map-style one, by iterating an iterable one."""
    if isinstance(dataset, torch.utils.data.IterableDataset):
        return dataset
    if isinstance(dataset, (Mapping, str, bytes)):
        raise ValueError(
            f"{call} gave {kind_of(dataset)}, not a dataset (a torch.utils.data.Dataset or a sequence of items)"
        )
    if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
        return (dataset[index] for index in range(len(dataset)))
    if hasattr(dataset, "__getitem__"):
        raise ValueError(
            f"{call} is a map-style dataset without __len__, so there is no telling where its items end; give "
            "its class a __len__, or make it an IterableDataset"
        )
    if hasattr(dataset, "__iter__"):
        return dataset
    raise ValueError(
        f"{call} gave {kind_of(dataset)}, which is not a dataset: it has neither __getitem__ with __len__ nor __iter__"
    )


def _describe_call(dataset: str, arguments: dict[str, Any]) -> str:
    """``torchvision.datasets.MNIST(root="data", train=true)``: the call as the config wrote its values."""
    written = ", ".join(f"{name}={json.dumps(value, default=repr)}" for name, value in arguments.items())
    return f"{dataset}({written})"

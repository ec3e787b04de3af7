"""The ``huggingface`` reader: a split of a HuggingFace dataset (``datasets.load_dataset``) as instances."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Iterator
from typing import Any

import torch

from regimen.data.dataset_reader import DatasetReader, Instance, max_instances_error
from regimen.data.field_transforms import resolve_transforms, transformed
from regimen.registry import ConfigurationError
from regimen.registry.errors import missing_names, unknown_name_message

_INSTALL = "pip install 'regimen[datasets]'"
_ROWS_PER_BATCH = 512  # rows converted from Arrow at a time
# load_dataset's arguments that the reader sets itself, so that kwargs may not.
_OWN_ARGUMENTS = ("path", "name", "data_dir", "data_files", "split", "cache_dir", "revision", "streaming")
# "train", "train[:80%]", "test[10:20]", "test[:33%](pct1_dropremainder)"
_SPLIT_PART = re.compile(r"^\s*([\w.-]+)\s*(\[[^\]]*\])?\s*(\(\w+\))?\s*$")


@DatasetReader.register("huggingface")
class HuggingFaceReader(DatasetReader):
    """Reads one split of a HuggingFace dataset, from the Hub or from local files, with ``datasets.load_dataset``:
    each row becomes an instance.

    Registered as a `DatasetReader` with name "huggingface".

    The data path is the split, in the ``datasets`` library's own syntax: ``train_data_path: "train"``,
    ``validation_data_path: "train[80%:]"`` (a slice), ``"train+validation"``. ``path`` is ``load_dataset``'s
    first argument: a dataset on the Hub (``"mnist"``, ``"user/name"``) or a file format (``"csv"``, ``"json"``,
    ``"parquet"``, ``"imagefolder"``) whose files ``data_files`` lists: one file or a list for a single split
    ``"train"``, or split -> files (``{"train": "data/train.csv", "test": "data/test.csv"}``). An unknown split is
    a configuration error listing the splits there are (before anything is read when ``data_files`` names them).
    Datasets are cached by ``datasets`` in ``cache_dir`` (default ``$HF_HOME/datasets``, ``~/.cache/huggingface``);
    set ``HF_DATASETS_OFFLINE=1`` to use only what is cached.

    ``fields`` says which columns become which fields; the other columns are not read at all. A list keeps those
    columns under their own names; an object maps each field to its column, or to a list of number columns that
    are stacked, in that order, into one float32 tensor (``{"features": ["x0", "x1"], "label": "y"}``, the
    instances the ``csv`` reader makes of such a file). Values are converted by the column's type: a list (or
    array) of floats becomes a float32 tensor, of ints an int64 tensor (ragged lists stay lists, which collate
    pads); numbers, strings and class labels stay as they are. An ``Image`` column gives PIL images, which
    cannot be batched: convert them with ``transforms`` (``{"image": "regimen.data.image_folder.image_to_tensor"}``).

    The instances are kept and shuffled, batched, sharded and resumed by the data loader, as every reader's are;
    a dataset's row order is fixed, so resuming is exact. Needs the ``datasets`` package
    (``pip install 'regimen[datasets]'``).

    Config keys:
        path: str
            The dataset: a Hub name (``"mnist"``) or a file format (``"csv"``, ``"json"``, ``"parquet"``).
        name: str | null = null
            The dataset's configuration name, for datasets that have several.
        data_files: str | list[str] | dict[str, str | list[str]] | null = null
            The files to read: one, a list (the split "train"), or split -> file(s).
        data_dir: str | null = null
            The folder of the dataset's files.
        revision: str | null = null
            The Hub revision (branch, tag or commit) to load.
        cache_dir: str | null = null
            Where ``datasets`` caches the prepared data; null uses its default.
        streaming: bool = false
            Stream the rows instead of downloading and preparing the whole dataset first.
        kwargs: dict | null = null
            Further keyword arguments for ``load_dataset`` (a CSV's ``"delimiter"``, say).
        fields: list[str] | dict[str, str | list[str]] | null = null
            The columns to read: a list of names, or field -> column (or a list of columns, stacked); null
            reads every column under its own name.
        transforms: dict[str, str] | null = null
            Field -> the dotted path of a function applied to its value.
        max_instances: int | null = null
            Read at most this many rows; null reads them all.
    """

    def __init__(
        self,
        path: str,
        name: str | None = None,
        data_files: str | list[str] | dict[str, str | list[str]] | None = None,
        data_dir: str | None = None,
        revision: str | None = None,
        cache_dir: str | None = None,
        streaming: bool = False,
        kwargs: dict[str, Any] | None = None,
        fields: list[str] | dict[str, str | list[str]] | None = None,
        transforms: dict[str, str] | None = None,
        max_instances: int | None = None,
    ) -> None:
        errors: list[ConfigurationError | None] = [max_instances_error(max_instances)]
        if not _datasets_installed():
            errors.append(
                ConfigurationError(f'the "huggingface" reader needs the datasets package, not installed: {_INSTALL}')
            )
        errors += _fields_errors(fields)
        for argument in kwargs or {}:
            if argument in _OWN_ARGUMENTS:
                where = "the data path" if argument == "split" else f"the reader's own key {argument}"
                errors.append(ConfigurationError(f"is given by {where}, not in kwargs", key=f"kwargs.{argument}"))
        functions, transform_errors = resolve_transforms(transforms)
        errors += transform_errors
        if any(errors):
            raise ConfigurationError.combine([error for error in errors if error is not None])
        super().__init__(max_instances=max_instances)
        self.path = path
        self.name = name
        self.data_files = data_files
        self.data_dir = data_dir
        self.revision = revision
        self.cache_dir = cache_dir
        self.streaming = streaming
        self.kwargs = dict(kwargs or {})
        self.fields = fields
        self.transforms = functions

    def check_data_path(self, path: str) -> ConfigurationError | None:
        """The split must be written as ``datasets`` reads it, and be one of ``data_files`` when that names the
        splits; other split names are known only once the dataset is loaded."""
        names = _split_names(path)
        if names is None:
            return ConfigurationError(
                f'"{path}" is not a split of a HuggingFace dataset: write a split\'s name, optionally sliced and '
                'joined with +: "train", "train[:80%]", "train[80%:]+validation"'
            )
        if isinstance(self.data_files, dict):
            for name in names:
                if name not in self.data_files:
                    return self._unknown_split(name, list(self.data_files))
        return None

    def _read(self, path: str) -> Iterator[Instance]:
        error = self.check_data_path(path)
        if error is not None:
            raise error
        rows = self._load(path)
        plan = self._plan(rows, path)
        rows = rows.select_columns(sorted({column for columns, _ in plan.values() for column in columns}))
        index = 0
        for batch in rows.iter(batch_size=_ROWS_PER_BATCH):
            size = len(next(iter(batch.values()))) if batch else 0
            for row in range(size):
                instance = {field: convert(batch, row, index) for field, (_, convert) in plan.items()}
                yield transformed(instance, self.transforms, f"row {index} of {self._describe(path)}")
                index += 1

    # ---- loading ------------------------------------------------------------------------------------------------
    def _load(self, split: str) -> Any:
        datasets = _datasets_module()
        options = {"data_dir": self.data_dir, "cache_dir": self.cache_dir, **self.kwargs}
        try:
            return datasets.load_dataset(
                self.path,
                self.name,
                data_files=self.data_files,
                revision=self.revision,
                split=split,
                streaming=self.streaming,
                **options,
            )
        except ValueError as error:
            text = str(error)
            unknown = re.match(r'(?:Unknown split "|Bad split: )([^".]+)', text)
            if unknown is not None:
                known = self._known_splits(datasets, options)
                if known is not None:
                    raise self._unknown_split(unknown.group(1), known) from None
            raise ValueError(f'{self._describe(split)}: cannot load the split "{split}": {text}') from error
        except TypeError as error:  # a builder's config rejecting an argument ("unexpected keyword argument")
            raise ConfigurationError(
                f"{self._describe(split)}: load_dataset rejected the reader's arguments: {error} (check its kwargs)"
            ) from error
        except OSError as error:  # files not found, no such dataset on the Hub, no network (or offline mode)
            raise ConfigurationError(f"{self._describe(split)}: cannot load it: {error}") from error

    def _known_splits(self, datasets: Any, options: dict[str, Any]) -> list[str] | None:
        try:
            names = datasets.get_dataset_split_names(
                self.path, self.name, data_files=self.data_files, revision=self.revision, **options
            )
            return list(names)
        except Exception:  # the split names are only a better message; the original error is shown otherwise
            return None

    def _unknown_split(self, name: str, known: list[str]) -> ConfigurationError:
        message = unknown_name_message("split", name, known)
        return ConfigurationError(f'{message} (of the HuggingFace dataset "{self.path}")')

    def _describe(self, split: str) -> str:
        """``the HuggingFace dataset "csv" (data_files train.csv), split "train"``, for messages."""
        details = [f"name {self.name}"] if self.name else []
        if self.data_dir is not None:
            details.append(f"data_dir {self.data_dir}")
        if self.data_files is not None:
            details.append(f"data_files {_files_text(self.data_files)}")
        detail = f" ({', '.join(details)})" if details else ""
        return f'the HuggingFace dataset "{self.path}"{detail}, split "{split}"'

    # ---- rows to instances -------------------------------------------------------------------------------------
    def _plan(self, rows: Any, split: str) -> dict[str, tuple[list[str], Callable[[dict, int, int], Any]]]:
        """Field -> (its columns, how a row's value is made from them), from the columns' types."""
        features = rows.features or {}
        columns = list(rows.column_names or features)
        if self.fields is None:
            if not columns:
                raise ConfigurationError(
                    f"{self._describe(split)} does not say what its columns are before it is read (a streamed "
                    "dataset without features): name the columns to read in the reader's fields"
                )
            wanted: dict[str, str | list[str]] = {column: column for column in columns}
        elif isinstance(self.fields, list):
            wanted = {column: column for column in self.fields}
        else:
            wanted = dict(self.fields)
        named = [column for value in wanted.values() for column in ([value] if isinstance(value, str) else value)]
        missing = [column for column in dict.fromkeys(named) if columns and column not in columns]
        if missing:
            described = missing_names(missing, columns)
            raise ConfigurationError(
                f"the reader's fields name the column(s) {described}, which {self._describe(split)} does "
                f"not have; its columns: {', '.join(columns)}"
            )
        plan = {}
        for field, value in wanted.items():
            if isinstance(value, str):
                plan[field] = ([value], _column_converter(value, features.get(value)))
            else:
                for column in value:
                    kind = _leaf_kind(features.get(column)) if column in features else "float"
                    if kind not in ("float", "int", "bool") or _is_list(features.get(column)):
                        raise ConfigurationError(
                            f'the reader\'s fields stack the column "{column}" into the field "{field}", but it is '
                            f"not a number column ({features.get(column)}); only columns of numbers are stacked"
                        )
                plan[field] = (list(value), _stacker(field, list(value), self._describe(split)))
        return plan


def _column_converter(column: str, feature: Any) -> Callable[[dict, int, int], Any]:
    """How one column's value becomes a field's: numeric lists and arrays as tensors, anything else as it is."""
    kind = _leaf_kind(feature)
    if not _is_list(feature) or kind not in _TENSOR_DTYPES:
        return lambda batch, row, index: batch[column][row]
    dtype = _TENSOR_DTYPES[kind]

    def convert(batch: dict, row: int, index: int) -> Any:
        value = batch[column][row]
        if value is None:
            return None
        try:
            return torch.tensor(value, dtype=dtype)
        except (ValueError, TypeError):  # ragged nested lists, or missing values inside: collate pads lists
            return value

    return convert


def _stacker(field: str, columns: list[str], where: str) -> Callable[[dict, int, int], Any]:
    def stack(batch: dict, row: int, index: int) -> torch.Tensor:
        values = [batch[column][row] for column in columns]
        if None in values:
            column = columns[values.index(None)]
            raise ValueError(f'row {index} of {where}: column "{column}" has no value (stacked into "{field}")')
        return torch.tensor(values, dtype=torch.float32)

    return stack


_TENSOR_DTYPES = {"float": torch.float32, "int": torch.int64, "bool": torch.bool}


def _leaf_kind(feature: Any) -> str | None:
    """``"float"``, ``"int"``, ``"bool"`` or ``"str"`` for a column type (the type of a list's items), else None."""
    dtype = getattr(feature, "dtype", None)
    if hasattr(feature, "feature"):  # List, LargeList, Sequence
        return _leaf_kind(feature.feature)
    if isinstance(feature, list) and len(feature) == 1:  # the old spelling of a list: [Value("float32")]
        return _leaf_kind(feature[0])
    if type(feature).__name__ == "ClassLabel":
        return "int"
    if not isinstance(dtype, str):
        return None
    if dtype.startswith(("float", "double", "half")):
        return "float"
    if dtype.startswith(("int", "uint")):
        return "int"
    if dtype == "bool":
        return "bool"
    return "str" if "string" in dtype else None


def _is_list(feature: Any) -> bool:
    """Whether a column holds lists or arrays (rather than one value per row)."""
    return hasattr(feature, "feature") or isinstance(feature, list) or type(feature).__name__.startswith("Array")


def _split_names(split: str) -> list[str] | None:
    """The split names in a split expression (``"train[:80%]+test"`` -> train, test); None when it is not one."""
    names = []
    for part in split.split("+"):
        match = _SPLIT_PART.match(part)
        if match is None:
            return None
        names.append(match.group(1))
    return names


def _fields_errors(fields: list[str] | dict[str, str | list[str]] | None) -> list[ConfigurationError]:
    if fields is None:
        return []
    if not fields:
        return [ConfigurationError("must name at least one column, or be null to read them all", key="fields")]
    if isinstance(fields, list):
        repeated = sorted({name for name in fields if fields.count(name) > 1})
        return [ConfigurationError(f"names {', '.join(repeated)} twice", key="fields")] if repeated else []
    errors = []
    for field, columns in fields.items():
        if isinstance(columns, list):
            if not columns:
                errors.append(ConfigurationError("must name at least one column", key=f"fields.{field}"))
            repeated = sorted({name for name in columns if columns.count(name) > 1})
            if repeated:
                errors.append(ConfigurationError(f"names {', '.join(repeated)} twice", key=f"fields.{field}"))
    return errors


def _files_text(data_files: str | list[str] | dict[str, str | list[str]]) -> str:
    if isinstance(data_files, str):
        return data_files
    if isinstance(data_files, list):
        return ", ".join(data_files)
    return ", ".join(f"{split}: {_files_text(files)}" for split, files in data_files.items())


def _datasets_installed() -> bool:
    try:
        return importlib.util.find_spec("datasets") is not None
    except (ImportError, ValueError):  # a module stood in for it without a spec
        return False


def _datasets_module() -> Any:
    """The ``datasets`` package, imported when data is first read: it takes a second or two to import."""
    try:
        import datasets
    except ImportError:
        raise ConfigurationError(
            f'the "huggingface" reader needs the datasets package, not installed: {_INSTALL}'
        ) from None
    return datasets

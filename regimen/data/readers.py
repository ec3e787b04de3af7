"""The built-in dataset readers: ``csv`` (numeric features and a label per row) and ``jsonl`` (one object per line)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any, Literal

import torch

from regimen.data.dataset_reader import DatasetReader, Instance, max_instances_error, open_data_file
from regimen.registry import ConfigurationError
from regimen.registry.errors import missing_names

_LABEL_TYPES = {"int": "an int", "float": "a number", "str": "a string"}


@DatasetReader.register("csv")
class CsvReader(DatasetReader):
    """Reads a delimited text file with a header row: each row becomes
    ``{"features": float32 tensor, "label": int}``.

    Registered as a `DatasetReader` with name "csv" (the default when a reader config has no ``type``).

    The feature columns are read in the order they are listed (or in file order), each parsed as a float, into
    one float32 tensor per row: made once when the data is read, so batching only stacks them. There is
    no ``"label"`` key when ``label_column`` is null or the file has no such column (a test file without labels).
    Blank lines are skipped. A column the config names that the header lacks is a ConfigurationError naming the
    file and the columns it has; a row with the wrong number of fields or a value that does not parse is a
    ValueError naming ``file:line`` and the column.

    The data path is a local file or a URL (``http(s)://``, ``s3://``, ``gs://``, ``hf://``): a URL is downloaded
    once into the cache ``$REGIMEN_CACHE_ROOT`` (default ``~/.cache/regimen``) and read from there afterwards, also
    when the server can no longer be reached. A local file that does not exist is reported, naming the config key,
    before anything is trained.

    Config keys:
        label_column: str | null = "label"
            The column holding the label; null reads features only.
        feature_columns: list[str] | null = null
            The columns to read as features, in this order; null takes every column except the label.
        delimiter: str = ","
            The one-character field separator (``"\\t"`` for TSV).
        label_type: "int" | "float" | "str" = "int"
            How the label is parsed: a class index, a regression target or a string.
        max_instances: int | null = null
            Read at most this many rows; null reads them all.
    """

    reads_local_files = True

    def __init__(
        self,
        label_column: str | None = "label",
        feature_columns: list[str] | None = None,
        delimiter: str = ",",
        label_type: Literal["int", "float", "str"] = "int",
        max_instances: int | None = None,
    ) -> None:
        errors: list[ConfigurationError | None] = []
        if len(delimiter) != 1:
            errors.append(ConfigurationError(f"must be one character, got {delimiter!r}", key="delimiter"))
        if feature_columns is not None:
            if not feature_columns:
                errors.append(ConfigurationError("must name at least one column, or be null", key="feature_columns"))
            repeated = sorted({name for name in feature_columns if feature_columns.count(name) > 1})
            if repeated:
                errors.append(ConfigurationError(f"names {', '.join(repeated)} twice", key="feature_columns"))
            if label_column is not None and label_column in feature_columns:
                errors.append(ConfigurationError(f'includes the label column "{label_column}"', key="feature_columns"))
        errors.append(max_instances_error(max_instances))
        if any(errors):
            raise ConfigurationError.combine([error for error in errors if error is not None])
        super().__init__(max_instances=max_instances)
        self.label_column = label_column
        self.feature_columns = feature_columns
        self.delimiter = delimiter
        self.label_type = label_type

    def _read(self, path: str) -> Iterator[Instance]:
        with open_data_file(path, newline="") as file:
            rows = csv.reader(file, delimiter=self.delimiter)
            try:
                yield from self._read_rows(path, rows)
            except csv.Error as error:
                raise ValueError(f"{path}:{rows.line_num}: malformed CSV: {error}") from None
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}: not UTF-8 text: {error}") from None

    def _read_rows(self, path: str, rows: Any) -> Iterator[Instance]:
        header = next((row for row in rows if row), None)
        if header is None:
            raise ValueError(f"{path}: the file is empty; expected a header row naming the columns")
        columns = [name.strip() for name in header]
        header_line = rows.line_num
        repeated = sorted({name for name in columns if columns.count(name) > 1})
        if repeated:
            raise ValueError(f"{path}:{header_line}: the header names column(s) {', '.join(repeated)} twice")
        label_index = columns.index(self.label_column) if self.label_column in columns else None
        feature_indices = self._feature_indices(path, header_line, columns)
        for row in rows:
            if not row:
                continue
            line = rows.line_num
            if len(row) != len(columns):
                raise ValueError(
                    f"{path}:{line}: expected {len(columns)} fields as in the header, got {len(row)} "
                    f"(is the delimiter {self.delimiter!r} right?)"
                )
            features = [_parse_float(row[index], path, line, columns[index]) for index in feature_indices]
            instance: Instance = {"features": torch.tensor(features, dtype=torch.float32)}
            if label_index is not None:
                instance["label"] = self._parse_label(row[label_index], path, line)
            yield instance

    def _feature_indices(self, path: str, line: int, columns: list[str]) -> list[int]:
        if self.feature_columns is None:
            return [index for index, name in enumerate(columns) if name != self.label_column]
        missing = [name for name in self.feature_columns if name not in columns]
        if missing:
            described = missing_names(missing, columns)
            raise ConfigurationError(
                f"{path}:{line}: feature_columns names {described}, which the header does not have; "
                f"columns in the file: {', '.join(columns)}"
            )
        return [columns.index(name) for name in self.feature_columns]

    def _parse_label(self, text: str, path: str, line: int) -> int | float | str:
        if self.label_type == "str":
            return text.strip()
        value = _parse_float(text, path, line, str(self.label_column), expected=_LABEL_TYPES[self.label_type])
        if self.label_type == "float":
            return value
        if not value.is_integer():
            raise ValueError(
                f'{path}:{line}: column "{self.label_column}": expected an int label, got {text!r} '
                '(set label_type to "float" for regression targets)'
            )
        return int(value)


def _parse_float(text: str, path: str, line: int, column: str, expected: str = "a number") -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f'{path}:{line}: column "{column}": expected {expected}, got {text!r}') from None


@DatasetReader.register("jsonl")
class JsonLinesReader(DatasetReader):
    """Reads a JSON-lines file: each non-blank line is one JSON object, yielded as it is (a dict).

    Registered as a `DatasetReader` with name "jsonl".

    A line that is not valid JSON, or not an object, is a ValueError naming ``file:line``. A field listed in
    ``fields`` that a line lacks is a ConfigurationError naming ``file:line`` and the keys the line has.

    The data path is a local file or a URL, cached as the ``csv`` reader's is (in ``$REGIMEN_CACHE_ROOT``, default
    ``~/.cache/regimen``).

    Config keys:
        fields: list[str] | null = null
            Keep only these keys of each object; null keeps every key.
        max_instances: int | null = null
            Read at most this many lines; null reads them all.
    """

    reads_local_files = True

    def __init__(self, fields: list[str] | None = None, max_instances: int | None = None) -> None:
        errors = [max_instances_error(max_instances)]
        if fields is not None and not fields:
            errors.append(ConfigurationError("must name at least one field, or be null", key="fields"))
        if any(errors):
            raise ConfigurationError.combine([error for error in errors if error is not None])
        super().__init__(max_instances=max_instances)
        self.fields = fields

    def _read(self, path: str) -> Iterator[Instance]:
        with open_data_file(path) as file:
            line = 0
            try:
                for line, text in enumerate(file, start=1):
                    if text.strip():
                        yield self._instance(_json_object(text, path, line), path, line)
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}:{line + 1}: not UTF-8 text: {error}") from None

    def _instance(self, value: dict[str, Any], path: str, line: int) -> Instance:
        if self.fields is None:
            return value
        missing = [name for name in self.fields if name not in value]
        if missing:
            described = missing_names(missing, list(value))
            raise ConfigurationError(
                f"{path}:{line}: the object has no field {described} named in fields; "
                f"its keys: {', '.join(value) or '(none)'}"
            )
        return {name: value[name] for name in self.fields}


def _json_object(text: str, path: str, line: int) -> dict[str, Any]:
    """Parse one line of a JSON-lines file as an object; errors name ``path:line`` and the column."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{line}: invalid JSON: {error.msg} (column {error.colno})") from None
    if not isinstance(value, dict):
        kind = "a list" if isinstance(value, list) else type(value).__name__
        raise ValueError(f"{path}:{line}: expected a JSON object, got {kind}")
    return value

"""collate: the default way a list of instances becomes one batch of tensors, padding ragged fields with a mask."""

from __future__ import annotations

import array
import copy
import itertools
import numbers
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy
import torch

# Hand-written rather than torch's default_collate: that one neither pads ragged lists nor makes masks, and turns
# a list field into a list of per-position tensors instead of one 2-D tensor.


def collate(instances: list[dict[str, Any]]) -> dict[str, Any]:
    """Turn a list of instances (dicts of field name -> value) into one batch: a dict of field name -> batched value.

    Each field is batched by what its values are, looked at across the whole batch:

    - numbers: a 1-D tensor of the batch size; ints -> ``int64``, floats (or ints mixed with floats) ->
      ``float32``, bools -> ``bool``.
    - lists of numbers (or nested lists of numbers) of the same shape: one stacked tensor, ``(batch, length)`` for
      flat lists, with the dtype chosen as for numbers.
    - lists of numbers of different lengths (token ids, say), or nested lists ragged along any dimension: padded
      with 0 to the longest along each dimension, plus a bool tensor ``"<field>_mask"`` of the same shape that is
      True at real positions and False at padding. An empty list is all padding.
    - torch tensors (or numpy arrays) of one rank: stacked, promoted to a common dtype; when their shapes differ,
      padded with 0 to the largest size in each dimension, plus a ``"<field>_mask"`` as above.
    - anything else (strings, None, dicts, lists of strings, a mix of kinds): a plain list of the values.

    A mask is only added where padding happened, so a field's batch has a mask either in every batch or in those
    that needed padding; models that take ragged inputs should accept ``<field>_mask`` as optional. Every instance
    in a batch must have the same fields, and no field may already be called ``<other field>_mask`` when that
    field needs a mask; both are ValueErrors naming the field. An empty list of instances gives an empty dict.
    """
    if not instances:
        return {}
    first = instances[0]
    names = list(first)
    # Same fields everywhere, checked by C calls alone (no Python frame per instance): as many keys as the first
    # instance has, and each of its keys present (a KeyError below). Comparing the key views themselves costs
    # four times as much (a third of a batch's collate). The loop in _raise_different_fields says which differs.
    if set(map(len, instances)) != {len(names)}:
        _raise_different_fields(instances, set(names))
    batch: dict[str, Any] = {}
    for name in names:
        try:
            values = list(map(operator.itemgetter(name), instances))
        except KeyError:
            _raise_different_fields(instances, set(names))
            raise
        value, mask = collate_field(values)
        batch[name] = value
        if mask is not None:
            mask_name = f"{name}_mask"
            if mask_name in first:
                raise ValueError(
                    f'cannot collate field "{name}": it needs padding, and its mask would be called "{mask_name}", '
                    "which is already a field of the instances"
                )
            batch[mask_name] = mask
    return batch


def _raise_different_fields(instances: Sequence[dict[str, Any]], expected: set[str]) -> None:
    for position, instance in enumerate(instances):
        if set(instance) != expected:
            missing, extra = sorted(expected - set(instance)), sorted(set(instance) - expected)
            parts = [f"{label} {', '.join(keys)}" for label, keys in (("missing", missing), ("extra", extra)) if keys]
            detail = "; ".join(parts)
            raise ValueError(
                f"cannot collate: instance {position} of the batch has different fields from instance 0 ({detail}); "
                "every instance in a batch must have the same fields"
            )


def collate_field(values: Sequence[Any]) -> tuple[Any, torch.Tensor | None]:
    """One field's values across a batch -> ``(batched value, mask or None)``, by the rules of ``collate``."""
    fast = _plain_numbers(values)
    if fast is not None:
        return fast, None
    return _collate_field_general(values)


# ---- the common case, fast ----------------------------------------------------------------------------------------
# Most fields are a Python number or a flat list of Python numbers of one length (a csv reader's label and
# features). For those the general path below measures every leaf through ABC isinstance checks and recursion,
# about 30 Python calls per number; here one C-level pass over the leaves' exact types picks the dtype and the
# tensor comes from the very call the general path ends in, ``torch.tensor(values, dtype=...)``, so the result (and
# any error, such as an int too big for int64) is the same by construction. Every leaf's type is checked, not a
# sample: one float among ints changes the dtype, and torch.tensor itself accepts leaves the general path does not
# batch (0-d tensors, numpy scalars with their own dtype).
_PLAIN_NUMBER_TYPES = frozenset((bool, int, float))  # exact types: subclasses (numpy.float64, IntEnum) go the long way
_SEQUENCE_TYPES = frozenset((list, tuple))
# The array type codes of batches whose leaves all have one exact type (bools as bytes 0 and 1).
_ARRAY_CODES = {frozenset((int,)): "q", frozenset((float,)): "f", frozenset((bool,)): "B"}


def _plain_numbers(values: Sequence[Any]) -> torch.Tensor | None:
    """The batched tensor when every value is a Python number, every value a flat list (or tuple) of Python
    numbers of one common length, or every value a tensor of one shape (stacked in their common dtype, as the
    general path would); None when the general path must decide."""
    outer = set(map(type, values))
    if outer == {torch.Tensor}:
        # torch.stack checks the shapes itself, and promotes dtypes as the general path does; reading each
        # tensor's shape and dtype from Python first cost more than the stacking (~70 k instructions a batch).
        try:
            return torch.stack(values if isinstance(values, (list, tuple)) else list(values))
        except RuntimeError:  # shapes that differ (the general path pads them), or what it reports in its words
            return None
    if outer <= _PLAIN_NUMBER_TYPES:
        leaves, nested = outer, False
    elif outer <= _SEQUENCE_TYPES and len(set(map(len, values))) == 1:
        # per-row sets merged: measured faster than one set over itertools.chain of all the leaves
        leaves, nested = {kind for value in values for kind in set(map(type, value))}, True
        if not leaves <= _PLAIN_NUMBER_TYPES:
            return None
    else:
        return None
    dtype = _dtype({"bool" if kind is bool else "int" if kind is int else "float" for kind in leaves})
    code = _ARRAY_CODES.get(frozenset(leaves))
    if code is not None:
        # Leaves of one type: packed by the array module's C loop and wrapped without a copy, ~5x faster than
        # torch.tensor's per-element parsing; the same values (Python floats round to float32 by the same C cast).
        try:
            packed = array.array(code, itertools.chain.from_iterable(values) if nested else values)
        except OverflowError:  # an int beyond int64: torch.tensor below raises its own error for it
            packed = None
        if packed:  # empty lists go the long way (frombuffer takes no empty buffer)
            tensor = torch.frombuffer(packed, dtype=dtype)
            return tensor.view(len(values), -1) if nested else tensor
    return torch.tensor(values, dtype=dtype)


# ---- the general path ------------------------------------------------------------------------------------------
def _collate_field_general(values: Sequence[Any]) -> tuple[Any, torch.Tensor | None]:
    """``collate_field`` for any values, without the fast path: the reference the fast path must agree with."""
    kinds = [_scalar_kind(value) for value in values]
    if None not in kinds:
        return torch.tensor(values, dtype=_dtype(set(kinds))), None
    if all(isinstance(value, (torch.Tensor, numpy.ndarray)) for value in values):
        tensors = _as_tensors(values)
        if tensors is not None:
            return _stack(tensors)
    if all(isinstance(value, (list, tuple)) for value in values):
        return _collate_lists(values)
    return list(values), None


# ---- numbers ---------------------------------------------------------------------------------------------------
def _scalar_kind(value: Any) -> str | None:
    """``"bool"``, ``"int"`` or ``"float"`` for a number (python or numpy scalar), None for anything else."""
    if isinstance(value, (bool, numpy.bool_)):
        return "bool"
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, numbers.Real):
        return "float"
    return None


def _dtype(kinds: set[str]) -> torch.dtype:
    if kinds == {"bool"}:
        return torch.bool
    if "float" in kinds or not kinds:  # no numbers at all (only empty lists): the default floating dtype
        return torch.float32
    return torch.int64


# ---- nested lists of numbers -------------------------------------------------------------------------------------
class _Irregular(Exception):
    """A list whose leaves are not all numbers, or whose nesting depth varies."""


def _measure(value: Any, kinds: set[str]) -> tuple[tuple[int, ...], bool]:
    """The padded shape of a (nested) list of numbers and whether it is rectangular; adds its leaves' kinds.

    An empty list has shape ``(0,)`` and fits under a list of any depth; a shape ending in 0 therefore stands for
    "this dimension is empty, deeper ones unknown".
    """
    kind = _scalar_kind(value)
    if kind is not None:
        kinds.add(kind)
        return (), True
    if not isinstance(value, (list, tuple)):
        raise _Irregular
    shape: tuple[int, ...] | None = None
    regular = True
    for child in value:
        child_shape, child_regular = _measure(child, kinds)
        regular = regular and child_regular and (shape is None or child_shape == shape)
        shape = child_shape if shape is None else _merge(shape, child_shape)
    return (len(value), *(shape or ())), regular


def _merge(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    if len(a) < len(b):
        a, b = b, a
    if len(b) < len(a) and (not b or b[-1] != 0):
        raise _Irregular  # a number where another instance has a list, or lists at different depths
    return tuple(max(x, y) for x, y in itertools.zip_longest(a, b, fillvalue=0))


def _collate_lists(values: Sequence[Any]) -> tuple[Any, torch.Tensor | None]:
    kinds: set[str] = set()
    try:
        measured = [_measure(value, kinds) for value in values]
        shape = measured[0][0]
        for other, _ in measured[1:]:
            shape = _merge(shape, other)
    except _Irregular:
        return list(values), None
    dtype = _dtype(kinds)
    if all(regular and own == shape for own, regular in measured):
        return torch.tensor(values, dtype=dtype), None
    padded = torch.zeros((len(values), *shape), dtype=dtype)
    mask = torch.zeros((len(values), *shape), dtype=torch.bool)
    for row, (value, (_, regular)) in enumerate(zip(values, measured)):
        if regular:
            tensor = torch.tensor(value, dtype=dtype)
            if tensor.numel():
                region = tuple(slice(0, size) for size in tensor.shape)
                padded[row][region] = tensor
                mask[row][region] = True
        else:
            _fill(padded[row], mask[row], value)
    return padded, mask


def _fill(padded: torch.Tensor, mask: torch.Tensor, value: Sequence[Any]) -> None:
    """Write a ragged nested list into the front of ``padded``, one sub-list at a time."""
    for index, child in enumerate(value):
        if isinstance(child, (list, tuple)):
            _fill(padded[index], mask[index], child)
        else:
            padded[index] = child
            mask[index] = True


# ---- tensors ---------------------------------------------------------------------------------------------------
def _as_tensors(values: Sequence[Any]) -> list[torch.Tensor] | None:
    try:
        tensors = [torch.as_tensor(value) for value in values]
    except TypeError:  # a numpy array of objects or strings
        return None
    if len({tensor.dim() for tensor in tensors}) > 1:
        return None
    return tensors


def _stack(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    shapes = {tuple(tensor.shape) for tensor in tensors}
    if len(shapes) == 1:
        return torch.stack([tensor.to(dtype) for tensor in tensors]), None
    shape = tuple(max(sizes) for sizes in zip(*shapes))
    padded = torch.zeros((len(tensors), *shape), dtype=dtype)
    mask = torch.zeros((len(tensors), *shape), dtype=torch.bool)
    for row, tensor in enumerate(tensors):
        region = tuple(slice(0, size) for size in tensor.shape)
        padded[row][region] = tensor
        mask[row][region] = True
    return padded, mask


class IndexedBatch(dict):
    """A batch (a dict of field name -> batched value) that also knows ``indices``: each instance's position in
    its data file, kept through shuffling, bucketing and sharding. The model's forward pass sees only the dict;
    callbacks (``save_predictions``) read ``batch.indices``."""

    indices: list[int]

    def __init__(self, fields: dict[str, Any], indices: list[int]) -> None:
        super().__init__(fields)
        self.indices = indices


def collate_numbered(numbered: list[tuple[int, dict[str, Any]]]) -> IndexedBatch:
    """``collate`` for ``(file position, instance)`` pairs: the batch, and where each of its instances came from."""
    if not numbered:
        return IndexedBatch({}, [])
    indices, instances = zip(*numbered)
    return IndexedBatch(collate(list(instances)), list(indices))


def map_tensors(batch: Any, function: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``batch`` with ``function`` applied to every tensor in it (nested dicts, lists and tuples included; a dict
    subclass, such as an `IndexedBatch` with its ``indices``, is copied with its attributes)."""
    if isinstance(batch, torch.Tensor):
        return function(batch)
    if isinstance(batch, dict):
        mapped = {key: map_tensors(value, function) for key, value in batch.items()}
        if type(batch) is dict:
            return mapped
        clone = copy.copy(batch)
        clone.update(mapped)
        return clone
    if isinstance(batch, (list, tuple)):
        return type(batch)(map_tensors(value, function) for value in batch)
    return batch


def pinned(batch: Any) -> Any:
    """``batch`` with its tensors in page-locked memory, which a GPU copies from without the host waiting."""
    return map_tensors(batch, torch.Tensor.pin_memory)


def batch_size(batch: Any) -> int | None:
    """The number of instances in a collated batch: the first dimension of its first tensor (or the length of its
    first list); None where the batch holds neither."""
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return value.shape[0]
        if isinstance(value, list):
            return len(value)
    return None

"""BatchSampler: the registered base class that groups instance indices into batches, and the ``bucket`` sampler."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy
import torch

from regimen.data.dataset_reader import Instance
from regimen.registry import ConfigurationError, Registrable
from regimen.registry.errors import unknown_name_message

logger = logging.getLogger(__name__)

# How many instances the bucket sampler looks at to guess its sorting keys (AllenNLP looked at ten as well).
_GUESS_FROM = 10


class BatchSampler(Registrable):
    """Decides which instances are batched together and in which order the batches come.

    A data loader calls ``get_batch_indices(instances, generator)`` once per pass over (a chunk of) the data and
    ``get_num_batches(instances)`` to know the length of a pass without drawing any random numbers. An
    implementation must take all its randomness from ``generator``, so the loader can make the order a function
    of (seed, epoch), and ``get_num_batches`` must equal ``len(get_batch_indices(...))`` for the same instances.
    """

    def get_batch_indices(self, instances: Sequence[Instance], generator: torch.Generator) -> list[list[int]]:
        """The batches, as lists of indices into ``instances``, in the order they are to be produced."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_batch_indices")

    def get_num_batches(self, instances: Sequence[Instance]) -> int:
        """How many batches ``get_batch_indices`` gives for these instances."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_num_batches")


@BatchSampler.register("bucket")
class BucketBatchSampler(BatchSampler):
    """Batches instances of similar length together, so little of each batch is padding.

    Registered as a `BatchSampler` with name "bucket".

    As in AllenNLP: each instance's length under each sorting key is multiplied by a random factor in
    ``[1 - padding_noise, 1 + padding_noise]``, the instances are sorted by these noisy lengths (the first key
    first), cut into consecutive batches of ``batch_size``, and the order of the batches is shuffled. The noise
    keeps batches from being identical every epoch. The length of a field is ``len()`` of a list, tuple or string
    and the first dimension of a tensor or array. All randomness comes from the generator the loader passes, so
    the batches are reproducible.

    Config keys:
        batch_size: int
            Instances per batch.
        sorting_keys: list[str] | null = null
            The fields whose lengths sort the instances; null guesses the field with the longest list among the
            first ten instances.
        padding_noise: float = 0.1
            The relative noise added to each length before sorting; 0 sorts by the exact lengths.
        drop_last: bool = false
            Drop the last batch of a pass when it is smaller than ``batch_size``.
    """

    def __init__(
        self,
        batch_size: int,
        sorting_keys: list[str] | None = None,
        padding_noise: float = 0.1,
        drop_last: bool = False,
    ) -> None:
        errors = []
        if batch_size < 1:
            errors.append(ConfigurationError(f"must be a positive int, got {batch_size}", key="batch_size"))
        if sorting_keys is not None and not sorting_keys:
            errors.append(ConfigurationError("must name at least one field, or be null", key="sorting_keys"))
        if not padding_noise >= 0:
            errors.append(ConfigurationError(f"must be at least 0, got {padding_noise}", key="padding_noise"))
        if errors:
            raise ConfigurationError.combine(errors)
        self.batch_size = batch_size
        self.sorting_keys = sorting_keys
        self.padding_noise = padding_noise
        self.drop_last = drop_last

    def get_batch_indices(self, instances: Sequence[Instance], generator: torch.Generator) -> list[list[int]]:
        if not instances:
            return []
        keys = self.sorting_keys or self.guess_sorting_keys(instances)
        lengths = torch.tensor(
            [[_length(instance, key, index) for key in keys] for index, instance in enumerate(instances)],
            dtype=torch.float64,
        )
        noise = (torch.rand(lengths.shape, generator=generator, dtype=torch.float64) * 2 - 1) * self.padding_noise
        noisy = (lengths * (1 + noise)).numpy()
        # lexsort sorts by its last key first; it is stable, so equal noisy lengths keep their reading order.
        order = numpy.lexsort(noisy.T[::-1]).tolist()
        batches = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        if self.drop_last and len(batches[-1]) < self.batch_size:
            batches.pop()
        permutation = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[index] for index in permutation]

    def get_num_batches(self, instances: Sequence[Instance]) -> int:
        count = len(instances) / self.batch_size
        return math.floor(count) if self.drop_last else math.ceil(count)

    def guess_sorting_keys(self, instances: Sequence[Instance]) -> list[str]:
        """The field with the longest list among the first ten instances (the first such field on a tie)."""
        best: tuple[int, str] | None = None
        for instance in instances[:_GUESS_FROM]:
            for name, value in instance.items():
                length = _sized_length(value)
                if length is not None and (best is None or length > best[0]):
                    best = (length, name)
        if best is None:
            fields = ", ".join(instances[0])
            raise ConfigurationError(
                f"the bucket batch sampler cannot guess its sorting_keys: no field of the instances is a list or a "
                f"tensor (fields: {fields}); set sorting_keys to the field whose length should group the batches"
            )
        logger.debug("bucket batch sampler: no sorting_keys given, sorting by %s", best[1])
        return [best[1]]


def _sized_length(value: Any) -> int | None:
    """The length of a list-like field, None for anything without one (numbers, strings, scalars)."""
    if isinstance(value, (list, tuple)):
        return len(value)
    if isinstance(value, (torch.Tensor, numpy.ndarray)) and value.ndim > 0:
        return int(value.shape[0])
    return None


def _length(instance: Instance, key: str, index: int) -> int:
    if key not in instance:
        message = unknown_name_message("field", key, list(instance))
        raise ConfigurationError(f"bucket batch sampler sorting_keys: {message} (in instance {index})")
    value = instance[key]
    length = len(value) if isinstance(value, str) else _sized_length(value)
    if length is None:
        raise ConfigurationError(
            f'bucket batch sampler sorting_keys: field "{key}" of instance {index} is of type {type(value).__name__}, '
            "which has no length; sort by a list, string or tensor field"
        )
    return length

"""DataLoader: the registered base class that produces a data file's batches epoch by epoch, and its default."""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, NamedTuple

import numpy
import torch
import torch.utils.data

from regimen.data.batch_sampler import BatchSampler
from regimen.data.collate import IndexedBatch, collate, collate_numbered, pinned
from regimen.data.dataset_reader import DatasetReader, Instance
from regimen.registry import ConfigurationError, Registrable

logger = logging.getLogger(__name__)

Batch = dict[str, Any]


class DataLoader(Registrable):
    """Produces the batches of one dataset, one epoch at a time.

    The trainer calls ``set_epoch(epoch)`` and iterates, or calls ``iter_epoch(epoch, start_batch)`` to resume in
    the middle of an epoch; ``len(loader)`` is the number of batches in an epoch. Iterating does not advance the
    epoch by itself: like torch's ``DistributedSampler``, a loader that is never told the epoch repeats epoch 0.
    The default implementation is ``"default"``.
    """

    default_implementation = "default"
    epoch: int = 0  # the epoch ``__iter__`` produces; set with ``set_epoch``

    def __len__(self) -> int:
        """The number of batches in one epoch (this worker's share of them, once sharded)."""
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def iter_epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        """The batches of ``epoch`` in order, starting at batch ``start_batch`` without producing the ones before."""
        raise NotImplementedError(f"{type(self).__name__} must implement iter_epoch")

    def iter_instances(self) -> Iterator[Instance]:
        """Every instance of the dataset once, in file order (to build a vocabulary or inspect the data)."""
        raise NotImplementedError(f"{type(self).__name__} must implement iter_instances")

    def shard(self, rank: int, world_size: int) -> None:
        """Make this loader produce only worker ``rank``'s share of each epoch, out of ``world_size`` workers.

        Every worker must then get the same number of batches per epoch (a worker that runs out early would leave
        the others waiting in a collective such as DDP's gradient all-reduce), and together the workers must see
        every instance of the epoch once, except for the few repeats needed when there are fewer than
        ``world_size`` instances left to share out.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support sharding")

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch that iterating the loader produces."""
        self.epoch = _check_epoch(epoch)

    def __iter__(self) -> Iterator[Batch]:
        return self.iter_epoch(self.epoch)


@DataLoader.register("default")
@DataLoader.register("multiprocess")
class DefaultDataLoader(DataLoader):
    """Reads a data file with a `DatasetReader` and batches it, in an order that is a pure function of
    (seed, epoch): it does not depend on the global random state or on which epochs were iterated before.

    Registered as a `DataLoader` with name "default" (the default when a loader config has no ``type``).
    Registered as a `DataLoader` with name "multiprocess" as well: AllenNLP's name for its loader, so AllenNLP
    configs work unchanged.

    Batches are either consecutive runs of ``batch_size`` instances (in file order, or in a random order with
    ``shuffle``) or whatever ``batch_sampler`` groups together; each is turned into tensors by ``collate`` (see
    its docstring for padding and masks), in ``num_workers`` worker processes when that is above 0 (through
    ``torch.utils.data.DataLoader``, which gets the batches' index lists). Just before, each instance goes through
    the reader's ``transform_instance`` (see `DatasetReader`): in those workers too, and every epoch.

    The instances are read once, on first use (not while the config is built), and kept in memory. With
    ``max_instances_in_memory`` the file is instead read again on every pass, that many instances at a time, and
    each chunk is batched (and shuffled) on its own; knowing ``len()`` then costs one extra pass over the file.

    Epochs: without ``batches_per_epoch``, an epoch is one pass over the data. With it, as in AllenNLP, an epoch is
    that many batches, taken from an endless sequence of passes: epoch 1 continues where epoch 0 stopped, and a new
    pass (in a new order) starts when the data runs out. Either way pass ``p`` is ordered by a random generator
    seeded from (seed, p) alone, so ``iter_epoch(e, start_batch=k)`` can skip to any batch without producing the
    ones before it; the skipped instances are read again from disk when ``max_instances_in_memory`` is set.

    Sharding: after ``shard(rank, world_size)`` every worker gets the same number of batches per epoch, so none
    finishes early and leaves the others waiting in DDP's gradient all-reduce. Let ``n`` be the epoch's batch count
    unsharded, ``full = n // world_size`` and ``tail = n % world_size``. Worker ``rank`` gets batches ``rank,
    rank + world_size, ..., rank + world_size * (full - 1)`` of the epoch, whole; when ``tail > 0`` it gets one
    batch more, last: the instances of the epoch's last ``tail`` batches, pooled in order, are cut into
    ``world_size`` consecutive pieces whose sizes differ by at most one (the larger ones first), and the worker
    gets piece ``rank``. So ``len()`` is ``full + (1 if tail else 0)`` on every worker, and the workers together
    see every instance of the epoch once. When the pooled instances are fewer than ``world_size`` (a tiny dataset,
    say), they are repeated in order until there are ``world_size`` of them, as torch's ``DistributedSampler`` pads,
    and a warning says how many repeats this adds to the epoch. The tail piece is collated in the main process.
    ``len()`` and ``start_batch`` count this worker's own batches (the tail piece is batch number ``full``).

    Config keys:
        batch_size: int | null = null
            Instances per batch; required unless batch_sampler is given, and not allowed with it.
        shuffle: bool = false
            Shuffle the instances every pass (within each chunk with max_instances_in_memory). Not allowed with
            batch_sampler, which decides the order itself.
        drop_last: bool = false
            Drop the last batch of a pass (of each chunk) when it is smaller than batch_size. Not allowed with
            batch_sampler, which has its own drop_last.
        num_workers: int = 0
            Worker processes that collate batches; 0 collates in the main process.
        batches_per_epoch: int | null = null
            Make every epoch this many batches, continuing through the data across epochs; null means one pass.
        max_instances_in_memory: int | null = null
            Read and batch this many instances at a time instead of the whole file; at least the batch size.
        batch_sampler: BatchSampler | null = null
            How to group instances into batches (``{"type": "bucket", "batch_size": 32}``), instead of batch_size.
        pin_memory: bool = false
            Put batches in pinned memory, which speeds up copying them to a GPU: the trainer then copies each batch
            without waiting for it, the next one while the current one computes.
        persistent_workers: bool = false
            Keep the worker processes (and the dataset each was sent) alive from one pass to the next instead of
            starting them again every epoch; needs num_workers > 0 and the data in memory (no
            max_instances_in_memory, whose every chunk is a new dataset). The workers' random seeds are drawn
            once (the default collate draws no random numbers).
        prefetch_factor: int | null = null
            Batches each worker prepares ahead (torch's default, 2, when null); needs num_workers > 0.
        start_method: "fork" | "spawn" | "forkserver" | null = null
            How worker processes are started; null uses the platform's default.

    Given by the code that builds the loader, not written in its config: ``reader`` (the dataset reader),
    ``data_path`` (the file to read) and ``seed`` (an int, default 0; the run's ``random_seed``).
    """

    def __init__(
        self,
        reader: DatasetReader,
        data_path: str,
        batch_size: int | None = None,
        shuffle: bool = False,
        drop_last: bool = False,
        num_workers: int = 0,
        batches_per_epoch: int | None = None,
        max_instances_in_memory: int | None = None,
        batch_sampler: BatchSampler | None = None,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        prefetch_factor: int | None = None,
        start_method: Literal["fork", "spawn", "forkserver"] | None = None,
        seed: int = 0,
    ) -> None:
        _check_settings(
            batch_size, shuffle, drop_last, num_workers, batches_per_epoch, max_instances_in_memory, batch_sampler
        )
        _check_worker_settings(num_workers, persistent_workers, prefetch_factor, max_instances_in_memory)
        self.reader = reader
        self.data_path = data_path
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.num_workers = num_workers
        self.batches_per_epoch = batches_per_epoch
        self.max_instances_in_memory = max_instances_in_memory
        self.batch_sampler = batch_sampler
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.prefetch_factor = prefetch_factor
        self.start_method = start_method
        self.seed = seed
        self.rank, self.world_size = 0, 1
        self._instances: list[Instance] | None = None  # the whole dataset, when it is kept in memory
        self._batches_per_pass: int | None = None
        self._workers: tuple[torch.utils.data.DataLoader, _PassBatches] | None = None  # with persistent_workers
        self._transform = _instance_transform(reader)

    # ---- the public interface -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        whole, tail = self._epoch_positions(0)
        return len(whole) + (1 if tail else 0)

    def iter_epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        whole, tail = self._epoch_positions(_check_epoch(epoch))
        count = len(whole) + (1 if tail else 0)
        if not 0 <= start_batch <= count:
            raise ValueError(f"start_batch must be between 0 and {count} (batches per epoch), got {start_batch}")
        return self._produce(epoch, whole[start_batch:], tail if start_batch <= len(whole) else range(0))

    def iter_instances(self) -> Iterator[Instance]:
        if self.max_instances_in_memory is None:
            return iter(self._load())
        return iter(self.reader.read(self.data_path))

    def shard(self, rank: int, world_size: int) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"shard needs 0 <= rank < world_size, got rank {rank} and world_size {world_size}")
        self.rank, self.world_size = rank, world_size

    # ---- which batches an epoch has -------------------------------------------------------------------------
    def _epoch_positions(self, epoch: int) -> tuple[range, range]:
        """Where ``epoch``'s batches are in the endless sequence of passes over the data: the positions of this
        worker's whole batches, and those of the tail batches that all workers share (empty when unsharded)."""
        per_pass = self._pass_length()
        if self.batches_per_epoch is None:
            per_epoch = per_pass
        elif per_pass == 0:
            raise ValueError(
                f"{self.data_path}: batches_per_epoch is {self.batches_per_epoch}, but the data gives no batches "
                f"at all ({self._describe_batching()})"
            )
        else:
            per_epoch = self.batches_per_epoch
        first = epoch * per_epoch
        tail_start = first + per_epoch - per_epoch % self.world_size
        return range(first + self.rank, tail_start, self.world_size), range(tail_start, first + per_epoch)

    def _pass_length(self) -> int:
        """Batches in one pass over the data; counting them reads the file once if it is not kept in memory."""
        if self._batches_per_pass is None:
            self._batches_per_pass = sum(self._num_batches(chunk) for chunk in self._chunks())
        return self._batches_per_pass

    def _num_batches(self, instances: Sequence[Instance]) -> int:
        if self.batch_sampler is not None:
            return self.batch_sampler.get_num_batches(instances)
        assert self.batch_size is not None  # the constructor requires one of the two
        rounding = math.floor if self.drop_last else math.ceil
        return rounding(len(instances) / self.batch_size)

    def _batch_indices(self, instances: Sequence[Instance], pass_index: int, chunk_index: int) -> list[list[int]]:
        """Chunk ``chunk_index`` of pass ``pass_index`` as batches of indices, shuffled by (seed, pass, chunk)."""
        generator = self._generator(pass_index, chunk_index)
        if self.batch_sampler is not None:
            batches = self.batch_sampler.get_batch_indices(instances, generator)
            expected = self.batch_sampler.get_num_batches(instances)
            if len(batches) != expected:
                name = type(self.batch_sampler).__name__
                raise ValueError(
                    f"{name}.get_batch_indices gave {len(batches)} batches for {len(instances)} instances, but its "
                    f"get_num_batches says {expected}; the loader relies on the two agreeing"
                )
            return batches
        assert self.batch_size is not None
        order = torch.randperm(len(instances), generator=generator).tolist() if self.shuffle else range(len(instances))
        batches = [list(order[start : start + self.batch_size]) for start in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def _generator(self, pass_index: int, chunk_index: int) -> torch.Generator:
        # numpy's SeedSequence turns the tuple into a well-mixed seed, so nearby (seed, pass) pairs are unrelated.
        entropy = [self.seed % 2**64, pass_index, chunk_index]
        state = numpy.random.SeedSequence(entropy).generate_state(1, numpy.uint64)[0]
        return torch.Generator().manual_seed(int(state))

    # ---- producing batches ------------------------------------------------------------------------------------
    def _produce(self, epoch: int, whole: range, tail: range) -> Iterator[Batch]:
        """The batches at positions ``whole``, collated as they are, then this worker's piece of the ``tail``
        batches; the data is read once for both."""
        pooled: list[tuple[int, Instance]] = []  # (position in the file, instance)
        for chunk in self._located([*whole, *tail]):
            mine = [indices for position, indices in chunk.batches if position not in tail]
            seeds = self._generator(chunk.pass_index, chunk.chunk_index)
            first = chunk.chunk_index * (self.max_instances_in_memory or 0)
            numbered = _Numbered(chunk.instances, first, self._transform)
            yield from self._collated(numbered, mine, seeds, self.num_workers)
            pooled += [numbered[i] for position, indices in chunk.batches if position in tail for i in indices]
        if tail:
            piece = self._tail_piece(epoch, pooled, len(tail))
            # One batch: not worth starting worker processes, and no worker needs a seed.
            yield from self._collated(piece, [list(range(len(piece)))], torch.Generator(), num_workers=0)

    def _located(self, positions: list[int]) -> Iterator[_Located]:
        """The batches at ``positions`` (increasing), chunk by chunk: which instances make up each of them. Only the
        chunks that hold one are batched, and the file is read no further than the last one."""
        if not positions:
            return
        per_pass = self._pass_length()
        for pass_index, group in itertools.groupby(positions, key=lambda position: position // per_pass):
            wanted = list(group)
            offset = pass_index * per_pass  # the position of the chunk's first batch
            chunks = self._chunks()
            try:
                for chunk_index, chunk in enumerate(chunks):
                    count = self._num_batches(chunk)
                    here = [position for position in wanted if offset <= position < offset + count]
                    if here:
                        batches = self._batch_indices(chunk, pass_index, chunk_index)
                        located = [(position, batches[position - offset]) for position in here]
                        yield _Located(chunk, located, pass_index, chunk_index)
                    offset += count
                    if offset > wanted[-1]:
                        break
            finally:
                chunks.close()

    def _tail_piece(
        self, epoch: int, pooled: list[tuple[int, Instance]], tail_batches: int
    ) -> list[tuple[int, Instance]]:
        """This worker's consecutive piece of the ``pooled`` tail instances, cut into ``world_size`` near-equal
        pieces; fewer instances than workers are first repeated in order until every worker can have one."""
        if not pooled:
            raise ValueError(
                f"{self.data_path}: the last {tail_batches} batches of epoch {epoch} are empty, so there is nothing "
                f"to share out among the {self.world_size} workers ({self._describe_batching()})"
            )
        if len(pooled) < self.world_size:
            logger.warning(
                "%s, epoch %d: the last %d batch(es) hold %d instance(s), fewer than the %d workers; they are "
                "repeated in order until every worker has one, so this epoch sees %d repeated instance(s), as "
                "torch's DistributedSampler pads",
                self.data_path,
                epoch,
                tail_batches,
                len(pooled),
                self.world_size,
                self.world_size - len(pooled),
            )
            pooled = [pooled[index % len(pooled)] for index in range(self.world_size)]
        size, larger = divmod(len(pooled), self.world_size)
        start = self.rank * size + min(self.rank, larger)
        return pooled[start : start + size + (1 if self.rank < larger else 0)]

    def _collated(
        self,
        numbered: Sequence[tuple[int, Instance]],
        batches: list[list[int]],
        seeds: torch.Generator,
        num_workers: int,
    ) -> Iterator[Batch]:
        """The batches of ``numbered`` (position in the file, instance) pairs, each an `IndexedBatch`."""
        if not batches:
            return iter(())
        if num_workers > 0 and self.persistent_workers:
            # One torch loader for the whole run: its workers keep the in-memory dataset; each pass sets the batches.
            if self._workers is None:
                sampler = _PassBatches()
                self._workers = self._torch_loader(numbered, sampler, num_workers, seeds), sampler
            loader, sampler = self._workers
            sampler.batches = batches
            return iter(loader)
        if num_workers == 0:
            return self._in_process(numbered, batches)
        return iter(self._torch_loader(numbered, batches, num_workers, seeds))

    def _in_process(self, numbered: Sequence[tuple[int, Instance]], batches: list[list[int]]) -> Iterator[Batch]:
        """The batches collated here, as torch's loader does without workers, minus its per-batch machinery (a
        fetcher, a profiler record, a sampler iterator): one collate call per batch."""
        pin = self.pin_memory and torch.cuda.is_available()  # as torch's loader: pinning needs an accelerator
        for indices in batches:
            if isinstance(numbered, _Numbered):  # a chunk: taken whole, not pair by pair
                batch = IndexedBatch(collate(numbered.instances_at(indices)), numbered.positions(indices))
            else:
                batch = collate_numbered([numbered[index] for index in indices])
            yield pinned(batch) if pin else batch

    def _torch_loader(
        self, numbered: Sequence[tuple[int, Instance]], batches: Any, num_workers: int, seeds: torch.Generator
    ) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            numbered,  # type: ignore[arg-type]  # a sequence is a map-style dataset
            batch_sampler=batches,
            collate_fn=collate_numbered,
            num_workers=num_workers,
            pin_memory=self.pin_memory,
            multiprocessing_context=self.start_method if num_workers > 0 else None,
            persistent_workers=self.persistent_workers and num_workers > 0,
            prefetch_factor=self.prefetch_factor if num_workers > 0 else None,
            # torch draws its workers' base seed from this generator; without one it would draw from (and so
            # change) the global torch random state every time a pass starts.
            generator=seeds,
        )

    # ---- reading -----------------------------------------------------------------------------------------------
    def _load(self) -> list[Instance]:
        if self._instances is None:
            with _collector_paused():
                self._instances = list(self.reader.read(self.data_path))
            logger.info("read %d instances from %s", len(self._instances), self.data_path)
        return self._instances

    def _chunks(self) -> Iterator[list[Instance]]:
        """The dataset in the chunks it is batched in: all of it, kept in memory, or (with max_instances_in_memory)
        read from disk that many instances at a time."""
        if self.max_instances_in_memory is None:
            yield self._load()
            return
        instances = self.reader.read(self.data_path)
        try:
            while chunk := list(itertools.islice(instances, self.max_instances_in_memory)):
                yield chunk
        finally:
            close = getattr(instances, "close", None)
            if close is not None:
                close()

    def _describe_batching(self) -> str:
        if self.batch_sampler is not None:
            return f"batch_sampler {type(self.batch_sampler).__name__}"
        return f"batch_size {self.batch_size}, drop_last {str(self.drop_last).lower()}"


class _Located(NamedTuple):
    """Some batches of one chunk of one pass (the whole dataset when it is kept in memory)."""

    instances: list[Instance]  # the chunk
    batches: list[tuple[int, list[int]]]  # (position in the endless sequence of passes, indices into instances)
    pass_index: int
    chunk_index: int


class _PassBatches:
    """The batch sampler of a loader whose workers persist: the index lists of the pass being produced."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _Numbered(Sequence):
    """A chunk's instances as ``(position in the file, instance)`` pairs; ``first`` is the chunk's first position.
    With ``transform`` (the reader's `transform_instance`) each instance is transformed as it is taken, which is in
    the worker process that collates it."""

    def __init__(
        self, instances: Sequence[Instance], first: int, transform: Callable[[Instance], Instance] | None = None
    ) -> None:
        self.instances = instances
        self.first = first
        self.transform = transform

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, index: int) -> tuple[int, Instance]:  # type: ignore[override]
        return self.first + index, self._prepared(self.instances[index])

    def instances_at(self, indices: list[int]) -> list[Instance]:
        """The instances at ``indices`` (taken by C-level calls), each prepared as ``__getitem__`` prepares it."""
        chosen = list(map(self.instances.__getitem__, indices))
        return chosen if self.transform is None else list(map(self._prepared, chosen))

    def _prepared(self, instance: Instance) -> Instance:
        """The instance through the reader's transform, on a shallow copy (the kept one is read again next epoch)."""
        return instance if self.transform is None else self.transform(dict(instance))

    def positions(self, indices: list[int]) -> list[int]:
        """The positions in the file of the instances at ``indices``."""
        return [self.first + index for index in indices] if self.first else indices


def _instance_transform(reader: Any) -> Callable[[Instance], Instance] | None:
    """The reader's `transform_instance` where it has its own (None for the default, which changes nothing)."""
    own = getattr(type(reader), "transform_instance", DatasetReader.transform_instance)
    return None if own is DatasetReader.transform_instance else reader.transform_instance


def _check_settings(
    batch_size: int | None,
    shuffle: bool,
    drop_last: bool,
    num_workers: int,
    batches_per_epoch: int | None,
    max_instances_in_memory: int | None,
    batch_sampler: BatchSampler | None,
) -> None:
    """Every mistake in a loader's settings, reported together as ConfigurationErrors at their keys."""
    errors = []
    if batch_sampler is not None:
        for key, value in (("batch_size", batch_size is not None), ("shuffle", shuffle), ("drop_last", drop_last)):
            if value:
                errors.append(
                    ConfigurationError(
                        f"cannot be set together with batch_sampler, which decides batching itself; "
                        f"remove {key} here (set it in the batch_sampler where it takes one)",
                        key=key,
                    )
                )
    elif batch_size is None:
        errors.append(ConfigurationError("missing: a loader needs batch_size or a batch_sampler", key="batch_size"))
    for key, value, least in (
        ("batch_size", batch_size, 1),
        ("num_workers", num_workers, 0),
        ("batches_per_epoch", batches_per_epoch, 1),
        ("max_instances_in_memory", max_instances_in_memory, 1),
    ):
        if value is not None and value < least:
            errors.append(ConfigurationError(f"must be at least {least}, got {value}", key=key))
    sampler_batch_size = getattr(batch_sampler, "batch_size", None) if batch_sampler is not None else batch_size
    if (
        max_instances_in_memory is not None
        and isinstance(sampler_batch_size, int)
        and 1 <= max_instances_in_memory < sampler_batch_size
    ):
        errors.append(
            ConfigurationError(
                f"must be at least the batch size ({sampler_batch_size}), got {max_instances_in_memory}",
                key="max_instances_in_memory",
            )
        )
    if errors:
        raise ConfigurationError.combine(errors)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused: while a dataset is read into memory it would traverse the growing
    list of instances again and again (a million small instances took 2.8x as long to read with it on). What the
    read leaves for it is collected once it runs again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _check_worker_settings(
    num_workers: int, persistent_workers: bool, prefetch_factor: int | None, max_instances_in_memory: int | None
) -> None:
    """The worker-process keys' mistakes, reported together as ConfigurationErrors at their keys."""
    errors = []
    for key, given in (("persistent_workers", persistent_workers), ("prefetch_factor", prefetch_factor is not None)):
        if given and num_workers == 0:
            errors.append(ConfigurationError("needs worker processes: set num_workers above 0", key=key))
    if prefetch_factor is not None and prefetch_factor < 1:
        errors.append(ConfigurationError(f"must be at least 1, got {prefetch_factor}", key="prefetch_factor"))
    if persistent_workers and max_instances_in_memory is not None:
        message = (
            "cannot be set together with max_instances_in_memory: every chunk read from disk is a new dataset, "
            "so the workers cannot keep theirs; remove one of the two"
        )
        errors.append(ConfigurationError(message, key="persistent_workers"))
    if errors:
        raise ConfigurationError.combine(errors)


def _check_epoch(epoch: int) -> int:
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
    return epoch

"""The default data loader: batch order as a pure function of (seed, epoch), resuming, epochs, chunks, sharding."""

from __future__ import annotations

import itertools
import logging
import random
from typing import Any

import numpy
import pytest
import torch

import regimen.data.data_loader as data_loader_module
from regimen.data import BatchSampler, CsvReader, DataLoader, DefaultDataLoader, JsonLinesReader
from regimen.registry import ConfigurationError, Params
from tests.conftest import FIXTURES

SEQUENCES = str(FIXTURES / "data" / "sequences.jsonl")
CLASSIFICATION = str(FIXTURES / "data" / "classification.csv")
ALL_IDS = [f"s{index:02d}" for index in range(20)]


def build(config: dict[str, Any], data_path: str = SEQUENCES, reader: Any = None, **extras: Any) -> DataLoader:
    return DataLoader.from_params(
        Params(config, "data_loader"), reader=reader or JsonLinesReader(), data_path=data_path, **extras
    )


def ids(batches) -> list[list[str]]:
    return [batch["id"] for batch in batches]


def flat(batches) -> list[str]:
    return [name for batch in ids(batches) for name in batch]


def assert_same_batches(left: list[dict], right: list[dict]) -> None:
    assert len(left) == len(right)
    for one, other in zip(left, right):
        assert one.keys() == other.keys()
        for name in one:
            if isinstance(one[name], torch.Tensor):
                assert torch.equal(one[name], other[name])
            else:
                assert one[name] == other[name]


def test_batches_are_collated_tensors_in_file_order_by_default():
    loader = build({"batch_size": 8})
    assert isinstance(loader, DefaultDataLoader) and len(loader) == 3
    batches = list(loader)
    assert ids(batches) == [ALL_IDS[0:8], ALL_IDS[8:16], ALL_IDS[16:20]]
    first = batches[0]
    assert first["tokens"].shape == (8, 10) and first["tokens"].dtype == torch.int64
    assert first["tokens"][0].tolist() == [4, 8, 15, 0, 0, 0, 0, 0, 0, 0]
    assert first["tokens_mask"][0].tolist() == [True] * 3 + [False] * 7
    assert first["label"].tolist() == [0, 1, 0, 1, 0, 1, 0, 1]


def test_csv_batches_have_float_features_and_int_labels():
    batches = list(build({"batch_size": 5}, CLASSIFICATION, CsvReader()))
    assert [batch["features"].shape for batch in batches] == [(5, 3), (5, 3), (2, 3)]
    assert batches[0]["features"].dtype == torch.float32 and batches[0]["label"].dtype == torch.int64
    assert batches[0]["features"][1].tolist() == [1.5, 0.25, 3.0]


def test_the_order_is_a_function_of_seed_and_epoch_only():
    torch.manual_seed(0)
    numpy.random.seed(0)
    random.seed(0)
    one = build({"batch_size": 3, "shuffle": True}, seed=11)
    one_epochs = [ids(one.iter_epoch(epoch)) for epoch in range(3)]

    torch.manual_seed(99)
    numpy.random.seed(99)
    random.seed(99)
    other = build({"batch_size": 3, "shuffle": True}, seed=11)
    # A different global state, and epochs asked for out of order, on a separately built loader.
    assert ids(other.iter_epoch(2)) == one_epochs[2]
    assert ids(other.iter_epoch(0)) == one_epochs[0]
    assert ids(other.iter_epoch(1)) == one_epochs[1]

    for epoch_ids in one_epochs:
        assert sorted(name for batch in epoch_ids for name in batch) == ALL_IDS
    assert one_epochs[0] != one_epochs[1] != one_epochs[2]
    assert ids(build({"batch_size": 3, "shuffle": True}, seed=12).iter_epoch(0)) != one_epochs[0]


def test_without_shuffle_every_epoch_is_in_file_order():
    loader = build({"batch_size": 6})
    assert flat(loader.iter_epoch(0)) == flat(loader.iter_epoch(5)) == ALL_IDS


def test_iterating_leaves_the_global_random_state_alone():
    loader = build({"batch_size": 4, "shuffle": True, "num_workers": 0})
    torch_state, numpy_state, python_state = torch.get_rng_state(), numpy.random.get_state(), random.getstate()
    list(loader.iter_epoch(0))
    list(loader.iter_epoch(1, start_batch=2))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert numpy.array_equal(numpy.random.get_state()[1], numpy_state[1])
    assert random.getstate() == python_state


def test_set_epoch_chooses_what_iterating_produces():
    loader = build({"batch_size": 4, "shuffle": True}, seed=3)
    loader.set_epoch(4)
    assert ids(loader) == ids(loader) == ids(loader.iter_epoch(4))
    with pytest.raises(ValueError, match="epoch must be an int >= 0, got -1"):
        loader.set_epoch(-1)


def test_resuming_at_a_batch_gives_the_tail_without_collating_the_skipped_batches(monkeypatch):
    loader = build({"batch_size": 3, "shuffle": True}, seed=5)
    whole = list(loader.iter_epoch(2))
    collated = []
    real_collate = data_loader_module.collate

    def counting_collate(instances):
        collated.append(len(instances))
        return real_collate(instances)

    monkeypatch.setattr(data_loader_module, "collate", counting_collate)
    tail = list(loader.iter_epoch(2, start_batch=4))
    assert_same_batches(tail, whole[4:])
    assert len(collated) == len(whole) - 4 == 3
    assert list(loader.iter_epoch(2, start_batch=len(whole))) == []
    with pytest.raises(ValueError, match=r"start_batch must be between 0 and 7 \(batches per epoch\), got 8"):
        loader.iter_epoch(2, start_batch=8)


def test_batches_per_epoch_continues_through_the_data_across_epochs():
    # 20 instances in batches of 3: 7 batches per pass (the last holds 2); epochs of 5 batches run across passes.
    loader = build({"batch_size": 3, "batches_per_epoch": 5})
    assert len(loader) == 5
    epochs = [ids(loader.iter_epoch(epoch)) for epoch in range(3)]
    one_pass = [ALL_IDS[start : start + 3] for start in range(0, 20, 3)]
    assert [batch for epoch in epochs for batch in epoch] == (one_pass * 3)[:15]
    assert epochs[1][:2] == one_pass[5:7] and epochs[1][2] == one_pass[0]


def test_batches_per_epoch_with_shuffle_covers_every_instance_once_per_pass_and_resumes_anywhere():
    loader = build({"batch_size": 4, "shuffle": True, "batches_per_epoch": 3}, seed=2)
    stream = [name for epoch in range(5) for name in flat(loader.iter_epoch(epoch))]  # 15 batches = 3 passes
    passes = [stream[start : start + 20] for start in range(0, 60, 20)]
    assert all(sorted(names) == ALL_IDS for names in passes)
    assert passes[0] != passes[1]
    fresh = build({"batch_size": 4, "shuffle": True, "batches_per_epoch": 3}, seed=2)
    assert flat(fresh.iter_epoch(3, start_batch=1)) == stream[3 * 12 + 4 : 4 * 12]


def test_drop_last_drops_the_short_batch_of_each_pass():
    assert [len(batch) for batch in ids(build({"batch_size": 6}))] == [6, 6, 6, 2]
    loader = build({"batch_size": 6, "drop_last": True, "shuffle": True})
    assert len(loader) == 3
    for epoch in range(3):
        assert [len(batch) for batch in ids(loader.iter_epoch(epoch))] == [6, 6, 6]


def test_max_instances_in_memory_batches_each_chunk_and_gives_every_instance_once_per_pass():
    config = {"batch_size": 3, "shuffle": True, "max_instances_in_memory": 7}
    loader = build(config, seed=4)
    # Chunks of 7, 7 and 6 instances, each batched on its own: 3 + 3 + 2 batches.
    assert len(loader) == 8
    chunk_of = {name: index // 7 for index, name in enumerate(ALL_IDS)}
    for epoch in range(2):
        batches = ids(loader.iter_epoch(epoch))
        assert sorted(name for batch in batches for name in batch) == ALL_IDS
        assert all(len({chunk_of[name] for name in batch}) == 1 for batch in batches)
    assert ids(loader.iter_epoch(0)) != ids(loader.iter_epoch(1))
    assert ids(build(config, seed=4).iter_epoch(1, start_batch=5)) == ids(loader.iter_epoch(1))[5:]


def sharded(config: dict[str, Any], world_size: int, **extras: Any) -> list[DataLoader]:
    """One loader per rank, each built from the same config and sharded as its rank."""
    loaders = [build(config, **extras) for _ in range(world_size)]
    for rank, loader in enumerate(loaders):
        loader.shard(rank, world_size)
    return loaders


def check_sharding(config: dict[str, Any], world_size: int, epochs: range, **extras: Any) -> list[list[list[str]]]:
    """Check the sharding rule against the unsharded loader on ``epochs``; the ranks' ids of the last epoch.

    Every rank has the same len() and produces that many batches; rank r's first ``full`` batches are the whole
    batches r, r + world_size, ... of the unsharded epoch; its last batch (when the batch count is not a multiple)
    is its piece of the tail: the pieces, in rank order, are the instances of the last ``tail`` batches in order
    (repeated in order up to one per rank when there are fewer), and their sizes differ by at most one. So the ranks
    together see the unsharded epoch's instances exactly once, plus those repeats.
    """
    unsharded = build(config, **extras)
    ranks = sharded(config, world_size, **extras)
    full, tail = divmod(len(unsharded), world_size)
    assert [len(loader) for loader in ranks] == [full + (1 if tail else 0)] * world_size
    shares: list[list[list[str]]] = []
    for epoch in epochs:
        whole = ids(unsharded.iter_epoch(epoch))
        shares = [ids(loader.iter_epoch(epoch)) for loader in ranks]
        assert [len(share) for share in shares] == [len(ranks[0])] * world_size
        for rank, share in enumerate(shares):
            assert share[:full] == whole[rank : full * world_size : world_size]
        pooled = flat_ids(whole[full * world_size :])
        padded = [pooled[index % len(pooled)] for index in range(max(len(pooled), world_size))] if tail else []
        if tail:
            pieces = [share[full] for share in shares]
            assert flat_ids(pieces) == padded
            sizes = [len(piece) for piece in pieces]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True) and min(sizes) >= 1
        seen = [name for share in shares for batch in share for name in batch]
        assert sorted(seen) == sorted(flat_ids(whole[: full * world_size]) + padded)
    return shares


def flat_ids(batches: list[list[str]]) -> list[str]:
    return [name for batch in batches for name in batch]


def test_sharding_over_two_ranks_covers_every_instance_once():
    config = {"batch_size": 3, "shuffle": True}
    unsharded = build(config, seed=8)
    ranks = sharded(config, 2, seed=8)
    # 7 batches: 3 whole ones each, then the last batch (2 instances) split into one instance per rank.
    assert [len(loader) for loader in ranks] == [4, 4]
    for epoch in range(2):
        shares = [ids(loader.iter_epoch(epoch)) for loader in ranks]
        assert sorted(flat_ids(shares[0] + shares[1])) == ALL_IDS
        whole = ids(unsharded.iter_epoch(epoch))
        assert shares[0] == [*whole[0:6:2], whole[6][:1]]
        assert shares[1] == [*whole[1:6:2], whole[6][1:]]
    assert ids(ranks[1].iter_epoch(1, start_batch=1)) == ids(ranks[1].iter_epoch(1))[1:]
    with pytest.raises(ValueError, match="shard needs 0 <= rank < world_size, got rank 2 and world_size 2"):
        ranks[0].shard(2, 2)


@pytest.mark.parametrize(
    ("world_size", "batch_size", "batches_per_rank", "seen"),
    [
        (1, 3, 7, 20),  # unsharded: nothing changes
        (2, 5, 2, 20),  # 4 batches: a multiple, no tail
        (2, 3, 4, 20),  # 7 batches: 3 whole each + a tail of 1 batch (2 instances: pieces of 1, 1)
        (2, 4, 3, 20),  # 5 batches: 2 whole each + a tail of 1 batch (4 instances: pieces of 2, 2)
        (3, 7, 1, 20),  # 3 batches: a multiple
        (3, 3, 3, 21),  # 7 batches: 2 whole each + a tail of 1 batch (2 instances, one repeated for rank 2)
        (3, 4, 2, 20),  # 5 batches: 1 whole each + a tail of 2 batches (8 instances: pieces of 3, 3, 2)
        (3, 2, 4, 21),  # 10 batches: 3 whole each + a tail of 1 batch (2 instances, one repeated)
    ],
)
def test_every_rank_gets_the_same_number_of_batches(world_size, batch_size, batches_per_rank, seen):
    config = {"batch_size": batch_size, "shuffle": True}
    shares = check_sharding(config, world_size, range(2), seed=3)
    assert all(len(share) == batches_per_rank for share in shares)
    names = flat_ids([batch for share in shares for batch in share])
    assert set(names) == set(ALL_IDS) and len(names) == seen


def test_sharded_shuffled_epochs_differ_and_each_is_reproducible():
    config = {"batch_size": 4, "shuffle": True}
    torch.manual_seed(0)
    epochs = [[ids(loader.iter_epoch(epoch)) for loader in sharded(config, 3, seed=9)] for epoch in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]
    assert all(epoch[rank][-1] != other[rank][-1] for epoch, other in itertools.pairwise(epochs) for rank in range(3))
    torch.manual_seed(1)
    again = sharded(config, 3, seed=9)
    for epoch in (2, 0, 1):  # another global random state, epochs out of order, freshly built loaders
        assert [ids(loader.iter_epoch(epoch)) for loader in again] == epochs[epoch]
    assert [ids(loader.iter_epoch(0)) for loader in sharded(config, 3, seed=10)] != epochs[0]


class CountingReader(JsonLinesReader):
    """Counts how often the data file is opened."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def _read(self, path: str):
        self.reads += 1
        return super()._read(path)


@pytest.mark.parametrize("world_size", [2, 3])
def test_sharding_with_max_instances_in_memory_pools_a_tail_from_two_chunks_in_one_read(world_size):
    # Chunks of 4 instances, one batch each: 5 batches. Over 3 ranks the tail is the last two chunks' batches.
    config = {"batch_size": 4, "shuffle": True, "max_instances_in_memory": 4}
    shares = check_sharding(config, world_size, range(2), seed=5)
    assert sorted(flat_ids([batch for share in shares for batch in share])) == ALL_IDS
    if world_size == 3:
        pieces = [share[-1] for share in shares]
        assert sorted(flat_ids(pieces)) == ALL_IDS[12:] and [len(piece) for piece in pieces] == [3, 3, 2]
    reader = CountingReader()
    loader = build(config, reader=reader, seed=5)
    loader.shard(world_size - 1, world_size)
    len(loader)  # counting the batches reads the file once
    reads = reader.reads
    list(loader.iter_epoch(1))
    assert reader.reads == reads + 1  # the whole batches and the tail come from one pass over the file


@pytest.mark.parametrize(("max_instances_in_memory", "crossing_epoch"), [(None, 2), (7, 4)])
def test_sharding_with_batches_per_epoch_pools_a_tail_across_two_passes(max_instances_in_memory, crossing_epoch):
    config = {
        "batch_size": 3,
        "shuffle": True,
        "batches_per_epoch": 5,
        "max_instances_in_memory": max_instances_in_memory,
    }
    per_pass = len(build({**config, "batches_per_epoch": None}))  # 7 in memory; chunks of 7, 7, 6 give 8
    # Over 3 ranks each epoch of 5 batches has a tail of 2; in crossing_epoch those are in two passes.
    tail_start = 5 * crossing_epoch + 3
    assert tail_start // per_pass != (tail_start + 1) // per_pass
    check_sharding(config, 3, range(crossing_epoch + 1), seed=6)
    check_sharding(config, 2, range(crossing_epoch + 1), seed=6)


@pytest.mark.parametrize("world_size", [2, 3])
def test_sharding_with_the_bucket_batch_sampler(world_size):
    config = {"batch_sampler": {"type": "bucket", "batch_size": 4}}  # 5 batches
    check_sharding(config, world_size, range(2), seed=7)
    length = {instance["id"]: len(instance["tokens"]) for instance in JsonLinesReader().read(SEQUENCES)}
    for loader in sharded(config, world_size, seed=7):
        for batch in loader.iter_epoch(1):  # the tail piece is padded to its own longest instance
            assert batch["tokens"].shape == (len(batch["id"]), max(length[name] for name in batch["id"]))


@pytest.mark.parametrize(
    "config",
    [
        {"batch_size": 3, "shuffle": True},
        {"batch_size": 4, "shuffle": True, "max_instances_in_memory": 4},
        {"batch_size": 3, "shuffle": True, "batches_per_epoch": 5, "drop_last": True},
    ],
)
@pytest.mark.parametrize("world_size", [2, 3])
def test_a_sharded_epoch_resumes_at_any_of_its_batches(config, world_size):
    loaders = sharded(config, world_size, seed=4)
    assert len({len(loader) for loader in loaders}) == 1
    for loader in loaders:
        whole = list(loader.iter_epoch(2))
        assert len(whole) == len(loader)
        for start in range(len(whole) + 1):
            assert_same_batches(list(loader.iter_epoch(2, start_batch=start)), whole[start:])
        with pytest.raises(ValueError, match=rf"start_batch must be between 0 and {len(whole)} \(batches per epoch"):
            loader.iter_epoch(2, start_batch=len(whole) + 1)


def test_the_tail_piece_is_collated_like_any_batch_and_worker_processes_change_nothing():
    config = {"batch_size": 4, "shuffle": True}
    in_process = sharded(config, 3, seed=2)
    with_workers = sharded({**config, "num_workers": 2}, 3, seed=2)
    for one, other in zip(in_process, with_workers):
        assert_same_batches(list(other.iter_epoch(1)), list(one.iter_epoch(1)))
    tail = list(in_process[2].iter_epoch(1))[-1]
    assert len(tail["id"]) == 2 and tail["tokens"].dtype == torch.int64 and tail["label"].shape == (2,)


@pytest.mark.parametrize(
    ("lines", "batch_size", "tail_instances"),
    [(20, 6, 2), (2, 4, 2), (1, 4, 1)],  # a short last batch; a dataset smaller than the world; a single instance
)
def test_a_tail_smaller_than_the_world_repeats_instances_and_says_so(
    tmp_path, caplog, lines, batch_size, tail_instances
):
    data = tmp_path / "tiny.jsonl"
    data.write_text(
        "".join(line + "\n" for line in [line for line in open(SEQUENCES).read().splitlines() if line.strip()][:lines])
    )
    config = {"batch_size": batch_size}
    ranks = sharded(config, 3, data_path=str(data))
    with caplog.at_level(logging.WARNING, logger="regimen.data.data_loader"):
        shares = [ids(loader.iter_epoch(0)) for loader in ranks]
    pieces = [share[-1] for share in shares]
    tail_ids = ALL_IDS[lines - tail_instances : lines]
    assert pieces == [[tail_ids[rank % tail_instances]] for rank in range(3)]  # one each, repeated in order
    assert len({len(share) for share in shares}) == 1
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 3  # once per rank and epoch
    assert warnings[0] == (
        f"{data}, epoch 0: the last 1 batch(es) hold {tail_instances} instance(s), fewer than the 3 workers; "
        f"they are repeated in order until every worker has one, so this epoch sees {3 - tail_instances} "
        "repeated instance(s), as torch's DistributedSampler pads"
    )


class EmptyBatchSampler(BatchSampler):
    """A user's sampler that gives one empty batch."""

    def get_batch_indices(self, instances, generator):
        return [[]]

    def get_num_batches(self, instances):
        return 1


def test_an_empty_tail_cannot_be_shared_out():
    loader = DefaultDataLoader(JsonLinesReader(), SEQUENCES, batch_sampler=EmptyBatchSampler())
    loader.shard(1, 2)
    assert len(loader) == 1
    with pytest.raises(ValueError, match=r"sequences\.jsonl: the last 1 batches of epoch 3 are empty, so there is "):
        list(loader.iter_epoch(3))


def test_two_worker_processes_give_the_same_batches_as_the_main_process():
    config = {"batch_size": 5, "shuffle": True}
    in_process = list(build(config, seed=6).iter_epoch(1))
    with_workers = list(build({**config, "num_workers": 2}, seed=6).iter_epoch(1))
    assert_same_batches(with_workers, in_process)
    assert [batch.indices for batch in with_workers] == [batch.indices for batch in in_process]
    # Without an accelerator pin_memory pins nothing (as torch's loader), in the main process and in workers.
    for workers in (0, 1):
        pinned = list(build({**config, "num_workers": workers, "pin_memory": True}, seed=6).iter_epoch(1))
        assert_same_batches(pinned, in_process)
        assert all(batch["tokens"].is_pinned() == torch.cuda.is_available() for batch in pinned)


def test_persistent_workers_keep_their_processes_and_give_the_same_batches_every_epoch():
    import gc
    import multiprocessing

    def children() -> set[int | None]:  # this process's children that other tests did not leave behind
        return {process.pid for process in multiprocessing.active_children()} - before

    before: set[int | None] = set()
    before = children()
    config = {"batch_size": 3, "shuffle": True, "batches_per_epoch": 4}
    in_process = build(config, seed=3)
    persistent = build({**config, "num_workers": 1, "persistent_workers": True, "prefetch_factor": 3}, seed=3)
    workers = []
    for epoch in range(3):  # batches_per_epoch 4 of 7 per pass: epochs cross passes, each pass in a new order
        assert_same_batches(list(persistent.iter_epoch(epoch)), list(in_process.iter_epoch(epoch)))
        workers.append(children())
    assert len(workers[0]) == 1 and workers == [workers[0]] * 3  # one process, alive from epoch to epoch
    resumed = list(persistent.iter_epoch(4, start_batch=2))  # mid-epoch, as a resumed run asks
    assert_same_batches(resumed, list(in_process.iter_epoch(4, start_batch=2)))
    del persistent
    gc.collect()
    assert not children()  # the workers end with their loader


class TransformingReader(JsonLinesReader):
    """Reads as jsonl, then adds per-instance work at batching time: where it ran, and a random draw."""

    def transform_instance(self, instance):
        import os

        instance["transformed_in"] = os.getpid()
        instance["noise"] = torch.rand(2)
        return instance


def test_transform_instance_runs_at_batching_time_in_the_workers_every_epoch():
    import os

    config = {"batch_size": 4, "shuffle": True}
    for workers in (0, 2):
        loader = build({**config, "num_workers": workers}, reader=TransformingReader(), seed=4)
        epochs = [list(loader.iter_epoch(epoch)) for epoch in range(2)]
        plain = [list(build(config, seed=4).iter_epoch(epoch)) for epoch in range(2)]
        for batches, expected in zip(epochs, plain):
            assert ids(batches) == ids(expected)
            assert all(torch.equal(b["tokens"], e["tokens"]) for b, e in zip(batches, expected))
        places = {pid for batches in epochs for batch in batches for pid in batch["transformed_in"].tolist()}
        assert (places == {os.getpid()}) if workers == 0 else (os.getpid() not in places and len(places) >= 2)
        first, second = (torch.cat([batch["noise"] for batch in batches]) for batches in epochs)
        assert not torch.equal(first, second)  # an augmentation draws anew every epoch
        assert all("noise" not in instance for instance in loader.iter_instances())  # the read ones are unchanged
    again = build({**config, "num_workers": 2}, reader=TransformingReader(), seed=4)
    repeat = torch.cat([batch["noise"] for batch in again.iter_epoch(0)])
    assert torch.equal(repeat, torch.cat([batch["noise"] for batch in epochs[0]]))  # workers: seeded by (seed, pass)


def test_reading_into_memory_pauses_the_garbage_collector_and_restores_its_state():
    import gc

    class WatchingReader(JsonLinesReader):
        def _read(self, path):
            for instance in super()._read(path):
                states.append(gc.isenabled())
                yield instance

    for enabled in (True, False):
        states: list[bool] = []
        (gc.enable if enabled else gc.disable)()
        try:
            loader = build({"batch_size": 4}, reader=WatchingReader())
            assert len(loader) == 5 and states == [False] * 20  # no collection while the instances pile up
            assert gc.isenabled() is enabled  # the caller's setting, whichever it was
        finally:
            gc.enable()


def test_worker_keys_need_worker_processes():
    with pytest.raises(ConfigurationError) as info:
        build({"batch_size": 4, "persistent_workers": True, "prefetch_factor": 0})
    message = str(info.value)
    assert "data_loader.persistent_workers: needs worker processes: set num_workers above 0" in message
    assert "data_loader.prefetch_factor: needs worker processes: set num_workers above 0" in message
    assert "data_loader.prefetch_factor: must be at least 1, got 0" in message
    with pytest.raises(ConfigurationError, match=r"data_loader\.persistent_workers: cannot be set together with max"):
        build({"batch_size": 4, "num_workers": 1, "persistent_workers": True, "max_instances_in_memory": 8})


def test_bucket_batch_sampler_through_the_loader():
    config = {"batch_sampler": {"type": "bucket", "batch_size": 4, "padding_noise": 0.0}}
    loader = build(config, seed=1)
    assert len(loader) == 5
    batches = list(loader.iter_epoch(0))
    assert sorted(flat(batches)) == ALL_IDS
    widths = sorted(batch["tokens"].shape[1] for batch in batches)
    assert widths == [2, 3, 5, 7, 11]  # the longest of each run of 4 sorted lengths
    assert ids(build(config, seed=1).iter_epoch(0)) == ids(batches)
    assert ids(loader.iter_epoch(1)) != ids(batches)


def test_multiprocess_is_the_allennlp_name_of_the_default_loader():
    loader = build({"type": "multiprocess", "batch_size": 2})
    assert type(loader) is DefaultDataLoader and len(loader) == 10


def test_building_reads_nothing_and_a_missing_file_is_reported_when_data_is_needed(tmp_path):
    loader = build({"batch_size": 2}, data_path=str(tmp_path / "missing.jsonl"))
    with pytest.raises(ConfigurationError, match=r"data file not found: .*missing\.jsonl"):
        len(loader)


def test_batches_per_epoch_needs_at_least_one_batch(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty\.jsonl: batches_per_epoch is 4, but the data gives no batches"):
        len(build({"batch_size": 2, "batches_per_epoch": 4}, data_path=str(empty)))
    assert len(build({"batch_size": 2}, data_path=str(empty))) == 0


def test_batch_size_and_batch_sampler_together_is_an_error_at_the_key_path():
    config = {"batch_size": 4, "shuffle": True, "batch_sampler": {"type": "bucket", "batch_size": 4}}
    with pytest.raises(ConfigurationError) as info:
        build(config)
    message = str(info.value)
    assert "data_loader.batch_size: cannot be set together with batch_sampler" in message
    assert "data_loader.shuffle: cannot be set together with batch_sampler" in message


def test_loader_config_mistakes_are_reported_together_at_their_paths():
    with pytest.raises(
        ConfigurationError, match=r"data_loader\.batch_size: missing: a loader needs batch_size or a batch_sampler"
    ):
        build({})
    with pytest.raises(ConfigurationError) as info:
        build({"batch_size": 8, "num_workers": -1, "max_instances_in_memory": 4, "batches_per_epoch": 0})
    message = str(info.value)
    assert "data_loader.num_workers: must be at least 0, got -1" in message
    assert "data_loader.batches_per_epoch: must be at least 1, got 0" in message
    assert "data_loader.max_instances_in_memory: must be at least the batch size (8), got 4" in message
    with pytest.raises(
        ConfigurationError, match=r'data_loader\.shufle: unknown key "shufle"; did you mean "shuffle"\?'
    ):
        build({"batch_size": 8, "shufle": True})


class MiscountingSampler(BatchSampler):
    """A user's sampler whose two methods disagree: one batch of everything, but it claims two."""

    def get_batch_indices(self, instances, generator):
        return [list(range(len(instances)))]

    def get_num_batches(self, instances):
        return 2


def test_a_sampler_whose_batch_count_is_wrong_is_named():
    loader = DefaultDataLoader(JsonLinesReader(), SEQUENCES, batch_sampler=MiscountingSampler())
    assert len(loader) == 2
    with pytest.raises(ValueError, match=r"MiscountingSampler\.get_batch_indices gave 1 batches for 20 instances, but"):
        list(loader)

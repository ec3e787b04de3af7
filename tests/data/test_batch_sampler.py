"""The bucket batch sampler: batches of similar length, every instance once, order reproducible from the generator."""

from __future__ import annotations

import itertools

import pytest
import torch

from regimen.data import BatchSampler, BucketBatchSampler, JsonLinesReader
from regimen.registry import ConfigurationError, Params
from tests.conftest import FIXTURES

INSTANCES = list(JsonLinesReader().read(str(FIXTURES / "data" / "sequences.jsonl")))
LENGTHS = [len(instance["tokens"]) for instance in INSTANCES]


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def bucket(**config) -> BatchSampler:
    return BatchSampler.from_params(Params({"type": "bucket", **config}, "data_loader.batch_sampler"))


def padding(batches: list[list[int]]) -> int:
    return sum(max(LENGTHS[i] for i in batch) * len(batch) - sum(LENGTHS[i] for i in batch) for batch in batches)


def test_without_noise_batches_are_consecutive_runs_of_the_sorted_lengths():
    batches = bucket(batch_size=4, sorting_keys=["tokens"], padding_noise=0.0).get_batch_indices(
        INSTANCES, generator(0)
    )
    assert sorted(index for batch in batches for index in batch) == list(range(20))
    by_length = sorted(batches, key=lambda batch: min(LENGTHS[i] for i in batch))
    for shorter, longer in itertools.pairwise(by_length):
        assert max(LENGTHS[i] for i in shorter) <= min(LENGTHS[i] for i in longer)
    sorted_lengths = sorted(LENGTHS)
    assert [sorted(LENGTHS[i] for i in batch) for batch in by_length] == [
        sorted_lengths[start : start + 4] for start in range(0, 20, 4)
    ]


def test_with_noise_batches_still_need_far_less_padding_than_file_order():
    file_order = [list(range(start, start + 4)) for start in range(0, 20, 4)]
    sampler = bucket(batch_size=4)  # sorting key guessed, default noise 0.1
    for seed in range(5):
        assert padding(sampler.get_batch_indices(INSTANCES, generator(seed))) < padding(file_order) / 3


def test_batch_order_is_reproducible_from_the_generator_alone():
    sampler = bucket(batch_size=3, sorting_keys=["tokens"])
    torch.manual_seed(1)
    first = sampler.get_batch_indices(INSTANCES, generator(7))
    torch.manual_seed(2)
    again = bucket(batch_size=3, sorting_keys=["tokens"]).get_batch_indices(INSTANCES, generator(7))
    assert first == again
    assert sampler.get_batch_indices(INSTANCES, generator(8)) != first


def test_sampling_leaves_the_global_random_state_alone():
    state = torch.get_rng_state()
    bucket(batch_size=3).get_batch_indices(INSTANCES, generator(0))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("drop_last, sizes", [(False, [6, 6, 6, 2]), (True, [6, 6, 6])])
def test_drop_last_and_the_number_of_batches(drop_last, sizes):
    sampler = bucket(batch_size=6, drop_last=drop_last)
    batches = sampler.get_batch_indices(INSTANCES, generator(3))
    assert sorted(len(batch) for batch in batches) == sorted(sizes)
    assert sampler.get_num_batches(INSTANCES) == len(sizes)
    assert len({index for batch in batches for index in batch}) == sum(sizes)


def test_the_sorting_key_is_guessed_as_the_longest_list_field():
    assert bucket(batch_size=2).guess_sorting_keys(INSTANCES) == ["tokens"]


def test_a_sorting_key_that_is_not_a_field_suggests_the_right_one():
    with pytest.raises(ConfigurationError, match=r'unknown field "token"; did you mean "tokens"\?.*\(in instance 0\)'):
        bucket(batch_size=2, sorting_keys=["token"]).get_batch_indices(INSTANCES, generator(0))


def test_a_sorting_key_without_a_length_is_an_error():
    with pytest.raises(ConfigurationError, match='field "label" of instance 0 is of type int, which has no length'):
        bucket(batch_size=2, sorting_keys=["label"]).get_batch_indices(INSTANCES, generator(0))


def test_instances_without_list_fields_leave_nothing_to_guess():
    with pytest.raises(
        ConfigurationError, match=r"cannot guess its sorting_keys: .*\(fields: x, y\); set sorting_keys"
    ):
        bucket(batch_size=2).get_batch_indices([{"x": 1, "y": "a"}], generator(0))


def test_bucket_config_mistakes_name_their_paths():
    with pytest.raises(ConfigurationError) as info:
        bucket(batch_size=0, sorting_keys=[], padding_noise=-0.5)
    message = str(info.value)
    assert "data_loader.batch_sampler.batch_size: must be a positive int, got 0" in message
    assert "data_loader.batch_sampler.sorting_keys: must name at least one field, or be null" in message
    assert "data_loader.batch_sampler.padding_noise: must be at least 0, got -0.5" in message


def test_no_instances_give_no_batches():
    assert BucketBatchSampler(batch_size=2).get_batch_indices([], generator(0)) == []

"""collate: how each kind of field becomes a batched tensor, with padding and masks where lengths differ."""

from __future__ import annotations

import enum
import importlib
import random

import numpy
import pytest
import torch

from regimen.data import collate


def test_numbers_become_tensors_with_their_dtype():
    batch = collate(
        [
            {"label": 1, "score": 0.5, "flag": True, "mixed": 1},
            {"label": 2, "score": 1.5, "flag": False, "mixed": 2.5},
        ]
    )
    assert batch["label"].dtype == torch.int64 and batch["label"].tolist() == [1, 2]
    assert batch["score"].dtype == torch.float32 and batch["score"].tolist() == [0.5, 1.5]
    assert batch["flag"].dtype == torch.bool and batch["flag"].tolist() == [True, False]
    assert batch["mixed"].dtype == torch.float32 and batch["mixed"].tolist() == [1.0, 2.5]
    assert set(batch) == {"label", "score", "flag", "mixed"}


def test_numpy_scalars_count_as_numbers():
    batch = collate([{"x": numpy.float64(0.25), "y": numpy.int32(3)}, {"x": numpy.float64(1.0), "y": numpy.int32(4)}])
    assert batch["x"].dtype == torch.float32 and batch["x"].tolist() == [0.25, 1.0]
    assert batch["y"].dtype == torch.int64 and batch["y"].tolist() == [3, 4]


def test_lists_of_equal_length_are_stacked_without_a_mask():
    batch = collate([{"features": [1.0, 2.0, 3.0]}, {"features": [4.0, 5.0, 6.0]}])
    assert torch.equal(batch["features"], torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    assert batch["features"].dtype == torch.float32
    assert "features_mask" not in batch


def test_lists_of_different_lengths_are_padded_with_zeros_and_masked():
    batch = collate([{"tokens": [5, 6, 7]}, {"tokens": [8]}, {"tokens": []}])
    assert batch["tokens"].dtype == torch.int64
    assert batch["tokens"].tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert batch["tokens_mask"].dtype == torch.bool
    assert batch["tokens_mask"].tolist() == [[True, True, True], [True, False, False], [False, False, False]]


def test_nested_lists_are_padded_along_every_dimension():
    # Characters of words of sentences: ragged in both the number of words and the length of each word.
    batch = collate([{"chars": [[1, 2, 3], [4]]}, {"chars": [[5, 6]]}, {"chars": [[7], [8], [9, 10]]}])
    assert batch["chars"].shape == (3, 3, 3)
    assert batch["chars"].tolist() == [
        [[1, 2, 3], [4, 0, 0], [0, 0, 0]],
        [[5, 6, 0], [0, 0, 0], [0, 0, 0]],
        [[7, 0, 0], [8, 0, 0], [9, 10, 0]],
    ]
    assert batch["chars_mask"].sum(dim=(1, 2)).tolist() == [4, 2, 4]
    assert batch["chars_mask"][2].tolist() == [[True, False, False], [True, False, False], [True, True, False]]


def test_tensors_are_stacked_and_padded_with_a_mask_when_shapes_differ():
    same = collate([{"image": torch.ones(2, 3)}, {"image": torch.zeros(2, 3)}])
    assert same["image"].shape == (2, 2, 3) and "image_mask" not in same

    ragged = collate([{"frames": torch.ones(3, 2)}, {"frames": torch.full((1, 4), 2.0)}])
    assert ragged["frames"].shape == (2, 3, 4)
    assert ragged["frames"][0].tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]]
    assert ragged["frames"][1].tolist() == [[2, 2, 2, 2], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert ragged["frames_mask"][1].tolist() == [[True] * 4, [False] * 4, [False] * 4]


def test_tensors_of_different_dtypes_are_promoted_and_numpy_arrays_count_as_tensors():
    batch = collate([{"x": torch.tensor([1, 2])}, {"x": numpy.array([0.5, 0.25], dtype=numpy.float32)}])
    assert batch["x"].dtype == torch.float32 and batch["x"].tolist() == [[1.0, 2.0], [0.5, 0.25]]


def test_strings_and_other_objects_stay_plain_lists():
    batch = collate(
        [
            {"id": "a", "words": ["the", "cat"], "meta": {"k": 1}, "maybe": None, "odd": [1, [2]]},
            {"id": "b", "words": ["a"], "meta": {"k": 2}, "maybe": 3, "odd": [3, [4]]},
        ]
    )
    assert batch["id"] == ["a", "b"]
    assert batch["words"] == [["the", "cat"], ["a"]]
    assert batch["meta"] == [{"k": 1}, {"k": 2}]
    assert batch["maybe"] == [None, 3]
    assert batch["odd"] == [[1, [2]], [3, [4]]]  # a number beside a list: not a tensor
    assert not any(name.endswith("_mask") for name in batch)


def test_instances_with_different_fields_cannot_be_batched():
    with pytest.raises(
        ValueError, match=r"instance 1 of the batch has different fields from instance 0 \(missing label\)"
    ):
        collate([{"x": 1, "label": 0}, {"x": 2}])


def test_a_mask_may_not_overwrite_a_field():
    with pytest.raises(ValueError, match='its mask would be called "tokens_mask", which is already a field'):
        collate([{"tokens": [1, 2], "tokens_mask": [1, 1]}, {"tokens": [1], "tokens_mask": [1]}])


def test_an_empty_batch_is_an_empty_dict():
    assert collate([]) == {}


# ---- the fast path agrees with the general path -------------------------------------------------------------------
# collate_field takes a fast path for Python numbers and flat lists of Python numbers of one length; the general
# path is the reference. Batches are generated from a seeded RNG, so a failure is reproducible from its seed.
collate_module = importlib.import_module("regimen.data.collate")

NUMBER_MAKERS = {
    "int": lambda rng: rng.choice([0, 1, -1, 7, -300, 2**31, -(2**31) - 1, 2**53 + 1, 2**62, -(2**63)]),
    "float": lambda rng: (
        rng.choice(
            [0.0, -0.0, 0.5, -2.75, 1e-40, 1e39, -1e39, 3.4e38, float("nan"), float("inf"), -float("inf"), 16777217.0]
        )
        if rng.random() < 0.5
        else rng.uniform(-1e6, 1e6)
    ),
    "bool": lambda rng: rng.random() < 0.5,
}
KIND_MIXES = [
    ("int",),
    ("float",),
    ("bool",),
    ("int", "float"),
    ("bool", "int"),
    ("bool", "float"),
    tuple(NUMBER_MAKERS),
]


def _numbers(rng: random.Random, kinds: tuple[str, ...], count: int) -> list:
    # every kind of the mix appears at least once when there is room, so the mix really is a mix
    chosen = list(kinds[:count]) + [rng.choice(kinds) for _ in range(count - len(kinds))]
    rng.shuffle(chosen)
    return [NUMBER_MAKERS[kind](rng) for kind in chosen]


def _assert_same_field(got: tuple, expected: tuple) -> None:
    for a, b in zip(got, expected):
        assert type(a) is type(b)
        if isinstance(a, torch.Tensor):
            assert a.dtype == b.dtype and a.shape == b.shape
            if a.dtype == torch.float32:  # bit for bit, so nan, -0.0 and inf compare too
                a, b = a.view(torch.int32), b.view(torch.int32)
            assert torch.equal(a, b)
        else:
            assert a == b


@pytest.mark.parametrize("seed", range(40))
def test_fast_path_matches_the_general_path_for_numbers(seed):
    rng = random.Random(seed)
    for kinds in KIND_MIXES:
        values = _numbers(rng, kinds, rng.randint(1, 6))
        assert collate_module._plain_numbers(values) is not None  # the fast path really took it
        _assert_same_field(collate_module.collate_field(values), collate_module._collate_field_general(values))


@pytest.mark.parametrize("seed", range(40))
def test_fast_path_matches_the_general_path_for_flat_lists(seed):
    rng = random.Random(1000 + seed)
    for kinds in KIND_MIXES:
        batch_size, length = rng.randint(1, 6), rng.choice([0, 1, 2, 5, 17])
        # the kinds are mixed across the whole batch, so a row may hold only one of them
        flat = _numbers(rng, kinds, batch_size * length)
        values = [flat[row * length : (row + 1) * length] for row in range(batch_size)]
        if rng.random() < 0.3:
            values = [tuple(value) for value in values]
        assert collate_module._plain_numbers(values) is not None
        _assert_same_field(collate_module.collate_field(values), collate_module._collate_field_general(values))


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        ([True, 2], torch.int64),  # bool is an int subclass: bool with int is int64, True -> 1
        ([[True, False], [3, -4]], torch.int64),
        ([True, 2.5], torch.float32),
        ([[1, 2], [3, 4.0]], torch.float32),  # one float anywhere in the batch makes every row float
        ([[False], [True]], torch.bool),
        ([[], []], torch.float32),  # no numbers at all: the default floating dtype, shape (2, 0)
    ],
)
def test_fast_path_dtype_of_mixes(values, dtype):
    fast, general = collate_module.collate_field(values), collate_module._collate_field_general(values)
    assert fast[0].dtype == dtype and fast[1] is None
    _assert_same_field(fast, general)


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    "values",
    [
        [[1, 2, 3], [4]],  # ragged
        [[1, 2], []],
        [[[1], [2]], [[3], [4]]],  # nested
        [[1, 2], [3, [4]]],
        [1, [2]],  # a number beside a list
        ["a", "b"],
        [1.0, None],
        [[1.0, None], [2.0, 3.0]],
        [["a"], ["b"]],
        [numpy.float64(1.5), 2.5],  # numpy scalars: the general path decides
        [[numpy.int32(1)], [2]],
        [[torch.tensor(1.0)], [2.0]],  # 0-d tensors inside lists stay plain lists
        [torch.tensor([1.0]), torch.tensor([2.0, 3.0])],  # tensors of different shapes are padded
        [numpy.array([1, 2]), numpy.array([3, 4])],
        [Colour.RED, 2],  # int subclasses
        [1 + 2j, 3.0],
        [{"k": 1}, {"k": 2}],
    ],
)
def test_everything_else_goes_through_the_general_path_unchanged(values):
    assert collate_module._plain_numbers(values) is None
    _assert_same_field(collate_module.collate_field(values), collate_module._collate_field_general(values))


@pytest.mark.parametrize(
    "values",
    [
        [torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])],  # what the csv reader's features are
        [torch.tensor(1), torch.tensor(2)],
        [torch.zeros(2, 3, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool)],
        [torch.tensor([1.0]), torch.tensor([2])],  # one shape, dtypes promoted by torch.stack as by the general path
    ],
)
def test_tensors_of_one_shape_are_stacked_as_the_general_path_would(values):
    assert collate_module._plain_numbers(values) is not None
    _assert_same_field(collate_module.collate_field(values), collate_module._collate_field_general(values))


def test_an_int_too_big_for_int64_fails_the_same_way_on_both_paths():
    for values in ([2**63, 1], [[1, 2**63], [3, 4]]):
        with pytest.raises(ValueError, match="Overflow") as fast:
            collate_module.collate_field(values)
        with pytest.raises(ValueError, match="Overflow") as general:
            collate_module._collate_field_general(values)
        assert str(fast.value) == str(general.value)


@pytest.mark.parametrize("seed", range(10))
def test_whole_batches_match_the_general_path(seed, monkeypatch):
    rng = random.Random(5000 + seed)
    batch_size, length = rng.randint(1, 8), rng.randint(0, 12)
    instances = [
        {
            "features": [rng.uniform(-5, 5) for _ in range(length)],
            "label": rng.randrange(10),
            "flags": [rng.random() < 0.5 for _ in range(3)],
            "tokens": [rng.randrange(100) for _ in range(rng.randint(0, 4))],  # ragged: the general path
            "id": f"row{rng.randrange(1000)}",
        }
        for _ in range(batch_size)
    ]
    fast = collate(instances)
    monkeypatch.setattr(collate_module, "collate_field", collate_module._collate_field_general)
    general = collate(instances)
    assert list(fast) == list(general)
    for name in general:
        _assert_same_field((fast[name],), (general[name],))


def test_a_csv_sized_batch_matches_the_general_path():
    rng = random.Random(0)
    features = [[rng.gauss(0, 1) for _ in range(256)] for _ in range(128)]
    _assert_same_field(collate_module.collate_field(features), collate_module._collate_field_general(features))

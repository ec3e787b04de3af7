"""collate: how each kind of field becomes a batched tensor, with padding and masks where lengths differ."""

from __future__ import annotations

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

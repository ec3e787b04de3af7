"""Losses are averaged per instance: each batch's loss weighs as many instances as it holds."""

from __future__ import annotations

import pytest
import torch

from regimen.models import Model
from regimen.trainers.loss_totals import LossTotals


def model() -> Model:
    return Model.from_params({"type": "mlp_classifier", "input_dim": 2, "num_classes": 2})


def test_a_short_batch_weighs_its_instances_not_a_whole_batch():
    totals = LossTotals()
    totals.add({"loss": torch.tensor(1.0)}, {"features": torch.zeros(3, 2)})
    totals.add({"loss": torch.tensor(4.0)}, {"features": torch.zeros(1, 2)})
    assert totals.metrics("", model(), reset=True)["loss"] == pytest.approx((3 * 1.0 + 4.0) / 4)


def test_a_model_that_reports_its_batch_size_is_weighted_by_it():
    # A loss averaged over tokens: the model says how many tokens the batch had.
    totals = LossTotals()
    totals.add({"loss": torch.tensor(2.0), "batch_size": 10}, {"tokens": torch.zeros(2, 7)})
    totals.add({"loss": torch.tensor(5.0), "batch_size": 30}, {"tokens": torch.zeros(2, 9)})
    assert totals.metrics("", model(), reset=True)["loss"] == pytest.approx((20 + 150) / 40)


def test_a_batch_without_tensors_counts_once():
    totals = LossTotals()
    totals.add({"loss": torch.tensor(2.0)}, {"name": "x"})
    totals.add({"loss": torch.tensor(4.0)}, {})
    assert totals.metrics("", model(), reset=True)["loss"] == pytest.approx(3.0)


def test_a_checkpoint_from_before_instances_were_counted_still_loads():
    totals = LossTotals()
    totals.load_state_dict({"sums": {"loss": torch.tensor(3.0)}, "batches": 2})
    assert totals.instances == 2 and totals.metrics("", model(), reset=True)["loss"] == pytest.approx(1.5)
    totals.add({"loss": torch.tensor(1.0)}, {"features": torch.zeros(2, 2)})
    assert totals.state_dict()["instances"] == 4

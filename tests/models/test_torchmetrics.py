"""torchmetrics metrics held by a model: reported by name, reset at each read that resets, reduced over workers,
kept in mid-epoch checkpoints and out of the weights; MlpClassifier's accuracy as one, with its old weights."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
import torchmetrics
from torchmetrics.classification import MulticlassAUROC, MulticlassPrecision, MulticlassRecall
from torchmetrics.regression import PearsonCorrCoef

from regimen.data import DataLoader
from regimen.data.readers import CsvReader
from regimen.models import MlpClassifier, Model
from regimen.models.archival import load_archive
from regimen.registry import Params
from regimen.trainers import Trainer, TrainerCallback
from regimen.trainers.distributed import Distributed, find_free_port, init_process_group, spawn_workers
from regimen.trainers.loss_totals import LossTotals, restore_metric_states, restore_running_sums, running_sums
from scripts.fault_injection import write_blobs


class Scored(MlpClassifier):
    """An MlpClassifier with a metric of each reduction: sums (the accuracy, a collection whose precision and
    recall share states), lists joined by "cat" (AUROC), "max", and states reduced by none (Pearson's)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scores = torchmetrics.MetricCollection(
            {
                "precision": MulticlassPrecision(num_classes=2, average="macro"),
                "recall": MulticlassRecall(num_classes=2, average="macro"),
                "auroc": MulticlassAUROC(num_classes=2),
            },
            prefix="macro_",
        )
        self.pearson = PearsonCorrCoef()
        self.top_probability = torchmetrics.MaxMetric()

    def forward(self, features: torch.Tensor, label: torch.Tensor | None = None, **extra: Any) -> dict[str, Any]:
        output = super().forward(features, label)
        if label is not None:
            probs = output["probs"].detach()
            self.scores.update(probs, label)
            self.pearson.update(probs[:, 1], label.float())
            self.top_probability.update(probs.max(-1).values)
        return output


def scored(seed: int = 0) -> Scored:
    torch.manual_seed(seed)
    return Scored(input_dim=4, num_classes=2, hidden_dims=[8])


def batches(seed: int, count: int = 3, size: int = 10) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "features": torch.randn(size, 4, generator=generator),
            "label": torch.randint(0, 2, (size,), generator=generator),
        }
        for _ in range(count)
    ]


def expected(model: Model, data: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Each metric of ``Scored`` computed by hand, in float64, over the whole of ``data``."""
    with torch.no_grad():
        logits = torch.cat([model.network(batch["features"]) for batch in data]).double()
    labels = torch.cat([batch["label"] for batch in data])
    probs, predicted = logits.softmax(-1), logits.argmax(-1)
    precision = [
        ((predicted == c) & (labels == c)).sum().item() / max((predicted == c).sum().item(), 1) for c in (0, 1)
    ]
    recall = [((predicted == c) & (labels == c)).sum().item() / (labels == c).sum().item() for c in (0, 1)]
    aurocs = []
    for c in (0, 1):  # the chance that a positive scores above a negative, ties counting half
        positive, negative = probs[labels == c, c], probs[labels != c, c]
        above = (positive[:, None] > negative[None, :]).double() + 0.5 * (positive[:, None] == negative[None, :])
        aurocs.append(above.mean().item())
    pearson = torch.corrcoef(torch.stack([probs[:, 1], labels.double()]))[0, 1].item()
    return {
        "accuracy": (predicted == labels).sum().item() / len(labels),
        "macro_precision": sum(precision) / 2,
        "macro_recall": sum(recall) / 2,
        "macro_auroc": sum(aurocs) / 2,
        "pearson": pearson,
        "top_probability": probs.max(-1).values.max().item(),
    }


def assert_metrics(metrics: dict[str, float], wanted: dict[str, float]) -> None:
    assert set(metrics) == set(wanted)
    assert metrics["accuracy"] == wanted["accuracy"]  # counted in float64: exactly correct / total
    for name, value in wanted.items():
        assert metrics[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_each_metric_is_reported_under_its_attribute_s_name_and_a_collection_s_under_its_keys():
    model, data = scored(), batches(1)
    with torch.no_grad():
        for batch in data:
            model(**batch)
    assert_metrics(model.get_metrics(), expected(model, data))


class Shapes(Model):
    """Results of every shape: a scalar, per class, a matrix, a dict; and a metric updated in eval mode only."""

    def __init__(self) -> None:
        super().__init__()
        self.per_class = MulticlassRecall(num_classes=3, average=None)
        self.confusion = torchmetrics.ConfusionMatrix(task="multiclass", num_classes=3)
        self.classwise = torchmetrics.ClasswiseWrapper(
            MulticlassRecall(num_classes=3, average=None), labels=["cat", "dog", "fox"]
        )
        self.held_out = torchmetrics.MeanMetric()

    def forward(self, preds: torch.Tensor, label: torch.Tensor) -> dict[str, Any]:
        for metric in (self.per_class, self.confusion, self.classwise):
            metric.update(preds, label)
        if not self.training:
            self.held_out.update(label.float())
        return {}


def test_a_per_class_result_is_reported_by_index_a_dict_by_its_keys_a_matrix_not_at_all(caplog):
    model = Shapes()
    model(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2]))
    with caplog.at_level(logging.WARNING):
        first, second = model.get_metrics(), model.get_metrics()
    assert (
        first
        == second
        == {
            "per_class_0": 1.0,
            "per_class_1": 0.5,
            "per_class_2": 1.0,
            "multiclassrecall_cat": 1.0,
            "multiclassrecall_dog": 0.5,
            "multiclassrecall_fox": 1.0,
        }
    )  # and no held_out: nothing updated it in training mode
    warnings = [record.getMessage() for record in caplog.records if "not reported" in record.getMessage()]
    assert warnings == [
        "metric 'confusion' is a tensor of shape (3, 3), which is not reported: only scalars and 1-d tensors (as "
        "confusion_0, confusion_1, ...) are; reduce it to those in the model's get_metrics"
    ]
    model.get_metrics(reset=True)
    model.eval()
    model(torch.tensor([0]), torch.tensor([2]))
    assert model.get_metrics()["held_out"] == 2.0


def test_reading_without_reset_accumulates_and_a_reset_starts_afresh():
    model, data = scored(), batches(2, count=4)
    with torch.no_grad():
        model(**data[0])
        assert_metrics(model.get_metrics(), expected(model, data[:1]))
        model(**data[1])
        assert_metrics(model.get_metrics(), expected(model, data[:2]))  # the progress bar's reading kept nothing
        assert_metrics(model.get_metrics(reset=True), expected(model, data[:2]))
        assert model.get_metrics() == {}  # nothing updated since the reset
        model(**data[2])
        model(**data[3])
        assert_metrics(model.get_metrics(reset=True), expected(model, data[2:]))


def test_the_trainer_s_reads_reset_every_metric_even_one_the_model_s_get_metrics_does_not():
    class OwnMetrics(Scored):
        def get_metrics(self, reset: bool = False) -> dict[str, float]:
            return {"batches": 1.0}

    torch.manual_seed(0)
    model, data = OwnMetrics(input_dim=4, num_classes=2), batches(3)
    totals = LossTotals()
    model(**data[0])
    assert totals.metrics("", model, reset=False) == {"batches": 1.0}
    assert model.accuracy.update_called
    totals.metrics("", model, reset=True)
    assert not any(metric.update_called for metric in (model.accuracy, model.pearson, model.scores.auroc))


def test_metric_states_are_no_weights_nor_buffers_and_keep_their_dtype_on_a_move():
    model = scored()
    assert list(model.state_dict()) == ["network.0.weight", "network.0.bias", "network.3.weight", "network.3.bias"]
    assert list(model.named_buffers()) == []  # nothing for DDP to copy from the primary over each worker's counts
    model.to(torch.device("cpu"))
    assert model.accuracy.tp.dtype == torch.float64
    model.load_state_dict(scored(seed=1).state_dict())  # strict: the metrics need nothing from it


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metric_states_move_to_the_model_s_device():
    model, data = scored().to("cuda"), batches(4)
    with torch.no_grad():
        for batch in data:
            model(**{key: value.to("cuda") for key, value in batch.items()})
    assert model.accuracy.tp.device.type == "cuda" and model.scores.auroc.preds[0].device.type == "cuda"
    metrics = model.get_metrics()
    assert_metrics(metrics, expected(model.cpu(), data))


def test_mlp_classifier_s_accuracy_is_correct_over_total_divided_in_float64_as_before():
    torch.manual_seed(0)
    model = MlpClassifier(input_dim=3, num_classes=5)
    generator = torch.Generator().manual_seed(3)
    correct = total = 0
    for size in (7, 13, 1, 29):  # odd sizes: fractions that float32 would round
        features, label = torch.randn(size, 3, generator=generator), torch.randint(0, 5, (size,), generator=generator)
        correct += int((model(features=features, label=label)["logits"].argmax(-1) == label).sum())
        total += size
        assert model.get_metrics() == {"accuracy": correct / total}
    assert model.get_metrics(reset=True) == {"accuracy": correct / total}
    assert model.get_metrics() == {}


def test_mlp_classifier_weights_saved_with_the_old_accuracy_buffers_load_and_their_counts_carry_on(tmp_path):
    model = MlpClassifier(input_dim=3, num_classes=4)
    old = {**model.state_dict(), "_correct": torch.tensor(7), "_total": torch.tensor(10)}
    loaded = MlpClassifier(input_dim=3, num_classes=4)
    loaded.load_state_dict(old)  # strict, as archives and checkpoints are loaded
    assert loaded.get_metrics() == {"accuracy": 0.7}
    label = torch.tensor([0, 1])
    right = int((loaded(features=torch.zeros(2, 3), label=label)["logits"].argmax(-1) == label).sum())
    assert loaded.get_metrics() == {"accuracy": (7 + right) / 12}
    # An archive's run directory whose best weights have them, as `regimen evaluate` loads it.
    model_config = {"type": "mlp_classifier", "input_dim": 3, "num_classes": 4}
    (tmp_path / "config.json").write_text(json.dumps({"model": model_config}))
    torch.save({**model.state_dict(), "_correct": torch.tensor(0), "_total": torch.tensor(0)}, tmp_path / "best.th")
    archived = load_archive(tmp_path).model
    assert all(torch.equal(archived.state_dict()[key], value) for key, value in model.state_dict().items())
    assert archived.get_metrics() == {}


def test_the_running_sums_of_a_checkpoint_restore_the_metrics_and_refuse_another_model_s():
    model, data = scored(), batches(5)
    with torch.no_grad():
        for batch in data:
            model(**batch)
    saved = running_sums(LossTotals(), model)
    saved = torch.load(_saved(saved), weights_only=True)  # through a file, as checkpoints go
    resumed = scored(seed=1)
    resumed.load_state_dict(model.state_dict())
    restore_running_sums(saved, LossTotals(), resumed, Distributed())
    assert resumed.get_metrics() == model.get_metrics()
    with torch.no_grad():
        resumed(**data[0])
        model(**data[0])
    assert resumed.get_metrics() == model.get_metrics()  # and they go on counting from there

    plain = MlpClassifier(input_dim=4, num_classes=2, hidden_dims=[8])
    with pytest.raises(RuntimeError) as caught:
        restore_running_sums(saved, LossTotals(), plain, Distributed())
    assert str(caught.value) == (
        "cannot resume: the checkpoint holds the states of the torchmetrics metrics ['accuracy', 'pearson', "
        "'scores.auroc', 'scores.precision', 'scores.recall', 'top_probability']; the model's are ['accuracy']"
    )


def _saved(state: dict[str, Any]) -> Any:
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


class SecondWorker(Distributed):
    """What a second worker's Distributed tells the code that restores a checkpoint (no process group needed)."""

    rank = 1  # type: ignore[assignment]
    world_size = 2  # type: ignore[assignment]


def test_a_checkpoint_from_before_torchmetrics_states_were_saved_still_resumes():
    model = MlpClassifier(input_dim=3, num_classes=2)
    old = {"loss_totals": LossTotals().state_dict(), "metric_state": [torch.tensor(3), torch.tensor(4)]}
    restore_running_sums(old, LossTotals(), model, Distributed())
    model.load_state_dict({**model.state_dict(), "_correct": torch.tensor(3), "_total": torch.tensor(4)})
    assert model.get_metrics() == {"accuracy": 0.75}  # the primary keeps what the weights held
    restore_running_sums(old, LossTotals(), model, SecondWorker())
    assert model.get_metrics() == {}  # another worker holds the primary's weights: its own count starts afresh


def test_two_workers_states_resume_in_one_merged_where_torchmetrics_can_merge_them(caplog):
    data = batches(6, count=4)
    halves = [scored(), scored()]
    with torch.no_grad():
        for index, batch in enumerate(data):
            halves[index % 2](**batch)  # as two workers share an epoch's batches
    saved = [running_sums(LossTotals(), half)["torchmetrics"][0] for half in halves]
    alone = scored()
    with caplog.at_level(logging.WARNING):
        restore_metric_states(alone, saved, rank=0, world_size=1)
    wanted = expected(alone, data)
    metrics = alone.get_metrics()
    for name in ("accuracy", "macro_precision", "macro_recall", "macro_auroc", "top_probability"):
        assert metrics[name] == pytest.approx(wanted[name], rel=1e-5), name
    # Pearson's states are reduced by none: torchmetrics merges them only across workers at compute time.
    assert caplog.messages == [
        "the torchmetrics metric 'pearson' (PearsonCorrCoef) cannot merge the states of the 2 checkpoint workers it "
        "resumes (its state 'mean_x' is not reduced to one of its shape): its value for this epoch leaves out all "
        "but one worker's batches before the checkpoint"
    ]
    assert metrics["pearson"] == halves[0].get_metrics()["pearson"]
    second = scored()
    restore_metric_states(second, saved, rank=1, world_size=2)
    assert second.get_metrics() == halves[1].get_metrics()


# ---- resuming a real run mid-epoch -----------------------------------------------------------------------------


class Interrupt(Exception):
    pass


class InterruptAtStep(TrainerCallback):
    def __init__(self, step: int) -> None:
        super().__init__()
        self.step, self.seen = step, 0

    def on_batch(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        if args[5]:  # a training step
            self.seen += 1
            if self.seen == self.step:
                raise Interrupt()


def train(directory: Path, data: Path, interrupt_at: int | None = None) -> dict[str, Any] | None:
    torch.manual_seed(0)
    model = Scored(input_dim=4, num_classes=2, hidden_dims=[8], dropout=0.2)
    loaders = {
        name: DataLoader.from_params(
            Params({"batch_size": 8, "shuffle": True}, name), reader=CsvReader(), data_path=str(data / f"{name}.csv")
        )
        for name in ("train", "validation")
    }
    torch.manual_seed(1)
    config = {
        "num_epochs": 2,
        "optimizer": {"type": "adam", "lr": 0.01},
        "checkpointer": {"save_every_num_batches": 3, "save_completed_epochs": False},
        "progress_bar": False,
        "cuda_device": -1,
    }
    trainer = Trainer.from_params(
        Params(config, "trainer"),
        model=model,
        data_loader=loaders["train"],
        validation_data_loader=loaders["validation"],
        serialization_dir=str(directory),
    )
    if interrupt_at is not None:
        trainer._callbacks.append(InterruptAtStep(interrupt_at))
    try:
        return trainer.train()
    except Interrupt:
        return None


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("blobs")
    write_blobs(root / "train.csv", 64, torch.Generator().manual_seed(1), dims=4, separation=1.0)
    write_blobs(root / "validation.csv", 24, torch.Generator().manual_seed(2), dims=4, separation=1.0)
    return root


def test_a_run_resumed_mid_epoch_reports_the_metrics_of_an_uninterrupted_one(tmp_path, blobs):
    # 8 batches an epoch: step 12 is batch 4 of epoch 1, and the newest checkpoint is 3 batches into it.
    reference = train(tmp_path / "reference", blobs)
    assert train(tmp_path / "resumed", blobs, interrupt_at=12) is None
    assert {path.name for path in (tmp_path / "resumed").glob("model_state_*.th")} >= {"model_state_e1_b3.th"}
    resumed = train(tmp_path / "resumed", blobs)
    assert reference is not None and resumed is not None
    for name in ("metrics_epoch_0.json", "metrics_epoch_1.json"):
        wanted = json.loads((tmp_path / "reference" / name).read_text())
        assert json.loads((tmp_path / "resumed" / name).read_text()) == wanted, name
    assert {"training_macro_auroc", "training_pearson", "validation_top_probability"} <= set(wanted)


# ---- two workers -------------------------------------------------------------------------------------------


HELD_OUT = (torch.tensor([[0.2, 0.8], [0.7, 0.3], [0.4, 0.6]]), torch.tensor([1, 0, 0]))


def reducing_worker(rank: int, port: int, directory: Path) -> None:
    # A short timeout: a collective that only one worker enters fails the test instead of hanging it.
    with init_process_group("gloo", rank, 2, rank, torch.device("cpu"), "127.0.0.1", port, timeout_s=30) as group:
        model, data = scored(), batches(7, count=4)
        # Only worker 1 updates it (its lists of 2-d and integer tensors stay empty on worker 0); both report it.
        model.held_out = MulticlassAUROC(num_classes=2)
        group.wrap(model)
        with torch.no_grad():
            for batch in data[rank::2]:
                model(**batch)
        if rank == 1:
            model.held_out.update(*HELD_OUT)
        if rank == 0:
            model.get_metrics()  # the progress bar's reading, the primary's alone: it must not communicate
        totals = LossTotals()
        checkpoint = running_sums(totals, model, group)
        results = {"metrics": totals.metrics("", model, reset=True, distributed=group), "checkpoint": checkpoint}
        results["after"] = model.get_metrics()
    torch.save(results, directory / f"rank{rank}.pt")


def test_two_workers_report_the_metrics_of_the_whole_data_and_a_lone_reading_does_not_wait(tmp_path):
    spawn_workers(reducing_worker, (find_free_port(), tmp_path), 2)
    results = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in range(2)]
    model, data = scored(), batches(7, count=4)
    wanted = expected(model, data)
    held_out = MulticlassAUROC(num_classes=2)
    held_out.update(*HELD_OUT)
    for result in results:
        assert_metrics({k: v for k, v in result["metrics"].items() if k != "held_out"}, wanted)
        assert result["metrics"]["held_out"] == float(held_out.compute())
        assert result["after"] == {}  # reset after the read
    saved = results[0]["checkpoint"]["torchmetrics"]
    assert results[1]["checkpoint"]["torchmetrics"] is None and len(saved) == 2  # each worker's own, on the primary
    assert saved[0]["accuracy"]["update_count"] == 2 and saved[0]["held_out"]["update_count"] == 0
    assert saved[1]["held_out"]["update_count"] == 1

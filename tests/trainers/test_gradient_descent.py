"""GradientDescentTrainer: each config key does what it says, on a real tiny model and real tensors."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from regimen.models import Model
from regimen.registry import ConfigurationError, Params
from regimen.trainers import BatchCallback, EpochCallback, GradientDescentTrainer, Trainer, TrainerCallback


def blobs(count: int, seed: int, batch_size: int, dim: int = 4) -> list[dict[str, torch.Tensor]]:
    """Two well separated Gaussian blobs, as a list of collated batches."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (count,), generator=generator)
    features = torch.randn(count, dim, generator=generator) * 0.5 + (labels[:, None].float() * 2 - 1) * 1.5
    return [
        {"features": features[start : start + batch_size], "label": labels[start : start + batch_size]}
        for start in range(0, count, batch_size)
    ]


def make_model(seed: int = 0, **config: Any) -> Model:
    torch.manual_seed(seed)
    return Model.from_params(Params({"type": "mlp_classifier", "input_dim": 4, "num_classes": 2, **config}))


def make_trainer(config: dict[str, Any], model: Model | None = None, train=None, validation="default", **extras):
    train = train if train is not None else blobs(64, seed=1, batch_size=8)
    validation = blobs(32, seed=2, batch_size=8) if validation == "default" else validation
    return Trainer.from_params(
        Params({"progress_bar": False, "cuda_device": -1, **config}, "trainer"),
        model=model or make_model(),
        data_loader=train,
        validation_data_loader=validation,
        **extras,
    )


def test_trains_a_real_model_to_high_accuracy_and_reports_allennlp_metric_keys(tmp_path):
    trainer = make_trainer(
        {"num_epochs": 5, "optimizer": {"type": "adam", "lr": 0.01}, "validation_metric": "+accuracy"},
        serialization_dir=str(tmp_path),
    )
    assert isinstance(trainer, GradientDescentTrainer)
    metrics = trainer.train()
    assert metrics["validation_accuracy"] >= 0.95 and metrics["best_validation_accuracy"] >= 0.95
    for key in (
        "best_epoch",
        "peak_worker_0_memory_MB",
        "training_duration",
        "epoch",
        "training_loss",
        "training_accuracy",
        "validation_loss",
        "best_validation_loss",
        "training_epochs",
    ):
        assert key in metrics, key
    assert metrics["epoch"] == 4 and metrics["training_epochs"] == 5
    written = json.loads((tmp_path / "metrics_epoch_4.json").read_text())
    assert written["validation_accuracy"] == metrics["validation_accuracy"]
    assert sorted(p.name for p in tmp_path.glob("metrics_epoch_*.json")) == [
        f"metrics_epoch_{i}.json" for i in range(5)
    ]


def test_a_misspelled_trainer_key_is_a_configuration_error_naming_it():
    with pytest.raises(ConfigurationError) as info:
        make_trainer({"num_epoch": 3, "optimizer": {"type": "adam", "lr": "fast"}})
    messages = [str(error) for error in info.value.errors]
    assert any(m.startswith('trainer.num_epoch: unknown key "num_epoch"; did you mean "num_epochs"?') for m in messages)
    assert 'trainer.optimizer.lr: expected float, got "fast"' in messages


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"patience": 0}, r"^trainer.patience: must be a positive int or null, got 0$"),
        ({"num_epochs": 0}, r"^trainer.num_epochs: must be positive, got 0$"),
        ({"validation_metric": "accuracy"}, r'^trainer.validation_metric: "accuracy" must start with "\+"'),
        ({"grad_clipping": -1.0}, r"^trainer.grad_clipping: must be positive, got -1.0$"),
        ({"cuda_device": 3}, r"^trainer.cuda_device: CUDA device 3 is not available"),
    ],
)
def test_bad_trainer_values_are_configuration_errors(config, message):
    with pytest.raises(ConfigurationError, match=message):
        make_trainer(config)


def test_patience_stops_after_that_many_validations_without_strict_improvement():
    # lr 0 keeps the weights fixed, so the validation loss never strictly improves after the first epoch.
    trainer = make_trainer({"num_epochs": 20, "patience": 3, "optimizer": {"type": "sgd", "lr": 0.0}})
    metrics = trainer.train()
    assert metrics["epoch"] == 3 and metrics["best_epoch"] == 0 and metrics["training_epochs"] == 4


def test_gradient_accumulation_over_k_batches_equals_one_batch_k_times_larger():
    small, large = blobs(64, 1, batch_size=4), blobs(64, 1, batch_size=16)
    accumulated = make_model(seed=3)
    make_trainer(
        {"num_epochs": 2, "num_gradient_accumulation_steps": 4, "optimizer": {"type": "sgd", "lr": 0.1}},
        accumulated,
        small,
        validation=None,
    ).train()
    single = make_model(seed=3)
    make_trainer({"num_epochs": 2, "optimizer": {"type": "sgd", "lr": 0.1}}, single, large, validation=None).train()
    for a, b in zip(accumulated.parameters(), single.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_final_partial_accumulation_group_still_steps():
    seen = []

    class CountSteps(TrainerCallback):
        def on_batch(self, trainer, batch_inputs, *args, is_training=True, **kwargs):
            if args[3]:  # is_training
                seen.append(len(batch_inputs))

    trainer = make_trainer(
        {"num_epochs": 1, "num_gradient_accumulation_steps": 3}, train=blobs(40, 1, 8), validation=None, callbacks=None
    )
    trainer._callbacks.append(CountSteps())
    trainer.train()
    assert seen == [3, 2]


def test_num_steps_is_a_budget_of_optimizer_steps_across_epochs():
    trainer = make_trainer({"num_steps": 11, "optimizer": {"type": "sgd", "lr": 0.01}})
    metrics = trainer.train()
    assert trainer._total_steps == 11 and metrics["training_epochs"] == 2  # 8 steps per epoch


def test_validate_every_num_steps(tmp_path):
    make_trainer({"num_steps": 12, "validate_every_num_steps": 4}, serialization_dir=str(tmp_path)).train()
    assert sorted(p.name for p in tmp_path.glob("metrics_step_*.json")) == [
        "metrics_step_12.json",
        "metrics_step_4.json",
        "metrics_step_8.json",
    ]
    # 8 steps per epoch: epoch 0 validated at steps 4 and 8, epoch 1 (cut short by num_steps) at step 12.
    epochs = [json.loads((tmp_path / f"metrics_epoch_{i}.json").read_text()) for i in range(2)]
    step_8 = json.loads((tmp_path / "metrics_step_8.json").read_text())
    assert epochs[0]["validation_loss"] == step_8["validation_loss"]
    assert (
        epochs[1]["validation_loss"] == json.loads((tmp_path / "metrics_step_12.json").read_text())["validation_loss"]
    )


def test_validate_every_num_epochs(tmp_path):
    make_trainer({"num_epochs": 4, "validate_every_num_epochs": 2}, serialization_dir=str(tmp_path)).train()
    written = {i: json.loads((tmp_path / f"metrics_epoch_{i}.json").read_text()) for i in range(4)}
    assert sorted(p.name for p in tmp_path.glob("metrics_*.json")) == [f"metrics_epoch_{i}.json" for i in range(4)]
    assert ["validation_loss" in written[i] for i in range(4)] == [False, True, False, True]
    assert all("training_loss" in metrics for metrics in written.values())


def test_learning_rate_schedule_is_stepped_once_per_optimizer_step():
    lrs = []

    class RecordLr(TrainerCallback):
        def on_batch(self, trainer, *args, **kwargs):
            if args[5]:  # is_training
                lrs.append(trainer.optimizer.param_groups[0]["lr"])

    trainer = make_trainer(
        {
            "num_epochs": 2,
            "optimizer": {"type": "sgd", "lr": 1.0},
            "learning_rate_scheduler": {"type": "linear_with_warmup", "warmup_steps": 4},
        },
        validation=None,
    )
    trainer._callbacks.append(RecordLr())
    trainer.train()
    # 8 steps per epoch, 16 in all: warm up over 4 steps, then decay linearly to 0 at step 16.
    assert len(lrs) == 16
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[6] == pytest.approx((16 - 7) / 12)


def test_grad_norm_rescales_the_total_norm_and_reports_it_before_rescaling():
    norms = []

    class RecordNorm(TrainerCallback):
        def on_batch(self, trainer, *args, batch_grad_norm=None, **kwargs):
            if args[5]:
                norms.append(batch_grad_norm)

    model = make_model(seed=5)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    trainer = make_trainer(
        {"num_epochs": 1, "grad_norm": 1e-3, "optimizer": {"type": "sgd", "lr": 1.0}},
        model,
        train=blobs(8, 1, 8),
        validation=None,
    )
    trainer._callbacks.append(RecordNorm())
    trainer.train()
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert len(norms) == 1 and norms[0] > 1e-3  # the norm as measured, before rescaling
    assert float(torch.norm(after - before)) == pytest.approx(1e-3, rel=1e-3)  # one SGD step of the rescaled grad


def test_grad_norm_true_only_measures():
    norms = []

    class RecordNorm(TrainerCallback):
        def on_batch(self, trainer, *args, batch_grad_norm=None, **kwargs):
            norms.append(batch_grad_norm)

    trainer = make_trainer({"num_epochs": 1, "grad_norm": True}, validation=None)
    trainer._callbacks.append(RecordNorm())
    trainer.train()
    assert len(norms) == 8 and all(norm > 0 for norm in norms)
    assert all(isinstance(norm, torch.Tensor) and norm.dim() == 0 for norm in norms)  # read when needed: no sync


def test_grad_clipping_and_grad_norm_bound_the_update():
    model = make_model(seed=5)
    before = [p.detach().clone() for p in model.parameters()]
    make_trainer(
        {"num_epochs": 1, "grad_clipping": 1e-4, "optimizer": {"type": "sgd", "lr": 1.0}},
        model,
        train=blobs(8, 1, 8),
        validation=None,
    ).train()
    for old, new in zip(before, model.parameters()):
        assert (new.detach() - old).abs().max() <= 1e-4 + 1e-7


def test_no_grad_freezes_matching_parameters(caplog):
    model = make_model(seed=0, hidden_dims=[8])
    frozen = model.network[0].weight.detach().clone()
    make_trainer({"num_epochs": 1, "no_grad": ["^network\\.0\\.", "^encoder"]}, model, validation=None).train()
    assert torch.equal(model.network[0].weight, frozen) and not model.network[0].weight.requires_grad
    assert "no_grad: '^encoder' matches no parameter" in caplog.text


class ExplodingModel(Model):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.calls = 0

    def forward(self, features, label=None, **extra):
        self.calls += 1
        scale = float("nan") if self.calls == 3 else 1.0
        return {"loss": (self.weight * features.sum() * scale).mean() ** 2}


def test_a_nan_loss_stops_training_naming_the_epoch_and_batch():
    with pytest.raises(ValueError, match="the training loss became nan at epoch 0, batches 0 to 7") as error:
        make_trainer({"num_epochs": 1}, ExplodingModel(), validation=None).train()
    # The config sets no learning rate: the message says so rather than advising to lower one.
    assert "Adam ran at lr 0.001, its default: the config sets no learning rate, gradients unclipped." in str(
        error.value
    )
    assert "set a smaller trainer.optimizer.lr or clip gradients with trainer.grad_norm" in str(error.value)


def test_the_nan_message_says_what_the_config_set():
    config = {"num_epochs": 1, "optimizer": {"type": "sgd", "lr": 0.5}, "grad_norm": 1.0}
    with pytest.raises(ValueError, match="the training loss became nan") as error:
        make_trainer(config, ExplodingModel(), validation=None).train()
    message = str(error.value)
    assert "SGD ran at lr 0.5. Check the data for NaN or inf values, lower trainer.optimizer.lr" in message
    assert "its default" not in message and "grad_norm" not in message


class TwoLosses(Model):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, features, label, **extra):
        prediction = self.linear(features).squeeze(-1)
        return {
            "loss": {"mse": ((prediction - label.float()) ** 2).mean(), "l1": (prediction - label.float()).abs().mean()}
        }


def test_named_losses_are_summed_and_reported_one_by_one():
    metrics = make_trainer({"num_epochs": 1}, TwoLosses()).train()
    assert metrics["training_loss"] == pytest.approx(
        metrics["training_loss_mse"] + metrics["training_loss_l1"], rel=1e-5
    )
    assert "validation_loss_mse" in metrics and "validation_loss_l1" in metrics


# With this much momentum, the validation loss stops improving after a few epochs of the blobs (best epoch 3).
OVERSHOOTING = {"type": "sgd", "lr": 0.5, "momentum": 0.9}


def test_the_model_holds_the_best_weights_at_the_end():
    best = {}

    class RememberBest(TrainerCallback):
        def on_epoch(self, trainer, metrics, epoch, **kwargs):
            if epoch >= 0 and metrics["best_epoch"] == epoch:
                best.update({k: v.clone() for k, v in trainer.model.state_dict().items()})

    trainer = make_trainer({"num_epochs": 6, "optimizer": OVERSHOOTING})
    trainer._callbacks.append(RememberBest())
    metrics = trainer.train()
    assert metrics["best_epoch"] < 5  # the final weights are not the best ones
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, best[key])


def test_moving_average_weights_are_the_ones_validated_and_kept_as_best():
    validated = []

    class RecordValidationWeights(TrainerCallback):
        def on_batch(self, trainer, *args, **kwargs):
            if not args[5]:  # a validation batch
                validated.append(trainer.model.network[0].weight.detach().clone())

    model = make_model(seed=1)
    trainer = make_trainer({"num_epochs": 2, "moving_average": {"decay": 0.5}}, model)
    trainer._callbacks.append(RecordValidationWeights())
    trainer.train()
    averaged = trainer._moving_average
    live = model.network[0].weight.detach().clone()
    # During validation the model held the averaged weights, which differ from the live ones.
    with trainer._averaged_weights():
        assert torch.equal(model.network[0].weight, validated[-1])
    assert torch.equal(model.network[0].weight, live) and averaged is not None


def test_callbacks_fire_in_the_documented_order():
    events = []

    class Recorder(TrainerCallback):
        def on_start(self, trainer, **kwargs):
            events.append("start")

        def on_backward(self, trainer, batch_outputs, backward_called, **kwargs):
            events.append("backward")
            return False

        def on_batch(self, trainer, *args, **kwargs):
            events.append("train_batch" if args[5] else "validation_batch")

        def on_epoch(self, trainer, metrics, epoch, **kwargs):
            events.append(f"epoch {epoch}" + (" validated" if "validation_loss" in metrics else ""))

        def on_end(self, trainer, metrics=None, **kwargs):
            events.append("end" if metrics is not None else "end after error")

    trainer = make_trainer(
        {"num_epochs": 2, "validate_every_num_epochs": 2}, train=blobs(16, 1, 8), validation=blobs(8, 2, 8)
    )
    trainer._callbacks.append(Recorder())
    trainer.train()
    epoch = ["backward", "train_batch", "backward", "train_batch"]
    assert events == ["start", *epoch, "epoch 0", *epoch, "validation_batch", "epoch 1 validated", "end"]


def test_on_end_runs_after_an_exception():
    ended = []

    class Recorder(TrainerCallback):
        def on_end(self, trainer, metrics=None, **kwargs):
            ended.append(metrics)

    trainer = make_trainer({"num_epochs": 1}, ExplodingModel(), validation=None)
    trainer._callbacks.append(Recorder())
    with pytest.raises(ValueError):
        trainer.train()
    assert ended == [None]


def test_callbacks_from_the_config_including_bare_strings_and_legacy_ones(tmp_path):
    trainer = make_trainer(
        {"num_epochs": 1, "callbacks": ["track_epoch", {"type": "tensorboard", "summary_interval": 2}]},
        serialization_dir=str(tmp_path),
    )
    names = [type(callback).__name__ for callback in trainer._callbacks]
    assert names == ["ConsoleLoggerCallback", "TrackEpochCallback", "TensorBoardCallback", "ConfidenceChecksCallback"]
    trainer.train()
    assert trainer.model.epoch == 1


def test_component_hooks_are_called():
    class HookedModel(TwoLosses):
        epochs_seen: list[int] = []

        def on_epoch(self, trainer, metrics, epoch, **kwargs):
            self.epochs_seen.append(epoch)

    model = HookedModel()
    make_trainer({"num_epochs": 2}, model).train()
    assert model.epochs_seen == [0, 1]  # AllenNLP 2.10: no epoch=-1 call for a TrainerCallback


def test_tensorboard_writes_real_event_files(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    make_trainer(
        {"num_epochs": 2, "callbacks": [{"type": "tensorboard", "summary_interval": 2}]},
        serialization_dir=str(tmp_path),
    ).train()
    train = EventAccumulator(str(tmp_path / "log" / "train"))
    train.Reload()
    validation = EventAccumulator(str(tmp_path / "log" / "validation"))
    validation.Reload()
    assert [event.step for event in train.Scalars("loss")] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert "learning_rate/group0" in train.Tags()["scalars"]
    assert [event.step for event in validation.Scalars("epoch_metrics/accuracy")] == [0, 1]
    # The step's gradients are still there when callbacks run (cleared at the next step, as in AllenNLP).
    assert [event.step for event in train.Scalars("gradient_mean/network.0.weight")] == [2, 4, 6, 8, 10, 12, 14, 16]


def test_tensorboard_takes_allennlp_2_distribution_interval_and_1_x_histogram_interval(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for name in ("distribution_interval", "histogram_interval"):
        directory = tmp_path / name
        make_trainer(
            {"num_epochs": 1, "callbacks": [{"type": "tensorboard", name: 4}]}, serialization_dir=str(directory)
        ).train()
        train = EventAccumulator(str(directory / "log" / "train"), size_guidance={"histograms": 0})  # keep all
        train.Reload()
        assert [event.step for event in train.Histograms("parameter_histogram/network.0.weight")] == [4, 8]
    with pytest.raises(ConfigurationError, match="histogram_interval: and distribution_interval are one setting"):
        make_trainer({"callbacks": [{"type": "tensorboard", "histogram_interval": 4, "distribution_interval": 4}]})


def test_tensorboard_writer_from_allennlp_1_configs_is_read_as_the_callback(tmp_path, caplog):
    trainer = make_trainer(
        {"num_epochs": 1, "tensorboard_writer": {"summary_interval": 4}}, serialization_dir=str(tmp_path)
    )
    assert any(type(c).__name__ == "TensorBoardCallback" and c.summary_interval == 4 for c in trainer._callbacks)
    assert "tensorboard_writer is deprecated" in caplog.text


def test_use_amp_on_cpu_trains_in_bfloat16():
    metrics = make_trainer({"num_epochs": 3, "use_amp": True, "optimizer": {"type": "adam", "lr": 0.01}}).train()
    assert metrics["validation_accuracy"] >= 0.9


def test_opt_level_from_apex_configs_is_accepted(caplog):
    caplog.set_level("INFO")
    trainer = make_trainer({"num_epochs": 1, "opt_level": "O1"})
    assert trainer._precision.dtype == torch.bfloat16
    assert "opt_level O1: apex is not in use here, using torch's native mixed precision" in caplog.text


@Trainer.register("my_trainer")
class MyTrainer(Trainer):
    def __init__(self, model: Model, marker: str = "mine", serialization_dir: str | None = None) -> None:
        super().__init__(serialization_dir, cuda_device=-1)
        self.model, self.marker = model, marker

    def train(self) -> dict[str, Any]:
        return {"marker": self.marker}


def test_a_trainer_plugin_is_picked_by_type():
    trainer = Trainer.from_params(Params({"type": "my_trainer", "marker": "x"}, "trainer"), model=make_model())
    assert isinstance(trainer, MyTrainer) and trainer.train() == {"marker": "x"}


@BatchCallback.register("record_batches")
class RecordBatches(BatchCallback):
    calls: list[tuple[int, int, bool]] = []

    def __call__(
        self, trainer, batch_inputs, batch_outputs, batch_metrics, epoch, batch_number, is_training, is_primary=True
    ):
        self.calls.append((epoch, batch_number, is_training))


@EpochCallback.register("record_epochs")
class RecordEpochs(EpochCallback):
    calls: list[int] = []

    def __call__(self, trainer, metrics, epoch, is_primary=True):
        self.calls.append(epoch)


def test_allennlp_1_batch_and_epoch_callbacks_are_called():
    RecordBatches.calls.clear()
    RecordEpochs.calls.clear()
    make_trainer(
        {"num_epochs": 1, "batch_callbacks": ["record_batches"], "epoch_callbacks": ["record_epochs"]},
        train=blobs(16, 1, 8),
        validation=blobs(8, 2, 8),
    ).train()
    assert RecordBatches.calls == [(0, 1, True), (0, 2, True), (0, 1, False)]
    assert RecordEpochs.calls == [-1, 0]


def test_save_predictions_writes_each_validation_instance(tmp_path):
    make_trainer({"num_epochs": 2, "callbacks": ["save_predictions"]}, serialization_dir=str(tmp_path)).train()
    lines = (tmp_path / "predictions" / "validation_epoch_1.jsonl").read_text().splitlines()
    assert len(lines) == 32
    record = json.loads(lines[0])
    assert set(record) == {"logits", "probs", "target"} and len(record["probs"]) == 2
    assert record["target"] == int(blobs(32, 2, 8)[0]["label"][0])


def test_save_predictions_adds_what_make_output_human_readable_gives(tmp_path):
    class Named(type(make_model())):
        def make_output_human_readable(self, output_dict):  # AllenNLP's method
            return {"label_name": ["left" if int(i) == 0 else "right" for i in output_dict["probs"].argmax(-1)]}

    torch.manual_seed(0)
    model = Named(input_dim=4, num_classes=2)
    config = {"num_epochs": 1, "callbacks": [{"type": "save_predictions", "splits": ["validation"]}]}
    make_trainer(config, model=model, serialization_dir=str(tmp_path)).train()
    records = [json.loads(line) for line in (tmp_path / "predictions" / "validation_epoch_0.jsonl").open()]
    assert len(records) == 32 and all(r["label_name"] == ("left", "right")[r["probs"].index(max(r["probs"]))]
                                      for r in records)  # fmt: skip
    assert "index" not in records[0]  # a plain list of batches knows no file positions


def test_tensorboard_memory_usage_writes_a_scalar_per_step(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    make_trainer({"num_epochs": 1, "callbacks": ["tensorboard_memory_usage"]}, serialization_dir=str(tmp_path)).train()
    events = EventAccumulator(str(tmp_path / "log" / "memory"))
    events.Reload()
    values = events.Scalars("memory_usage/peak_worker_0_memory_MB")
    assert [event.step for event in values] == list(range(1, 9)) and values[0].value > 10


def test_a_list_of_validation_metrics_is_summed():
    trainer = make_trainer({"num_epochs": 2, "validation_metric": ["+accuracy", "-loss"]})
    metrics = trainer.train()
    best = trainer._metric_tracker.best_epoch_metrics
    assert trainer._metric_tracker.best_score == pytest.approx(best["accuracy"] - best["loss"])
    assert metrics["best_validation_accuracy"] == best["accuracy"]


def test_momentum_scheduler_changes_momentum_per_validation():
    momenta = []

    class RecordMomentum(TrainerCallback):
        def on_start(self, trainer, **kwargs):
            momenta.append(trainer.optimizer.param_groups[0]["momentum"])

        def on_epoch(self, trainer, metrics, epoch, **kwargs):
            momenta.append(trainer.optimizer.param_groups[0]["momentum"])

    trainer = make_trainer(
        {
            "num_epochs": 3,
            "optimizer": {"type": "sgd", "lr": 0.01, "momentum": 0.9},
            "momentum_scheduler": {"type": "inverted_triangular", "cool_down": 1, "warm_up": 1},
        }
    )
    trainer._callbacks.append(RecordMomentum())
    trainer.train()
    # Seen before training and after each epoch: down to 0.9 / 10 over one epoch, back up over one.
    assert momenta == pytest.approx([0.9, 0.09, 0.9, 0.9])


class BiasBeforeBatchNorm(Model):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)
        self.norm = torch.nn.BatchNorm1d(4)
        self.out = torch.nn.Linear(4, 2)

    def forward(self, features, label, **extra):
        return {"loss": torch.nn.functional.cross_entropy(self.out(self.norm(self.linear(features))), label)}


def test_confidence_checks_catch_a_bias_before_batch_norm_and_can_be_turned_off():
    from regimen.trainers.callbacks import ConfidenceCheckError

    with pytest.raises(ConfidenceCheckError, match=r"linear \(Linear with a bias\) feeds norm \(BatchNorm1d\)"):
        make_trainer({"num_epochs": 1}, BiasBeforeBatchNorm(), validation=None).train()
    make_trainer({"num_epochs": 1, "run_confidence_checks": False}, BiasBeforeBatchNorm(), validation=None).train()


def test_file_friendly_logging_writes_plain_progress_lines(capfd, caplog):
    caplog.set_level("INFO", logger="regimen.trainers.progress")
    make_trainer({"num_epochs": 1, "progress_bar": True, "file_friendly_logging": True}).train()
    assert "\r" not in capfd.readouterr().err  # no redrawn bar frames: readable in a log file
    lines = [record.getMessage() for record in caplog.records if record.name == "regimen.trainers.progress"]
    assert "epoch 0: 0/8 batches" in lines and any(
        line.startswith("epoch 0: 8/8 batches, training_loss=") for line in lines
    )


def test_compile_runs_the_model_through_torch_compile():
    # The eager backend keeps the test fast; it still traces the model with dynamo.
    trainer = make_trainer(
        {"num_epochs": 2, "compile": {"backend": "eager"}, "optimizer": {"type": "adam", "lr": 0.01}}
    )
    assert trainer._forward is not trainer.model
    assert trainer.train()["validation_accuracy"] >= 0.9
    assert all(not key.startswith("_orig_mod") for key in trainer.model.state_dict())


def test_the_serialization_directory_is_created_by_train_not_by_construction(tmp_path):
    directory = tmp_path / "runs" / "exp1"
    trainer = make_trainer({"num_epochs": 1}, serialization_dir=str(directory))
    assert not directory.exists()  # building a trainer has no side effects
    trainer.train()
    assert (directory / "best.th").is_file() and (directory / "metrics_epoch_0.json").is_file()


class UnsavableState(TrainerCallback):
    """A callback whose state cannot be pickled: every checkpoint write fails."""

    def state_dict(self) -> dict[str, Any]:
        return {"function": lambda: None}


@pytest.mark.parametrize("background", [True, False])
def test_a_checkpoint_that_cannot_be_written_stops_training_with_an_error_naming_it(tmp_path, background):
    trainer = make_trainer(
        {"num_epochs": 3, "checkpointer": {"write_in_background": background}},
        serialization_dir=str(tmp_path),
    )
    trainer._callbacks.append(UnsavableState())
    with pytest.raises(Exception, match=r"lambda|pickle"):  # at the first save, in either mode
        trainer.train()
    assert not list(tmp_path.glob("*_state_*.th")) and not list(tmp_path.glob(".*.tmp"))
    assert (tmp_path / "best.th").exists()


class RecordEpochWeights(TrainerCallback):
    """The model's weights at each epoch's end, as the checkpoint of that epoch end saves them."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_epoch(self, trainer, metrics, epoch, **kwargs):
        if epoch >= 0:
            self.weights[epoch] = {k: v.clone() for k, v in trainer.model.state_dict().items()}


def load_weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def same_weights(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_the_checkpoint_at_the_best_epoch_shares_its_model_file_with_best_th(tmp_path):
    import os

    recorder = RecordEpochWeights()
    trainer = make_trainer(
        {"num_epochs": 6, "optimizer": OVERSHOOTING, "checkpointer": {"keep_most_recent_by_count": None}},
        serialization_dir=str(tmp_path),
    )
    trainer._callbacks.append(recorder)
    best_epoch = trainer.train()["best_epoch"]
    assert 0 < best_epoch < 5  # best.th was replaced, and later checkpoints are their own files
    for epoch, weights in recorder.weights.items():
        model_file = tmp_path / f"model_state_e{epoch + 1}_b0.th"
        assert same_weights(load_weights(model_file), weights)  # every checkpoint holds its own epoch's weights
        assert os.path.samefile(model_file, tmp_path / "best.th") == (epoch == best_epoch)
    assert same_weights(load_weights(tmp_path / "best.th"), recorder.weights[best_epoch])
    # Both hold what state_dict() gives, the modules' versions included (load_state_dict reads them).
    assert load_weights(tmp_path / "best.th")._metadata == trainer.model.state_dict()._metadata


def test_weights_changed_after_the_best_validation_are_checkpointed_as_changed(tmp_path):
    import os

    class HalveWeights(TrainerCallback):
        def on_epoch(self, trainer, metrics, epoch, **kwargs):
            with torch.no_grad():
                for parameter in trainer.model.parameters():
                    parameter.mul_(0.5)

    recorder = RecordEpochWeights()
    trainer = make_trainer({"num_epochs": 1}, serialization_dir=str(tmp_path))
    trainer._callbacks.append(recorder)  # before the halving: the weights validated
    trainer._callbacks.append(HalveWeights())
    trainer.train()
    model_file = tmp_path / "model_state_e1_b0.th"
    assert not os.path.samefile(model_file, tmp_path / "best.th")
    assert same_weights(load_weights(tmp_path / "best.th"), recorder.weights[0])
    halved = {k: v * 0.5 if v.is_floating_point() else v for k, v in recorder.weights[0].items()}
    assert same_weights(load_weights(model_file), halved)


def test_with_a_moving_average_best_th_and_the_checkpoint_hold_the_averaged_weights_once(tmp_path):
    import os

    trainer = make_trainer({"num_epochs": 1, "moving_average": {"decay": 0.5}}, serialization_dir=str(tmp_path))
    trainer.train()
    model_file = tmp_path / "model_state_e1_b0.th"
    assert os.path.samefile(model_file, tmp_path / "best.th")
    with trainer._averaged_weights():
        assert same_weights(load_weights(model_file), trainer.model.state_dict())


def test_an_allennlp_0_9_checkpoint_key_with_checkpoints_switched_off_is_an_error(tmp_path):
    with pytest.raises(ConfigurationError) as error:
        make_trainer({"num_serialized_models_to_keep": 1, "checkpointer": None}, serialization_dir=str(tmp_path))
    assert str(error.value) == (
        "trainer.num_serialized_models_to_keep: is AllenNLP 0.9's place for checkpointer.keep_most_recent_by_count, "
        "but checkpointer is null"
    )


def test_grad_scaling_false_trains_float16_without_a_scaler():
    """AllenNLP 2.x's `grad_scaling` (gradient_descent_trainer.py): with use_amp, false builds no GradScaler."""
    scaled = make_trainer({"num_epochs": 1, "use_amp": True, "amp_dtype": "float16"})
    unscaled = make_trainer({"num_epochs": 1, "use_amp": True, "amp_dtype": "float16", "grad_scaling": False})
    assert scaled._scaler is not None and unscaled._scaler is None
    assert unscaled._precision.dtype == torch.float16
    metrics = unscaled.train()
    assert 0 < metrics["training_loss"] < float("inf")

"""AllenNLP 2.10's trainer contract, through `regimen train` and `regimen evaluate` in a subprocess: when metrics
are read, when each callback hook fires, which epochs validate, who runs the backward pass, and older eras' keys.

Each test names in its docstring the AllenNLP source file whose behaviour it pins."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import FIXTURES, ROOT, run_cli

CONFIG = str(FIXTURES / "experiments" / "blobs.jsonnet")
DATA = {f"{split}_data_path": str(FIXTURES / "data" / "blobs" / f"{split}.csv") for split in ("train", "test")}
DATA["validation_data_path"] = str(FIXTURES / "data" / "blobs" / "validation.csv")

# A plugin package as a user writes one: a model whose metric exists only in eval mode (as BLEU and ROUGE do in
# allennlp-models), a callback that records the hooks it sees, and callbacks that run the backward pass.
PLUGIN = """
import json
import os

import torch

from regimen.models import Model
from regimen.trainers.callbacks import TrainerCallback


@Model.register("eval_only_metric")
class EvalOnlyMetric(Model):
    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(input_dim, 2)
        self.correct = 0
        self.total = 0

    def forward(self, features, label=None):
        logits = self.linear(features)
        output = {"logits": logits}
        if label is not None:
            output["loss"] = torch.nn.functional.cross_entropy(logits, label)
            if not self.training:  # like BLEU in allennlp-models: only computed when evaluating
                self.correct += int((logits.argmax(-1) == label).sum())
                self.total += label.numel()
        return output

    def get_metrics(self, reset=False):
        metrics = {}
        if not self.training and self.total:
            metrics["BLEU"] = self.correct / self.total
        if reset:
            self.correct = self.total = 0
        return metrics


@TrainerCallback.register("record_hooks")
class RecordHooks(TrainerCallback):
    def __init__(self, serialization_dir=None):
        super().__init__(serialization_dir)
        self.events = []

    def on_start(self, trainer, is_primary=True, **kwargs):
        self.events.append("start")

    def on_backward(self, trainer, batch_outputs, backward_called, **kwargs):
        self.events.append("backward")
        return False

    def on_batch(self, trainer, batch_inputs, batch_outputs, batch_metrics, epoch, batch_number, is_training,
                 is_primary=True, **kwargs):
        self.events.append("batch" if is_training else f"{kwargs['split']} batch")

    def on_epoch(self, trainer, metrics, epoch, is_primary=True, **kwargs):
        self.events.append(f"epoch {epoch}" + (" validated" if "validation_loss" in metrics else ""))

    def on_end(self, trainer, metrics=None, epoch=None, is_primary=True, **kwargs):
        self.events.append(f"end {epoch}")
        with open(os.path.join(self.serialization_dir, "hooks.json"), "w") as file:
            json.dump(self.events, file)


@Model.register("bias_before_batch_norm")
class BiasBeforeBatchNorm(Model):
    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(input_dim, 4)  # a bias that batch normalization cancels
        self.norm = torch.nn.BatchNorm1d(4)
        self.out = torch.nn.Linear(4, 2)

    def forward(self, features, label=None):
        return {"loss": torch.nn.functional.cross_entropy(self.out(self.norm(self.linear(features))), label)}


@TrainerCallback.register("own_backward")
class OwnBackward(TrainerCallback):
    def on_backward(self, trainer, batch_outputs, backward_called, **kwargs):
        batch_outputs["loss"].backward()
        return True
"""


def train(tmp_path: Path, overrides: dict, *extra: str, run: str = "run"):
    (tmp_path / "plugin_pkg").mkdir(exist_ok=True)
    (tmp_path / "plugin_pkg" / "__init__.py").write_text(PLUGIN)
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}"}
    arguments = ["train", CONFIG, "-s", run, "-o", json.dumps({**DATA, **overrides}), "--include-package", "plugin_pkg"]
    return run_cli(*arguments, *extra, cwd=tmp_path, env=env)


def test_validation_metrics_are_read_in_eval_mode(tmp_path):
    """Pins allennlp/training/gradient_descent_trainer.py `_validation_loss`: it puts the model in eval mode and
    `_try_train` reads `get_metrics(reset=True)` before the next `_train_epoch` sets train mode again, so a metric
    a model reports only when `not self.training` can be the `validation_metric`. `regimen evaluate` reads it
    the same way."""
    result = train(
        tmp_path, {"model": {"type": "eval_only_metric", "input_dim": 4}, "trainer.validation_metric": "+BLEU"}
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.5 < metrics["best_validation_BLEU"] <= 1.0 and "test_BLEU" in metrics
    assert "training_BLEU" not in metrics  # read in training mode, where the model reports none
    evaluated = run_cli(
        "evaluate", "run/model.tar.gz", DATA["test_data_path"], "--include-package", "plugin_pkg",
        cwd=tmp_path, env={"PYTHONPATH": f"{ROOT}:{tmp_path}"},
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["BLEU"] == metrics["test_BLEU"]


def test_callback_hooks_fire_as_in_allennlp_2_10(tmp_path):
    """Pins allennlp/training/gradient_descent_trainer.py `train` / `_try_train` / `_train_epoch` and
    allennlp/training/callbacks/callback.py: `on_start` once, `on_backward` for every training batch before its
    `on_batch`, `on_epoch` after every epoch whether or not it validated (no `epoch=-1` call: that was 1.x's
    EpochCallback), `on_end` last with the final epoch; `metrics_epoch_N.json` for every epoch. Deliberately unlike
    AllenNLP (whose commands/train.py evaluates the test data after `on_end`), the test evaluation runs inside the
    run, its batches reaching `on_batch` with `split="test"`, before `on_end`, which sees the test metrics."""
    overrides = {
        "trainer.num_epochs": 2,
        "trainer.callbacks": [{"type": "record_hooks"}],
        "trainer.validate_every_num_epochs": 2,
        "data_loader.batch_size": 40,
    }
    result = train(tmp_path, overrides)
    assert result.returncode == 0, result.stderr
    events = json.loads((tmp_path / "run" / "hooks.json").read_text())
    batches = len([e for e in events if e == "batch"]) // 2
    epoch = ["backward", "batch"] * batches
    validation = ["validation batch"] * events.count("validation batch")
    test = ["test batch"] * events.count("test batch")
    assert validation and test
    assert events == ["start", *epoch, "epoch 0", *epoch, *validation, "epoch 1 validated", *test, "end 1"]
    first = json.loads((tmp_path / "run" / "metrics_epoch_0.json").read_text())
    second = json.loads((tmp_path / "run" / "metrics_epoch_1.json").read_text())
    assert "training_loss" in first and not any(key.startswith("validation_") for key in first)
    assert "validation_loss" in second and second["epoch"] == 1


def test_should_validate_callback_picks_the_epochs_that_validate(tmp_path):
    """Pins allennlp/training/callbacks/should_validate.py: epoch e validates when e >= validation_start and
    e % validation_interval == 0 (`validation_start: 1, validation_interval: 2` over 5 epochs: epochs 2 and 4),
    and the trainer (gradient_descent_trainer.py) skips validation, best-model tracking and patience otherwise."""
    overrides = {
        "trainer.num_epochs": 5,
        "trainer.callbacks": [{"type": "should_validate_callback", "validation_start": 1, "validation_interval": 2}],
    }
    result = train(tmp_path, overrides)
    assert result.returncode == 0, result.stderr
    validated = [
        "validation_accuracy" in json.loads((tmp_path / "run" / f"metrics_epoch_{epoch}.json").read_text())
        for epoch in range(5)
    ]
    assert validated == [False, False, True, False, True]
    # The best validation so far stays in the files of the epochs that did not validate, as AllenNLP keeps it.
    epoch_2, epoch_3 = (json.loads((tmp_path / "run" / f"metrics_epoch_{e}.json").read_text()) for e in (2, 3))
    assert epoch_3["best_validation_accuracy"] == epoch_2["best_validation_accuracy"] == epoch_2["validation_accuracy"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["best_epoch"] in (2, 4)


def test_a_callback_may_run_the_backward_pass_itself(tmp_path):
    """Pins allennlp/training/gradient_descent_trainer.py `_train_epoch`: `backward_called |= callback.on_backward(
    ...)` and `loss.backward()` only when no callback ran it; allennlp/training/callbacks/backward.py
    `mixed_precision_backward`. The same backward pass gives the same run, bit for bit."""
    plain = train(tmp_path, {"trainer.num_epochs": 2}, run="plain")
    own = train(tmp_path, {"trainer.num_epochs": 2, "trainer.callbacks": [{"type": "own_backward"}]}, run="own")
    mixed = train(
        tmp_path, {"trainer.num_epochs": 2, "trainer.callbacks": [{"type": "mixed_precision_backward"}]}, run="mixed"
    )
    assert plain.returncode == own.returncode == mixed.returncode == 0, own.stderr + mixed.stderr
    losses = [
        json.loads((tmp_path / run / "metrics.json").read_text())["best_validation_loss"]
        for run in ("plain", "own", "mixed")
    ]
    assert losses[0] == losses[1] == losses[2]


def test_two_callbacks_running_the_backward_pass_is_an_error(tmp_path):
    """Pins allennlp/training/callbacks/backward.py `OnBackwardException`: a second callback may not run the
    backward pass of a batch whose graph a first one already freed."""
    callbacks = [{"type": "own_backward"}, {"type": "mixed_precision_backward"}]
    result = train(tmp_path, {"trainer.num_epochs": 1, "trainer.callbacks": callbacks})
    assert result.returncode == 1
    assert "OnBackwardException" in result.stderr and "already been run by a callback" in result.stderr
    assert "MixedPrecisionBackwardCallback" in result.stderr


def test_allennlp_0_9_trainer_keys_are_taken_where_they_moved(tmp_path):
    """Pins allennlp 0.9's allennlp/training/trainer.py `Trainer.from_params`, which read
    `num_serialized_models_to_keep`, `model_save_interval`, `summary_interval`, `log_batch_size_period` (and the
    other tensorboard keys) at the trainer's top level; 1.x moved them into `checkpointer` and the tensorboard
    writer. Each gives one deprecation note naming the old and the new place."""
    overrides = {
        "trainer.num_epochs": 3,
        "trainer.num_serialized_models_to_keep": 1,
        "trainer.summary_interval": 2,
        "trainer.log_batch_size_period": 1,
        "trainer.should_log_parameter_statistics": False,
    }
    result = train(tmp_path, overrides)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    assert [p.name for p in run.glob("training_state_*.th")] == ["training_state_e3_b0.th"]
    assert "trainer.num_serialized_models_to_keep is AllenNLP 0.9's place" in result.stderr
    assert "write it as trainer.checkpointer.keep_most_recent_by_count" in result.stderr
    assert "write it as trainer.tensorboard_writer.batch_size_interval" in result.stderr
    assert result.stderr.count("trainer.summary_interval is AllenNLP 0.9's place") == 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "log" / "train"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert "batch_size" in scalars and "loss" in scalars
    assert not any(tag.startswith("parameter_mean/") for tag in scalars)


def test_a_0_9_key_given_in_both_places_is_a_configuration_error(tmp_path):
    """allennlp 0.9's allennlp/training/trainer.py read `num_serialized_models_to_keep` at the trainer's top level,
    1.x's allennlp/training/checkpointer.py in the checkpointer; a config giving both places is ambiguous, so it is
    refused before training, naming both keys, with nothing written."""
    overrides = {"trainer.num_serialized_models_to_keep": 1, "trainer.checkpointer": {"keep_most_recent_by_count": 3}}
    result = train(tmp_path, overrides)
    assert result.returncode == 2, result.stderr
    assert "trainer.num_serialized_models_to_keep" in result.stderr
    assert "checkpointer.keep_most_recent_by_count are one setting" in result.stderr
    assert not (tmp_path / "run").exists()


BIASED_MODEL = {"model": {"type": "bias_before_batch_norm", "input_dim": 4}, "trainer.validation_metric": "-loss"}


def test_run_sanity_checks_is_read_as_run_confidence_checks(tmp_path):
    """Pins allennlp/training/gradient_descent_trainer.py `GradientDescentTrainer.__init__`: `run_sanity_checks`
    (2.x's first name, passed through `from_partial_objects`'s kwargs) is deprecated in favour of
    `run_confidence_checks` and its value is used. The confidence checks stop a model whose biased layer feeds
    batch normalization; `run_sanity_checks: false` turns them off with one deprecation note."""
    checked = train(tmp_path, BIASED_MODEL, run="checked")
    assert checked.returncode != 0
    assert "run_confidence_checks" in checked.stderr and "BatchNorm1d" in checked.stderr
    result = train(tmp_path, {**BIASED_MODEL, "trainer.run_sanity_checks": False})
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("trainer.run_sanity_checks is deprecated") == 1
    assert "write it as trainer.run_confidence_checks" in result.stderr


def test_run_sanity_checks_and_run_confidence_checks_together_are_refused(tmp_path):
    """allennlp/training/gradient_descent_trainer.py lets `run_sanity_checks` silently win over
    `run_confidence_checks`; regimen refuses the pair before training (one setting under two names), as it
    refuses 0.9's keys written in both places, and writes nothing."""
    both = {"trainer.run_sanity_checks": False, "trainer.run_confidence_checks": True}
    result = train(tmp_path, both)
    assert result.returncode == 2, result.stderr
    assert "trainer.run_sanity_checks: and run_confidence_checks are one setting" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_tensorboard_writer_nested_in_the_tensorboard_callback_is_read(tmp_path):
    """Pins AllenNLP 2.0-2.4's allennlp/training/trainer.py, whose `TensorBoardCallback` took its settings in a
    nested `tensorboard_writer: Lazy[TensorBoardWriter]`; allennlp-models' test fixtures
    (lm/language_model/experiment_unsampled.jsonnet) still write `{"type": "tensorboard", "tensorboard_writer":
    {"batch_size_interval": 1}}`. The nested keys act as the callback's own, with one deprecation note."""
    callback = {"type": "tensorboard", "tensorboard_writer": {"batch_size_interval": 1, "summary_interval": 1}}
    result = train(tmp_path, {"trainer.num_epochs": 1, "trainer.callbacks": [callback]})
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("tensorboard_writer is AllenNLP 2.0's place for its keys") == 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "log" / "train"))
    events.Reload()
    batch_sizes = events.Scalars("batch_size")
    assert len(batch_sizes) == len(events.Scalars("loss")) > 1  # every step, as batch_size_interval 1 asks
    typo = train(
        tmp_path, {"trainer.callbacks": [{"type": "tensorboard", "tensorboard_writer": {"sumary": 1}}]}, run="t"
    )
    assert typo.returncode == 2
    assert 'trainer.callbacks.0.tensorboard_writer.sumary: unknown key "sumary"' in typo.stderr

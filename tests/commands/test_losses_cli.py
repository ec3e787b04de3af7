"""A model's loss as a tensor, a dict or a list, through ``regimen train`` (stable-ssl's models return a list or a
dict of losses): each term logged under its name, the sum trained; anything else a clear error naming the model."""

from __future__ import annotations

import json

from tests.conftest import FIXTURES, ROOT, run_cli

PLUGIN = '''
import torch

from regimen.models import MlpClassifier, Model


@Model.register("two_term_loss")
class TwoTermLoss(MlpClassifier):
    """Cross-entropy plus a small weight penalty, returned as a list of two terms."""

    def forward(self, features, label=None):
        output = super().forward(features, label)
        if label is not None:
            penalty = 1e-3 * sum((p ** 2).sum() for p in self.parameters())
            output["loss"] = [output["loss"], penalty]
        return output


@Model.register("text_loss")
class TextLoss(MlpClassifier):
    def forward(self, features, label=None):
        output = super().forward(features, label)
        output["loss"] = "oops"
        return output
'''


def train(tmp_path, model_type):
    (tmp_path / "loss_plugin.py").write_text(PLUGIN)
    overrides = {"model.type": model_type, "trainer.num_epochs": 2}
    return run_cli(
        "train", str(FIXTURES / "experiments" / "blobs.jsonnet"), "-s", str(tmp_path / "run"),
        "-o", json.dumps(overrides), "--include-package", "loss_plugin",
        env={"PYTHONPATH": f"{ROOT}:{tmp_path}"},
    )  # fmt: skip


def test_a_list_of_losses_is_logged_term_by_term_and_summed(tmp_path):
    result = train(tmp_path, "two_term_loss")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for split in ("training", "validation", "test"):
        total, first, second = (metrics[f"{split}_{key}"] for key in ("loss", "loss_0", "loss_1"))
        assert abs(total - (first + second)) < 1e-5 and 0 < second < first
    assert metrics["best_validation_accuracy"] > 0.8


def test_a_loss_that_is_no_tensor_names_the_model_and_what_it_returned(tmp_path):
    result = train(tmp_path, "text_loss")
    assert result.returncode == 1
    assert "TextLoss.forward returned 'loss' as str (oops); expected a tensor, a dict of named loss tensors, or a " in (
        result.stderr
    )


def test_a_gan_like_model_trains_one_loss_per_optimizer_from_the_config(tmp_path):
    gan = {
        "model": {"type": "tiny_gan_for_tests"},
        "trainer.optimizer": {
            "type": "multi",
            "optimizers": {"default": {"type": "adam", "lr": 0.01}, "generator": {"type": "adam", "lr": 0.01}},
            "parameter_groups": [[["^generator\\."], {"optimizer_name": "generator"}]],
        },
        "trainer.optimizer_losses": {"default": "discriminator", "generator": "generator"},
        "trainer.validation_metric": "-loss",
        "trainer.grad_norm": 1.0,
    }
    result = run_cli(
        "train", str(FIXTURES / "experiments" / "blobs.jsonnet"), "-s", str(tmp_path / "run"), "-o", json.dumps(gan),
        "--include-package", "tests.trainers.test_optimizer_losses",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for split in ("training", "validation"):
        total = metrics[f"{split}_loss"]
        assert abs(total - metrics[f"{split}_loss_generator"] - metrics[f"{split}_loss_discriminator"]) < 1e-5

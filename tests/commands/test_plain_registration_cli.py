"""``regimen train`` with components a user registers plainly (``@Trainer.register("mine")``) and with the names
AllenNLP removed, as a user runs it, in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT, run_cli

PLUGIN = """
import json
from pathlib import Path

from regimen.trainers import GradientDescentTrainer, Trainer


@Trainer.register("mine")  # no constructor=: built through GradientDescentTrainer's from_partial_objects
class MyTrainer(GradientDescentTrainer):
    def __init__(self, note: str = "none", **kwargs) -> None:
        super().__init__(**kwargs)
        self.note = note

    def train(self):
        metrics = super().train()
        group = self.optimizer.param_groups[0]
        record = {
            "note": self.note,
            "optimizer": type(self.optimizer).__name__,
            "lr": group["lr"],
            "epochs": metrics["training_epochs"],
        }
        Path(self._serialization_dir, "mine.json").write_text(json.dumps(record))
        return metrics
"""


def experiment(tmp_path: Path, trainer: dict) -> Path:
    """The blobs experiment with ``trainer`` as its trainer, written as a JSON config into ``tmp_path``."""
    data = FIXTURES / "data" / "blobs"
    config = {
        "dataset_reader": {"type": "csv", "label_column": "label"},
        "train_data_path": str(data / "train.csv"),
        "validation_data_path": str(data / "validation.csv"),
        "data_loader": {"batch_size": 8, "shuffle": True},
        "model": {"type": "mlp_classifier", "input_dim": 4, "hidden_dims": [8], "num_classes": 2},
        "trainer": {"progress_bar": False, "cuda_device": -1, **trainer},
    }
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(config))
    return path


def train_with_plugin(tmp_path: Path, trainer: dict):
    (tmp_path / "my_plugins").mkdir()
    (tmp_path / "my_plugins" / "__init__.py").write_text(PLUGIN)
    config = experiment(tmp_path, trainer)
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}"}
    return run_cli("train", str(config), "-s", "run", "--include-package", "my_plugins", cwd=tmp_path, env=env)


def test_a_plainly_registered_trainer_subclass_reads_the_gradient_descent_keys(tmp_path):
    trainer = {"type": "mine", "optimizer": {"type": "sgd", "lr": 0.1}, "num_epochs": 1, "note": "hello"}
    result = train_with_plugin(tmp_path, trainer)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "run" / "mine.json").read_text())
    assert record == {"note": "hello", "optimizer": "SgdOptimizer", "lr": 0.1, "epochs": 1}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["trainer"]["type"] == "mine"


def test_a_subclass_taking_kwargs_gets_the_parents_defaults_for_the_keys_it_leaves_out(tmp_path):
    # No num_epochs: from_partial_objects reads its default through MyTrainer's **kwargs from the parent's __init__.
    result = train_with_plugin(tmp_path, {"type": "mine", "num_steps": 3})
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "run" / "mine.json").read_text())
    assert record["note"] == "none" and record["optimizer"] == "AdamOptimizer"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["training_epochs"] == 1


@pytest.mark.parametrize(
    ("trainer", "message"),
    [
        (
            {"type": "callback", "callbacks": [{"type": "validate"}]},
            'trainer.type: Trainer type "callback" was removed in AllenNLP 1.0: use "gradient_descent" (the default '
            'trainer) with a "callbacks" list',
        ),
        (
            {"optimizer": {"type": "bert_adam", "lr": 2e-5, "warmup": 0.1, "t_total": 100}},
            'trainer.optimizer.type: Optimizer type "bert_adam" was removed in AllenNLP 1.0: use "huggingface_adamw"',
        ),
    ],
    ids=["callback", "bert_adam"],
)
def test_a_type_allennlp_removed_is_refused_naming_its_replacement(tmp_path, trainer, message):
    config = experiment(tmp_path, trainer)
    result = run_cli("train", str(config), "-s", str(tmp_path / "run"))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()

"""``regimen list``: every registrable base with its registered names and each one's first docstring sentence,
plugins included; a mistyped base is a clean error with a suggestion."""

from __future__ import annotations

from tests.conftest import ROOT, run_cli

PLUGIN = '''
from regimen.trainers.callbacks import TrainerCallback


@TrainerCallback.register("notify_me")
class NotifyMe(TrainerCallback):
    """Sends a message when the run ends. More text that the listing leaves out."""
'''


def test_every_base_is_listed_with_its_names_defaults_and_summaries():
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    bases = [line for line in lines if not line.startswith(" ")]
    for base in ("DataLoader", "DatasetReader", "LearningRateScheduler", "Model", "MomentumScheduler", "Optimizer",
                 "Trainer", "TrainerCallback", "Checkpointer", "MovingAverage", "Experiment"):  # fmt: skip
        assert base in bases, base
    assert "Subcommand" not in bases  # commands are no experiment component
    optimizer = lines[lines.index("Optimizer") + 1 :]
    assert optimizer[0].split()[:2] == ["adam", "(default)"]  # the default first, marked
    assert any(line.split()[0] == "huggingface_adamw" for line in optimizer)
    warmup = next(line for line in lines if line.split()[0] == "linear_with_warmup")
    assert "linear warm-up" in warmup and len(warmup) < 140


def test_one_base_case_insensitively_with_a_plugin_and_a_typo(tmp_path):
    (tmp_path / "notify_plugin.py").write_text(PLUGIN)
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}"}
    result = run_cli("list", "trainercallback", "--include-package", "notify_plugin", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "TrainerCallback"
    assert "  notify_me" in result.stdout and "Sends a message when the run ends\n" in result.stdout
    assert "Optimizer" not in result.stdout
    typo = run_cli("list", "optimiser")
    assert typo.returncode == 2
    assert 'unknown base "optimiser"; did you mean "Optimizer"?' in typo.stderr

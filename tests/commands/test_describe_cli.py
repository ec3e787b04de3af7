"""``regimen describe BASE NAME``: a component's class, summary and config keys (type, default, text), base and
name matched loosely, the keys regimen supplies kept apart, plugins included; unknown names are clean errors."""

from __future__ import annotations

from tests.conftest import ROOT, run_cli

PLUGIN = '''
from typing import Literal

from regimen.trainers.callbacks import TrainerCallback
from regimen.trainers.optimizers import Optimizer


@TrainerCallback.register("notify_me")
class NotifyMe(TrainerCallback):
    """Sends a message when the run ends.

    More text that the description leaves out.

    Config keys:
        channel: "email" | "slack" = "email"
            Where the message goes.
        retries: int | null = null
            How often to try again;
            null tries once.
    """

    def __init__(
        self, serialization_dir: str | None = None, channel: Literal["email", "slack"] = "email",
        retries: int | None = None,
    ) -> None:
        super().__init__(serialization_dir)


@Optimizer.register("passthrough_sgd")
class PassthroughSgd:
    """A plain class taking any keyword argument.

    - `lr` (float, 0.1): the learning rate.
    """

    def __init__(self, model_parameters, lr: float = 0.1, **kwargs) -> None:
        self.lr = lr
'''


def test_a_scheduler_with_loose_spelling_shows_its_keys_and_what_regimen_supplies():
    result = run_cli("describe", "learningratescheduler", "Linear-With-Warmup")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        'LearningRateScheduler "linear_with_warmup": regimen.trainers.lr_schedulers.linear_with_warmup.LinearWithWarmup'
    )
    assert "A linear warm-up over `warmup_steps` optimizer steps, then a linear decay to 0 at the last step." in lines
    position = lines.index("  warmup_steps: int = 100")
    assert lines[position + 1] == "      optimizer steps of warm-up."
    assert "  last_epoch: int = -1" in lines
    assert not any(line.startswith(("  optimizer:", "  num_epochs:")) for line in lines)  # injected by the trainer
    assert lines[-1] == "Supplied by regimen, not written in the config: optimizer, num_epochs, num_steps_per_epoch."


def test_the_trainer_is_described_through_its_classmethod_constructor_with_its_own_num_epochs():
    result = run_cli("describe", "trainer", "gradient_descent")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("GradientDescentTrainer (built by from_partial_objects)")
    assert 'The default Trainer: a config without "type" builds it.' in lines
    assert '  optimizer: Optimizer = "adam"' in lines  # Lazy[Optimizer] reads as the base it builds
    assert "  num_epochs: int = 20" in lines  # the trainer's own key, though schedulers have it injected
    assert "  grad_clipping: float | null = null" in lines
    assert "  callbacks: list[TrainerCallback] | null = null" in lines
    assert '  amp_dtype: "float16" | "bfloat16" | null = null' in lines
    assert "  num_serialized_models_to_keep: int | null = null" in lines  # an accepted AllenNLP 0.9 key
    assert not any(line.startswith(("  model:", "  data_loader:")) for line in lines)


def test_a_model_shows_literal_choices_and_required_keys_with_their_texts():
    result = run_cli("describe", "Model", "MLP-Classifier")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[lines.index("  input_dim: int (required)") + 1] == "      the number of input features."
    assert '  activation: "relu" | "gelu" | "tanh" = "relu"' in lines
    assert "  hidden_dims: list[int] = []" in lines


def test_unknown_bases_and_names_are_one_line_errors_with_the_closest_match_and_the_choices():
    base = run_cli("describe", "optimiser", "adam")
    assert base.returncode == 2 and base.stdout == ""
    assert base.stderr.count("\n") == 1
    assert base.stderr.startswith('regimen: configuration error: unknown base "optimiser"; did you mean "Optimizer"?')
    assert "valid bases: " in base.stderr and "LearningRateScheduler" in base.stderr
    name = run_cli("describe", "Optimizer", "adamm")
    assert name.returncode == 2 and name.stderr.count("\n") == 1
    assert 'unknown Optimizer name "adamm"; did you mean "adam"? valid Optimizer names: adam, adamw, sgd' in name.stderr
    assert "--include-package" in name.stderr


def test_plugin_components_are_described_including_indented_docs_and_passthrough_keys(tmp_path):
    (tmp_path / "notify_plugin.py").write_text(PLUGIN)
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}"}
    result = run_cli("describe", "TrainerCallback", "notify-me", "--include-package", "notify_plugin", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == 'TrainerCallback "notify_me": notify_plugin.NotifyMe'
    assert lines[2] == "Sends a message when the run ends."
    assert "More text" not in result.stdout
    channel = lines.index('  channel: "email" | "slack" = "email"')
    assert lines[channel + 1] == "      Where the message goes."
    retries = lines.index("  retries: int | null = null")
    assert lines[retries + 1] == "      How often to try again; null tries once."
    assert lines[-1] == "Supplied by regimen, not written in the config: serialization_dir."
    plain = run_cli("describe", "optimizer", "passthrough_sgd", "--include-package", "notify_plugin", env=env)
    assert plain.returncode == 0, plain.stderr
    lines = plain.stdout.splitlines()
    assert lines[lines.index("  lr: float = 0.1") + 1] == "      the learning rate."
    assert "  Any other key is passed on to the constructor as a keyword argument." in lines

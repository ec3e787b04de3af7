"""What AllenNLP (and HuggingFace, for the optimizer AllenNLP wraps) do with a plainly registered trainer, the
types AllenNLP removed, HF's Adafactor and slanted_triangular with ``cut_frac: 0``, on real tiny models.

Each test names in its docstring the reference source file whose behaviour it pins."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from regimen.models import Model
from regimen.registry import ConfigurationError, Params
from regimen.trainers import GradientDescentTrainer, Trainer
from regimen.trainers.lr_schedulers import LearningRateScheduler
from regimen.trainers.optimizers import Optimizer


class TokenClassifier(Model):
    """An embedding of ten tokens of which the data uses five, so five rows get exactly zero gradients, and a
    ``gate`` whose contribution is multiplied by zero, so its gradient is exactly zero too."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(10, 8)
        self.gate = torch.nn.Parameter(torch.ones(8))
        self.output = torch.nn.Linear(8, 2)

    def forward(self, tokens: torch.Tensor, label: torch.Tensor | None = None) -> dict[str, Any]:
        hidden = self.embedding(tokens).mean(dim=1) + 0.0 * self.gate
        logits = self.output(hidden)
        output = {"logits": logits}
        if label is not None:
            output["loss"] = torch.nn.functional.cross_entropy(logits, label)
        return output


def token_batches(count: int = 64, batch_size: int = 8) -> list[dict[str, torch.Tensor]]:
    """Sequences of tokens 0-4; the label says whether token 0 occurs more often than token 1."""
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 5, (count, 6), generator=generator)
    labels = ((tokens == 0).sum(1) > (tokens == 1).sum(1)).long()
    return [
        {"tokens": tokens[start : start + batch_size], "label": labels[start : start + batch_size]}
        for start in range(0, count, batch_size)
    ]


def make_trainer(config: dict[str, Any], model: Model | None = None) -> Trainer:
    torch.manual_seed(0)
    return Trainer.from_params(
        Params({"progress_bar": False, "cuda_device": -1, **config}, "trainer"),
        model=model if model is not None else TokenClassifier(),
        data_loader=token_batches(),
    )


# ---- a GradientDescentTrainer subclass registered without a constructor ----------------------------------------
@Trainer.register("contract_explicit", constructor="from_partial_objects")
class ExplicitlyRegistered(GradientDescentTrainer):
    pass


@Trainer.register("contract_plain")
class PlainlyRegistered(GradientDescentTrainer):
    pass


def test_a_subclass_registered_with_from_partial_objects_builds_as_in_allennlp():
    """allennlp/training/gradient_descent_trainer.py (2.10) registers "gradient_descent" with
    ``constructor="from_partial_objects"``, and allennlp/common/from_params.py ``FromParams.from_params`` calls
    ``getattr(subclass, constructor_name)`` for a registration that names one: a subclass registered the same
    way reads the "gradient_descent" keys and gets a built optimizer."""
    trainer = make_trainer({"type": "contract_explicit", "optimizer": {"type": "sgd", "lr": 0.1}, "num_epochs": 1})
    assert type(trainer) is ExplicitlyRegistered and isinstance(trainer.optimizer, torch.optim.SGD)
    assert trainer.optimizer.param_groups[0]["lr"] == 0.1


def test_a_plain_registration_inherits_from_partial_objects_where_allennlp_fell_back_to_init():
    """allennlp/common/from_params.py (2.10) ``FromParams.from_params``: ``if not constructor_name:
    constructor_to_inspect = subclass.__init__`` -- AllenNLP builds ``@Trainer.register("mine")`` through
    ``__init__``, whose ``optimizer: torch.optim.Optimizer`` has no ``from_params``, so ``construct_arg``'s last
    branch ("Pass it on as is and hope for the best") hands the trainer the optimizer's config dict, and the
    run fails at its first step. allennlp/common/registrable.py's ``register`` stores ``(subclass, None)``.

    regimen deliberately differs (issue 13, point 7): a registration without a constructor inherits the one its
    registered parent declared, so the same config trains. A config AllenNLP accepts still builds the same."""
    assert Trainer.resolve_class_name("contract_plain") == (PlainlyRegistered, "from_partial_objects")
    trainer = make_trainer({"type": "contract_plain", "optimizer": {"type": "sgd", "lr": 0.1}, "num_epochs": 2})
    assert type(trainer) is PlainlyRegistered and isinstance(trainer.optimizer, torch.optim.SGD)
    metrics = trainer.train()
    assert metrics["training_epochs"] == 2 and math.isfinite(metrics["training_loss"])


# ---- types AllenNLP removed ----------------------------------------------------------------------------------------
def test_the_trainer_and_optimizer_allennlp_removed_name_the_registered_replacements():
    """allennlp 0.9 allennlp/training/callback_trainer.py: ``@TrainerBase.register("callback") class
    CallbackTrainer``, removed for 1.0 (allenai/allennlp#3828), whose callbacks became ``TrainerCallback``s of
    "gradient_descent". allennlp 0.9 allennlp/training/optimizers.py: ``"bert_adam": BertAdam`` (from
    pytorch_pretrained_bert), removed with that package for 1.0 (allenai/allennlp#3635); 1.x/2.x
    allennlp/training/optimizers.py registers "huggingface_adamw" (transformers.AdamW) and "adamw" instead.
    Every name the messages point to is registered here."""
    with pytest.raises(ConfigurationError) as caught:
        make_trainer({"type": "callback"})
    assert str(caught.value).startswith(
        'trainer.type: Trainer type "callback" was removed in AllenNLP 1.0: use "gradient_descent" (the default '
        'trainer) with a "callbacks" list'
    )
    with pytest.raises(ConfigurationError) as caught:
        make_trainer({"optimizer": {"type": "bert_adam", "lr": 2e-5}})
    assert str(caught.value).startswith(
        'trainer.optimizer.type: Optimizer type "bert_adam" was removed in AllenNLP 1.0: use "huggingface_adamw" '
        'with "correct_bias": false'
    )
    assert Trainer.is_registered("gradient_descent") and Trainer.default_implementation == "gradient_descent"
    assert all(Optimizer.is_registered(name) for name in ("huggingface_adamw", "adamw"))
    assert LearningRateScheduler.is_registered("linear_with_warmup")
    assert not Trainer.is_registered("callback") and not Optimizer.is_registered("bert_adam")


def test_allennlp_0_7s_ema_trainer_names_the_moving_average_that_replaced_it():
    """AllenNLP 0.7 registered ``@Trainer.register("ema_trainer") class EMATrainer``, a subclass of
    allennlp/training/trainer.py's Trainer that kept an exponential moving average of the weights
    (`exponential_moving_average_decay`, in allennlp's training_config/qanet.jsonnet of the time); the trainer
    took it over as `moving_average` (allennlp/training/moving_average.py, "exponential", whose docstring is
    EMATrainer's) and the type was removed."""
    with pytest.raises(ConfigurationError) as caught:
        make_trainer({"type": "ema_trainer", "exponential_moving_average_decay": 0.9999})
    message = str(caught.value)
    assert message.startswith('trainer.type: Trainer type "ema_trainer" was removed in AllenNLP 0.8: use ')
    assert '"moving_average": {"type": "exponential", "decay": D}' in message
    assert "exponential_moving_average_decay" in message
    assert not Trainer.is_registered("ema_trainer")


# ---- HuggingFace's Adafactor ------------------------------------------------------------------------------------
def hf_adafactor(
    weight: torch.Tensor,
    gradients: list[torch.Tensor],
    lr: float | None = None,
    eps: tuple[float, float] = (1e-30, 1e-3),
    clip_threshold: float = 1.0,
    decay_rate: float = -0.8,
    beta1: float | None = None,
    weight_decay: float = 0.0,
    scale_parameter: bool = True,
    relative_step: bool = True,
    warmup_init: bool = False,
) -> torch.Tensor:
    """One tensor after HF's Adafactor steps with these gradients, written out from the rule as HF documents
    and computes it (Shazeer & Stern 2018, Algorithms 4 and 5, with HF's eps, clipping and step sizes)."""
    w = weight.clone()
    factored = w.dim() >= 2
    row = col = second = first = None
    for t, g in enumerate(gradients, start=1):
        rho = min(1e-6 * t if warmup_init else 1e-2, 1 / math.sqrt(t)) if relative_step else lr
        alpha = rho * max(eps[1], w.pow(2).mean().sqrt()) if scale_parameter else rho
        keep = 1 - t**decay_rate  # weight of the old second moment; 0 at the first step
        squared = g * g + eps[0]
        if factored:
            row = (1 - keep) * squared.mean(-1) + (keep * row if row is not None else 0)
            col = (1 - keep) * squared.mean(-2) + (keep * col if col is not None else 0)
            estimate = row[..., :, None] * col[..., None, :] / row.mean(-1)[..., None, None]
        else:
            second = (1 - keep) * squared + (keep * second if second is not None else 0)
            estimate = second
        update = g / estimate.sqrt()
        update = alpha * update / max(1.0, float(update.pow(2).mean().sqrt()) / clip_threshold)
        if beta1 is not None:
            first = (1 - beta1) * update + (beta1 * first if first is not None else 0)
            update = first
        w = w - weight_decay * alpha * w - update
    return w


CONFIGS = {
    "t5_cnn_dm": {},  # allennlp-models' block: {"type": "huggingface_adafactor"}
    "constant_lr": {"lr": 3e-3, "relative_step": False, "scale_parameter": False, "clip_threshold": 0.5},
    "first_moment": {"beta1": 0.9, "weight_decay": 0.1, "warmup_init": True, "decay_rate": -0.5},
}


@pytest.mark.parametrize("options", CONFIGS.values(), ids=CONFIGS)
def test_huggingface_adafactor_takes_hfs_steps(options):
    """transformers src/transformers/optimization.py ``class Adafactor``: defaults ``eps=(1e-30, 1e-3)``,
    ``clip_threshold=1.0``, ``decay_rate=-0.8``, ``beta1=None``, ``weight_decay=0.0``, ``scale_parameter=True``,
    ``relative_step=True``, ``warmup_init=False``; ``step`` computes ``update = (grad**2) + eps[0]`` (eps[0] added,
    not squared), factored row/column means for matrices, the clipped update times ``_get_lr``. The gradients
    include an all-zero matrix row and zero entries, which stay zero updates."""
    generator = torch.Generator().manual_seed(3)
    matrix = torch.nn.Parameter(torch.randn(4, 3, generator=generator))
    vector = torch.nn.Parameter(torch.randn(3, generator=generator))
    steps = []
    for _ in range(4):
        matrix_grad = torch.randn(4, 3, generator=generator)
        matrix_grad[2] = 0.0
        vector_grad = torch.randn(3, generator=generator)
        vector_grad[1] = 0.0
        steps.append((matrix_grad, vector_grad))
    start = (matrix.detach().clone(), vector.detach().clone())
    optimizer = Optimizer.from_params(
        Params({"type": "huggingface_adafactor", **options}, "trainer.optimizer"),
        model_parameters=[("matrix", matrix), ("vector", vector)],
    )
    for matrix_grad, vector_grad in steps:
        matrix.grad, vector.grad = matrix_grad.clone(), vector_grad.clone()
        optimizer.step()
    torch.testing.assert_close(matrix.detach(), hf_adafactor(start[0], [g for g, _ in steps], **options))
    torch.testing.assert_close(vector.detach(), hf_adafactor(start[1], [g for _, g in steps], **options))
    if "weight_decay" not in options:
        assert torch.equal(matrix[2], start[0][2]) and vector[1] == start[1][1]


def test_the_t5_cnn_dm_optimizer_block_trains_with_exactly_zero_gradients():
    """allennlp-models training_config/generation/t5_cnn_dm.jsonnet (commit bc0a5457) trains T5 with
    ``"optimizer": {"type": "huggingface_adafactor"}`` and ``"grad_norm": 1.0``. T5's embedding has rows no batch
    uses; their gradient is exactly zero. HF's Adafactor (transformers src/transformers/optimization.py) adds
    eps[0] = 1e-30 to the squared gradient, so those weights stay finite and unchanged; torch.optim.Adafactor,
    which squares eps[0] (0 in float32), turned them NaN in the first batches."""
    torch.manual_seed(0)
    model = TokenClassifier()
    unused = model.embedding.weight[5:].detach().clone()
    gate = model.gate.detach().clone()
    before = mean_loss(model)
    trainer = make_trainer({"optimizer": {"type": "huggingface_adafactor"}, "grad_norm": 1.0, "num_epochs": 6}, model)
    metrics = trainer.train()
    for name, parameter in model.named_parameters():
        assert torch.isfinite(parameter).all(), name
    assert torch.equal(model.embedding.weight[5:], unused) and torch.equal(model.gate, gate)
    assert math.isfinite(metrics["training_loss"]) and mean_loss(model) < 0.8 * before


def mean_loss(model: Model) -> float:
    with torch.no_grad():
        model.eval()
        return sum(float(model(**batch)["loss"]) for batch in token_batches()) / len(token_batches())


# ---- polynomial_decay's documented total_steps ---------------------------------------------------------------------
def test_polynomial_decay_reads_the_total_steps_its_allennlp_docstring_documents():
    """allennlp/training/learning_rate_schedulers/polynomial_decay.py documents ``total_steps: int, required`` and
    the formula ``(initial_lr - end_learning_rate) * ((total_steps - steps) / (total_steps - warmup_steps)) **
    power``, but computes ``self.total_steps = num_epochs * num_steps_per_epoch`` and takes no such argument; a
    config giving it (allennlp-models' early seq2seq/bart_cnn_dm.jsonnet) failed there. regimen decays over the
    given number, ignoring the epochs: with 2 warm-up steps and 6 in all, step 4 is at (6-4)/(6-2) of the lr."""
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    config = {"type": "polynomial_decay", "total_steps": 6, "warmup_steps": 2}
    scheduler = LearningRateScheduler.from_params(
        Params(config, "trainer.learning_rate_scheduler"), optimizer=optimizer, num_epochs=50, num_steps_per_epoch=9
    )
    used = []
    for step in range(1, 9):
        scheduler.step_batch(step)
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
    assert used == pytest.approx([0.5, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0])
    with pytest.raises(ConfigurationError, match=r"learning_rate_scheduler\.total_steps: must be positive, got 0"):
        LearningRateScheduler.from_params(
            Params({**config, "total_steps": 0}, "trainer.learning_rate_scheduler"), optimizer=optimizer, num_epochs=1
        )


# ---- slanted_triangular with cut_frac 0 ---------------------------------------------------------------------------
def test_slanted_triangular_with_cut_frac_zero_has_no_warm_up_and_decays_linearly_from_the_peak():
    """allennlp/training/learning_rate_schedulers/slanted_triangular.py ``get_values``: ``cut =
    int(num_steps * self.cut_frac)``; ``prop = step / cut if step < cut else 1 - (step - cut) / (num_steps -
    cut)`` never divides by a cut of 0 (``step < 0`` never holds), so the lr is ``lr * (1 + (1 - step / T) *
    (ratio - 1)) / ratio``: the peak before the first step (the constructor's ``step_batch(0)``), ``lr / ratio``
    at step T. The trainer calls ``step_batch(n)`` before the n-th optimizer step."""
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([weight], lr=0.5)
    scheduler = LearningRateScheduler.from_params(
        Params({"type": "slanted_triangular", "cut_frac": 0.0, "ratio": 10}, "trainer.learning_rate_scheduler"),
        optimizer=optimizer,
        num_epochs=2,
        num_steps_per_epoch=4,
    )
    assert scheduler.get_values() == [0.5]
    used = []
    for step in range(1, 9):
        scheduler.step_batch(step)
        used.append(scheduler.get_values()[0])
        optimizer.step()
        if step % 4 == 0:
            scheduler.step(1.0)
    # 0.5 * (1 + (1 - t / 8) * 9) / 10 for t = 1..8
    assert used == pytest.approx([0.44375, 0.3875, 0.33125, 0.275, 0.21875, 0.1625, 0.10625, 0.05])

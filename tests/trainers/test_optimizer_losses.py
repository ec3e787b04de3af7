"""One loss per optimizer (aitoolbox's MultiLoss with MultiOptimizer): a two-network GAN-like model whose
generator and discriminator each step on their own loss, with their own clipping."""

from __future__ import annotations

import pytest
import torch

from regimen.models import Model
from regimen.registry import ConfigurationError, Params
from regimen.trainers import Trainer
from tests.trainers.test_gradient_descent import blobs


@Model.register("tiny_gan_for_tests")
class TinyGan(Model):
    """A generator maps two noise values to a 4-d sample; a discriminator scores real and generated samples. The
    discriminator's loss depends on the generator too (its fakes are not detached): summed, it would move both."""

    def __init__(self) -> None:
        super().__init__()
        self.generator = torch.nn.Linear(2, 4)
        self.discriminator = torch.nn.Linear(4, 1)

    def forward(self, features: torch.Tensor, label: torch.Tensor | None = None) -> dict:
        return {"loss": self.losses(features)}

    def losses(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        fake_score = self.discriminator(self.generator(features[:, :2] * 0.3))
        real_score = self.discriminator(features)
        return {
            "discriminator": bce(real_score, torch.ones_like(real_score))
            + bce(fake_score, torch.zeros_like(fake_score)),
            "generator": bce(fake_score, torch.ones_like(fake_score)),
        }


OPTIMIZER = {
    "type": "multi",
    "optimizers": {"default": {"type": "sgd", "lr": 0.1}, "generator": {"type": "sgd", "lr": 0.05}},
    "parameter_groups": [[["^generator\\."], {"optimizer_name": "generator"}]],
}
ROUTES = {"default": "discriminator", "generator": "generator"}


def gan_trainer(serialization_dir: str | None = None, **config) -> Trainer:
    torch.manual_seed(0)
    return Trainer.from_params(
        Params({"progress_bar": False, "cuda_device": -1, "optimizer": OPTIMIZER, **config}, "trainer"),
        model=TinyGan(),
        data_loader=blobs(32, seed=1, batch_size=8),
        serialization_dir=serialization_dir,
    )


def expected_step(model: TinyGan, batches: list[dict], max_norm: float | None = None) -> dict[str, torch.Tensor]:
    """The weights after one step by hand: each network moved by SGD on the gradient of its own loss only."""
    generator = list(model.generator.parameters())
    discriminator = list(model.discriminator.parameters())
    totals = [model.losses(batch["features"]) for batch in batches]
    g_loss = sum(t["generator"] for t in totals) / len(batches)
    d_loss = sum(t["discriminator"] for t in totals) / len(batches)
    g_grads = torch.autograd.grad(g_loss, generator, retain_graph=True)
    d_grads = torch.autograd.grad(d_loss, discriminator)
    if max_norm is not None:
        g_grads, d_grads = (_clipped(grads, max_norm) for grads in (g_grads, d_grads))
    after = {}
    for (name, parameter), grad in zip(model.generator.named_parameters(), g_grads):
        after[f"generator.{name}"] = parameter.detach() - 0.05 * grad
    for (name, parameter), grad in zip(model.discriminator.named_parameters(), d_grads):
        after[f"discriminator.{name}"] = parameter.detach() - 0.1 * grad
    return after


def _clipped(grads: tuple[torch.Tensor, ...], max_norm: float) -> list[torch.Tensor]:
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    return [g * min(1.0, max_norm / (float(norm) + 1e-6)) for g in grads]


@pytest.mark.parametrize(
    ("config", "max_norm", "batches"),
    [
        ({"optimizer_losses": ROUTES}, None, 1),
        ({"optimizer_losses": ROUTES, "num_gradient_accumulation_steps": 2}, None, 2),
        ({"optimizer_losses": ROUTES, "grad_norm": 0.01}, 0.01, 1),  # each network clipped to 0.01 on its own
    ],
)
def test_each_optimizer_moves_only_its_own_parameters_by_its_own_loss(config, max_norm, batches):
    trainer = gan_trainer(num_steps=1, **config)
    data = blobs(32, seed=1, batch_size=8)[:batches]
    expected = expected_step(trainer.model, data, max_norm)
    trainer.train()
    for name, parameter in trainer.model.named_parameters():
        assert torch.allclose(parameter.detach(), expected[name], atol=1e-6), name


def test_summing_the_losses_instead_moves_the_generator_by_the_discriminators_loss_too():
    trainer = gan_trainer(num_steps=1, optimizer={**OPTIMIZER, "optimizers": {
        "default": {"type": "sgd", "lr": 0.1}, "other": {"type": "sgd", "lr": 0.05}},
        "parameter_groups": [[["^generator\\."], {"optimizer_name": "other"}]]})  # fmt: skip
    expected = expected_step(trainer.model, blobs(32, seed=1, batch_size=8)[:1])
    trainer.train()  # loss names match no optimizer names and no optimizer_losses: the sum is backpropagated
    assert not torch.allclose(trainer.model.generator.weight.detach(), expected["generator.weight"], atol=1e-6)


def test_loss_names_equal_to_the_optimizer_names_route_without_a_mapping():
    trainer = gan_trainer(num_steps=1, optimizer={**OPTIMIZER, "optimizers": {
        "discriminator": {"type": "sgd", "lr": 0.1}, "generator": {"type": "sgd", "lr": 0.05}, "default": {
            "type": "sgd"}}, "parameter_groups": [[["^generator\\."], {"optimizer_name": "generator"}], [[
            "^discriminator\\."], {"optimizer_name": "discriminator"}]]})  # fmt: skip
    # "default" holds no parameters and is not built, so the optimizers are exactly the loss names.
    expected = expected_step(trainer.model, blobs(32, seed=1, batch_size=8)[:1])
    trainer.train()
    for name, parameter in trainer.model.named_parameters():
        assert torch.allclose(parameter.detach(), expected[name], atol=1e-6), name


def test_a_mapping_must_name_every_optimizer_of_a_multi_optimizer():
    with pytest.raises(
        ConfigurationError, match=r"trainer.optimizer_losses: gives no loss to optimizers \['generator'\]"
    ):
        gan_trainer(optimizer_losses={"default": "discriminator"})
    with pytest.raises(ConfigurationError, match=r'trainer\.optimizer_losses: needs a "multi" optimizer'):
        Trainer.from_params(
            Params(
                {"progress_bar": False, "optimizer": {"type": "sgd", "lr": 0.1}, "optimizer_losses": ROUTES}, "trainer"
            ),
            model=TinyGan(),
            data_loader=blobs(32, seed=1, batch_size=8),
        )


def test_routed_losses_train_under_float16_amp_and_resume_exactly(tmp_path):
    """AMP: each loss is scaled and backpropagated into its own optimizer's parameters; resume: a run stopped after
    one epoch and resumed ends with the weights of a run that never stopped."""
    amp = {"optimizer_losses": ROUTES, "use_amp": True, "amp_dtype": "float16"}
    trainer = gan_trainer(num_epochs=1, **amp)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    moved = [name for name, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[name])]
    assert sorted(moved) == sorted(before)  # both networks stepped, each on its own loss, through the scaler

    straight = gan_trainer(num_epochs=2, optimizer_losses=ROUTES)
    straight.train()
    first = gan_trainer(num_epochs=1, optimizer_losses=ROUTES, serialization_dir=str(tmp_path))
    first.train()
    resumed = gan_trainer(num_epochs=2, optimizer_losses=ROUTES, serialization_dir=str(tmp_path))
    resumed.train()
    for (name, p), q in zip(straight.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(p, q), name

"""The GAN losses from logits: the formulas, and the saturation the non-saturating loss cures."""
import math

import pytest
import torch
import torch.nn.functional as F

from methods.gan import MinimaxGAN
from methods.nsgan import NonSaturatingGAN


def test_losses_equal_their_formulas_in_probabilities():
    real, fake = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64), torch.tensor([-0.5, 1.5], dtype=torch.float64)
    d_real, d_fake = torch.sigmoid(real), torch.sigmoid(fake)
    expected_d = -(torch.log(d_real).mean() + torch.log(1 - d_fake).mean())
    assert MinimaxGAN.discriminator_loss(real, fake).item() == pytest.approx(expected_d.item())
    assert MinimaxGAN.discriminator_loss(real, fake).item() == pytest.approx(
        (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
         + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))).item())
    assert MinimaxGAN.generator_loss(fake).item() == pytest.approx(torch.log(1 - d_fake).mean().item())
    assert NonSaturatingGAN.generator_loss(fake).item() == pytest.approx(-torch.log(d_fake).mean().item())


def _grad_wrt_logit(loss_fn, logit):
    l = torch.tensor([logit], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(loss_fn(l), l)
    return abs(g.item())


def test_minimax_gradient_vanishes_when_d_rejects_fakes_and_nonsaturating_does_not():
    logit = -12.0  # D(G(z)) = sigmoid(-12) ~ 6e-6: D confidently rejects the fake
    saturating = _grad_wrt_logit(MinimaxGAN.generator_loss, logit)
    non_saturating = _grad_wrt_logit(NonSaturatingGAN.generator_loss, logit)
    d = 1 / (1 + math.exp(12))
    assert saturating == pytest.approx(d)            # |d/dl log(1 - sigmoid l)| = D
    assert non_saturating == pytest.approx(1 - d)    # |d/dl -log sigmoid l| = 1 - D
    assert saturating < 1e-4 < 0.99 < non_saturating


def test_losses_finite_for_extreme_logits():
    extreme = torch.tensor([-1e4, 1e4])
    for value in (MinimaxGAN.discriminator_loss(extreme, extreme), MinimaxGAN.generator_loss(extreme),
                  NonSaturatingGAN.generator_loss(extreme)):
        assert torch.isfinite(value)

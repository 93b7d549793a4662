"""The four added objectives against their formulas at known inputs: signs, values, the gradient
penalty on cases computed by hand, MMD GAN's kernel through bench.mmd, PacGAN packing."""
import pytest
import torch
from torch import nn

from bench import mmd
from conftest import direct_mmd2
from methods.gan import MinimaxGAN
from methods.hinge import HingeGAN
from methods.lsgan import LeastSquaresGAN
from methods.mmdgan import MMDGAN
from methods.wgan_gp import WassersteinGP

T = lambda *v: torch.tensor(v, dtype=torch.float64)


def test_wgan_gp_losses_are_the_wasserstein_estimate_with_the_right_signs():
    real, fake = T(1.0, 3.0), T(-2.0, 0.0)
    assert WassersteinGP.discriminator_loss(real, fake).item() == pytest.approx(-1.0 - 2.0)  # E D(G(z)) − E D(x)
    assert WassersteinGP.generator_loss(fake).item() == pytest.approx(1.0)                   # −E D(G(z))
    # the critic lowers its loss by scoring real samples up and fakes down
    r, f = real.clone().requires_grad_(), fake.clone().requires_grad_()
    WassersteinGP.discriminator_loss(r, f).backward()
    assert (r.grad < 0).all() and (f.grad > 0).all()


def _linear_critic(w, b=0.5):
    critic = nn.Linear(len(w), 1).double()
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([w], dtype=torch.float64))
        critic.bias.fill_(b)
    return critic


def test_gradient_penalty_by_hand_linear_critic():
    """D(x) = w·x + b: ∇D = w everywhere, so the penalty is (‖w‖ − 1)² = (5 − 1)² = 16 for any ε,
    and its gradient in w is 2(‖w‖ − 1) w/‖w‖ = (4.8, 6.4)."""
    critic = _linear_critic([3.0, 4.0])
    real, fake = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    gp = WassersteinGP().gradient_penalty(critic, real, fake)
    assert gp.item() == pytest.approx(16.0)
    gp.backward()  # create_graph: the penalty trains the critic
    assert critic.weight.grad[0].tolist() == pytest.approx([4.8, 6.4])


class _HalfSquaredNorm(nn.Module):
    def forward(self, x):
        return 0.5 * (x ** 2).sum(1, keepdim=True)  # ∇D(x) = x


def test_gradient_penalty_by_hand_at_the_interpolates():
    """D(x) = ½‖x‖²: ∇D(x̂) = x̂ = ε x + (1 − ε) x̃. x = (2, 0), x̃ = (0, 0): ε = ½ gives x̂ = (1, 0),
    penalty 0; ε = 1 gives (2, 0), penalty 1; ε = 0 gives (0, 0), penalty 1. Mean: 2/3."""
    real = T(2.0, 0.0).repeat(3, 1)
    fake = torch.zeros(3, 2, dtype=torch.float64)
    eps = T(0.5, 1.0, 0.0)[:, None]
    assert WassersteinGP().gradient_penalty(_HalfSquaredNorm(), real, fake, eps).item() == pytest.approx(2 / 3)


def test_wgan_gp_objective_adds_lambda_times_the_penalty():
    critic = _linear_critic([3.0, 4.0], b=0.0)
    real, fake = T(1.0, 0.0)[None], T(0.0, 1.0)[None]
    total = WassersteinGP(gp_weight=10.0).discriminator_objective(critic, real, fake)
    assert total.item() == pytest.approx((4.0 - 3.0) + 10 * 16.0)
    assert WassersteinGP(gp_weight=0.0).discriminator_objective(critic, real, fake).item() == pytest.approx(1.0)


def test_lsgan_losses_at_known_values_and_targets():
    real, fake = T(1.0, 0.0), T(0.0, 2.0)
    m = LeastSquaresGAN()  # a = 0, b = c = 1
    assert m.discriminator_loss(real, fake).item() == pytest.approx(0.5 * (0 + 1) / 2 + 0.5 * (0 + 4) / 2)
    assert m.generator_loss(fake).item() == pytest.approx(0.5 * (1 + 1) / 2)
    assert m.discriminator_loss(T(1.0), T(0.0)).item() == 0 and m.generator_loss(T(1.0)).item() == 0  # the optima
    chi2 = LeastSquaresGAN(a=-1.0, b=1.0, c=0.0)  # the Pearson χ² coding of §3.2.1
    assert chi2.discriminator_loss(T(1.0), T(-1.0)).item() == 0 and chi2.generator_loss(T(0.0)).item() == 0
    with pytest.raises(ValueError, match="a and b must differ"):
        LeastSquaresGAN(a=1.0, b=1.0)


def test_hinge_losses_at_known_values_and_their_margins():
    real, fake = T(2.0, 0.5), T(-2.0, 0.5)
    assert HingeGAN.discriminator_loss(real, fake).item() == pytest.approx((0 + 0.5) / 2 + (0 + 1.5) / 2)
    assert HingeGAN.generator_loss(fake).item() == pytest.approx(0.75)
    r, f = real.clone().requires_grad_(), fake.clone().requires_grad_()
    HingeGAN.discriminator_loss(r, f).backward()
    assert r.grad.tolist() == [0.0, -0.5] and f.grad.tolist() == [0.0, 0.5]  # no gradient beyond the margin


def test_mmdgan_critic_and_generator_objectives_are_minus_and_plus_mmd2_through_bench_mmd():
    torch.manual_seed(0)
    critic = nn.Linear(2, 3).double()
    real, fake = torch.randn(20, 2, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64) + 1
    m = MMDGAN(features=3, bandwidths=(1.0, 4.0))
    with torch.no_grad():
        expected = direct_mmd2(critic(fake), critic(real), "gaussian", (1.0, 4.0), "biased")
        assert expected.item() == pytest.approx(
            mmd.mmd2(critic(fake), critic(real), "gaussian", (1.0, 4.0), "biased", backend="dense").item())
    assert m.discriminator_objective(critic, real, fake).item() == pytest.approx(-expected.item())
    assert m.generator_objective(critic, fake, lambda: real).item() == pytest.approx(expected.item())
    assert m.discriminator_outputs == 3 and m.backend_used_ in mmd.BACKENDS


def test_mmdgan_clips_the_critic_after_each_update_only_when_asked():
    critic = _linear_critic([3.0, -4.0])
    MMDGAN(clip=0.01).after_discriminator_step(critic)
    assert critic.weight.abs().max().item() == pytest.approx(0.01) and critic.bias.item() == pytest.approx(0.01)
    critic = _linear_critic([3.0, -4.0])
    MMDGAN().after_discriminator_step(critic)
    assert critic.weight[0].tolist() == [3.0, -4.0]


def test_packing_concatenates_consecutive_samples_and_refuses_a_ragged_batch():
    x = torch.arange(12.0).reshape(6, 2)
    packed = MinimaxGAN(pack=2).packed(x)
    assert packed.shape == (3, 4) and packed[0].tolist() == [0, 1, 2, 3]
    images = torch.zeros(6, 1, 28, 28)
    assert MinimaxGAN(pack=3).packed(images).shape == (2, 3, 28, 28)  # images stack as channels
    assert MinimaxGAN().packed(x) is x
    with pytest.raises(ValueError, match="divisible by 4"):
        MinimaxGAN(pack=4).packed(x)

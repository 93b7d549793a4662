"""Wasserstein GAN with gradient penalty (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs")."""
import torch

from bench.options import Real
from methods.base import register_method
from methods.gan import MinimaxGAN


@register_method("wgan-gp")
class WassersteinGP(MinimaxGAN):
    """WGAN-GP: the critic ascends E D(x) − E D(G(z)) − λ E(‖∇D(x̂)‖ − 1)²; G descends −E D(G(z)).

    Recommended (the paper's Algorithm 1): λ = 10, n_critic = 5 critic steps per generator step,
    Adam(α = 1e-4, β1 = 0, β2 = 0.9), batch m = 64. λ belongs to the objective and is the default
    under both policies; under ``--hparams shared`` the critic takes one step (``d_steps=1``) with
    the shared Adam, like every discriminator.
    """
    batchable = False  # the penalty's autograd.grad and its ε (global RNG) do not run under vmap
    constraints = {**MinimaxGAN.constraints, "gp_weight": Real(min=0)}
    recommended = {"lr": 1e-4, "betas": (0.0, 0.9), "d_steps": 5, "batch_size": 64}

    def __init__(self, d_steps: int = 1, pack: int = 1, gp_weight: float = 10.0, updates: str = "alternating"):
        """gp_weight: λ, the weight of the gradient penalty (eq. 3 of the paper)."""
        super().__init__(d_steps, pack, updates)
        self.gp_weight = gp_weight

    # D is a critic: its output is a real score, no sigmoid.
    @staticmethod
    def discriminator_loss(real_scores, fake_scores):
        """E D(G(z)) − E D(x): minus the critic's estimate of the Wasserstein-1 distance."""
        return fake_scores.mean() - real_scores.mean()

    @staticmethod
    def generator_loss(fake_scores):
        """−E D(G(z))."""
        return -fake_scores.mean()

    def gradient_penalty(self, D, real, fake, eps=None):
        """E (‖∇ D(x̂)‖₂ − 1)² at x̂ = ε x + (1 − ε) x̃, ε ~ U[0, 1] per (packed) input, x̃ = G(z)
        (eq. 3). Differentiable in D's parameters (create_graph)."""
        real, fake = self.packed(real), self.packed(fake)
        if eps is None:
            eps = torch.rand(len(real), *[1] * (real.dim() - 1), device=real.device, dtype=real.dtype)
        mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(D(mixed).sum(), mixed, create_graph=True)
        return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()

    def discriminator_objective(self, D, real, fake):
        return super().discriminator_objective(D, real, fake) + self.gp_weight * self.gradient_penalty(D, real, fake)

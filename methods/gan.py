"""Minimax GAN (Goodfellow et al. 2014, Algorithm 1)."""
import torch
import torch.nn.functional as F

from bench.options import Integer
from methods import register_method
from methods.base import Method, set_requires_grad


@register_method("gan")
class MinimaxGAN(Method):
    """Minimax GAN: D ascends log D(x) + log(1-D(G(z))); G descends log(1-D(G(z))) (saturating)."""
    uses_discriminator = True
    constraints = {"d_steps": Integer(min=1)}

    def __init__(self, d_steps: int = 1):
        """d_steps: discriminator steps per generator step (k in Algorithm 1)."""
        self.d_steps = d_steps

    # Losses from logits l, D = sigmoid(l): log D = -softplus(-l), log(1 - D) = -softplus(l).
    @staticmethod
    def discriminator_loss(real_logits, fake_logits):
        """-[log D(x) + log(1 - D(G(z)))], minimised by D."""
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    @staticmethod
    def generator_loss(fake_logits):
        """log(1 - D(G(z))), minimised by G: its gradient vanishes as D(G(z)) -> 0."""
        return -F.softplus(fake_logits).mean()

    def step(self, nets, real):
        G, D = nets.generator, nets.discriminator
        set_requires_grad(D, True)
        for _ in range(self.d_steps):  # k steps of D with G frozen (no graph through G)
            x = real()
            with torch.no_grad():
                fake = G(nets.noise(len(x)))
            d_loss = self.discriminator_loss(D(x), D(fake))
            nets.d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            nets.d_opt.step()
        set_requires_grad(D, False)  # one step of G with D frozen
        g_loss = self.generator_loss(D(G(nets.noise(len(x)))))
        nets.g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        nets.g_opt.step()
        set_requires_grad(D, True)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

"""Non-saturating GAN: the generator loss Goodfellow et al. 2014 recommend in practice."""
import torch.nn.functional as F

from methods.base import register_method
from methods.gan import MinimaxGAN


@register_method("nsgan")
class NonSaturatingGAN(MinimaxGAN):
    """Non-saturating GAN: as gan, but G descends -log D(G(z)), which keeps its gradient when D wins.

    Recommended: the DCGAN recipe (Radford et al. 2016, §4), which trains this loss: Adam lr 2e-4,
    β = (0.5, 0.999), batch 128 (inherited from ``gan``)."""
    batchable = True  # its losses are pure tensor functions: MinimaxGAN.batched_step trains it

    @staticmethod
    def generator_loss(fake_logits):
        """-log D(G(z)) = softplus(-l): gradient -(1 - D) w.r.t. the logit, ~-1 when D(G(z)) -> 0."""
        return F.softplus(-fake_logits).mean()

"""Hinge-loss GAN (Lim & Ye 2017, "Geometric GAN"; Miyato et al. 2018, "Spectral Normalization for GANs")."""
import torch.nn.functional as F

from methods.base import register_method
from methods.gan import MinimaxGAN


@register_method("hinge")
class HingeGAN(MinimaxGAN):
    """Hinge-loss GAN: D minimises E max(0, 1 − D(x)) + E max(0, 1 + D(G(z))); G minimises −E D(G(z)).

    The loss of Lim & Ye 2017 (a soft-margin SVM between real and fake) as used by Miyato et al.
    2018 (eq. 16 and 17). Recommended: Miyato et al.'s setting C (Table 1: Adam α = 2e-4, β1 = 0.5,
    β2 = 0.999, n_dis = 1), batch 64. Their spectral normalisation is a change of D, not of the loss,
    and is not applied: every method here trains the same networks.
    """
    batchable = True  # its losses are pure tensor functions: MinimaxGAN.batched_step trains it

    @staticmethod
    def discriminator_loss(real_scores, fake_scores):
        return F.relu(1 - real_scores).mean() + F.relu(1 + fake_scores).mean()

    @staticmethod
    def generator_loss(fake_scores):
        return -fake_scores.mean()

    recommended = {"lr": 2e-4, "betas": (0.5, 0.999), "d_steps": 1, "batch_size": 64}

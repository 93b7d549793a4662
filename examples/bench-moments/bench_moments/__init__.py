"""Moment matching: the simplest objective that fits bench's contract (a worked example)."""
import torch

from bench.options import Real
from methods.base import Method


class MomentMatching(Method):
    """Moment matching: G descends ‖μ_G − μ_data‖² + w ‖Σ_G − Σ_data‖²_F on each batch; no discriminator.

    Only the first two moments are matched, so on a mixture it finds a single blob with the
    data's mean and covariance: a baseline any objective that sees modes should beat.
    """
    constraints = {"cov_weight": Real(min=0)}          # every option declares what it takes
    recommended = {"lr": 1e-3, "batch_size": 256}      # used under --hparams recommended

    def __init__(self, cov_weight: float = 1.0):
        self.cov_weight = cov_weight                   # each option stored under its own name

    @staticmethod
    def loss(fake, real):
        """‖mean difference‖² + cov_weight × ‖covariance difference‖²_F (a static formula, testable alone)."""
        return ((fake.mean(0) - real.mean(0)) ** 2).sum(), ((torch.cov(fake.T) - torch.cov(real.T)) ** 2).sum()

    def step(self, nets, real):
        x = real().flatten(1)
        fake = nets.generator(nets.noise(len(x))).flatten(1)
        mean_term, cov_term = self.loss(fake, x)
        loss = mean_term + self.cov_weight * cov_term
        nets.g_opt.zero_grad(set_to_none=True)
        loss.backward()
        nets.g_opt.step()
        return {"moment_loss": loss.detach()}           # named, detached scalars

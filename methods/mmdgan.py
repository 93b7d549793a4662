"""MMD GAN with a learned kernel (Li, Chang, Cheng, Yang & Póczos 2017, "MMD GAN: Towards Deeper
Understanding of Moment Matching Network")."""
import torch

from bench import mmd
from bench.options import Choice, Floats, Integer, Optional, Real
from methods.base import register_method
from methods.gan import MinimaxGAN


@register_method("mmdgan")
class MMDGAN(MinimaxGAN):
    """MMD GAN: MMD² with a learned kernel k(f(x), f(y)), f = D's features; D ascends it, G descends it.

    The kernel is a sum of Gaussians on the critic's ``features``-dimensional output with σ ∈
    {1, 2, 4, 8, 16} (the paper's §5), computed by the MMD engine of ``gmn`` (:mod:`bench.mmd`, same
    kernels, estimators and backends): with D the identity this is ``gmn`` with fixed bandwidths,
    so the table compares a fixed kernel with a learned one. The Gaussian kernels bound MMD² (≤ 2
    per bandwidth), so the critic's game is well posed without a constraint; ``clip`` clips its
    weights to [−clip, clip] after each update as the paper does (after WGAN). Its critic has batch
    normalisation, which makes that bound scale-free; the shared MLP critic here has none, and
    clip=0.01 shrinks its features so far that every kernel value is 1 and no gradient is left
    (measured on ring8), so clipping is off by default (``--set mmdgan.clip=0.01`` restores it). The
    paper's autoencoder term (f injective through a decoder) and one-sided penalty are not included.
    Recommended (§5): RMSProp, lr 5e-5, n_c = 5 critic steps per generator step, batch 64.
    """
    batchable = False  # the MMD engine's autograd.Function has no vmap rule; G's loss draws data
    constraints = {**MinimaxGAN.constraints, "features": Integer(min=1), "kernel": Choice(*mmd.KERNELS),
                   "bandwidths": Floats(min_len=1, positive=True), "estimator": Choice(*mmd.ESTIMATORS),
                   "clip": Optional(Real(min=0, exclusive=True)), "backend": Choice(*mmd.BACKENDS)}
    recommended = {"optimizer": "rmsprop", "lr": 5e-5, "d_steps": 5, "batch_size": 64}

    def __init__(self, d_steps: int = 1, pack: int = 1, features: int = 16, kernel: str = "gaussian",
                 bandwidths=(1.0, 2.0, 4.0, 8.0, 16.0), estimator: str = "biased", clip: float | None = None,
                 backend: str = "auto", updates: str = "alternating"):
        """features: the critic's output dimension (the kernel's feature space); clip: weight
        clipping bound (none: no clipping); kernel, bandwidths, estimator, backend: as in gmn.
        The MMD backend of the last step is ``backend_used_``."""
        if backend == "geomloss" and estimator != "biased":
            raise ValueError("backend=geomloss computes the biased estimator only; add estimator=biased")
        super().__init__(d_steps, pack, updates)
        self.features, self.kernel, self.bandwidths = features, kernel, bandwidths
        self.estimator, self.clip, self.backend = estimator, clip, backend
        self.backend_used_ = None

    @property
    def discriminator_outputs(self):
        return self.features

    def mmd2(self, real_features, fake_features):
        """MMD² between the two feature batches under the fixed kernel (differentiable in both)."""
        value, self.backend_used_ = mmd.mmd2(fake_features, real_features, self.kernel, tuple(self.bandwidths),
                                             self.estimator, backend=self.backend, return_backend=True)
        return value

    def discriminator_objective(self, D, real, fake):
        """−MMD²(f(x), f(G(z))): the critic makes the distributions as distinguishable as it can."""
        return -self.mmd2(self.critic(D, real), self.critic(D, fake))

    def generator_objective(self, D, fake, real):
        """MMD²(f(x), f(G(z))) on a fresh data batch."""
        return self.mmd2(self.critic(D, real()), self.critic(D, fake))

    def after_discriminator_step(self, D):
        if self.clip is not None:
            with torch.no_grad():
                for p in D.parameters():
                    p.clamp_(-self.clip, self.clip)

"""Generative matching network (GMMN, Li, Swersky & Zemel 2015; Dziugaite et al. 2015)."""
import math

import torch

from bench import mmd
from bench.options import Boolean, Choice, Floats, Optional
from methods.base import Method, register_method


@register_method("gmn")
class GMN(Method):
    """Generative matching network: G descends MMD² between a generated and a data batch; no discriminator."""

    constraints = {
        "kernel": Choice(*mmd.KERNELS),
        "bandwidth_factors": Floats(min_len=1, positive=True),
        "bandwidths": Optional(Floats(min_len=1, positive=True)),
        "estimator": Choice(*mmd.ESTIMATORS),
        "root": Boolean(),
        "backend": Choice(*mmd.BACKENDS),
        "code_space": Choice("pixels", "autoencoder"),
    }

    def __init__(self, kernel: str = "gaussian", bandwidth_factors=(1, 1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64),
                 bandwidths=None, estimator: str = "unbiased", root: bool = False, backend: str = "auto",
                 code_space: str = "pixels"):
        """kernel: gaussian (summed over bandwidths), laplacian or energy. Bandwidths are
        ``bandwidths`` if given, else ``bandwidth_factors`` × the median pairwise distance of the
        first generated and data batches pooled (the median heuristic; pooled, so the largest
        bandwidth spans the initial gap between G and the data): the toy mixtures need both the
        spread of the modes and their width. The run's bandwidths are ``bandwidths_``, the MMD
        backend of the last step ``backend_used_``.
        root: descend sqrt(MMD²) as in the GMMN paper (biased estimator only).
        code_space: "pixels", or "autoencoder" for GMMN+AE: MMD between generated codes and the
        codes of the data under a pre-trained, frozen encoder; the decoder makes the images."""
        if root and estimator != "biased":
            raise ValueError("root=true needs estimator=biased (the unbiased MMD² can be negative)")
        if backend == "geomloss" and estimator != "biased":
            raise ValueError("backend=geomloss computes the biased estimator only; add estimator=biased")
        self.kernel, self.bandwidth_factors, self.bandwidths = kernel, bandwidth_factors, bandwidths
        self.estimator, self.root, self.backend, self.code_space = estimator, root, backend, code_space
        self.bandwidths_ = None  # learned at the first step (or the given bandwidths)
        self.backend_used_ = None

    @classmethod
    def dataset_defaults(cls, dataset_cls, options):
        """On images, the GMMN recipe (Li et al. 2015), loss sqrt(MMD²_b): in pixel space the kernels
        Σ_s exp(−‖x−y‖²/2s), s ∈ {2,5,10,20,40,80} × the channels (a squared distance between
        Stacked-MNIST's 3-channel images is the sum of three MNIST ones, so the kernels keep the range
        of values and gradients they have on MNIST); in code space (+AE) the median-scaled default."""
        if dataset_cls.kind != "images":
            return {}
        if options.get("code_space", "pixels") == "autoencoder":
            return dict(estimator="biased", root=True)
        scale = dataset_cls.channels
        return dict(bandwidths=tuple(math.sqrt(scale * s) for s in (2, 5, 10, 20, 40, 80)), estimator="biased",
                    root=True)

    @property
    def uses_autoencoder(self):
        return self.code_space == "autoencoder"

    def step(self, nets, real):
        x = real()
        if self.uses_autoencoder:
            with torch.no_grad():
                x = nets.encoder(x)
            fake = nets.generator.codes(nets.noise(len(x)))
        else:
            x = x.flatten(1)
            fake = nets.generator(nets.noise(len(x))).flatten(1)
        if self.bandwidths_ is None and self.kernel != "energy":
            if self.bandwidths is not None:
                self.bandwidths_ = tuple(self.bandwidths)
            else:
                pooled = torch.cat([fake.detach(), x])
                self.bandwidths_ = mmd.gaussian_bandwidths(mmd.median_distance(pooled), self.bandwidth_factors)
        loss, self.backend_used_ = mmd.mmd2(fake, x, self.kernel, self.bandwidths_ or (1.0,),
                                            self.estimator, backend=self.backend, return_backend=True)
        if self.root:
            loss = loss.clamp_min(1e-12).sqrt()
        nets.g_opt.zero_grad(set_to_none=True)
        loss.backward()
        nets.g_opt.step()
        return {"mmd_loss": loss.detach()}

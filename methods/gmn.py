"""Generative matching network (GMMN, Li, Swersky & Zemel 2015; Dziugaite et al. 2015)."""
import torch

from bench import mmd
from methods import register_method
from methods.base import Method


@register_method("gmn")
class GMN(Method):
    """Generative matching network: G descends MMD² between a generated and a data batch; no discriminator."""

    def __init__(self, kernel: str = "gaussian", bandwidth_factors=(1, 1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64),
                 bandwidths=None, estimator: str = "unbiased", root: bool = False, backend: str = "auto",
                 code_space: str = "pixels"):
        """kernel: gaussian (summed over bandwidths), laplacian or energy. Bandwidths are
        ``bandwidths`` if given, else ``bandwidth_factors`` × the median pairwise distance of the
        first generated and data batches pooled (the median heuristic; pooled, so the largest
        bandwidth spans the initial gap between G and the data): the toy mixtures need both the
        spread of the modes and their width.
        root: descend sqrt(MMD²) as in the GMMN paper (biased estimator only).
        code_space: "pixels", or "autoencoder" for GMMN+AE: MMD between generated codes and the
        codes of the data under a pre-trained, frozen encoder; the decoder makes the images."""
        if code_space not in ("pixels", "autoencoder"):
            raise ValueError(f"unknown code_space {code_space!r}; choose from pixels, autoencoder")
        self.code_space = code_space
        if kernel not in mmd.KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; choose from {', '.join(mmd.KERNELS)}")
        if estimator not in mmd.ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; choose from {', '.join(mmd.ESTIMATORS)}")
        if backend not in mmd.BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(mmd.BACKENDS)}")
        if root and estimator != "biased":
            raise ValueError("root=True needs estimator='biased' (the unbiased MMD² can be negative)")
        self.kernel, self.estimator, self.root, self.backend = kernel, estimator, bool(root), backend
        self.bandwidth_factors = tuple(float(f) for f in bandwidth_factors)
        self.bandwidths = None if bandwidths is None else tuple(float(s) for s in bandwidths)
        self.backend_used = None

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
        if self.bandwidths is None and self.kernel != "energy":
            pooled = torch.cat([fake.detach(), x])
            self.bandwidths = mmd.gaussian_bandwidths(mmd.median_distance(pooled), self.bandwidth_factors)
        loss, self.backend_used = mmd.mmd2(fake, x, self.kernel, self.bandwidths or (1.0,),
                                           self.estimator, backend=self.backend, return_backend=True)
        if self.root:
            loss = loss.clamp_min(1e-12).sqrt()
        nets.g_opt.zero_grad(set_to_none=True)
        loss.backward()
        nets.g_opt.step()
        return {"mmd_loss": loss.detach()}

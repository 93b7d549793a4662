"""Sample-quality metrics. Each is tested against a direct computation in tests/."""
from __future__ import annotations

import math

import torch

from bench import mmd


def nearest_modes(samples: torch.Tensor, means: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of each sample's nearest mode and the distance to it."""
    dist = torch.cdist(samples.to(torch.float64), means.to(torch.float64))
    d, idx = dist.min(dim=1)
    return idx, d


def mode_metrics(samples: torch.Tensor, means: torch.Tensor, std: float, n_std: float = 3.0) -> dict:
    """The VEEGAN/PacGAN protocol (GUIDE.md).

    A sample is high quality if it lies within ``n_std`` std of its nearest mode; a mode is
    covered if it is the nearest mode of at least one high-quality sample; KL is that of the
    histogram of nearest modes (high-quality samples only) from the uniform distribution over
    modes, NaN when no sample is high quality.
    """
    finite = torch.isfinite(samples).all(dim=1)
    idx, dist = nearest_modes(samples[finite], means)
    good = dist <= n_std * std
    counts = torch.bincount(idx[good], minlength=len(means)).to(torch.float64)
    n_good = int(good.sum())
    if n_good:
        p = counts / n_good
        nz = p > 0
        kl = float((p[nz] * torch.log(p[nz] * len(means))).sum())
    else:
        kl = math.nan
    return {
        "modes_covered": int((counts > 0).sum()),
        "high_quality_pct": 100.0 * n_good / len(samples),
        "kl_modes": kl,
    }


def distance_metrics(samples: torch.Tensor, reference: torch.Tensor, bandwidths) -> dict:
    """MMD² (unbiased, fixed Gaussian evaluation kernel) and energy distance, in float64."""
    x, y = samples.to(torch.float64), reference.to(torch.float64)
    with torch.no_grad():
        return {
            "mmd2": float(mmd.mmd2(x, y, "gaussian", bandwidths, estimator="unbiased")),
            "energy": float(mmd.energy_distance(x, y)),
        }

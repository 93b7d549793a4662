"""Maximum Mean Discrepancy, exactly, on every backend.

    MMD²_b = Σ a_i a_i' k(x_i,x_i') + Σ b_j b_j' k(y_j,y_j') − 2 Σ a_i b_j k(x_i,y_j)   (biased, V-statistic)

The unbiased estimator drops the i = i' terms of the within-set sums and renormalises
(1/(n(n−1)) for uniform weights). Kernels are translation invariant functions of the squared
distance d²:  gaussian  Σ_σ exp(−d²/2σ²),  laplacian  Σ_σ exp(−d/σ),  energy  −d.
With the energy kernel, biased MMD² is the energy distance 2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖.

Backends compute the same numbers (tests/test_mmd.py checks them against a direct O(N²) sum):
  dense     one matrix product ‖x‖² + ‖y‖² − 2xyᵀ (data centred first, see GUIDE.md), N·M memory;
  blocked   the same in row blocks, recomputed in the backward pass: memory O(block·M);
  keops     pykeops LazyTensors: never materialises the N×M matrix, compiled per formula;
  geomloss  geomloss.SamplesLoss (biased, one call per bandwidth), kept for comparison.
``backend="auto"`` picks among the first three by size, dimension, device and free memory
(see :func:`choose_backend`); :func:`mmd2` reports which one ran when asked.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import torch
from torch.utils.checkpoint import checkpoint

KERNELS = ("gaussian", "laplacian", "energy")
ESTIMATORS = ("biased", "unbiased")
BACKENDS = ("auto", "dense", "blocked", "keops", "geomloss")


# --------------------------------------------------------------------------------- kernels
def _safe_sqrt(d2: torch.Tensor) -> torch.Tensor:
    """sqrt with gradient 0 (not NaN) at d² = 0: coincident points are common in training."""
    positive = d2 > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, d2, torch.ones_like(d2))),
                       torch.zeros_like(d2))


def _kernel_from_d2(d2: torch.Tensor, kernel: str, bandwidths: Sequence[float]) -> torch.Tensor:
    if kernel == "gaussian":
        return sum(torch.exp(d2 * (-0.5 / s ** 2)) for s in bandwidths)
    dist = _safe_sqrt(d2)
    if kernel == "laplacian":
        return sum(torch.exp(dist * (-1.0 / s)) for s in bandwidths)
    return -dist  # energy


def kernel_at_zero(kernel: str, bandwidths: Sequence[float]) -> float:
    """k(x, x): what the unbiased estimator removes from the within-set sums."""
    return 0.0 if kernel == "energy" else float(len(bandwidths))


# ------------------------------------------------------------------ weighted kernel sums
# Each backend computes  S(x, y) = Σ_ij a_i b_j k(x_i, y_j)  (a, b the weights, summing to 1).
def _squared_distances(x, y, diagonal_offset=None):
    """‖x‖² + ‖y‖² − 2xyᵀ, clamped at 0; with ``diagonal_offset`` (x a row block of y starting
    at that row), the self-distances are set to exactly 0: rounding would make them ~1e-7."""
    d2 = torch.addmm((x * x).sum(1, keepdim=True) + (y * y).sum(1), x, y.T, alpha=-2).clamp_min_(0)
    if diagonal_offset is not None:
        d2.diagonal(offset=diagonal_offset).zero_()
    return d2


def _dense_block(x, y, b, kernel, bandwidths, diagonal_offset=None):
    return _kernel_from_d2(_squared_distances(x, y, diagonal_offset), kernel, bandwidths) @ b


def _sum_dense(x, y, a, b, kernel, bandwidths, same):
    return a @ _dense_block(x, y, b, kernel, bandwidths, 0 if same else None)


def _sum_blocked(x, y, a, b, kernel, bandwidths, same, block_rows=None):
    if block_rows is None:
        block_rows = max(1, (1 << 24) // max(1, y.shape[0]))  # ~16M kernel entries per block
    total = x.new_zeros(())
    for start in range(0, x.shape[0], block_rows):
        stop = min(start + block_rows, x.shape[0])
        offset = start if same else None  # this block's self-pairs sit on the diagonal at +start

        def row_block(xb, y_, b_, offset=offset):
            return _dense_block(xb, y_, b_, kernel, bandwidths, offset)
        if torch.is_grad_enabled() and (x.requires_grad or y.requires_grad):
            rows = checkpoint(row_block, x[start:stop], y, b, use_reentrant=False)
        else:
            rows = row_block(x[start:stop], y, b)
        total = total + a[start:stop] @ rows
    return total


@functools.cache
def keops_status() -> str:
    """'ok' if pykeops imports and compiles a kernel here, else the reason it cannot be used."""
    try:
        import pykeops  # noqa: F401
        from pykeops.torch import LazyTensor
        x = torch.zeros(2, 1)
        (LazyTensor(x[:, None, :]) - LazyTensor(x[None, :, :])).square().sum(-1).sum(dim=1)
        return "ok"
    except Exception as err:  # ImportError, missing compiler, ... : fall back to dense
        return f"pykeops unusable: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def _sum_keops(x, y, a, b, kernel, bandwidths, same):
    from pykeops.torch import LazyTensor
    x_i, y_j = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])
    d2 = ((x_i - y_j) ** 2).sum(-1)
    if kernel == "gaussian":
        k = sum((d2 * (-0.5 / s ** 2)).exp() for s in bandwidths)
    else:
        dist = d2 * d2.rsqrt()  # KeOps' rsqrt is 0 at 0: the norm has a finite gradient there
        k = -dist if kernel == "energy" else sum((dist * (-1.0 / s)).exp() for s in bandwidths)
    b_j = LazyTensor(b[None, :, None])
    return a @ (k * b_j).sum(dim=1).view(-1)


_SUMS = {"dense": _sum_dense, "blocked": _sum_blocked, "keops": _sum_keops}


def _mmd2_geomloss(x, y, a, b, kernel, bandwidths):
    """geomloss.SamplesLoss returns half the biased MMD² for one bandwidth (GUIDE.md)."""
    from geomloss import SamplesLoss
    backend = "online" if keops_status() == "ok" and x.shape[0] * y.shape[0] > 5000 ** 2 else "tensorized"
    blurs = [None] if kernel == "energy" else list(bandwidths)
    total = 0
    for blur in blurs:
        loss = SamplesLoss(kernel, blur=blur if blur is not None else 0.05, backend=backend)
        total = total + 2 * loss(a, x, b, y)
    return total


# --------------------------------------------------------------------------- backend choice
# Thresholds measured by `python -m bench perf mmd` (results/perf/): KeOps wins in low
# dimension once the N×M matrix is large; the dense matrix product wins in high dimension.
KEOPS_MAX_DIM = {"cpu": 16, "cuda": 64}
KEOPS_MIN_PAIRS = {"cpu": 1500 ** 2, "cuda": 2048 ** 2}  # cpu: dense wins at N=1000, KeOps 2x at 3000


def _free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        import os
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def choose_backend(n: int, m: int, dim: int, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32, requires_grad: bool = True) -> str:
    """The fastest backend expected for these sizes, among those that fit in memory."""
    device = torch.device(device)
    kind = "cuda" if device.type == "cuda" else "cpu"
    pairs = max(n, m) ** 2
    keops_ok = keops_status() == "ok"
    if keops_ok and dim <= KEOPS_MAX_DIM[kind] and pairs >= KEOPS_MIN_PAIRS[kind]:
        return "keops"
    # dense keeps a few N×M temporaries (distances, kernel, gradient) alive at once
    need = 6 * pairs * torch.finfo(dtype).bits // 8
    if need < 0.5 * _free_bytes(device):
        return "dense"
    return "keops" if keops_ok and dim <= 4 * KEOPS_MAX_DIM[kind] else "blocked"


# ---------------------------------------------------------------------------------- public
def _check(x, y, kernel, bandwidths, estimator, backend):
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose from {', '.join(KERNELS)}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose from {', '.join(ESTIMATORS)}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be (N, D) and (M, D); got {tuple(x.shape)} and {tuple(y.shape)}")
    if kernel != "energy" and (not bandwidths or min(bandwidths) <= 0):
        raise ValueError(f"the {kernel} kernel needs positive bandwidths; got {bandwidths}")
    if estimator == "unbiased" and min(x.shape[0], y.shape[0]) < 2:
        raise ValueError("the unbiased estimator needs at least 2 samples in each set")


def _weights(w, n, like):
    if w is None:
        return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)
    w = w.to(dtype=like.dtype, device=like.device)
    return w / w.sum()


def mmd2(x: torch.Tensor, y: torch.Tensor, kernel: str = "gaussian",
         bandwidths: Sequence[float] = (1.0,), estimator: str = "biased",
         x_weights: torch.Tensor | None = None, y_weights: torch.Tensor | None = None,
         backend: str = "auto", return_backend: bool = False):
    """MMD² between samples x (N, D) and y (M, D); differentiable in x and y (first order).

    bandwidths: the σ of each summed Gaussian/Laplacian kernel (ignored for energy).
    Returns a 0-d tensor in x's dtype, or (value, backend used) with ``return_backend``.
    """
    bandwidths = tuple(float(s) for s in bandwidths)
    _check(x, y, kernel, bandwidths, estimator, backend)
    if backend == "auto":
        backend = choose_backend(x.shape[0], y.shape[0], x.shape[1], x.device, x.dtype,
                                 torch.is_grad_enabled() and (x.requires_grad or y.requires_grad))
    y = y.to(dtype=x.dtype)
    # Kernels depend on x − y only: centring removes the cancellation of the matrix form.
    centre = torch.cat([x.detach(), y.detach()]).mean(0)
    x, y = x - centre, y - centre
    a, b = _weights(x_weights, x.shape[0], x), _weights(y_weights, y.shape[0], x)

    if backend == "geomloss":
        if estimator != "biased":
            raise ValueError("the geomloss backend computes the biased estimator only")
        value = _mmd2_geomloss(x, y, a, b, kernel, bandwidths)
    else:
        kernel_sum = _SUMS[backend]
        sxx = kernel_sum(x, x, a, a, kernel, bandwidths, True)
        syy = kernel_sum(y, y, b, b, kernel, bandwidths, True)
        sxy = kernel_sum(x, y, a, b, kernel, bandwidths, False)
        if estimator == "unbiased":
            k0 = kernel_at_zero(kernel, bandwidths)
            aa, bb = (a * a).sum(), (b * b).sum()
            sxx = (sxx - k0 * aa) / (1 - aa)
            syy = (syy - k0 * bb) / (1 - bb)
        value = sxx + syy - 2 * sxy
    return (value, backend) if return_backend else value


def median_distance(x: torch.Tensor, max_points: int = 2000) -> float:
    """Median pairwise Euclidean distance (on at most ``max_points`` points): a data scale."""
    x = x[:max_points].detach().to(torch.float64)
    d = torch.pdist(x)
    return float(d.median()) if d.numel() else 1.0


def energy_distance(x: torch.Tensor, y: torch.Tensor, estimator: str = "unbiased", backend: str = "auto"):
    """2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖: MMD² with the energy kernel −‖x−y‖."""
    return mmd2(x, y, kernel="energy", estimator=estimator, backend=backend)


def gaussian_bandwidths(scale: float, factors: Sequence[float]) -> tuple[float, ...]:
    """Bandwidths as multiples of a data scale (e.g. the median distance)."""
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"data scale must be positive and finite; got {scale}")
    return tuple(scale * f for f in factors)

"""Maximum Mean Discrepancy, exactly, on every backend.

    MMD²_b = Σ a_i a_i' k(x_i,x_i') + Σ b_j b_j' k(y_j,y_j') − 2 Σ a_i b_j k(x_i,y_j)   (biased, V-statistic)

The unbiased estimator drops the i = i' terms of the within-set sums and renormalises
(1/(n(n−1)) for uniform weights). Kernels are translation invariant functions of the squared
distance d²:  gaussian  Σ_σ exp(−d²/2σ²),  laplacian  Σ_σ exp(−d/σ),  energy  −d.
With the energy kernel, biased MMD² is the energy distance 2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖.

Backends compute the same numbers (tests/test_mmd.py checks them against a direct O(N²) sum):
  dense     one matrix product [x, ‖x‖², 1]·[−2y, 1, ‖y‖²]ᵀ (data centred first: the matrix form
            cancels badly far from the origin in float32), N·M memory, first derivative by hand
            (one product per operand that needs it; half the products autograd would do for the
            within-set sums);
  blocked   the same in row blocks, recomputed in the backward pass: memory O(block·M);
  keops     pykeops LazyTensors: never materialises the N×M matrix, compiled per formula;
  geomloss  geomloss.SamplesLoss (biased, one call per bandwidth), kept for comparison.
``backend="auto"`` picks among the first three by size, dimension, device and free memory
(see :func:`choose_backend`: a calibration of this machine when stored, else shipped defaults);
:func:`mmd2` reports which one ran when asked.
"""
from __future__ import annotations

import functools
import json
import math
import os
import platform
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from bench import environment

KERNELS = ("gaussian", "laplacian", "energy")
ESTIMATORS = ("biased", "unbiased")
BACKENDS = ("auto", "dense", "blocked", "keops", "geomloss")


# --------------------------------------------------------------------------------- kernels
def kernel_at_zero(kernel: str, bandwidths: Sequence[float]) -> float:
    """k(x, x): what the unbiased estimator removes from the within-set sums."""
    return 0.0 if kernel == "energy" else float(len(bandwidths))


# ------------------------------------------------------------------ weighted kernel sums
# Each backend computes  S(x, y) = Σ_ij a_i b_j k(x_i, y_j)  (a, b the weights, summing to 1).
def _d2_scale(kernel, bandwidths) -> float:
    """The factor folded into the distance product: the Gaussian exponent −1/(2σ²) for one
    bandwidth (then exp follows directly), else 1."""
    return -0.5 / bandwidths[0] ** 2 if kernel == "gaussian" and len(bandwidths) == 1 else 1.0


def _augmented(x, y, scale):
    """[x, ‖x‖², 1] and scale·[−2y, 1, ‖y‖²]: their product is scale·‖x_i − y_j‖²."""
    left = torch.cat([x, (x * x).sum(1, keepdim=True), x.new_ones(x.shape[0], 1)], 1)
    right = torch.cat([y * (-2 * scale), y.new_full((y.shape[0], 1), scale),
                       (y * y).sum(1, keepdim=True) * scale], 1)
    return left, right


def _scaled_d2(x, y, scale=1.0, diagonal_offset=None, augmented=None):
    """scale·‖x_i − y_j‖² as ONE matrix product of the augmented matrices (no separate N×M
    additions; ``augmented``, if given, is :func:`_augmented` of x and y), clamped at 0 for
    scale > 0; with ``diagonal_offset`` (x a row block of y starting at that row) the
    self-distances are set to exactly 0: rounding would make them ~1e-7."""
    left, right = augmented if augmented is not None else _augmented(x, y, scale)
    d2 = left @ right.T
    if scale > 0:
        d2 = d2.clamp_min_(0)
    # scale < 0 (the Gaussian exponent): not clamped; a rounding-level d² < 0 changes exp by
    # a rounding-level amount, and the pass over N×M entries is saved
    if diagonal_offset is not None:
        d2.diagonal(offset=diagonal_offset).zero_()
    return d2


def _squared_distances(x, y, diagonal_offset=None, augmented=None):
    """‖x‖² + ‖y‖² − 2xyᵀ, clamped at 0 (self-distances exactly 0, see :func:`_scaled_d2`)."""
    return _scaled_d2(x, y, 1.0, diagonal_offset, augmented)


def _kernel_matrices(x, y, b, a, kernel, bandwidths, diagonal_offset, want_slope, want_colsum, augmented=None):
    """K b, (Kᵀ a if ``want_colsum``) and, if ``want_slope``, (P, c) with c·P = ∂k/∂d² elementwise
    (P is zero where d = 0 for the laplacian and energy kernels: their gradient there is 0).
    Every N×M step is done in place on at most three N×M buffers."""
    kb, ka, slope, factor = 0, 0, None, 1.0
    if kernel == "gaussian" and len(bandwidths) == 1:
        factor = _d2_scale(kernel, bandwidths)  # k = exp(c d²), ∂k/∂d² = c k
        k = _scaled_d2(x, y, factor, diagonal_offset, augmented).exp_()
        kb, ka = k @ b, (k.T @ a if want_colsum else 0)
        return kb, ka, (k if want_slope else None), factor
    d2 = _squared_distances(x, y, diagonal_offset, augmented)
    if kernel == "gaussian":
        buf = torch.empty_like(d2)
        for s in bandwidths:
            c = -0.5 / s ** 2
            torch.mul(d2, c, out=buf).exp_()
            kb = kb + buf @ b
            if want_colsum:
                ka = ka + buf.T @ a
            if want_slope:
                slope = buf * c if slope is None else slope.add_(buf, alpha=c)
        return kb, ka, slope, factor
    dist = d2.sqrt_()
    if kernel == "energy":  # k = −d, ∂k/∂d² = −1/(2d)
        kb, ka = -(dist @ b), (-(dist.T @ a) if want_colsum else 0)
        if want_slope:
            slope = dist.reciprocal().mul_(-0.5).masked_fill_(dist == 0, 0)
        return kb, ka, slope, factor
    buf = torch.empty_like(dist)  # laplacian: k = Σ exp(−d/σ), ∂k/∂d² = Σ −exp(−d/σ)/(2σd)
    for s in bandwidths:
        torch.mul(dist, -1.0 / s, out=buf).exp_()
        kb = kb + buf @ b
        if want_colsum:
            ka = ka + buf.T @ a
        if want_slope:
            slope = buf * (-0.5 / s) if slope is None else slope.add_(buf, alpha=-0.5 / s)
    if want_slope:
        slope.div_(dist).masked_fill_(dist == 0, 0)
    return kb, ka, slope, factor


class _DenseKernelSum(torch.autograd.Function):
    """S = aᵀ K(x, y) b on the dense N×M matrix, with its first derivative written out:
    ∂S/∂x_i = 2 a_i Σ_j b_j k'(d²_ij) (x_i − y_j) = 2 a_i (x_i (P b)_i − (P (b⊙y))_i), one matrix
    product [b⊙y, b] per operand that needs a gradient. ``symmetric`` (y is x, b is a): by the
    symmetry of k the gradient is twice that of the first operand, so the N×N×D product is done
    once, not twice as autograd would. Second derivatives are not provided (an error, not a
    wrong number)."""

    @staticmethod
    def forward(ctx, x, y, a, b, kernel, bandwidths, diagonal_offset, symmetric, augmented=None):
        need_x, need_y, need_a, need_b = ctx.needs_input_grad[:4]
        if symmetric:
            need_x, need_a = need_x or need_y, need_a or need_b
            need_y = need_b = False
        kb, ka, slope, factor = _kernel_matrices(x, y, b, a, kernel, bandwidths, diagonal_offset,
                                                 need_x or need_y, need_b, augmented)
        ctx.symmetric, ctx.factor = symmetric, factor
        ctx.save_for_backward(x, y, a, b, slope, kb if need_a else None, ka if need_b else None)
        ctx.needs = (need_x, need_y, need_a, need_b)
        return a @ kb

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, y, a, b, slope, kb, ka = ctx.saved_tensors
        need_x, need_y, need_a, need_b = ctx.needs
        gx = gy = ga = gb = None
        scale = 2 * ctx.factor * grad * (2 if ctx.symmetric else 1)
        if need_x:
            r = slope @ torch.cat([y * b[:, None], b[:, None]], 1)
            gx = (x * r[:, -1:] - r[:, :-1]).mul_(a[:, None] * scale)
        if need_y:
            r = slope.T @ torch.cat([x * a[:, None], a[:, None]], 1)
            gy = (y * r[:, -1:] - r[:, :-1]).mul_(b[:, None] * scale)
        if need_a:
            ga = kb * (grad * (2 if ctx.symmetric else 1))
        if need_b:
            gb = ka * grad
        return gx, gy, ga, gb, None, None, None, None, None


def _dense_block_sum(x, y, a, b, kernel, bandwidths, diagonal_offset=None, symmetric=False, augmented=None):
    """``augmented``: (left, right) of :func:`_augmented` for these rows, precomputed and
    detached (the backward differentiates x and y directly)."""
    return _DenseKernelSum.apply(x, y, a, b, kernel, tuple(bandwidths), diagonal_offset, symmetric, augmented)


SYMMETRIC_SPLIT_MIN = 400  # within-set sums at least this large are split in halves


def _sum_dense(x, y, a, b, kernel, bandwidths, same):
    """A within-set sum (``same``) is symmetric: S = S₁₁ + S₂₂ + 2 S₁₂ over the halves of x, so
    only the upper triangle of blocks is computed (3/4 of the pairs per level, halves split again
    while they have ≥ SYMMETRIC_SPLIT_MIN rows); the augmented matrices are made once."""
    if not same or x.shape[0] < SYMMETRIC_SPLIT_MIN:
        return _dense_block_sum(x, y, a, b, kernel, bandwidths, 0 if same else None, same)
    with torch.no_grad():
        left, right = _augmented(x, x, _d2_scale(kernel, bandwidths))

    def split(lo, hi):
        if hi - lo < SYMMETRIC_SPLIT_MIN:
            xs, as_ = x[lo:hi], a[lo:hi]
            return _dense_block_sum(xs, xs, as_, as_, kernel, bandwidths, 0, True, (left[lo:hi], right[lo:hi]))
        mid = (lo + hi) // 2
        off = _dense_block_sum(x[lo:mid], x[mid:hi], a[lo:mid], a[mid:hi], kernel, bandwidths, None, False,
                               (left[lo:mid], right[mid:hi]))
        return split(lo, mid) + split(mid, hi) + 2 * off
    return split(0, x.shape[0])


BLOCK_ENTRIES = 1 << 24  # kernel entries per row block of the blocked backend (~16M)


def _sum_blocked(x, y, a, b, kernel, bandwidths, same, block_rows=None):
    if block_rows is None:
        block_rows = max(1, BLOCK_ENTRIES // max(1, y.shape[0]))
    total = x.new_zeros(())
    for start in range(0, x.shape[0], block_rows):
        stop = min(start + block_rows, x.shape[0])
        offset = start if same else None  # this block's self-pairs sit on the diagonal at +start

        def row_block(xb, y_, ab, b_, offset=offset):
            return _dense_block_sum(xb, y_, ab, b_, kernel, bandwidths, offset)
        if torch.is_grad_enabled() and (x.requires_grad or y.requires_grad):
            total = total + checkpoint(row_block, x[start:stop], y, a[start:stop], b, use_reentrant=False)
        else:
            total = total + row_block(x[start:stop], y, a[start:stop], b)
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
    """geomloss.SamplesLoss returns half the biased MMD² for one bandwidth (its kernel norm is
    ½‖α − β‖²_k, GeomLoss documentation)."""
    from geomloss import SamplesLoss
    backend = "online" if keops_status() == "ok" and x.shape[0] * y.shape[0] > 5000 ** 2 else "tensorized"
    blurs = [None] if kernel == "energy" else list(bandwidths)
    total = 0
    for blur in blurs:
        loss = SamplesLoss(kernel, blur=blur if blur is not None else 0.05, backend=backend)
        total = total + 2 * loss(a, x, b, y)
    return total


# --------------------------------------------------------------------------- backend choice
# KeOps wins in low dimension once the N×M matrix is large; the dense matrix product wins in
# high dimension. Where the crossover lies depends on the machine, so `auto` follows a
# calibration of this machine when one is stored (`python -m bench perf mmd --calibrate`, which
# times dense against keops, see bench/perf.py) and these shipped defaults otherwise.
KEOPS_MAX_DIM = {"cpu": 16, "cuda": 64}
# cpu: with the dense path of this version, dense beat keops at every N measured on a 2-core
# CPU (D = 2: 3× at N = 10⁴), so keops is chosen by default only where dense needs ~10 GB
KEOPS_MIN_PAIRS = {"cpu": 20000 ** 2, "cuda": 2048 ** 2}
CALIBRATION_VERSION = 1  # bump when the backends' code changes what the crossovers would be
CALIBRATION_DIMS = {"cpu": (2, 8, 32), "cuda": (2, 16, 64, 256)}
ENV_NO_CALIBRATION = "BENCH_NO_CALIBRATION"  # set (to anything) to ignore stored calibrations
MEMINFO, CGROUP = Path("/proc/meminfo"), Path("/sys/fs/cgroup")  # where free_bytes reads the CPU's room


def free_bytes(device: torch.device) -> int:
    """Memory a new allocation can use on ``device``. On CPU this is the kernel's MemAvailable
    (free pages plus reclaimable cache), capped by a cgroup limit: the free pages alone shrink
    to almost nothing once the page cache fills, which made `auto` flip backends from one call
    to the next and a seed stop fixing a run."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    available = _meminfo_available()
    limit = _cgroup_room()
    if available is None and limit is None:
        return 4 << 30
    return min(v for v in (available, limit) if v is not None)


def _meminfo_available() -> int | None:
    try:
        with open(MEMINFO) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_room() -> int | None:
    """What a cgroup v2 memory limit leaves (its inactive page cache counted as room, as MemAvailable
    counts it), or None where there is no limit."""
    root = CGROUP
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int((root / "memory.current").read_text())
        stat = dict(line.split() for line in (root / "memory.stat").read_text().splitlines())
        return max(int(limit) - used + int(stat.get("inactive_file", 0)), 0)
    except (OSError, ValueError):
        return None


def device_kind(device) -> str:
    return "cuda" if torch.device(device).type == "cuda" else "cpu"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def calibration_key(device, dtype: torch.dtype) -> dict:
    """What a calibration is valid for: the device (CPU model and threads, or GPU name), the
    dtype, the library versions and :data:`CALIBRATION_VERSION`. Any change makes it stale."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{_cpu_model()}, {torch.get_num_threads()} threads"
    return {"device": name, "dtype": str(dtype).removeprefix("torch."), **environment.package_versions(("torch", "pykeops")),
            "calibration_version": CALIBRATION_VERSION}


def calibration_path(device, dtype: torch.dtype) -> Path:
    return environment.cache_dir() / "mmd-calibration" / f"{device_kind(device)}-{str(dtype).removeprefix('torch.')}.json"


class CalibrationError(ValueError):
    """A stored calibration that is unreadable, malformed, or for another machine/version."""


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def validate_calibration(data, key: dict) -> list[dict]:
    """The rules of a calibration file's content, checked against a schema and the current key:
    ``{"key": {...}, "rules": [{"max_dim": int > 0, "keops_min_n": int > 0 or null,
    "how": str}, ...]}`` with strictly increasing ``max_dim``. Raises :class:`CalibrationError`."""
    if not isinstance(data, dict):
        raise CalibrationError("not a JSON object")
    if data.get("key") != key:
        raise CalibrationError(f"stale: made for {data.get('key')!r}, this is {key!r}")
    rules = data.get("rules")
    if not isinstance(rules, list) or not rules:
        raise CalibrationError("no rules")
    last = 0
    for rule in rules:
        if not isinstance(rule, dict) or not _positive_int(rule.get("max_dim")) or rule["max_dim"] <= last:
            raise CalibrationError(f"bad rule {rule!r}: max_dim must be a positive integer, increasing")
        if rule.get("keops_min_n") is not None and not _positive_int(rule["keops_min_n"]):
            raise CalibrationError(f"bad rule {rule!r}: keops_min_n must be a positive integer or null")
        if not isinstance(rule.get("how"), str):
            raise CalibrationError(f"bad rule {rule!r}: how must be a string")
        last = rule["max_dim"]
    return rules


@functools.cache
def stored_calibration(kind: str, dtype: torch.dtype) -> tuple[list[dict] | None, str]:
    """(rules, note) of the calibration stored for this device kind and dtype, read once per
    process; (None, reason) when there is none, and a warning, once, when it is unusable (then
    the shipped defaults apply until `python -m bench perf mmd --calibrate` redoes it). Nothing is
    ever timed here: a training run or a test never depends on timing noise."""
    if os.environ.get(ENV_NO_CALIBRATION):
        return None, f"${ENV_NO_CALIBRATION} is set"
    device = torch.device("cuda" if kind == "cuda" else "cpu")
    path = calibration_path(device, dtype)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None, "no calibration"
    except OSError as err:
        warnings.warn(f"MMD calibration {path} unreadable ({err}); using the shipped defaults", stacklevel=2)
        return None, "unreadable calibration"
    try:
        rules = validate_calibration(json.loads(text), calibration_key(device, dtype))
    except (ValueError, CalibrationError) as err:
        warnings.warn(f"MMD calibration {path} ignored ({err}); using the shipped defaults; "
                      f"`python -m bench perf mmd --calibrate` redoes it", stacklevel=2)
        return None, "invalid calibration"
    return rules, str(path)


def explain_choice(n: int, m: int, dim: int, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> tuple[str, str]:
    """(backend, the rule that chose it): see :func:`choose_backend`."""
    kind = device_kind(device)
    pairs = max(n, m) ** 2
    keops_ok = keops_status() == "ok"
    if keops_ok:
        rules, _ = stored_calibration(kind, dtype)
        tag = f"calibration {kind}/{str(dtype).removeprefix('torch.')}"
        if rules is not None:
            rule = next((r for r in rules if dim <= r["max_dim"]), None)
            if rule is None:
                why = f"{tag}: dense above D={rules[-1]['max_dim']}"
            elif rule["keops_min_n"] is not None and max(n, m) >= rule["keops_min_n"]:
                return "keops", f"{tag}: keops from N≥{rule['keops_min_n']} at D≤{rule['max_dim']}"
            else:
                why = (f"{tag}: dense at D≤{rule['max_dim']}, " +
                       (f"keops from N≥{rule['keops_min_n']}" if rule["keops_min_n"] else rule["how"]))
        elif dim <= KEOPS_MAX_DIM[kind] and pairs >= KEOPS_MIN_PAIRS[kind]:
            return "keops", f"shipped default: keops from {math.isqrt(KEOPS_MIN_PAIRS[kind])}² pairs at D≤{KEOPS_MAX_DIM[kind]}"
        else:
            why = f"shipped default: dense below {math.isqrt(KEOPS_MIN_PAIRS[kind])}² pairs or above D={KEOPS_MAX_DIM[kind]}"
    else:
        why = "keops unusable"
    # dense keeps a few N×M temporaries (distances, kernel, gradient) alive at once
    need = 6 * pairs * torch.finfo(dtype).bits // 8
    if need < 0.5 * free_bytes(torch.device(device)):
        return "dense", why
    memo = f"memory: dense would need ~{need / 2**30:.1f} GiB"
    if keops_ok and dim <= 4 * KEOPS_MAX_DIM[kind]:
        return "keops", memo
    return "blocked", memo


def choose_backend(n: int, m: int, dim: int, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32, requires_grad: bool = True) -> str:
    """The fastest backend expected for these sizes, among those that fit in memory: KeOps
    from the crossover size measured on this machine (stored calibration) or shipped defaults,
    dense below it, blocked (or keops) when dense would not fit. :func:`explain_choice` says
    which rule chose."""
    return explain_choice(n, m, dim, device, dtype)[0]


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
    centre = (x.detach().sum(0) + y.detach().sum(0)) / (x.shape[0] + y.shape[0])  # no (N+M)×D copy
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

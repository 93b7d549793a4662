"""Every MMD backend against the direct O(N²) definition: values and gradients."""
import math

import pytest
import torch

from bench import mmd
from conftest import direct_mmd2

BACKENDS = ["dense", "blocked", "keops"]
BANDWIDTHS = (0.5, 2.0)


def _data(n=9, m=7, d=3, dtype=torch.float64):
    x = torch.randn(n, d, dtype=dtype)
    y = torch.randn(m, d, dtype=dtype) * 1.3 + 0.4
    x[1] = x[0]  # a coincident pair, as collapsed generators produce
    return x, y


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernel", mmd.KERNELS)
@pytest.mark.parametrize("estimator", mmd.ESTIMATORS)
def test_backend_matches_direct_value_and_gradient(backend, kernel, estimator):
    x, y = _data()
    xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
    ref = direct_mmd2(xr, yr, kernel, BANDWIDTHS, estimator)
    # the direct form has sqrt'(0) = inf at the coincident pair; its gradient there is 0 by symmetry
    gx_ref, gy_ref = torch.autograd.grad(ref, (xr, yr)) if kernel == "gaussian" else (None, None)
    xb, yb = x.clone().requires_grad_(), y.clone().requires_grad_()
    value = mmd.mmd2(xb, yb, kernel, BANDWIDTHS, estimator, backend=backend)
    gx, gy = torch.autograd.grad(value, (xb, yb))
    assert value.item() == pytest.approx(ref.item(), abs=1e-12)
    assert torch.isfinite(gx).all() and torch.isfinite(gy).all()
    if gx_ref is not None:
        torch.testing.assert_close(gx, gx_ref, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(gy, gy_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernel", ["laplacian", "energy"])
def test_gradient_matches_direct_without_coincident_points(backend, kernel):
    x, y = torch.randn(8, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    xr = x.clone().requires_grad_()
    (g_ref,) = torch.autograd.grad(direct_mmd2(xr, y, kernel, BANDWIDTHS, "unbiased"), xr)
    xb = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(mmd.mmd2(xb, y, kernel, BANDWIDTHS, "unbiased", backend=backend), xb)
    torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_energy_gradient_finite_when_all_points_coincide(backend):
    x = torch.zeros(5, 2, dtype=torch.float64, requires_grad=True)
    y = torch.zeros(4, 2, dtype=torch.float64)
    value = mmd.mmd2(x, y, "energy", estimator="biased", backend=backend)
    (g,) = torch.autograd.grad(value, x)
    assert value.item() == 0.0
    assert torch.isfinite(g).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_weighted_matches_direct(backend):
    x, y = _data()
    a, b = torch.rand(len(x), dtype=x.dtype) + 0.1, torch.rand(len(y), dtype=x.dtype) + 0.1
    for estimator in mmd.ESTIMATORS:
        ref = direct_mmd2(x, y, "gaussian", BANDWIDTHS, estimator, a, b)
        value = mmd.mmd2(x, y, "gaussian", BANDWIDTHS, estimator, x_weights=a, y_weights=b, backend=backend)
        assert value.item() == pytest.approx(ref.item(), abs=1e-12)


def test_blocked_uses_several_blocks_and_agrees():
    x, y = _data(n=50, m=40)
    xr = x.clone().requires_grad_()
    ref = mmd.mmd2(xr, y, "gaussian", BANDWIDTHS, "unbiased", backend="dense")
    xb = x.clone().requires_grad_()
    a = torch.full((50,), 1 / 50, dtype=x.dtype)
    b = torch.full((40,), 1 / 40, dtype=x.dtype)
    sxy = mmd._sum_blocked(x, y, a, b, "gaussian", BANDWIDTHS, False, block_rows=7)
    assert sxy.item() == pytest.approx(mmd._sum_dense(x, y, a, b, "gaussian", BANDWIDTHS, False).item(), abs=1e-13)
    sxx = mmd._sum_blocked(xb, xb, a, a, "gaussian", BANDWIDTHS, True, block_rows=7)
    sxx_dense = mmd._sum_dense(xr, xr, a, a, "gaussian", BANDWIDTHS, True)
    torch.testing.assert_close(torch.autograd.grad(sxx, xb)[0], torch.autograd.grad(sxx_dense, xr)[0])
    assert ref.item() > 0


def test_geomloss_backend_is_the_biased_estimator():
    x, y = _data()
    ref = direct_mmd2(x, y, "gaussian", BANDWIDTHS, "biased")
    assert mmd.mmd2(x, y, "gaussian", BANDWIDTHS, backend="geomloss").item() == pytest.approx(ref.item(), abs=1e-12)
    with pytest.raises(ValueError, match="biased"):
        mmd.mmd2(x, y, "gaussian", BANDWIDTHS, "unbiased", backend="geomloss")


def test_auto_returns_the_numbers_of_the_backend_it_picks():
    for n, d in [(30, 2), (1200, 2), (200, 50)]:
        x, y = torch.randn(n, d, dtype=torch.float64), torch.randn(n, d, dtype=torch.float64) + 0.1
        value, chosen = mmd.mmd2(x, y, "gaussian", BANDWIDTHS, "unbiased", return_backend=True)
        assert chosen in BACKENDS
        assert value.item() == mmd.mmd2(x, y, "gaussian", BANDWIDTHS, "unbiased", backend=chosen).item()


def test_far_from_origin_float32_is_accurate():
    """The matrix form cancels badly far from the origin unless the data are centred."""
    x = torch.randn(200, 50, dtype=torch.float64)
    y = torch.randn(200, 50, dtype=torch.float64) + 0.05
    ref = mmd.mmd2(x, y, "energy", backend="dense").item()
    shifted = mmd.mmd2((x + 1000).float(), (y + 1000).float(), "energy", backend="dense").item()
    assert shifted == pytest.approx(ref, rel=1e-2)


def test_estimators_known_properties():
    x, y = torch.randn(40, 2, dtype=torch.float64), torch.randn(40, 2, dtype=torch.float64)
    assert mmd.mmd2(x, y, "gaussian", (1.0,), "biased").item() >= 0
    assert mmd.mmd2(x, x, "gaussian", (1.0,), "biased").item() == pytest.approx(0, abs=1e-14)
    # unbiased on identical samples: −(mean off-diagonal within-set gap), negative
    assert mmd.mmd2(x, x.clone(), "gaussian", (1.0,), "unbiased").item() < 0
    # energy distance of two point masses at distance 3: 2·3 − 0 − 0
    p, q = torch.zeros(4, 2, dtype=torch.float64), torch.tensor([[3.0, 0.0]] * 4, dtype=torch.float64)
    assert mmd.energy_distance(p, q, estimator="biased").item() == pytest.approx(6.0)


def test_bad_arguments_are_rejected():
    x = torch.randn(5, 2)
    for kwargs, msg in [({"kernel": "rbf"}, "kernel"), ({"estimator": "u"}, "estimator"),
                        ({"backend": "gpu"}, "backend"), ({"bandwidths": (0.0,)}, "bandwidth")]:
        with pytest.raises(ValueError, match=msg):
            mmd.mmd2(x, x, **kwargs)
    with pytest.raises(ValueError, match="\\(N, D\\)"):
        mmd.mmd2(x, torch.randn(5, 3))


def test_median_distance_known_value():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    assert mmd.median_distance(x) == pytest.approx(5.0)  # distances 5, 10, 5
    assert math.isclose(mmd.gaussian_bandwidths(2.0, (1, 0.5))[1], 1.0)


# ------------------------------------------------------------- dispatch and realistic sizes
@pytest.fixture
def calibrated(monkeypatch):
    """auto follows a calibration that sends D ≤ 4 to keops from N = 100 (no file, no timing)."""
    rules = [{"max_dim": 4, "keops_min_n": 100, "how": "test"}, {"max_dim": 32, "keops_min_n": None, "how": "test"}]
    monkeypatch.setattr(mmd, "stored_calibration", lambda kind, dtype: (rules, "test"))
    monkeypatch.setattr(mmd, "free_bytes", lambda device: 1 << 40)  # dense fits, on any machine
    return rules


def test_free_memory_counts_the_reclaimable_page_cache_and_a_cgroup_limit(tmp_path, monkeypatch):
    # a machine whose page cache has filled: 0.2 GiB free pages but 20 GiB available
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:          200000 kB\nMemAvailable:   20000000 kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    monkeypatch.setattr(mmd, "MEMINFO", meminfo)
    monkeypatch.setattr(mmd, "CGROUP", cgroup)
    assert mmd.free_bytes(torch.device("cpu")) == 20000000 * 1024  # no cgroup files: MemAvailable
    (cgroup / "memory.max").write_text("max\n")
    assert mmd.free_bytes(torch.device("cpu")) == 20000000 * 1024
    (cgroup / "memory.max").write_text(f"{8 << 30}\n")
    (cgroup / "memory.current").write_text(f"{7 << 30}\n")
    (cgroup / "memory.stat").write_text(f"anon 1000\ninactive_file {2 << 30}\n")
    assert mmd.free_bytes(torch.device("cpu")) == 3 << 30  # 8 - 7 + 2 GiB of reclaimable cache


def test_auto_runs_keops_and_blocked_with_their_numbers(calibrated, monkeypatch):
    x, y = torch.randn(150, 2, dtype=torch.float64), torch.randn(150, 2, dtype=torch.float64) + 0.1
    value, chosen = mmd.mmd2(x, y, "gaussian", BANDWIDTHS, "unbiased", return_backend=True)
    assert chosen == "keops"
    assert value.item() == mmd.mmd2(x, y, "gaussian", BANDWIDTHS, "unbiased", backend="keops").item()
    assert mmd.explain_choice(150, 150, 2)[1].startswith("calibration cpu/float32: keops from N≥100")
    assert mmd.choose_backend(99, 99, 2) == "dense" and mmd.choose_backend(150, 150, 8) == "dense"
    monkeypatch.setattr(mmd, "free_bytes", lambda device: 1000)  # dense does not fit
    x, y = torch.randn(60, 100, dtype=torch.float64), torch.randn(60, 100, dtype=torch.float64) + 0.1
    value, chosen = mmd.mmd2(x, y, "gaussian", BANDWIDTHS, "unbiased", return_backend=True)
    assert chosen == "blocked"
    assert value.item() == pytest.approx(direct_mmd2(x, y, "gaussian", BANDWIDTHS, "unbiased").item(), abs=1e-12)


def test_auto_falls_back_to_dense_when_keops_is_unusable(calibrated, monkeypatch):
    monkeypatch.setattr(mmd, "keops_status", lambda: "pykeops unusable: ImportError: test")
    x, y = torch.randn(150, 2, dtype=torch.float64), torch.randn(150, 2, dtype=torch.float64)
    value, chosen = mmd.mmd2(x, y, "gaussian", BANDWIDTHS, return_backend=True)
    assert chosen == "dense" and mmd.explain_choice(5000, 5000, 2)[1] == "keops unusable"
    monkeypatch.setattr(mmd, "free_bytes", lambda device: 1000)
    assert mmd.choose_backend(150, 150, 2) == "blocked"


def test_blocked_with_several_blocks_through_mmd2(monkeypatch):
    monkeypatch.setattr(mmd, "BLOCK_ENTRIES", 7 * 40)  # 7 rows of 40 per block: 8 blocks
    x, y = _data(n=50, m=40)
    for kernel in mmd.KERNELS:
        xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
        ref = direct_mmd2(xr, yr, kernel, BANDWIDTHS, "unbiased")
        xb, yb = x.clone().requires_grad_(), y.clone().requires_grad_()
        value = mmd.mmd2(xb, yb, kernel, BANDWIDTHS, "unbiased", backend="blocked")
        assert value.item() == pytest.approx(ref.item(), abs=1e-12)
        gx, gy = torch.autograd.grad(value, (xb, yb))
        gdx, gdy = torch.autograd.grad(mmd.mmd2(xr, yr, kernel, BANDWIDTHS, "unbiased", backend="dense"), (xr, yr))
        torch.testing.assert_close(gx, gdx, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(gy, gdy, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kernel", mmd.KERNELS)
def test_dense_split_of_within_set_sums_matches_direct(kernel, monkeypatch):
    monkeypatch.setattr(mmd, "SYMMETRIC_SPLIT_MIN", 4)  # 9 rows -> 4 + 5 -> 2 + 2 + 2 + 3
    x, y = _data()
    xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
    ref = direct_mmd2(xr, yr, kernel, BANDWIDTHS, "unbiased")
    xb, yb = x.clone().requires_grad_(), y.clone().requires_grad_()
    value = mmd.mmd2(xb, yb, kernel, BANDWIDTHS, "unbiased", backend="dense")
    assert value.item() == pytest.approx(ref.item(), abs=1e-12)
    if kernel == "gaussian":  # the direct form's sqrt has no finite gradient at the coincident pair
        for g, r in zip(torch.autograd.grad(value, (xb, yb)), torch.autograd.grad(ref, (xr, yr))):
            torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype,dim,bandwidths", [(torch.float32, 2, (1.0,)), (torch.float64, 3, BANDWIDTHS)])
def test_backends_agree_at_realistic_size(dtype, dim, bandwidths):
    """N = 2500 against 2000: values and gradients of every backend through the public mmd2."""
    x = torch.randn(2500, dim, dtype=dtype)
    y = torch.randn(2000, dim, dtype=dtype) * 1.2 + 0.3
    results = {}
    for backend in BACKENDS:
        xb = x.clone().requires_grad_()
        value = mmd.mmd2(xb, y, "gaussian", bandwidths, "unbiased", backend=backend)
        results[backend] = (value.detach(), torch.autograd.grad(value, xb)[0])
    ref_value, ref_grad = results["dense"]
    rtol = 1e-4 if dtype == torch.float32 else 1e-10
    for backend, (value, grad) in results.items():
        assert value.item() == pytest.approx(ref_value.item(), rel=rtol), backend
        torch.testing.assert_close(grad, ref_grad, rtol=rtol, atol=rtol * ref_grad.abs().max().item())
    assert ref_value.item() > 0.01  # a real difference, not rounding noise


def test_energy_distance_against_scipy_and_brute_force():
    from scipy.stats import energy_distance as scipy_energy
    x, y = torch.randn(40, 1, dtype=torch.float64), torch.randn(30, 1, dtype=torch.float64) * 2 + 0.5
    # scipy: sqrt(2E|X−Y| − E|X−X'| − E|Y−Y'|), the V-statistic (diagonals included)
    ref = scipy_energy(x[:, 0].numpy(), y[:, 0].numpy()) ** 2
    for backend in BACKENDS:
        assert mmd.energy_distance(x, y, "biased", backend).item() == pytest.approx(ref, rel=1e-12)
    dxy, dxx, dyy = (torch.cdist(p, q) for p, q in ((x, y), (x, x), (y, y)))
    n, m = len(x), len(y)
    brute = 2 * dxy.mean() - dxx.sum() / (n * (n - 1)) - dyy.sum() / (m * (m - 1))
    for backend in BACKENDS:
        assert mmd.energy_distance(x, y, "unbiased", backend).item() == pytest.approx(brute.item(), rel=1e-12)


def test_second_derivative_is_refused_not_wrong():
    x = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(mmd.mmd2(x, x.detach() + 1, backend="dense"), x, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(g.sum(), x)


@pytest.mark.parametrize("backend", ["dense", "blocked"])
@pytest.mark.parametrize("kernel", mmd.KERNELS)
def test_gradient_in_the_weights_matches_direct(backend, kernel):
    x, y = torch.randn(8, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    a0, b0 = torch.rand(8, dtype=x.dtype) + 0.1, torch.rand(6, dtype=x.dtype) + 0.1
    a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
    ref = torch.autograd.grad(direct_mmd2(x, y, kernel, BANDWIDTHS, "biased", a, b), (a, b))
    a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
    value = mmd.mmd2(x, y, kernel, BANDWIDTHS, "biased", x_weights=a, y_weights=b, backend=backend)
    for g, r in zip(torch.autograd.grad(value, (a, b)), ref):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)

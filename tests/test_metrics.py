"""The VEEGAN/PacGAN mode metrics and the toy datasets, against known values."""
import math

import pytest
import torch

from bench import metrics
from bench.datasets import DATASETS


@pytest.mark.parametrize("name,modes", [("ring8", 8), ("grid25", 25)])
def test_samples_from_the_mixture_cover_every_mode_with_high_quality(name, modes):
    ds = DATASETS.create(name)
    x = ds.sample(2500, torch.Generator().manual_seed(1))
    m = metrics.mode_metrics(x, ds.means, ds.std)
    assert m["modes_covered"] == modes
    # within 3 std in 2-D: P(chi2_2 <= 9) = 1 - exp(-4.5) = 98.9 %
    assert m["high_quality_pct"] == pytest.approx(100 * (1 - math.exp(-4.5)), abs=0.8)
    assert m["kl_modes"] < 0.02


def test_collapsed_generator_covers_one_mode():
    ds = DATASETS.create("ring8")
    x = ds.means[3] + ds.std * torch.randn(2500, 2)
    m = metrics.mode_metrics(x, ds.means, ds.std)
    assert m["modes_covered"] == 1
    assert m["kl_modes"] == pytest.approx(math.log(8))


def test_kl_and_quality_by_hand():
    means = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [5.0, 5.0]])  # the last is far from both
    m = metrics.mode_metrics(x, means, std=0.1)
    assert m["modes_covered"] == 2
    assert m["high_quality_pct"] == pytest.approx(75.0)
    p = torch.tensor([2 / 3, 1 / 3])
    assert m["kl_modes"] == pytest.approx(float((p * (p * 2).log()).sum()))


def test_no_high_quality_sample_gives_nan_kl_and_nonfinite_samples_are_low_quality():
    means = torch.tensor([[0.0, 0.0]])
    m = metrics.mode_metrics(torch.tensor([[5.0, 5.0], [float("nan"), 0.0]]), means, std=0.1)
    assert m["modes_covered"] == 0 and m["high_quality_pct"] == 0 and math.isnan(m["kl_modes"])


def test_ring8_means_are_distinct_and_on_the_unit_circle():
    ds = DATASETS.create("ring8")
    assert torch.pdist(ds.means).min() == pytest.approx(2 * math.sin(math.pi / 8), rel=1e-5)
    assert ds.means.norm(dim=1) == pytest.approx(torch.ones(8))


def test_grid25_means_and_constants():
    ds = DATASETS.create("grid25")
    assert sorted(set(ds.means[:, 0].tolist())) == [-4, -2, 0, 2, 4]
    assert len({tuple(m) for m in ds.means.tolist()}) == 25 and ds.std == 0.05


def test_held_out_set_is_fixed_and_not_a_training_stream():
    ds = DATASETS.create("ring8")
    assert torch.equal(ds.held_out(), ds.held_out())
    assert not torch.equal(ds.held_out()[:256], ds.sample(256, torch.Generator().manual_seed(0)))


def test_distance_metrics_zero_ish_for_same_distribution_and_large_for_collapse():
    ds = DATASETS.create("ring8")
    ref = ds.reference()
    same = ds.evaluate(ds.sample(2500, torch.Generator().manual_seed(5)), ref)
    collapsed = ds.evaluate(ds.means[0] + ds.std * torch.randn(2500, 2), ref)
    assert abs(same["mmd2"]) < 1e-3 and abs(same["energy"]) < 5e-3
    assert collapsed["mmd2"] > 100 * abs(same["mmd2"]) and collapsed["energy"] > 0.1


def test_gdpp_ring_scores_its_shared_point_as_two_modes_as_the_authors_code_does():
    """ring8.endpoint: means 0 and 7 coincide up to rounding (sin 2π = −2.4e-16). GDPP's evaluation
    (gdppgan_Synthetic.py, argmin of per-mean squared distances) sends a sample to mean 0 or 7 by the
    side of the axis it lies on, so samples around the shared point cover both: a sampler of the data
    covers 8 of 8. With cdist's matrix-product shortcut every such sample went to mean 0 (7 of 8)."""
    from bench.datasets import DATASETS
    ring = DATASETS.create("ring8", endpoint=True)
    g = torch.Generator().manual_seed(0)
    around = ring.means[0] + ring.std * torch.randn(2500, 2, generator=g)
    idx, _ = metrics.nearest_modes(around, ring.means)
    below = around[:, 1] < 0  # mean 7's y is −2.4e-16: it takes the samples below (but for ties at rounding level)
    assert set(idx.tolist()) == {0, 7} and (idx[below] == 7).float().mean() > 0.99 and (idx[~below] == 0).all()
    assert metrics.mode_metrics(ring.sample(2500, g), ring.means, ring.std)["modes_covered"] == 8

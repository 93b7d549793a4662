"""The theory lab's closed-form pieces against known values, and its measurements' direction."""
import math

import pytest
import torch

from bench import theory
from bench.datasets import DATASETS

X = torch.linspace(-30, 30, 60001, dtype=torch.float64)
DX = float(X[1] - X[0])


def test_optimal_discriminator_closed_form():
    p = torch.tensor([0.2, 0.0, 0.3, 0.0], dtype=torch.float64)
    q = torch.tensor([0.2, 0.5, 0.1, 0.0], dtype=torch.float64)
    assert theory.optimal_discriminator(p, q).tolist() == pytest.approx([0.5, 0.0, 0.75, 0.5])


def test_jsd_of_identical_densities_is_zero_and_of_disjoint_is_log2():
    p = theory.gaussian_density(X, 0.0, 1.0)
    assert theory.jsd(p, p, DX) == pytest.approx(0.0, abs=1e-12)
    far = theory.gaussian_density(X, 20.0, 1.0)
    assert theory.jsd(p, far, DX) == pytest.approx(math.log(2), abs=1e-6)
    between = theory.jsd(p, theory.gaussian_density(X, 1.0, 1.0), DX)
    assert 0 < between < math.log(2)


def test_value_at_optimal_discriminator_is_2jsd_minus_log4():
    p, q = theory.gaussian_density(X, 2.0, 0.5), theory.gaussian_density(X, 0.0, 1.0)
    v = theory.value_function(theory.optimal_discriminator(p, q), p, q, DX)
    assert v == pytest.approx(2 * theory.jsd(p, q, DX) - math.log(4), abs=1e-6)
    # any other discriminator does worse (D* maximises V)
    assert theory.value_function(torch.full_like(p, 0.5), p, q, DX) == pytest.approx(-math.log(4))
    assert theory.value_function(torch.full_like(p, 0.5), p, q, DX) < v


def test_mixture_density_integrates_to_one():
    for name in ("gauss1d", "mix1d"):
        d = DATASETS.create(name)
        assert float(d.density(X[:, None]).sum() * DX) == pytest.approx(1.0, abs=1e-6)


def test_short_discriminator_training_reaches_the_optimal_discriminator():
    table, _ = theory.optimal_discriminator_experiment(steps=600)
    row = table.iloc[0]
    assert row["mean |D − D*| (under (p_data+p_g)/2)"] < 0.02
    assert row["V(D, G)"] == pytest.approx(row["V(D*, G) = 2·JSD − log 4"], abs=0.01)
    assert row["V(D, G)"] <= row["V(D*, G) = 2·JSD − log 4"] + 1e-3  # V(D*) is the maximum


def test_minimax_generator_gradient_vanishes_as_d_rejects_fakes_and_nonsaturating_does_not():
    fixed, training = theory.saturation_experiment(d_steps=150, every=50, train_steps=10)
    start, end = fixed.iloc[0], fixed.iloc[-1]
    assert end["mean D(G(z))"] < 0.01 < 0.3 < start["mean D(G(z))"]
    assert end["‖∇G‖ minimax (gan)"] < start["‖∇G‖ minimax (gan)"]
    assert end["‖∇G‖ non-saturating (nsgan)"] > 10 * start["‖∇G‖ non-saturating (nsgan)"]
    assert end["‖∇G‖ minimax (gan)"] < 0.01 * end["‖∇G‖ non-saturating (nsgan)"]
    assert {"gan: ‖∇G‖", "nsgan: ‖∇G‖"} <= set(training.columns)

"""GDPP (methods/gdpp.py): its loss at known inputs against a hand computation, its gradient
through coinciding eigenvalues, and the gdpp-toy protocol (GDPP's and the Unrolled GAN notebook's)."""
import math

import pytest
import torch

from bench.datasets import Ring8
from bench.spec import resolve
from methods.gdpp import _split_head, dpp_kernel_eigen, gdpp_terms
from methods.networks import gdpp_mlp


def test_the_kernel_eigenvalues_of_a_known_batch():
    # rows (1,0), (0,1), (1,0): L = [[1,0,1],[0,1,0],[1,0,1]], eigenvalues 0, 1, 2
    values, vectors = dpp_kernel_eigen(torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.5, 0.0]], dtype=torch.float64))
    assert values.tolist() == pytest.approx([0.0, 1.0, 2.0], abs=1e-12)
    assert abs(vectors[:, 2] @ torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)) == pytest.approx(math.sqrt(2))


def test_the_loss_terms_by_hand():
    fake = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # L: eigenvalues 0, 1, 2
    real = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]], dtype=torch.float64)  # L all ones: 0, 0, 3
    magnitude, structure = gdpp_terms(fake, real, eigenvalue_weight=1e-4)
    assert magnitude.item() == pytest.approx(1e-4 * (0 + 1 + 1) / 3)
    # real eigenvalues scaled to [0, 1]: 0, 0, 1, so only the top pair counts:
    # -<(1,1,0)/√2, (1,1,1)/√3> = -2/√6, up to the sign the solver gives each eigenvector
    assert abs(structure.item()) == pytest.approx(2 / math.sqrt(6))
    same_magnitude, same_structure = gdpp_terms(real, real)
    assert same_magnitude.item() == 0 and same_structure.item() == pytest.approx(-1.0)  # -Σ λ̂ ⟨v, v⟩ = -(0 + 0 + 1)


def test_the_gradient_is_finite_through_coinciding_eigenvalues():
    torch.manual_seed(0)
    fake = torch.randn(64, 8, requires_grad=True)  # rank 8: 56 zero eigenvalues
    magnitude, structure = gdpp_terms(torch.tanh(fake), torch.tanh(torch.randn(64, 8)))
    (magnitude + structure).backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0


def test_the_gradient_matches_finite_differences_where_eigenvalues_are_distinct():
    torch.manual_seed(1)
    real = torch.randn(5, 5, dtype=torch.float64)
    fake = torch.randn(5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: sum(gdpp_terms(f, real, 0.3)), (fake,))


def test_the_features_are_the_last_hidden_layer():
    g, d = gdpp_mlp(Ring8(), 256, 1, 1)
    features, head = _split_head(d)
    x = torch.randn(7, 2)
    assert features(x).shape == (7, 128) and torch.equal(head(features(x)), d(x))
    assert (features(x).abs() <= 1).all()  # tanh


def test_the_gdpp_networks_follow_the_code():
    torch.manual_seed(0)
    g, d = gdpp_mlp(Ring8(), 256, 1, 1)
    linears = [m for m in [*g.modules(), *d.modules()] if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(256, 128), (128, 128), (128, 2),
                                                                    (2, 128), (128, 128), (128, 1)]
    w = linears[1].weight  # orthogonal, gain 1.4: W Wᵀ = 1.96 I
    assert torch.allclose(w @ w.T, 1.96 * torch.eye(128), atol=1e-4)
    assert all(m.bias.abs().sum() == 0 for m in linears)


def test_the_linspace_ring_repeats_a_mode_as_the_code_does():
    ring = Ring8(endpoint=True)
    assert torch.allclose(ring.means[0], ring.means[7], atol=1e-6)
    assert len({tuple(m) for m in ring.means.round(decimals=6).tolist()}) == 7
    assert len({tuple(m) for m in Ring8().means.round(decimals=6).tolist()}) == 8


def test_the_gdpp_toy_protocol():
    spec = resolve("gdpp", "ring8", 0, "gdpp-toy")
    assert (spec.steps, spec.batch_size, spec.noise_dim, spec.arch, spec.noise) == (25_000, 512, 256, "gdpp-mlp",
                                                                                  "gaussian")
    assert spec.optimizer("generator") == {"betas": (0.5, 0.999), "lr": 1e-3, "name": "adam"}
    assert spec.optimizer("discriminator") == {"betas": (0.5, 0.999), "lr": 1e-4, "name": "adam"}
    assert spec.options("dataset")["endpoint"] is True and spec.preset_verdict()["comparable"]
    grid = resolve("wgan-gp", "grid25", 0, "gdpp-toy")
    assert "endpoint" not in grid.options("dataset") and grid.preset_verdict()["comparable"]
    # the default ring keeps its run ids: endpoint=False is left out of the identity
    assert "endpoint" not in resolve("gan", "ring8", 0).options("dataset")


def test_the_preset_names_the_ring_it_fixes():
    from bench.errors import BenchError
    with pytest.raises(BenchError, match=r"preset 'gdpp-toy' fixes ring8.endpoint=True"):
        resolve("gdpp", "ring8", 0, "gdpp-toy", dataset_options={"endpoint": "false"})

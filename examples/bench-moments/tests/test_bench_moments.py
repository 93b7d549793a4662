"""The plugin's own tests: its formula, and bench's conformance check (the contract)."""
import pytest
import torch

from bench.testing import check_method

bench_moments = pytest.importorskip("bench_moments")  # installed: pip install -e examples/bench-moments


def test_loss_is_zero_on_identical_batches_and_the_squared_mean_gap_otherwise():
    x = torch.randn(64, 2)
    assert bench_moments.MomentMatching.loss(x, x)[0].item() == 0
    mean_term, _ = bench_moments.MomentMatching.loss(x + torch.tensor([3.0, 4.0]), x)
    assert mean_term.item() == pytest.approx(25.0)


def test_moments_follows_the_bench_contract():
    check_method(bench_moments.MomentMatching)


def test_the_entry_point_registers_it_under_its_name():
    from methods import METHODS
    assert METHODS.get("moments") is bench_moments.MomentMatching
    assert METHODS.source("moments").startswith("dist bench-moments==")

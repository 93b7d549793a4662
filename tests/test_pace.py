"""`bench perf train`: the bare loops it compares against compute the same losses, the FLOP count
and rates are consistent, an evaluation's parts add up; no wall-clock time is asserted."""
import pandas as pd
import pytest
import torch

from bench import harness, mmd, pace
from bench import spec as spec_lib
from bench.cli import main


def test_the_bare_mmd_is_the_engines_unbiased_gaussian_mmd_value_and_gradient():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=gen, dtype=torch.float64).requires_grad_()
    y = torch.randn(80, 2, generator=gen, dtype=torch.float64) + 0.5
    bandwidths = (1.0, 0.5, 0.1)
    bare = pace.bare_mmd2(x, y, bandwidths)
    ours = mmd.mmd2(x, y, "gaussian", bandwidths, "unbiased", backend="dense")
    assert bare.item() == pytest.approx(ours.item(), rel=1e-10)
    (g_bare,), (g_ours,) = torch.autograd.grad(bare, x), torch.autograd.grad(ours, x)
    assert torch.allclose(g_bare, g_ours, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("method", ["nsgan", "wgan-gp", "gmn"])
def test_a_bare_step_trains_the_same_networks_it_is_given(method):
    spec = spec_lib.resolve(method, "ring8", 0, "quick", device="cpu", batch_size=32)
    _, _, m, nets, real = harness.build(spec)
    before = [p.detach().clone() for p in nets.generator.parameters()]
    step = pace.bare_step(m, nets, real)
    step()
    assert any(not torch.equal(a, b) for a, b in zip(before, nets.generator.parameters()))


def test_a_row_of_the_train_benchmark_is_consistent():
    row = pace.time_train("nsgan", "toy-mlp", threads=1, rounds=2, seconds=0.02)
    assert row["steps_per_s"] > 0 and row["bare_steps_per_s"] > 0 and row["matmul_gflops"] > 0
    # 2 × (D forward+backward on real and fake, G forward+backward through D): matmuls only, > 0 and fixed
    assert row["mflop_per_step"] == pytest.approx(pace.time_train("nsgan", "toy-mlp", 1, 1, 0.01)["mflop_per_step"])
    assert row["gflops"] == pytest.approx(row["mflop_per_step"] * row["steps_per_s"] / 1e3)
    assert row["of_matmul"] == pytest.approx(row["gflops"] / row["matmul_gflops"])
    assert row["step_over_bare"] == pytest.approx(row["bare_steps_per_s"] / row["steps_per_s"])


def test_the_flop_counter_counts_a_known_product():
    a, b = torch.randn(64, 32), torch.randn(32, 16)
    assert pace.count_flops(lambda: a @ b) == 2 * 64 * 32 * 16


def test_an_evaluation_is_split_into_the_parts_it_calls():
    rows = pd.DataFrame(pace.time_evaluation("ring8", threads=1))
    parts = set(rows["part"])
    assert {"reference (once per process)", "sampling", "metrics.distance_metrics", "metrics.mode_metrics",
            "evaluate, total (profiled)"} <= parts
    metric_parts = rows[rows["part"].str.startswith("metrics.")]["seconds"].sum()
    assert metric_parts <= rows.set_index("part").loc["evaluate, total (profiled)", "seconds"] + 1e-3


def test_perf_train_writes_its_csvs_and_refuses_unknown_names(tmp_path, capsys):
    assert main(["perf", "train", "--methods", "gan,gmn", "--families", "toy-mlp", "--rounds", "1", "--seconds",
                 "0.01", "--evaluations", "none", "--threads", "1", "--batched", "3", "--out", str(tmp_path)]) == 0
    train = pd.read_csv(tmp_path / "train-cpu.csv")
    assert list(train["method"]) == ["gan", "gmn"] and train["git_revision"].notna().all()
    batched = pd.read_csv(tmp_path / "batched-cpu.csv")  # gmn cannot be batched: no row
    assert list(batched["method"]) == ["gan"] and (batched["seeds"] == 3).all() and (batched["speedup"] > 0).all()
    assert (train["load_1min_before"] >= 0).all()
    before = (tmp_path / "train-cpu.csv").read_text()
    assert main(["perf", "train", "--families", "none", "--evaluations", "ring8", "--threads", "1",
                 "--out", str(tmp_path)]) == 0  # evaluations only: the training CSV is left as it was
    assert (tmp_path / "train-cpu.csv").read_text() == before
    assert set(pd.read_csv(tmp_path / "evaluation-cpu.csv")["dataset"]) == {"ring8"}
    assert main(["perf", "train", "--methods", "gan,wgan", "--out", str(tmp_path / "x")]) == 2
    assert "unknown 'wgan'" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["perf", "train", "--families", "cifar", "--out", str(tmp_path / "x")]) == 2


def test_perf_train_refuses_a_file_as_out_before_timing(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["perf", "train", "--methods", "gan", "--out", str(tmp_path / "f")]) == 2
    assert "is a file" in capsys.readouterr().err and (tmp_path / "f").read_text() == "x"
    assert main(["perf", "train", "--threads", "0", "--out", str(tmp_path / "x")]) == 2

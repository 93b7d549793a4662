"""The learning-rate schedule (run setting lr_schedule): cosine annealing over the step budget."""
import math

import pytest

from bench.errors import BenchError

BASE = {"steps": 100, "eval_points": 4, "batch_size": 32, "width": 16, "device": "cpu"}


def test_cosine_anneals_every_optimiser_to_zero_over_the_steps():
    """lr_t = lr₀ (1 + cos(π t / T)) / 2 after t generator steps (Loshchilov & Hutter 2017, no restarts),
    for G and D alike (D's 2 steps per G step do not advance it twice)."""
    from bench import harness
    from bench.spec import resolve
    spec = resolve("nsgan", "ring8", 0, lr_schedule="cosine", **BASE)
    seen = {}
    spec_d2 = resolve("nsgan", "ring8", 0, lr_schedule="cosine", method_options={"d_steps": 2}, **BASE)
    for s in (spec, spec_d2):
        seen[s.run_id] = []
        harness.train_and_evaluate(s, observer=lambda step, nets, samples, out=seen[s.run_id]: out.append(
            (step, nets.g_opt.param_groups[0]["lr"], nets.d_opt.param_groups[0]["lr"])))
    for run in seen.values():
        assert [step for step, *_ in run] == [0, 25, 50, 75, 100]
        for step, g_lr, d_lr in run:
            expected = 1e-3 * (1 + math.cos(math.pi * step / 100)) / 2
            assert g_lr == pytest.approx(expected, abs=1e-12) and d_lr == pytest.approx(expected, abs=1e-12)


def test_schedule_is_identity_only_when_it_anneals():
    from bench.spec import resolve
    plain = resolve("nsgan", "ring8", 0, **BASE)
    assert "lr_schedule" not in plain.identity()
    assert resolve("nsgan", "ring8", 0, lr_schedule="constant", **BASE).run_id == plain.run_id
    cosine = resolve("nsgan", "ring8", 0, lr_schedule="cosine", **BASE)
    assert cosine.identity()["lr_schedule"] == "cosine" and cosine.run_id != plain.run_id


def test_schedule_needs_a_step_budget_and_a_known_name(tmp_path, capsys):
    from bench.cli import main
    from bench.spec import resolve
    with pytest.raises(BenchError, match="anneals over a step budget"):
        resolve("nsgan", "ring8", 0, budget_seconds=5.0, lr_schedule="cosine", eval_points=2, device="cpu")
    assert main(["run", "--methods", "nsgan", "--lr-schedule", "linear", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "lr_schedule" in err and "constant, cosine" in err and not (tmp_path / "o").exists()


def test_a_sweep_of_schedules_names_each_row_by_its_schedule(tmp_path):
    import pandas as pd
    from bench.cli import main
    out = tmp_path / "o"
    assert main(["run", "--methods", "nsgan", "--datasets", "ring8", "--steps", "4", "--eval-points", "1",
                 "--batch-size", "16", "--device", "cpu", "--no-progress", "--sweep", "lr_schedule=constant,cosine",
                 "--out", str(out)]) == 0
    assert set(pd.read_csv(out / "summary.csv")["variant"]) == {"nsgan[lr_schedule=constant]",
                                                                 "nsgan[lr_schedule=cosine]"}

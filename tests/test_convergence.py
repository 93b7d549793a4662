"""The convergence rule (bench.convergence) on synthetic histories whose answer is known."""
import math

import numpy as np
import pytest

from bench import convergence

STEPS = list(range(0, 30_001, 1000))  # 31 evaluations: the last third holds 11


def history(values, name="high_quality_pct"):
    return [{"step": s, name: v} for s, v in zip(STEPS, values)]


def noisy(levels, scale, seed=0):
    rng = np.random.default_rng(seed)
    return [float(v) for v in np.asarray(levels) + scale * rng.standard_normal(len(levels))]


def test_a_flat_history_has_converged():
    v = convergence.verdict(history(noisy([60.0] * len(STEPS), 2.0)), ["high_quality_pct"])
    assert v["converged"] is True and v["window"] == [20_000, 30_000]
    m = v["metrics"]["high_quality_pct"]
    assert m["points"] == 11 and abs(m["drift"]) <= m["allowed"]


def test_a_rising_history_has_not():
    rising = noisy([60.0 * s / 30_000 for s in STEPS], 1.0)  # +20 points over the last third
    v = convergence.verdict(history(rising), ["high_quality_pct"])
    assert v["converged"] is False
    assert v["metrics"]["high_quality_pct"]["drift"] == pytest.approx(20.0, abs=3)


def test_a_rising_then_saturating_history_has_converged():
    saturating = [90.0 * (1 - math.exp(-s / 3000)) for s in STEPS]  # within 0.1 % of its limit by 20,000
    assert convergence.verdict(history(saturating), ["high_quality_pct"])["converged"] is True


def test_an_oscillating_history_is_flat_and_its_noise_says_how_much():
    oscillating = [50.0 + 20.0 * (-1) ** i for i in range(len(STEPS))]  # mode hopping around 50
    m = convergence.verdict(history(oscillating), ["high_quality_pct"])["metrics"]["high_quality_pct"]
    assert m["converged"] is True and m["noise"] == pytest.approx(21, rel=0.1)


def test_a_slow_drift_within_the_noise_is_converged_and_beyond_it_is_not():
    small = noisy([50.0 + 2.0 * s / 30_000 for s in STEPS], 3.0, seed=1)   # drifts 0.7 in the noise of 3
    large = noisy([50.0 + 60.0 * s / 30_000 for s in STEPS], 3.0, seed=1)  # drifts 20
    assert convergence.verdict(history(small), ["high_quality_pct"])["converged"] is True
    assert convergence.verdict(history(large), ["high_quality_pct"])["converged"] is False


def test_every_tracked_metric_must_have_converged():
    rows = [{"step": s, "high_quality_pct": 60.0, "mmd2": 0.1 * (1 - s / 30_000) + 0.01} for s in STEPS]
    v = convergence.verdict(rows, ["high_quality_pct", "mmd2"])
    assert v["metrics"]["high_quality_pct"]["converged"] is True
    assert v["metrics"]["mmd2"]["converged"] is False and v["converged"] is False


def test_a_drift_below_the_metrics_resolution_has_converged_and_one_above_it_has_not():
    """Near 0 (MMD² of a good fit) 5 % of the level is no tolerance and evaluations made from the same
    noise scatter little: a drift counts only beyond 2 × the metric's spread over redraws of the data."""
    creeping = noisy([0.002 - 0.001 * s / 30_000 for s in STEPS], 0.00002, seed=2)  # −0.00033 over the window
    assert convergence.verdict(history(creeping, "mmd2"), ["mmd2"])["converged"] is False
    v = convergence.verdict(history(creeping, "mmd2"), ["mmd2"], resolution=lambda: {"mmd2": 0.0005})
    assert v["converged"] is True and v["metrics"]["mmd2"]["resolution"] == 0.0005
    assert v["metrics"]["mmd2"]["allowed"] == pytest.approx(2 * 0.0005)
    assert convergence.verdict(history(creeping, "mmd2"), ["mmd2"],
                               resolution=lambda: {"mmd2": 0.0001})["converged"] is False
    assert convergence.verdict(history(creeping, "mmd2"), ["mmd2"], resolution=lambda: {})["converged"] is False


def test_the_resolution_is_measured_only_when_a_drift_needs_it():
    def costly():
        raise AssertionError("measured for a metric that had converged without it")
    flat = history(noisy([60.0] * len(STEPS), 2.0))
    v = convergence.verdict(flat, ["high_quality_pct"], resolution=costly)
    assert v["converged"] is True and "resolution" not in v["metrics"]["high_quality_pct"]


def test_a_mixtures_resolution_is_the_spread_of_its_metrics_over_redraws_of_the_data():
    """The fraction of a mixture's own samples within 3 σ of their mode is binomial with p = 1 − e^−4.5 in
    2-D: over 2,500 samples its standard deviation is 0.21 percentage points; every mode is always hit."""
    from bench import datasets
    measured = datasets.resolution("ring8")
    p = 1 - math.exp(-4.5)
    assert measured["high_quality_pct"] == pytest.approx(100 * math.sqrt(p * (1 - p) / 2500), rel=0.3)
    assert measured["modes_covered"] == 0.0 and 0 < measured["mmd2"] < 0.01
    assert datasets.resolution("ring8") == measured  # one stream of its own: the same every time
    assert datasets.resolution("mnist") == {} and datasets.resolution("no-such-dataset") == {}


def test_the_report_and_the_loop_judge_a_run_with_its_datasets_resolution(monkeypatch):
    from bench import datasets, harness, report
    from bench.spec import resolve
    creeping = noisy([0.002 - 0.001 * s / 30_000 for s in STEPS], 0.00002, seed=2)
    record = {"status": "ok", "spec": {"dataset": "ring8", "dataset_options": {"std": 0.02}},
              "history": [{"step": s, "high_quality_pct": 90.0, "modes_covered": 8, "mmd2": v}
                          for s, v in zip(STEPS, creeping)]}
    asked = []
    monkeypatch.setattr(datasets, "resolution", lambda name, options=None: asked.append((name, options)) or {"mmd2": 5e-4})
    assert report.converged(record) is True and asked == [("ring8", {"std": 0.02})]
    monkeypatch.setattr(datasets, "resolution", lambda name, options=None: {})
    assert report.converged(record) is False

    given = []  # the loop hands the record's verdict (and --patience's) the run's own dataset's floor
    monkeypatch.setattr(datasets, "resolution", lambda name, options=None: {"mmd2": (name, options)})
    monkeypatch.setattr(convergence, "verdict", lambda history, tracked, status="ok", resolution=None:
                        given.append(resolution) or {"converged": None})
    spec = resolve("nsgan", "ring8", 0, steps=20, eval_points=10, batch_size=32, width=16, device="cpu",
                   patience=2, dataset_options={"std": 0.02})
    harness.train_and_evaluate(spec)
    assert len(given) == 11 and all(r() == {"mmd2": ("ring8", {**spec.options("dataset")})} for r in given)


def test_a_diverged_run_has_not_converged_and_a_short_one_cannot_be_judged():
    assert convergence.verdict(history([1.0] * len(STEPS)), ["high_quality_pct"], status="diverged")["converged"] is False
    short = [{"step": s, "high_quality_pct": 50.0} for s in (0, 1000, 2000)]
    assert convergence.verdict(short, ["high_quality_pct"])["converged"] is None
    with_nan = history([50.0] * (len(STEPS) - 1) + [math.nan])
    assert convergence.verdict(with_nan, ["high_quality_pct"])["metrics"]["high_quality_pct"]["converged"] is False


def test_a_metric_the_run_never_had_is_not_judged():
    rows = [{"step": s, "high_quality_pct": 0.0, "kl_modes": None} for s in STEPS]
    v = convergence.verdict(rows, ["high_quality_pct", "kl_modes"])
    assert v["converged"] is True and "kl_modes" not in v["metrics"]


def test_patience_stops_a_run_once_converged_and_is_part_of_its_identity(monkeypatch):
    """--patience N: the loop stops a run once the rule has judged it converged at N evaluations in a
    row (step 0 not counted); the budget is then a cap; the setting is identity (another run id),
    and left out of it when unset (stored runs keep their ids)."""
    from bench import harness
    from bench.spec import resolve
    base = {"steps": 100, "eval_points": 10, "batch_size": 32, "width": 16, "device": "cpu"}
    plain, patient = resolve("nsgan", "ring8", 0, **base), resolve("nsgan", "ring8", 0, patience=2, **base)
    assert "patience" not in plain.identity() and patient.identity()["patience"] == 2
    assert plain.run_id != patient.run_id

    monkeypatch.setattr(convergence, "verdict", lambda history, tracked, status="ok", resolution=None: {"converged": True})
    record, _ = harness.train_and_evaluate(patient)
    assert [h["step"] for h in record["history"]] == [0, 10, 20]
    assert record["steps_done"] == 20 and record["status"] == "ok"
    assert record["stopped_early"] == {"step": 20, "patience": 2, "why": "judged converged at 2 evaluations in a row"}

    judged = iter([True, False, True, True])  # a streak broken by one verdict starts again
    monkeypatch.setattr(convergence, "verdict", lambda history, tracked, status="ok", resolution=None: {"converged": next(judged, True)})
    assert harness.train_and_evaluate(patient)[0]["steps_done"] == 40

    monkeypatch.setattr(convergence, "verdict", lambda history, tracked, status="ok", resolution=None: {"converged": False})
    record, _ = harness.train_and_evaluate(patient)
    assert record["steps_done"] == 100 and "stopped_early" not in record


def test_patience_must_be_a_positive_integer(tmp_path, capsys):
    from bench.cli import main
    assert main(["run", "--methods", "nsgan", "--patience", "0", "--out", str(tmp_path / "o")]) == 2
    assert "patience must be a positive integer" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_the_mean_of_runs_trends_moves_when_their_mean_drift_exceeds_its_standard_error():
    """Drifts 1, 2, 3 (level 10): mean 2 against 2 × SE = 2 × (1/√3) = 1.15 — moving; drifts −1, 2, 5:
    the same mean against 2 × √3 = 3.46 — within the seeds' scatter. Near 0 the resolution over √seeds
    floors it. One seed: its own residual noise."""
    trend = lambda drift, level=10.0: {"converged": True, "drift": drift, "noise": 0.1, "level": level}
    moving = convergence.mean_trend([trend(1), trend(2), trend(3)])
    assert not moving["converged"] and moving["drift"] == pytest.approx(2)
    assert moving["noise"] == pytest.approx(1 / math.sqrt(3))
    assert convergence.mean_trend([trend(-1), trend(2), trend(5)])["converged"]
    small = [trend(d, level=0.01) for d in (0.010, 0.012, 0.011)]
    assert not convergence.mean_trend(small)["converged"]
    floored = convergence.mean_trend(small, lambda: 0.02)  # 2 × 0.02 / √3 = 0.023 > 0.011
    assert floored["converged"] and floored["resolution"] == pytest.approx(0.02 / math.sqrt(3))
    assert convergence.mean_trend([trend(1), {"converged": None}])["converged"] is None
    assert convergence.mean_trend([trend(1), {"converged": False}])["converged"] is False
    alone = convergence.mean_trend([trend(1.0)])
    assert alone["noise"] == 0.1 and not alone["converged"]  # 1 > max(2 × 0.1, 5 % of 10)

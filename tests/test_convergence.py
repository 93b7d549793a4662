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

"""Whether a run had converged when it stopped, judged from its own evaluation history.

The rule, per tracked metric (each dataset declares its own, ``Dataset.tracked``): take the
evaluations of the last third of training (steps ≥ ⅔ of the last step), at least
:data:`MIN_POINTS` of them; fit a least-squares line ``value ≈ a + b · step`` through them. The
**drift** is what the line says the metric moved over that window, ``b × (last step − first
step)``; the **noise** is the scatter of the evaluations around the line (residual standard
deviation). The metric has converged when

    |drift| ≤ max(2 × noise, 5 % of the metric's mean level over the window, 2 × resolution)

that is, when what the run still gained or lost over its last third is not larger than its own
evaluation-to-evaluation noise, is small relative to where the metric stands, or is below what the
metric can resolve at all. The **resolution** is the metric's standard deviation over fresh samples
of the data itself (:meth:`bench.datasets.Dataset.resolution`): a generator equal to the data scores
that much apart from one draw to the next. It matters where a metric's level sits near 0 (MMD² of a
good fit), so that 5 % of the level is no tolerance, while the evaluations, made from the same noise
every time, scatter less than a redraw would. A run has
converged when every tracked metric has. It is a statement about the trend, not about quality: a
metric that oscillates around a level (mode hopping) is flat by this rule, and its noise says how
much it oscillates. A run that diverged, or whose window holds a missing value, has not converged;
a run with too few evaluations in its last third cannot be judged (``None``).

Why this rule: a slope test alone ("not significantly different from 0") calls every noisy run
converged for want of evidence, and a fixed tolerance alone cannot serve metrics on different
scales (MMD² ~1e-3, HQ % ~50); the run's own noise, its level and its resolution give each metric
its scale. Datasets that do not measure a resolution (images: it would cost many evaluations) are
judged by the first two.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

WINDOW = 1 / 3          # the last third of training
MIN_POINTS = 4          # evaluations the window must hold
NOISE_FACTOR = 2.0      # drift allowed, in residual standard deviations
RELATIVE = 0.05         # drift allowed, as a share of the mean level
RESOLUTION_FACTOR = 2.0  # drift allowed, in standard deviations of the metric over redraws of the data
RULE = (f"least-squares drift over the last {WINDOW:.0%} of training within max({NOISE_FACTOR:g} × residual std, "
        f"{RELATIVE:.0%} of the level, {RESOLUTION_FACTOR:g} × the metric's std over redraws of the data where "
        f"measured), every tracked metric, at least {MIN_POINTS} evaluations")


def window_start(last_step) -> float:
    """The first step of the window (the last third) of a history ending at ``last_step``."""
    return last_step * (1 - WINDOW) * (1 - 1e-9)  # 30,000 × ⅔ is 20,000.000000000004 in floats


def metric_trend(steps, values, resolution: Callable[[], float | None] | None = None) -> dict:
    """Drift, noise and level of one metric over the window (already cut), and its verdict.
    ``resolution`` gives the metric's resolution (None: not measured); it is asked only when the
    drift exceeds the other allowances, as measuring it costs evaluations, and the evidence then
    holds it."""
    x, y = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    if len(x) < MIN_POINTS:
        return {"converged": None, "points": int(len(x)), "why": f"{len(x)} evaluations in the window"}
    if not np.isfinite(y).all():
        return {"converged": False, "points": int(len(x)), "why": "a missing or infinite value in the window"}
    slope, intercept = np.polyfit(x, y, 1) if np.ptp(x) > 0 else (0.0, float(y.mean()))
    residuals = y - (intercept + slope * x)
    noise = float(np.sqrt((residuals ** 2).sum() / max(len(x) - 2, 1)))
    drift = float(slope * (x[-1] - x[0]))
    level = float(np.abs(y).mean())
    return _judged({"points": int(len(x)), "drift": drift, "noise": noise, "level": level}, resolution)


def _judged(evidence: dict, resolution: Callable[[], float | None] | None) -> dict:
    """The rule's verdict on ``evidence`` (its drift, noise and level): |drift| within max(2 × noise,
    5 % of the level), or else within 2 × resolution, asked for only then."""
    drift = evidence["drift"]
    allowed = max(NOISE_FACTOR * evidence["noise"], RELATIVE * evidence["level"])
    if abs(drift) > allowed and resolution is not None and (floor := resolution()) is not None:
        evidence = {**evidence, "resolution": floor}
        allowed = max(allowed, RESOLUTION_FACTOR * floor)
    return {"converged": bool(abs(drift) <= allowed), **evidence, "allowed": allowed}


def mean_trend(trends: list[dict], resolution: Callable[[], float | None] | None = None) -> dict:
    """Whether the mean over seeds still moved, for runs that stopped at different steps and so share
    no last third, from each run's :func:`metric_trend` over its own: the drift is the mean of their
    drifts, the level the mean of their levels, the resolution ``resolution()`` / √seeds, as in the
    rule; the noise is not a residual scatter around a line but the standard error of the mean drift
    over seeds (one seed: its own residual noise), so the drift must exceed twice what the seeds'
    disagreement leaves uncertain — close to a t-test of "no drift" at 5 % for 10 seeds, looser for
    2 or 3 — besides 5 % of the level. With one grid of steps the mean of the drifts is the drift of
    the mean (least squares is linear), but the noise differs: a table of fixed-budget runs is judged
    by :func:`verdict` of the mean history instead."""
    if not trends or any(t["converged"] is None for t in trends):
        return {"converged": None, "seeds": len(trends), "why": "a run too short to judge"}
    if any("drift" not in t for t in trends):
        return {"converged": False, "seeds": len(trends), "why": "a missing or infinite value in a run's window"}
    drifts = np.array([t["drift"] for t in trends])
    n = len(drifts)
    noise = float(drifts.std(ddof=1) / math.sqrt(n)) if n > 1 else trends[0]["noise"]
    evidence = {"seeds": n, "drift": float(drifts.mean()), "noise": noise,
                "level": float(np.mean([t["level"] for t in trends]))}
    return _judged(evidence, resolution and (
        lambda: None if (floor := resolution()) is None else floor / math.sqrt(n)))


def verdict(history: list[dict], tracked, status: str = "ok",
            resolution: Callable[[], dict[str, float]] | None = None) -> dict:
    """A run's convergence verdict from its evaluation history (the record's ``history``): whether
    it converged (True, False, or None when it cannot be judged), and the evidence per metric.
    ``resolution``: gives each tracked metric's resolution (its dataset's, e.g.
    :func:`bench.datasets.resolution`), called only if a metric needs it."""
    if status == "diverged":
        return {"converged": False, "why": "diverged", "rule": RULE, "metrics": {}}
    points = [h for h in history if isinstance(h.get("step"), (int, float))]
    if not points:
        return {"converged": None, "why": "no evaluations", "rule": RULE, "metrics": {}}
    last = max(h["step"] for h in points)
    start = window_start(last)
    window = [h for h in points if h["step"] >= start]
    per_metric = {}
    for name in tracked:
        rows = [h for h in window if name in h]
        if rows and all(h[name] is None for h in rows):
            continue  # a metric this run never had (e.g. KL with no high-quality sample)
        values = [math.nan if h[name] is None else h[name] for h in rows]
        floor = None if resolution is None else lambda name=name: resolution().get(name)
        per_metric[name] = metric_trend([h["step"] for h in rows], values, floor)
    judged = [m["converged"] for m in per_metric.values()]
    if not judged or any(c is None for c in judged):
        converged = None
    else:
        converged = all(judged)
    return {"converged": converged, "window": [window[0]["step"], last] if window else None, "rule": RULE,
            "metrics": per_metric}

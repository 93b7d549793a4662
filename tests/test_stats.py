"""Statistics over seeds against scipy and values known in closed form."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench import stats
from bench.report import comparison_table, summary_table


def test_mean_ci_is_the_student_t_interval():
    x = [0.3, 0.5, 0.4, 0.9, 0.2]
    mean, lo, hi = stats.mean_ci(x)
    ref = sps.t.interval(0.95, 4, loc=np.mean(x), scale=np.std(x, ddof=1) / math.sqrt(5))
    assert mean == pytest.approx(0.46) and (lo, hi) == pytest.approx(ref)
    assert math.isnan(stats.mean_ci([1.0])[1]) and stats.mean_ci([2.0, 2.0]) == (2.0, 2.0, 2.0)
    assert stats.mean_ci([1.0, None, float("nan"), 3.0])[0] == 2.0  # missing values are not zeros


def test_interval_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = [lo <= 1.0 <= hi for lo, hi in (stats.mean_ci(rng.normal(1.0, 2.0, 6))[1:] for _ in range(4000))]
    assert 0.94 < np.mean(hits) < 0.96  # binomial sd at 4,000 trials: 0.0034


def test_paired_comparison_is_the_exact_wilcoxon_with_its_smallest_possible_p():
    a = {s: 1.0 + 0.1 * s for s in range(10)}
    b = {s: 0.5 + 0.1 * s + 0.01 * (s % 3) for s in range(10)}
    c = stats.compare(a, b, better="lower")
    assert c.test.startswith("Wilcoxon")
    assert c.p == pytest.approx(2 / 2 ** 10)  # all 10 differences positive: the exact two-sided p
    assert c.p == pytest.approx(sps.wilcoxon(list(a.values()), list(b.values())).pvalue)
    assert c.p_min == pytest.approx(2 / 2 ** 10)
    assert c.a_better == 0.0 and c.diff > 0  # lower is better and A is always higher
    assert c.diff_lo < c.diff < c.diff_hi


def test_unpaired_comparison_is_mann_whitney_with_common_language_effect_size():
    a = {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0, 4: 5.0}
    b = {5: 6.0, 6: 7.0, 7: 8.0, 8: 9.0, 9: 10.0}  # other seeds: not paired
    c = stats.compare(a, b, better="higher")
    assert c.test == "Mann-Whitney U"
    assert c.p == pytest.approx(2 / math.comb(10, 5))  # complete separation, exact
    assert c.a_better == 0.0 and stats.compare(b, a, "higher").a_better == 1.0
    mixed = stats.compare({0: 1.0, 1: 3.0}, {2: 2.0, 3: 4.0, 4: 0.0}, "higher")
    assert mixed.a_better == pytest.approx(3 / 6)  # pairs A > B: (1>0), (3>2), (3>0) of 6


def test_identical_runs_give_p_one_and_too_few_seeds_give_no_test():
    same = {0: 1.0, 1: 2.0, 2: 3.0}
    assert stats.compare(same, dict(same), "lower").p == 1.0
    assert stats.compare({0: 1.0}, {0: 2.0}, "lower") is None


def test_holm_adjustment_by_hand():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_verdict_says_when_the_seeds_cannot_reach_significance():
    a, b = {s: float(s) for s in range(5)}, {s: s + 1.0 for s in range(5)}
    c = stats.compare(a, b, "lower")
    text = stats.verdict("gmn", "gan", "MMD²", c, min(1.0, c.p * 12), tests=12)
    assert text.startswith("cannot be significant") and "n = 5 seeds" in text
    big = stats.compare({s: float(s) for s in range(12)}, {s: s + 1.0 for s in range(12)}, "lower")
    assert stats.verdict("gmn", "gan", "MMD²", big, big.p, 1).startswith("gmn is better than gan on MMD²")


def _runs(values: dict, status=None) -> pd.DataFrame:
    rows = []
    for variant, per_seed in values.items():
        for seed, v in enumerate(per_seed):
            rows.append({"dataset": "ring8 · quick", "variant": variant, "method": variant, "seed": seed,
                         "status": (status or {}).get((variant, seed), "ok"), "mmd2": v})
    df = pd.DataFrame(rows)
    for k in ("fid", "kid", "precision", "recall", "density", "coverage", "classifier_score", "digits_covered",
              "kl_digits", "modes_covered", "high_quality_pct", "kl_modes", "energy", "train_seconds",
              "steps_per_second"):
        df[k] = np.nan
    return df


def test_summary_against_numpy_and_diverged_runs_are_counted_not_averaged():
    runs = _runs({"gmn": [0.1, 0.2, 0.4, 1e29], "gan": [0.5, 0.6, 0.7, 0.9]}, status={("gmn", 3): "diverged"})
    summary = summary_table(runs).set_index("variant")
    x = np.array([0.1, 0.2, 0.4])
    half = sps.t.ppf(0.975, 2) * x.std(ddof=1) / math.sqrt(3)
    assert summary.loc["gmn", "seeds"] == 3 and summary.loc["gmn", "n_diverged"] == 1
    assert summary.loc["gmn", "mmd2"] == pytest.approx(x.mean())
    assert summary.loc["gmn", "mmd2_hi"] - summary.loc["gmn", "mmd2"] == pytest.approx(half)
    assert summary.loc["gmn", "mmd2_std"] == pytest.approx(x.std(ddof=1))
    comparison = comparison_table(runs)
    # both ran seeds 0-3; gmn's seed 3 diverged: the 3 seeds both finished are compared in pairs
    assert len(comparison) == 1 and comparison["n_a"].iloc[0] == comparison["n_b"].iloc[0] == 3
    assert comparison["test"].iloc[0].startswith("Wilcoxon")
    assert comparison["a"].iloc[0] == "gmn" and comparison["diff"].iloc[0] == pytest.approx(-np.mean([0.4, 0.4, 0.3]))


def test_stability_redoes_each_test_over_the_last_third_and_counts_where_the_verdict_held():
    """gan overtakes gmn on MMD² only at the last two of the four evaluations in the last third
    (steps 21-30 of 30): the final verdict "gan better" holds at 2 of 4; a pair that never changes holds at 4 of 4."""
    from bench.report import late_snapshots, with_stability
    rows = []
    for seed in range(8):  # 8 paired seeds: Wilcoxon's smallest p × 3 tests is under 5 %
        for step in range(0, 31, 3):
            rows += [{"dataset": "ring8 · quick", "variant": "gmn", "seed": seed, "step": step, "mmd2": 0.1 + seed / 1e3},
                     {"dataset": "ring8 · quick", "variant": "gan", "seed": seed, "step": step,
                      "mmd2": (0.05 if step >= 27 else 0.5) + seed / 1e3},
                     {"dataset": "ring8 · quick", "variant": "nsgan", "seed": seed, "step": step, "mmd2": 0.9 + seed / 1e3}]
    history = pd.DataFrame(rows)
    last = history[history["step"] == 30]
    runs = _runs({v: last[last["variant"] == v]["mmd2"].tolist() for v in ("gmn", "gan", "nsgan")})
    snapshots = late_snapshots(history, runs)
    assert [step for step, _ in snapshots["ring8 · quick"].pairs] == [21, 24, 27, 30]
    comparison = with_stability(comparison_table(runs), snapshots).set_index(["a", "b"])
    flipped, steady = comparison.loc[("gmn", "gan")], comparison.loc[("gmn", "nsgan")]
    assert flipped["significant"] and flipped["p_a_beats_b"] < 0.5  # gan better at the end
    assert (flipped["holds"], flipped["holds_of"]) == (2, 4) and "the same verdict at 2 of 4" in flipped["verdict"]
    assert (steady["holds"], steady["holds_of"]) == (4, 4)
    assert with_stability(comparison_table(runs), {})["holds"].isna().all()  # no histories: nothing claimed


def test_cell_trend_judges_the_seed_mean_not_each_seed():
    """Two seeds drifting in opposite directions are each unconverged, but their mean is flat: "none".
    A cell whose every seed rises 30 → 60 over the last third says by how much its mean moved."""
    from bench.report import cell_trends
    rows = []
    for step in range(0, 31, 3):
        late = max(0, step - 20) / 10  # 0 until step 20, then up to 1 at step 30
        rows += [{"dataset": "t", "variant": "flat", "seed": 0, "step": step, "high_quality_pct": 50 + 20 * late},
                 {"dataset": "t", "variant": "flat", "seed": 1, "step": step, "high_quality_pct": 50 - 20 * late},
                 {"dataset": "t", "variant": "rising", "seed": 0, "step": step, "high_quality_pct": 30 + 30 * late},
                 {"dataset": "t", "variant": "rising", "seed": 1, "step": step, "high_quality_pct": 30 + 30 * late}]
    trends = cell_trends(pd.DataFrame(rows), {"t": ("high_quality_pct",)})
    assert trends["t", "flat"] == "none"
    # steps 21-30: 33, 42, 51, 60 → least-squares drift 27 over a mean level of 46.5
    assert trends["t", "rising"] == f"HQ % +{27 / 46.5:.0%}"


def _history(values: dict, steps=range(0, 31, 3)) -> pd.DataFrame:
    """{(variant, seed): f(step) or None} -> a history frame of one table, mmd2 only."""
    return pd.DataFrame([{"dataset": "ring8 · quick", "variant": v, "seed": seed, "step": step, "mmd2": f(step)}
                         for (v, seed), f in values.items() for step in steps])


def test_stability_keeps_the_final_pairing_carries_stopped_runs_and_skips_what_it_cannot_judge():
    from bench.report import late_snapshots, with_stability
    values = {("gmn", s): (lambda step, s=s: 0.1 + s / 1e3) for s in range(8)}
    values.update({("gan", s): (lambda step, s=s: 0.5 + s / 1e3) for s in range(8)})
    history = _history(values)
    runs = _runs({"gmn": [0.1 + s / 1e3 for s in range(8)], "gan": [0.5 + s / 1e3 for s in range(8)]},
                 status={("gan", 7): "diverged"})
    history = history[~((history["variant"] == "gan") & (history["seed"] == 7))]  # a diverged run: no history row
    final = comparison_table(runs)
    for _, snap in late_snapshots(history, runs)["ring8 · quick"].pairs:  # the same pairs of seeds as the final test
        late = comparison_table(snap)
        assert (late["test"].iloc[0], late["n_a"].iloc[0]) == (final["test"].iloc[0], final["n_a"].iloc[0]) == (
            "Wilcoxon signed-rank, paired by seed", 7)

    # gmn seed 0 stopped early (--patience) at step 27: each run is read over its own last third, the
    # stopped one at steps 18-27, the others at the nearest matching points of steps 20-30
    stopped = history[~((history["variant"] == "gmn") & (history["seed"] == 0) & (history["step"] > 27))]
    stopped = stopped.assign(mmd2=stopped["mmd2"] + stopped["step"] / 1e4)  # values that say where they were read
    snaps = late_snapshots(stopped, runs)["ring8 · quick"]
    assert [step for step, _ in snaps.pairs] == [18, 21, 24, 27] and snaps.late.own_ends
    read = lambda snap, variant, seed: snap.loc[(snap["variant"] == variant) & (snap["seed"] == seed), "mmd2"].item()
    assert [read(snap, "gmn", 0) for _, snap in snaps.pairs] == pytest.approx([0.1 + t / 1e4 for t in (18, 21, 24, 27)])
    assert ([read(snap, "gmn", 1) for _, snap in snaps.pairs]
            == pytest.approx([0.101 + t / 1e4 for t in (21, 24, 27, 30)]))

    # wall-clock runs evaluate at steps of their own; 2 evaluations in the last third are too few
    shifted = pd.concat([history[history["variant"] == "gmn"],
                         history[history["variant"] == "gan"].assign(step=lambda h: h["step"] + 1)])
    assert late_snapshots(shifted, runs) == {} and late_snapshots(_history(values, steps=[0, 15, 30]), runs) == {}
    assert with_stability(final, {})["holds"].isna().all()


def test_cell_trend_says_missing_and_gives_absolute_drifts_near_zero():
    from bench.report import cell_trends
    near_zero = {("gmn", s): (lambda step, s=s: (1e-4 if s else -1e-4) * (1 + (step > 20) * step / 30)) for s in range(2)}
    with_gap = {("gan", s): (lambda step, s=s: None if (s, step) == (1, 24) else 0.5) for s in range(2)}
    trends = cell_trends(_history({**near_zero, **with_gap}), {"ring8 · quick": ("mmd2",)})
    assert trends["ring8 · quick", "gan"] == "MMD² missing"  # one seed's gap: the mean is not the other seed's
    assert trends["ring8 · quick", "gmn"] == "none"  # ±1e-4 around 0: the mean is 0 throughout
    # crossing 0 (−0.0006 … +0.0006 over the last third) with noise larger than half its level: a share
    # of a level of 0.00067 would say +228%; the absolute drift is 0.00152
    zig = {21: -6e-4, 24: -7.3333e-4, 27: 7.3333e-4, 30: 6e-4}
    trends = cell_trends(_history({("nsgan", 0): lambda step: zig.get(step, 0.0)}), {"ring8 · quick": ("mmd2",)})
    assert trends["ring8 · quick", "nsgan"] == "MMD² +0.0015"


def test_cell_trend_floors_a_mean_at_the_resolution_over_root_seeds():
    """Four seeds' MMD² all falling by 0.0009 over the last third, near 0: beyond 2 × 0.0004 / √4, so
    the mean still moves; within 2 × 0.001 / √4 it does not; without a resolution it moves."""
    from bench.report import cell_trends
    falling = {("gmn", s): (lambda step, s=s: 0.002 - 0.0009 * max(0, step - 20) / 10 + s * 1e-5) for s in range(4)}
    history, tracked = _history(falling), {"ring8 · quick": ("mmd2",)}
    assert cell_trends(history, tracked)["ring8 · quick", "gmn"] != "none"
    assert cell_trends(history, tracked, None, {"ring8 · quick": lambda: {"mmd2": 0.0004}})["ring8 · quick", "gmn"] != "none"
    assert cell_trends(history, tracked, None, {"ring8 · quick": lambda: {"mmd2": 0.001}})["ring8 · quick", "gmn"] == "none"



def test_runs_that_stopped_apart_are_each_read_over_their_own_last_third():
    """A run of 30 steps and one of 60, valued by their step: the late rows read the first at its last
    third's evaluations (21-30) and the second at the same fractions of its own (42-60)."""
    history = pd.concat([_history({("gmn", 0): lambda step: float(step)}),
                         _history({("gmn", 1): lambda step: float(step)}, steps=range(0, 61, 3))])
    grid = stats.scaled_grid(history, "step", ["variant", "seed"], "mmd2", [21, 24, 27, 30])
    assert grid[("gmn", 0)].tolist() == [21, 24, 27, 30] and grid[("gmn", 1)].tolist() == [42, 48, 54, 60]
    # the second run lacks its evaluations at 39-45: read at the nearest point still inside its last third
    gappy = history[~((history["seed"] == 1) & history["step"].between(39, 45))]
    grid = stats.scaled_grid(gappy, "step", ["variant", "seed"], "mmd2", [21, 24, 27, 30], start=2 / 3)
    assert grid[("gmn", 1)].tolist() == [48, 48, 54, 60]


def test_stability_of_runs_that_stopped_apart_reads_each_where_it_stopped():
    """gan's runs stop at step 30 and beat gmn only from step 27 on; gmn's run on to 60. Holding gan
    at its last value through gmn's last third (steps 42-60) would repeat the final verdict 7 times;
    read over its own last third, gan beats gmn at 2 of 4 points."""
    from bench.report import late_snapshots, with_stability
    values = {("gmn", s): (lambda step, s=s: 0.1 + s / 1e3) for s in range(8)}
    gan = {("gan", s): (lambda step, s=s: (0.05 if step >= 27 else 0.5) + s / 1e3) for s in range(8)}
    history = pd.concat([_history(values, steps=range(0, 61, 3)), _history(gan)])
    runs = _runs({"gmn": [0.1 + s / 1e3 for s in range(8)], "gan": [0.05 + s / 1e3 for s in range(8)]})
    comparison = with_stability(comparison_table(runs), late_snapshots(history, runs)).iloc[0]
    assert comparison["significant"] and (comparison["holds"], comparison["holds_of"]) == (2, 4)
    assert ("[the same verdict at 2 of 4 matching points of each run's own last third (the runs stopped at "
            "30–60 steps)]" in comparison["verdict"])


def test_cell_trend_of_runs_that_stopped_apart_is_the_mean_of_their_own_trends():
    """Three seeds stopping at 30, 60 and 30 steps rise by 9, 9 and 12 over their own last third (levels
    55.5, 55.5, 57.3): the cell moves by +18 %; seeds that move by +9, −9 and +12 leave it within the
    seeds' scatter: "none"."""
    from bench.report import cell_trends

    def ramp(end, gain):  # flat at 50, then linear over the last third (steps 20-30 or 40-60)
        return lambda step: 50 + gain * max(0, step - 2 * end / 3) * 3 / end

    rows = []
    for variant, gains in (("rising", (10, 10, 40 / 3)), ("mixed", (10, -10, 40 / 3))):
        for seed, (end, gain) in enumerate(zip((30, 60, 30), gains)):
            f = ramp(end, gain)
            rows += [{"dataset": "t", "variant": variant, "seed": seed, "step": step, "high_quality_pct": f(step)}
                     for step in range(0, end + 1, 3)]
    trends = cell_trends(pd.DataFrame(rows), {"t": ("high_quality_pct",)})
    # own windows: 21-30 (4 points, drift 9 or 12), 42-60 (7 points, drift 9); mean drift 10 ± SE 1
    assert trends["t", "rising"] == f"HQ % +{10 / ((55.5 + 55.5 + 57 + 1 / 3) / 3):.0%}" == "HQ % +18%"
    assert trends["t", "mixed"] == "none"  # mean drift 4 ± SE 6.6

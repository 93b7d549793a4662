"""Statistics over seeds: intervals of means and rank tests between variants (scipy.stats,
statsmodels), with effect sizes and the power the number of seeds allows.

The seed is the unit of replication. Runs of two variants with the same seeds share their data,
noise and evaluation streams, so they are compared paired by seed (Wilcoxon signed-rank);
otherwise Mann-Whitney U. p-values of one table are corrected together (Holm-Bonferroni).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

LEVEL = 0.95
ALPHA = 1 - LEVEL


def mean_ci(values, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval over seeds; (mean, nan, nan) for fewer than 2 values."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    sem = float(stats.sem(x))
    if sem == 0:
        return mean, mean, mean
    lo, hi = stats.t.interval(level, len(x) - 1, loc=mean, scale=sem)
    return mean, float(lo), float(hi)


def held_grid(frame: pd.DataFrame, index: str, columns: list[str], metric: str) -> pd.DataFrame:
    """``metric`` of several histories (the rows of ``frame``) as ``index`` × ``columns``; a history
    stopped early (``--patience``) holds its last evaluation at the later ``index`` values, as the final
    tables hold it, so a mean over a row is over every history, not over those still running. Rows that
    share a cell are averaged."""
    values = frame.assign(**{metric: pd.to_numeric(frame[metric], errors="coerce")})
    wide = values.groupby([index, *columns])[metric].mean().unstack(columns).sort_index()
    last = frame.groupby(columns)[index].max()
    for col in wide.columns:
        wide.loc[wide.index > last[col], col] = wide.at[last[col], col]
    return wide


def scaled_grid(frame: pd.DataFrame, index: str, columns: list[str], metric: str, labels: list,
                start: float = 0.0) -> pd.DataFrame:
    """``metric`` of several histories that end at different ``index`` values (``--patience``), each
    read at the same fractions of its own length: row i holds every history's value at its point
    nearest ``labels[i] / labels[-1]`` of its last ``index`` (``labels``: the points of the history
    that ends first), among its points at or after ``start`` × its last.
    Where :func:`held_grid` would set one history's final value beside another's of long ago, this
    sets their last stretches side by side. Rows that share a cell are averaged."""
    values = frame.assign(**{metric: pd.to_numeric(frame[metric], errors="coerce")})
    per_point = values.groupby([*columns, index])[metric].mean()
    fractions = np.asarray(labels, dtype=float) / labels[-1]
    read = {}
    for key, history in per_point.groupby(level=list(range(len(columns)))):
        points = history.index.get_level_values(index).to_numpy(dtype=float)
        inside = points >= start * points[-1]
        points, history = points[inside], history.to_numpy()[inside]
        nearest = np.abs(points[None, :] - fractions[:, None] * points[-1]).argmin(axis=1)
        read[key] = history[nearest]
    wide = pd.DataFrame(read, index=pd.Index(labels, name=index))
    wide.columns = wide.columns.set_names(columns)
    return wide.sort_index(axis=1)


def format_p(p: float) -> str:
    """A p-value in 2 significant digits, 3 where 2 would show it as 0.05 or across it (0.0498, not 0.05)."""
    text = f"{p:.2g}"
    shown = float(text)
    return f"{p:.3g}" if math.isclose(shown, ALPHA) or (p <= ALPHA) != (shown <= ALPHA) else text


def mean_se(values) -> tuple[float, float, int]:
    """Mean, standard error (sample std ÷ √n; nan for fewer than 2 values) and n of the finite values."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, 0
    return float(x.mean()), float(stats.sem(x)) if len(x) > 1 else math.nan, len(x)


@dataclass
class Comparison:
    test: str            # "Wilcoxon signed-rank (paired by seed)" or "Mann-Whitney U"
    n_a: int
    n_b: int
    diff: float          # mean(A) − mean(B)
    diff_lo: float       # its 95 % interval (paired: of the per-seed differences; else Welch)
    diff_hi: float
    p: float
    p_min: float         # the smallest p this test can give with these n (exact null distribution)
    a_better: float      # P(a run of A beats a run of B): common-language effect size, ties count ½
    n_informative: int   # paired: seeds whose two runs differ (ties carry no signal); else min(n_a, n_b)


def _better(a, b, better: str):
    return (a < b) if better == "lower" else (a > b)


def compare(a: dict, b: dict, better: str, paired: bool | None = None) -> Comparison | None:
    """A against B, each {seed: value} of one metric (finished runs only); None if either has
    fewer than 2 values. ``better`` is 'lower' or 'higher'. ``paired``: the variants ran on the
    same seeds (then the seeds both finished are compared in pairs); default: the seeds match."""
    a = {s: v for s, v in a.items() if v is not None and math.isfinite(v)}
    b = {s: v for s, v in b.items() if v is not None and math.isfinite(v)}
    if paired is None:
        paired = set(a) == set(b)
    if paired:
        common = set(a) & set(b)
        a, b = {s: a[s] for s in common}, {s: b[s] for s in common}
    if len(a) < 2 or len(b) < 2:
        return None
    if paired:
        seeds = sorted(a)
        x, y = np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])
        d = x - y
        nonzero = int((d != 0).sum())
        p = 1.0 if nonzero == 0 else float(stats.wilcoxon(x, y, alternative="two-sided").pvalue)
        _, lo, hi = mean_ci(d)
        wins = float(np.mean(np.where(d == 0, 0.5, _better(x, y, better))))
        return Comparison("Wilcoxon signed-rank, paired by seed", len(x), len(y), float(d.mean()), lo, hi, p,
                          2.0 / 2 ** max(nonzero, 1), wins, nonzero)
    x, y = np.array(list(a.values())), np.array(list(b.values()))
    res = stats.mannwhitneyu(x, y, alternative="two-sided")
    u_greater = float(res.statistic) / (len(x) * len(y))  # P(A > B) + ½ P(A = B)
    wins = u_greater if better == "higher" else 1 - u_greater
    ci = stats.ttest_ind(x, y, equal_var=False).confidence_interval(LEVEL) \
        if x.std() > 0 or y.std() > 0 else None
    lo, hi = (float(ci.low), float(ci.high)) if ci is not None else (float(x.mean() - y.mean()),) * 2
    return Comparison("Mann-Whitney U", len(x), len(y), float(x.mean() - y.mean()), lo, hi, float(res.pvalue),
                      2.0 / math.comb(len(x) + len(y), len(x)), wins, min(len(x), len(y)))


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (statsmodels), in the given order."""
    if not pvalues:
        return []
    return [float(p) for p in multipletests(pvalues, alpha=ALPHA, method="holm")[1]]


def verdict(name_a: str, name_b: str, metric: str, c: Comparison, p_adjusted: float, tests: int) -> str:
    """One sentence a reader can quote."""
    better_name = name_a if c.a_better > 0.5 else name_b
    worse_name = name_b if better_name == name_a else name_a
    share = c.a_better if better_name == name_a else 1 - c.a_better
    effect = (f"{metric}: {name_a} − {name_b} = {c.diff:.3g} [{c.diff_lo:.3g}, {c.diff_hi:.3g}]; "
              f"P({better_name} beats {worse_name}) = {share:.2f}; {c.test.split(',')[0]} p = {c.p:.3g}, "
              f"Holm p = {p_adjusted:.3g}")
    if p_adjusted <= ALPHA:
        return f"{better_name} is better than {worse_name} on {metric}, significant at 5 % ({effect})"
    if min(1.0, c.p_min * tests) > ALPHA:
        seeds = (f"{c.n_informative} of {c.n_a} paired seeds differing (ties carry no signal)"
                 if c.test.startswith("Wilcoxon") and c.n_informative < c.n_a else f"n = {min(c.n_a, c.n_b)} seeds")
        return (f"cannot be significant: with {seeds} and {tests} tests the smallest possible Holm p is "
                f"{min(1.0, c.p_min * tests):.2g} > 0.05 — run more seeds ({effect})")
    if c.a_better == 0.5:
        return f"no difference seen ({effect})"
    return f"no significant difference; {better_name} ahead in this sample ({effect})"


@dataclass
class RankTest:
    test: str            # "Friedman (seeds as blocks)", "Kruskal-Wallis" or the pairwise test of 2 variants
    mean_ranks: dict     # variant -> mean rank over seeds, 1 = best (ties share the mean of their ranks)
    statistic: float
    p: float
    n: int               # blocks (seeds every variant finished) or, unpaired, finished runs


def rank_test(values: dict[str, dict], better: str) -> RankTest | None:
    """Every variant of one table on one metric ranked together, with an omnibus test of "all
    variants alike". ``values``: {variant: {seed: value}} of finished runs. Variants that ran the
    same seeds are ranked within each seed (the seed is a block: same data, noise and evaluation
    streams) and tested by Friedman; otherwise Kruskal-Wallis on all runs, each variant's mean rank
    then being 1 + Σ P(another variant's run beats this one's), the unpaired form of the same
    number. Two variants: the pairwise test (:func:`compare`). None below 2 variants of ≥ 2 runs."""
    clean = {v: {s: x for s, x in d.items() if x is not None and math.isfinite(x)} for v, d in values.items()}
    clean = {v: d for v, d in clean.items() if len(d) >= 2}
    if len(clean) < 2:
        return None
    names = list(clean)
    sign = -1.0 if better == "higher" else 1.0  # rank 1 = best
    if len({frozenset(d) for d in clean.values()}) == 1:
        seeds = sorted(next(iter(clean.values())))
        table = sign * np.array([[clean[v][s] for v in names] for s in seeds])  # seeds × variants
        ranks = stats.rankdata(table, axis=1).mean(axis=0)
        if len(names) == 2:
            c = compare(clean[names[0]], clean[names[1]], better, paired=True)
            return RankTest(c.test, dict(zip(names, map(float, ranks))), math.nan, c.p, len(seeds))
        if np.all(table == table[:, :1]):  # every seed a tie: nothing to rank
            return RankTest("Friedman (seeds as blocks)", dict(zip(names, map(float, ranks))), 0.0, 1.0, len(seeds))
        res = stats.friedmanchisquare(*table.T)
        return RankTest("Friedman (seeds as blocks)", dict(zip(names, map(float, ranks))), float(res.statistic),
                        float(res.pvalue), len(seeds))
    groups = [sign * np.array(list(clean[v].values())) for v in names]
    def p_beats(x, y):  # P(a run of x beats a run of y), ties counted ½ (x, y signed: lower is better)
        return float(np.mean((x[:, None] < y[None, :]) + 0.5 * (x[:, None] == y[None, :])))
    ranks = {v: 1 + sum(p_beats(other, g) for j, other in enumerate(groups) if j != i)
             for i, (v, g) in enumerate(zip(names, groups))}
    if len(names) == 2:
        c = compare(clean[names[0]], clean[names[1]], better, paired=False)
        return RankTest(c.test, ranks, math.nan, c.p, sum(map(len, groups)))
    pooled = np.concatenate(groups)
    if np.all(pooled == pooled[0]):
        return RankTest("Kruskal-Wallis", ranks, 0.0, 1.0, len(pooled))
    res = stats.kruskal(*groups)
    return RankTest("Kruskal-Wallis", ranks, float(res.statistic), float(res.pvalue), len(pooled))

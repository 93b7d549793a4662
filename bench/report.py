"""Tables and plots, always rebuilt from the stored records (``python -m bench report``)."""
from __future__ import annotations

import base64
import dataclasses
import functools
import html
import itertools
import math
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from bench import convergence, datasets, figures, files, published, stats, store
from bench import spec as spec_lib
from bench.datasets import DATASETS
from bench.errors import BenchError
from bench.metrics import METRICS
from bench.records import dataset_label, setting
from bench.settings import RUN_SETTINGS
from methods import METHODS

CI_NOTE = ("Cells: mean ± half-width of the 95 % Student-t confidence interval over finished seeds "
           "(diverged and failed runs are counted, not averaged). converged: finished seeds whose tracked metrics "
           "had stopped moving when training ended (" + convergence.RULE + "; bench/convergence.py); "
           "mean still moving: the same rule applied to the mean over seeds at each evaluation (the resolution "
           "divided by √seeds), the tracked metrics it judges still moving and their drift over the last third as "
           "a share of their level. "
           "A quick profile is a smoke-test budget. hparams=shared: every method the same "
           "optimiser, learning rate, batch and generator steps; hparams=recommended: each method its paper's "
           "optimiser, learning rates, batch and D steps, the same generator steps.")


def _order(record: dict) -> tuple:
    """Datasets and methods in registry order (unknown names last), then variant and seed."""
    s = record["spec"]
    rank = lambda names, n: names.index(n) if n in names else len(names)
    return (rank(DATASETS.names(), s["dataset"]), record["status"] != "reference",
            rank(METHODS.names(), s["method"]), record["variant"], s["seed"])


def _shown(settings: dict) -> dict:
    """Run settings as a name shows them: an unset optional one by its word (lr_schedule=constant); a
    setting that is None for want of a value (steps under a wall-clock budget, which says it) left out."""
    words = {k: RUN_SETTINGS[k].unset if k in RUN_SETTINGS else "" for k in settings}
    return {k: (v if v is not None else words[k]) for k, v in settings.items() if v is not None or words[k]}


def _row_names(records: list[dict]) -> tuple[dict, dict]:
    """Row names per variant and a heading note per dataset table: run settings that differ from
    the profile's and vary between the table's variants join the name (gan[lr=0.0002]); those
    all variants share go into the heading (steps=500)."""
    names, notes = {}, {}
    by_table: dict[str, dict] = {}
    for r in records:
        by_table.setdefault(dataset_label(r), {})[r["variant_id"]] = r
    for table, variants in by_table.items():
        overrides = {vid: dict(r["spec"].get("run_overrides") or {}) for vid, r in variants.items()
                     if r["status"] != "reference"}
        keys = sorted({k for o in overrides.values() for k in o})
        varying = [k for k in keys if len({repr(o.get(k)) for o in overrides.values()}) > 1]
        common = {k: v for k, v in next(iter(overrides.values()), {}).items() if k not in varying}
        some = next(iter(variants.values()))["spec"]
        policy = some.get("hparams", "shared")
        smoke = (some.get("profile") == "quick" and not {"steps", "budget_seconds"} & set(common)
                 and not any({"steps", "budget_seconds"} & set(o) for o in overrides.values()))
        notes[table] = ", ".join(p for p in ("the quick profile: a smoke-test budget" if smoke else "",
                                             f"hparams={policy}", spec_lib.describe_overrides(_shown(common))) if p)
        for vid, r in variants.items():
            name = r["variant"]
            extra = _shown({k: overrides.get(vid, {}).get(k, setting(r["spec"], k)) for k in varying})
            if extra and not r["spec"].get("label"):
                inner = name[len(r["spec"]["method"]) + 1:-1] if name.endswith("]") else ""
                both = ",".join(p for p in (inner, spec_lib.describe_overrides(extra)) if p)
                name = f"{r['spec']['method']}[{both}]"
            names[vid] = name
    return names, notes


def converged(record: dict):
    """The record's convergence verdict (True, False, None: cannot be judged), from its history by
    :func:`bench.convergence.verdict` with its dataset's tracked metrics; None for a failed run or
    a reference row."""
    if record["status"] not in ("ok", "diverged"):
        return None
    dataset = record["spec"]["dataset"]
    tracked = DATASETS.get(dataset).tracked if dataset in DATASETS.names() else ()
    return convergence.verdict(record["history"], tracked, record["status"], resolution_of(record))["converged"]


def resolution_of(record: dict):
    """A function giving the metric resolutions of the record's dataset and options (the convergence
    rule's floor, :func:`bench.datasets.resolution`), measured only if called."""
    return functools.partial(datasets.resolution, record["spec"]["dataset"], record["spec"].get("dataset_options"))


def runs_table(records: list[dict]) -> pd.DataFrame:
    """One row per run: its variant, seed, status and final metrics."""
    names, _ = _row_names(records)
    rows = []
    for r in records:
        s = r["spec"]
        row = {"dataset": dataset_label(r), "variant": names[r["variant_id"]], "method": s["method"],
               "variant_id": r["variant_id"], "run_id": r["run_id"], "seed": s["seed"], "status": r["status"],
               "steps": r.get("steps_done"), "budget": s.get("steps"), "budget_seconds": s.get("budget_seconds"),
               "device": r["environment"].get("device"), "converged": converged(r)}
        row.update({k: r["final"].get(k) for k in METRICS})
        rows.append(row)
    df = pd.DataFrame(rows)
    return df.astype({k: float for k in METRICS if k in df}) if rows else df


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, variant): finished seeds, diverged and failed runs, and for each metric the
    mean, std and 95 % interval over the finished seeds only."""
    metrics = [k for k in METRICS if runs[k].notna().any()]
    rows = []
    if "converged" not in runs:  # a table of runs made without histories
        runs = runs.assign(converged=None)
    for (dataset, variant), g in runs.groupby(["dataset", "variant"], sort=False):
        ok = g[g["status"].isin(["ok", "reference"])]
        row = {"dataset": dataset, "variant": variant, "method": g["method"].iloc[0], "seeds": len(ok),
               "n_diverged": int((g["status"] == "diverged").sum()), "n_failed": int((g["status"] == "error").sum()),
               "reference": bool((g["status"] == "reference").all()),
               "converged": int((ok["converged"] == True).sum()),  # noqa: E712 (None is neither)
               "judged": int(ok["converged"].notna().sum())}
        for k in metrics:
            mean, lo, hi = stats.mean_ci(ok[k].tolist())
            row.update({k: mean, f"{k}_std": float(ok[k].std()) if ok[k].notna().sum() > 1 else math.nan,
                        f"{k}_lo": lo, f"{k}_hi": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def aligned(history: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One metric of one table's finished runs as steps × (variant, seed); a run stopped early
    (``--patience``) holds its last evaluation at the later steps, as the final table holds it."""
    return stats.held_grid(history, "step", ["variant", "seed"], metric)


OWN_THIRDS = "matching points of each run's own last third"  # the late points of runs that stopped apart


class Late(NamedTuple):
    """The late evaluations of one table that its stability and mean trends read."""
    frames: dict[str, pd.DataFrame]  # per metric: evaluation × (variant, seed), rows named by step
    steps: str                       # "steps 20,000–30,000", or where runs stopped apart, "... stopped at ..."
    own_ends: bool = False           # the runs stopped at different steps: each read over its own last third


def late_frames(history: pd.DataFrame) -> dict[str, Late]:
    """Per table, the evaluations of the last third of training, each metric as evaluation ×
    (variant, seed); only tables whose step-budget runs share one grid of evaluations and hold at
    least convergence.MIN_POINTS of them in their last third (wall-clock runs share no steps).
    Runs that stopped at different steps (``--patience``) are each read over their own last third, at
    the points nearest the fractions of it where the shortest run's evaluations lie (rows named by its
    steps; :func:`bench.stats.scaled_grid`): holding a run that stopped at 26,000 steps at its last
    value through the 64,000–96,000 of the longest would make every late test repeat the final one."""
    out = {}
    if history.empty or "step" not in history:
        return out
    metrics = [k for k in METRICS if k in history]
    for dataset, g in history.groupby("dataset", sort=False):
        per_run = [sorted(set(r["step"])) for _, r in g.groupby(["variant", "seed"])]
        longest, shortest = max(per_run, key=max), min(per_run, key=max)
        if any(not set(steps) <= set(longest) for steps in per_run):  # not one grid: wall-clock runs
            continue
        last = shortest[-1]
        steps = [x for x in shortest if x >= convergence.window_start(last)]
        if last <= 0 or len(steps) < convergence.MIN_POINTS:
            continue
        if last == longest[-1]:
            out[dataset] = Late({k: aligned(g, k).loc[steps] for k in metrics},
                                f"steps {int(steps[0]):,}–{int(steps[-1]):,}")
        else:
            start = convergence.window_start(1)  # each run read within its own last third
            out[dataset] = Late({k: stats.scaled_grid(g, "step", ["variant", "seed"], k, steps, start)
                                 for k in metrics},
                                f"the runs stopped at {int(last):,}–{int(longest[-1]):,} steps", own_ends=True)
    return out


def cell_trends(history: pd.DataFrame, tracked: dict, late: dict | None = None,
                resolutions: dict | None = None) -> dict[tuple[str, str], str]:
    """Per (table, variant): what the seed mean still moved over the last third of training, by the
    convergence rule applied to the mean over seeds at each evaluation of :func:`late_frames` (an
    evaluation counts where every finished seed has the metric), or, for runs that stopped at
    different steps, to the mean of each run's own trend (:func:`bench.convergence.mean_trend`):
    e.g. "MMD² −12%" (the drift as a share of the level; in absolute terms when the level is within
    noise of 0), "none", or "–" when it cannot be judged (wall-clock budgets: seeds share no steps).
    The per-seed
    verdicts (converged n/N) ask whether each run settled; this asks whether the cell's average,
    which the comparisons read, did. ``late``: :func:`late_frames` of ``history``, if made already.
    ``resolutions``: per table, a function giving its dataset's metric resolutions (the rule's floor,
    :func:`bench.datasets.resolution`); a mean over n seeds gets 1/√n of it, a lower bound on how
    much a mean of n scores of the data itself would scatter."""
    out = {}
    if history.empty or "step" not in history:
        return out
    late = late_frames(history) if late is None else late
    for dataset, variant in history[["dataset", "variant"]].drop_duplicates().itertuples(index=False):
        if dataset not in late:
            out[dataset, variant] = "–"
            continue
        floor = (resolutions or {}).get(dataset)
        if late[dataset].own_ends:
            trends = _mean_of_own_trends(history[(history["dataset"] == dataset) & (history["variant"] == variant)],
                                         tracked.get(dataset, ()), floor)
        else:
            trends = _trend_of_mean(late[dataset].frames, variant, tracked.get(dataset, ()), floor)
        if trends is None:
            out[dataset, variant] = "–"
            continue
        moving = []
        for k, m in trends.items():
            if m["converged"]:
                continue
            if "drift" not in m:
                moving.append(f"{METRICS[k][0]} missing")
            elif m["level"] > NOISE_LEVELS * m["noise"]:
                moving.append(f"{METRICS[k][0]} {m['drift'] / m['level']:+.0%}".replace("-", "−"))
            else:  # a level within noise of 0 (MMD² near 0 can be negative): a share would mislead
                moving.append(f"{METRICS[k][0]} {m['drift']:+.2g}".replace("-", "−"))
        out[dataset, variant] = ", ".join(moving) or "none"
    return out


NOISE_LEVELS = 2  # a level within this many residual stds of 0 is shown as an absolute drift


def _trend_of_mean(frames: dict, variant: str, tracked, floor) -> dict | None:
    """Per tracked metric, the convergence rule's evidence for the mean over seeds at each late
    evaluation (runs on one grid of steps); None when it cannot be judged."""
    means = {k: frames[k][variant].mean(axis=1, skipna=False) for k in tracked
             if k in frames and frames[k][variant].notna().any().any()}
    mean_history = [{"step": step, **{k: None if pd.isna(m[step]) else float(m[step]) for k, m in means.items()}}
                    for step in frames[next(iter(frames))].index]
    seeds = frames[next(iter(frames))][variant].shape[1]
    v = convergence.verdict(mean_history, list(means), "ok", floor and (
        lambda: {k: r / math.sqrt(seeds) for k, r in floor().items()}))
    return None if v["converged"] is None else v["metrics"]


def _mean_of_own_trends(history: pd.DataFrame, tracked, floor) -> dict | None:
    """Per tracked metric, :func:`bench.convergence.mean_trend` of one cell's runs, each over its own
    last third (runs that stopped at different steps); None when it cannot be judged."""
    columns = ["step", *(k for k in tracked if k in history and history[k].notna().any())]  # metrics they had
    own = [convergence.verdict(r[columns].sort_values("step").astype(object).where(r[columns].notna(), None)
                               .to_dict("records"), columns[1:])["metrics"] for _, r in history.groupby("seed")]
    out = {k: convergence.mean_trend([m.get(k) or {"converged": False} for m in own],
                                     floor and (lambda k=k: floor().get(k))) for k in columns[1:]}
    return None if not out or any(m["converged"] is None for m in out.values()) else out


def comparison_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every pair of variants of a dataset on every main metric: effect, test, Holm-corrected p
    (over the dataset's whole table) and a verdict in words. Diverged and failed runs excluded."""
    rows = []
    if "converged" not in runs:  # a table of runs made without histories
        runs = runs.assign(converged=None)
    seeds_run = runs.groupby(["dataset", "variant"])["seed"].agg(frozenset)
    unconverged = runs[(runs["status"] == "ok") & (runs["converged"] == False)].groupby(  # noqa: E712
        ["dataset", "variant"])["seed"].agg(len)
    finished = runs[runs["status"] == "ok"]
    for dataset, g in finished.groupby("dataset", sort=False):
        variants = list(dict.fromkeys(g["variant"]))
        metrics = [k for k in METRICS if METRICS[k][2] and k in g and g[k].notna().any()]
        found = []
        for a, b in itertools.combinations(variants, 2):
            for k in metrics:
                va = dict(zip(g[g["variant"] == a]["seed"], g[g["variant"] == a][k]))
                vb = dict(zip(g[g["variant"] == b]["seed"], g[g["variant"] == b][k]))
                c = stats.compare(va, vb, METRICS[k][1], paired=seeds_run[dataset, a] == seeds_run[dataset, b])
                if c is not None:
                    found.append((a, b, k, c))
        adjusted = stats.holm([c.p for *_, c in found])
        for (a, b, k, c), p_adj in zip(found, adjusted):
            ua, ub = int(unconverged.get((dataset, a), 0)), int(unconverged.get((dataset, b), 0))
            caveat = (f" [rests on runs that had not converged: {a} {ua} of {c.n_a}, {b} {ub} of {c.n_b}]"
                      if ua or ub else "")
            rows.append({"dataset": dataset, "a": a, "b": b, "metric": k, "better": METRICS[k][1], "test": c.test,
                         "n_a": c.n_a, "n_b": c.n_b, "diff": c.diff, "diff_lo": c.diff_lo, "diff_hi": c.diff_hi,
                         "p_a_beats_b": c.a_better, "p": c.p, "p_holm": p_adj, "p_min": c.p_min,
                         "significant": p_adj <= stats.ALPHA,
                         "unconverged_a": ua, "unconverged_b": ub,
                         "verdict": stats.verdict(a, b, METRICS[k][0], c, p_adj, len(found)) + caveat})
    return pd.DataFrame(rows)


def outcome(significant, a_better) -> int:
    """A test's outcome: +1 A significantly better, −1 B significantly better, 0 no significant difference."""
    return 0 if not significant else (1 if a_better > 0.5 else -1)


class Snapshots(NamedTuple):
    """One table's runs as they stood at each late evaluation."""
    pairs: list[tuple[int, pd.DataFrame]]  # (evaluation, the runs table then), in order
    late: Late                             # which evaluations those are


def late_snapshots(history: pd.DataFrame, runs: pd.DataFrame, late: dict | None = None) -> dict[str, Snapshots]:
    """Per table, its runs as they stood at each late evaluation of :func:`late_frames` (the last
    third of training; matching points of each run's own last third where runs stopped apart): the runs
    table with each finished run's metrics then. Diverged and failed runs stay in as they are, so the
    tests pair seeds exactly as the final table's do. Tables whose runs share no step grid (wall-clock
    budgets) or hold fewer than convergence.MIN_POINTS late evaluations get none.
    ``late``: :func:`late_frames` of ``history``, if made already."""
    late = late_frames(history) if late is None else late
    out = {}
    for dataset, window in late.items():
        frames = window.frames
        base = runs[runs["dataset"] == dataset].assign(converged=None)
        finished = base["status"] == "ok"
        keys = [key for key, ok in zip(zip(base["variant"], base["seed"]), finished) if ok]
        pairs = []
        for step in frames[next(iter(frames))].index:
            snap = base.copy()
            for k, table in frames.items():
                if k in runs:
                    row = table.loc[step]
                    snap.loc[finished, k] = [row.get(key, math.nan) for key in keys]
            pairs.append((int(step), snap))
        out[dataset] = Snapshots(pairs, window)
    return out


def with_stability(comparison: pd.DataFrame, snapshots: dict[str, Snapshots]) -> pd.DataFrame:
    """Each pairwise test redone at every late evaluation (:func:`late_snapshots`; the same tests,
    Holm over the same table): ``holds`` of ``holds_of`` evaluations gave the final verdict (the same
    winner, or no significant difference). A verdict that holds at only some of them is an artefact of
    where training stopped; the sentence says so (not for tests that cannot reach significance)."""
    if comparison.empty:
        return comparison
    key = ["dataset", "a", "b", "metric"]
    late = []
    for dataset, (pairs, *_) in snapshots.items():
        for step, runs in pairs:
            c = comparison_table(runs)
            if len(c):
                late.append(c.assign(step=step))
    comparison = comparison.assign(holds=pd.NA, holds_of=pd.NA, late_steps="").astype(
        {"holds": "Int64", "holds_of": "Int64"})
    if not late:
        return comparison
    late = pd.concat(late, ignore_index=True)
    late["outcome"] = [outcome(s, w) for s, w in zip(late["significant"], late["p_a_beats_b"])]
    by_test = dict(list(late.groupby(key, sort=False)))
    for i, row in comparison.iterrows():
        mine = by_test.get(tuple(row[key]))
        if mine is None or row["verdict"].startswith("cannot be significant"):
            continue
        final = outcome(row["significant"], row["p_a_beats_b"])
        holds, of = int((mine["outcome"] == final).sum()), len(mine)
        window = snapshots[row["dataset"]].late
        where = (f"{OWN_THIRDS} ({window.steps})" if window.own_ends
                 else f"evaluations of the last third of training, {window.steps}")
        comparison.loc[i, ["holds", "holds_of", "late_steps"]] = holds, of, window.steps
        comparison.loc[i, "verdict"] = row["verdict"] + f" [the same verdict at {holds} of {of} {where}]"
    return comparison


def ranking_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per table and main metric, every variant's mean rank over seeds (1 = best) and the omnibus
    test of "all variants alike" (:func:`bench.stats.rank_test`: Friedman with seeds as blocks,
    Kruskal-Wallis for unpaired seeds). Finished runs only; one row per (table, metric, variant)."""
    rows = []
    finished = runs[runs["status"] == "ok"]
    for dataset, g in finished.groupby("dataset", sort=False):
        for k in [k for k in METRICS if METRICS[k][2] and k in g and g[k].notna().any()]:
            values = {v: dict(zip(p["seed"], p[k])) for v, p in g.groupby("variant", sort=False)}
            test = stats.rank_test(values, METRICS[k][1])
            if test is None:
                continue
            for variant, rank in sorted(test.mean_ranks.items(), key=lambda item: item[1]):
                rows.append({"dataset": dataset, "metric": k, "variant": variant, "mean_rank": rank,
                             "test": test.test, "statistic": test.statistic, "p": test.p, "n": test.n})
    return pd.DataFrame(rows, columns=["dataset", "metric", "variant", "mean_rank", "test", "statistic", "p", "n"])


def wins_table(comparison: pd.DataFrame) -> pd.DataFrame:
    """The pairwise tests read both ways: per table, metric and ordered pair of variants, whether
    the first is significantly better (win), worse (loss) or neither (tie) at 5 % after Holm."""
    rows = []
    for c in comparison.itertuples() if len(comparison) else ():
        a_wins = c.p_a_beats_b > 0.5
        outcome_a = "tie" if not c.significant else ("win" if a_wins else "loss")
        outcome_b = {"win": "loss", "loss": "win", "tie": "tie"}[outcome_a]
        rows += [{"dataset": c.dataset, "metric": c.metric, "variant": c.a, "other": c.b, "outcome": outcome_a,
                  "p_holm": c.p_holm},
                 {"dataset": c.dataset, "metric": c.metric, "variant": c.b, "other": c.a, "outcome": outcome_b,
                  "p_holm": c.p_holm}]
    return pd.DataFrame(rows, columns=["dataset", "metric", "variant", "other", "outcome", "p_holm"])


def verdict_tables(ranking: pd.DataFrame, wins: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per table, one row per variant (best mean rank first): per main metric its mean rank and
    its wins, ties and losses against the other variants; the last row, each metric's omnibus test."""
    tables = {}
    for dataset, r in ranking.groupby("dataset", sort=False) if len(ranking) else ():
        metrics = list(dict.fromkeys(r["metric"]))
        order = r.groupby("variant", sort=False)["mean_rank"].mean().sort_values(kind="stable").index
        w = wins[wins["dataset"] == dataset]
        table = pd.DataFrame({"method": list(order)})
        for k in metrics:
            ranks = r[r["metric"] == k].set_index("variant")["mean_rank"]
            counts = w[w["metric"] == k].groupby("variant")["outcome"].value_counts().unstack(fill_value=0)
            table[figures.title(k)] = [
                "–" if v not in ranks else f"{ranks[v]:.2f} ({counts.get('win', {}).get(v, 0)}–"
                f"{counts.get('tie', {}).get(v, 0)}–{counts.get('loss', {}).get(v, 0)})" for v in order]
        tests = {figures.title(k): f"{r[r['metric'] == k]['test'].iloc[0].split(',')[0].split(' (')[0]} "
                                   f"p = {stats.format_p(r[r['metric'] == k]['p'].iloc[0])}" for k in metrics}
        tables[dataset] = pd.concat([table, pd.DataFrame([{"method": "all alike?", **tests}])], ignore_index=True)
    return tables


VERDICT_NOTE = ("Cells: mean rank over seeds (1 = best; ties share their ranks' mean) and (wins–ties–losses) "
                "against the other variants by the pairwise tests of comparison.md (Wilcoxon signed-rank where "
                "seeds pair up, Mann-Whitney U otherwise; Holm over the table; 5 %). Last row: the omnibus test "
                "that every variant is alike (Friedman with seeds as blocks; Kruskal-Wallis for unpaired seeds; "
                "the pairwise test itself for two variants). Variants with fewer than 2 finished seeds are not ranked.")
BEST, TIED = "★", "☆"
MARKS_NOTE = (f"{BEST}: the best mean of its column among the variants with at least 2 finished seeds; {TIED}: "
              "not significantly different from it (pairwise test, Holm, 5 %); only the tested columns are "
              "marked. Arrows: which direction is better.")


def _cell(mean, lo, hi) -> str:
    if pd.isna(mean):
        return "–"
    text = f"{mean:.0f}" if abs(mean) >= 100 else f"{mean:.3g}"
    return text + (f" ± {(hi - lo) / 2:.2g}" if pd.notna(lo) and hi > lo else "")


def best_marks(rows: pd.DataFrame, k: str, comparison: pd.DataFrame | None) -> list[str]:
    """For one metric column of one table (``rows``: its summary rows), BEST on the variant with the
    best mean, TIED on those the pairwise tests do not separate from it, "" elsewhere. Reference
    rows (the data itself) and variants with no finished seed take no part."""
    if not METRICS[k][2]:  # no pairwise test on this column: no claim either way
        return [""] * len(rows)
    eligible = rows[~rows["reference"] & rows[k].notna() & (rows["seeds"] >= 2)]  # the variants tested
    if len(eligible) < 2:
        return [""] * len(rows)
    means = eligible[k] if METRICS[k][1] == "lower" else -eligible[k]
    best = set(eligible.loc[means == means.min(), "variant"])  # equal means share the mark
    tied = set()
    if comparison is not None and len(comparison):
        c = comparison[(comparison["dataset"] == rows["dataset"].iloc[0]) & (comparison["metric"] == k)
                       & ~comparison["significant"] & (comparison["a"].isin(best) | comparison["b"].isin(best))]
        tied = set(c["a"]) | set(c["b"])
    return [BEST if v in best else TIED if v in tied and v in set(eligible["variant"]) else ""
            for v in rows["variant"]]


def display_tables(summary: pd.DataFrame, notes: dict | None = None,
                   comparison: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Per dataset, formatted cells (mean ± 95 % CI half-width over seeds) under titles with the
    better direction, the best mean of each column and those tied with it marked (MARKS_NOTE)."""
    tables = {}
    for dataset, rows in summary.groupby("dataset", sort=False):
        metrics = [k for k in METRICS if k in rows and rows[k].notna().any()]
        table = pd.DataFrame({"method": rows["variant"], "seeds": rows["seeds"], "diverged": rows["n_diverged"],
                              "failed": rows["n_failed"],
                              "converged": [f"{c}/{n}" if j else "–" for c, n, j in
                                            zip(rows["converged"], rows["seeds"], rows["judged"])]})
        if "moving" in rows and rows["moving"].notna().any():
            table["mean still moving"] = rows["moving"].fillna("–").tolist()
        for k in metrics:
            cells = [_cell(m, lo, hi) for m, lo, hi in zip(rows[k], rows[k + "_lo"], rows[k + "_hi"])]
            table[figures.title(k)] = [f"{c} {mark}" if mark else c
                                       for c, mark in zip(cells, best_marks(rows, k, comparison))]
        heading = dataset + (f" ({notes[dataset]})" if notes and notes.get(dataset) else "")
        tables[heading] = table.reset_index(drop=True)
    return tables


def markdown_table(table: pd.DataFrame) -> str:
    """A display table in Markdown, the best cell of each column in bold."""
    bold = table.map(lambda c: f"**{c[:-2]}** {BEST}" if isinstance(c, str) and c.endswith(" " + BEST) else c)
    return bold.to_markdown(index=False)


def _history_frame(records: list[dict], names: dict) -> pd.DataFrame:
    rows = [{"dataset": dataset_label(r), "variant": names[r["variant_id"]], "seed": r["spec"]["seed"], **h}
            for r in records if r["status"] == "ok" for h in r["history"]]
    return pd.DataFrame(rows)


@dataclasses.dataclass
class Report:
    runs: pd.DataFrame
    summary: pd.DataFrame
    comparison: pd.DataFrame
    tables: dict
    figures: dict             # section ("verdict", "curves", "samples", "sweeps") -> its PNG files, in page order
    published: pd.DataFrame   # published results beside ours (bench.published); empty without a preset's runs
    records: list             # the run records, in the order of ``runs`` (their environments)
    ranking: pd.DataFrame     # mean ranks and omnibus tests (ranking_table)
    wins: pd.DataFrame        # the pairwise tests as win/tie/loss both ways (wins_table)
    verdicts: dict            # per table, ranks and wins-ties-losses per metric (verdict_tables)

    def figure_files(self) -> list[Path]:
        return [path for paths in self.figures.values() for path in paths]


NO_COMPARISONS = "No comparisons: every variant needs at least 2 finished seeds."


def comparison_intro(g: pd.DataFrame) -> str:
    """What one table's pairwise tests are (``g``: its rows of the comparison table)."""
    text = (f"{len(g)} tests ({g['test'].iloc[0].split(',')[0]} where seeds pair up, Mann-Whitney U otherwise), "
            f"Holm-Bonferroni corrected over the table; significant at 5 %: {int(g['significant'].sum())}.")
    if "holds" in g and g["holds"].notna().any():
        own = g["verdict"].str.contains(OWN_THIRDS, regex=False).any()
        text += (" Each test was redone at " + (f"{OWN_THIRDS} (the runs stopped at different steps)" if own else
                                                "every evaluation of the last third of training")
                 + ": a verdict that held at only some of them depends on where training stopped.")
    return text


def comparison_markdown(comparison: pd.DataFrame) -> list[str]:
    md = []
    for dataset, g in comparison.groupby("dataset", sort=False):
        md += [f"## {dataset}: which variant is better", "", comparison_intro(g), ""]
        md += [f"- {v}" for v in g["verdict"]] + [""]
    return md


def published_markdown(beside: pd.DataFrame) -> list[str]:
    md = []
    for heading, table in published.display_tables(beside).items():
        md += [f"## {heading}: published results beside ours", "", table.to_markdown(index=False), ""]
        md += [f"- {n}" for n in published.notes(beside, heading)] + [""]
    return md + [published.NOTE, ""] if md else []


def draw_figures(records: list[dict], names: dict, runs: pd.DataFrame, ranking: pd.DataFrame,
                 wins: pd.DataFrame, plots: Path, staged: files.Staged) -> dict[str, list[Path]]:
    """Every figure of the report, staged; returns the drawn ones by page section."""
    drawn = {"verdict": [], "curves": [], "samples": [], "sweeps": []}
    history = _history_frame(records, names)
    for name in dict.fromkeys(dataset_label(r) for r in records):
        mine = [r for r in records if dataset_label(r) == name]
        stem = name.replace(" · ", "_")
        finished = dict.fromkeys(names[r["variant_id"]] for r in mine if r["status"] == "ok")
        colours = {v: f"C{i % 10}" for i, v in enumerate(finished)}  # the curves' colours: same order
        if figures.plot_verdict(ranking, wins, name, plots / f"{stem}_verdict.png", staged, colours):
            drawn["verdict"].append(plots / f"{stem}_verdict.png")
        for x, suffix in (("step", "curves"), ("train_seconds", "curves_time")):
            if figures.plot_curves(history, name, plots / f"{stem}_{suffix}.png", staged, x=x):
                drawn["curves"].append(plots / f"{stem}_{suffix}.png")
        if DATASETS.get(mine[0]["spec"]["dataset"]).kind == "images":
            figures.plot_image_grids(mine, names, plots, stem, staged)
        else:
            figures.plot_samples(mine, names, plots / f"{stem}_samples.png", staged)
        drawn["samples"].append(plots / f"{stem}_samples.png")
        if figures.plot_final_metrics(runs[runs["dataset"] == name], plots / f"{stem}_final_metrics.png", staged):
            drawn["samples"].append(plots / f"{stem}_final_metrics.png")
    staged.remove(plots / "mmd_vs_time.png")  # drawn by earlier versions; the time curves replace it
    figures.plot_sweeps(records, plots / "sweeps.png", staged)
    drawn["sweeps"].append(plots / "sweeps.png")
    return drawn


NO_RANKING = "Ranks and wins need at least 2 variants with at least 2 finished seeds each (e.g. --seeds 0-4)."


def verdict_markdown(verdicts: dict) -> list[str]:
    md = []
    for heading, table in verdicts.items():
        md += [f"## {heading}: which variant wins", "", table.to_markdown(index=False), ""]
    return md + [VERDICT_NOTE, ""] if md else [f"Which variant wins: not judged. {NO_RANKING}", ""]


def build(out: Path, print_fn=print) -> Report:
    """Write runs.csv, summary.{csv,md}, comparison.{csv,md}, ranking.csv and plots/ under ``out``;
    print the tables. Every record is read and checked before anything is written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BenchError(f"--out {out} is a file, not a folder of results")
    records = sorted(store.load_records(out), key=_order)
    if not records:
        raise BenchError(f"no finished runs under {out}/runs; train some with `python -m bench run`")
    store.check_samples(records)  # before any file is replaced
    names, notes = _row_names(records)
    runs = runs_table(records)
    history = _history_frame(records, names)
    tracked = {dataset_label(r): DATASETS.get(r["spec"]["dataset"]).tracked for r in records
               if r["spec"]["dataset"] in DATASETS.names()}
    resolutions = {dataset_label(r): resolution_of(r) for r in records}
    late = late_frames(history)  # the last third's evaluations, for the mean trends and the stability
    trends = cell_trends(history, tracked, late, resolutions)
    summary = summary_table(runs)
    summary["moving"] = [trends.get((d, v)) for d, v in zip(summary["dataset"], summary["variant"])]
    comparison = with_stability(comparison_table(runs), late_snapshots(history, runs, late))
    ranking, wins = ranking_table(runs), wins_table(comparison)
    verdicts = verdict_tables(ranking, wins)
    tables = display_tables(summary, notes, comparison)
    beside = published.beside_ours(runs, {r["variant_id"]: r for r in records})
    md = verdict_markdown(verdicts)
    for heading, table in tables.items():
        md += [f"## {heading}", "", markdown_table(table), ""]
    md += [MARKS_NOTE + " " + CI_NOTE, ""] + published_markdown(beside)
    comparison_md = "\n".join(comparison_markdown(comparison)) if len(comparison) else NO_COMPARISONS + "\n"
    plots = out / "plots"
    staged = files.Staged()  # every file of the report is written at the end, all or none
    drawn = draw_figures(records, names, runs, ranking, wins, plots, staged)
    staged.add(out / "runs.csv", runs.to_csv(index=False).encode())
    staged.add(out / "summary.csv", summary.to_csv(index=False).encode())
    staged.add(out / "summary.md", "\n".join(md).encode())
    staged.add(out / "comparison.csv", comparison.to_csv(index=False).encode())
    staged.add(out / "comparison.md", comparison_md.encode())
    staged.add(out / "ranking.csv", ranking.to_csv(index=False).encode())
    try:
        staged.commit()
    except OSError as err:
        raise BenchError(f"cannot write the report under {out}: {err.strerror or err}; the report there is as "
                         f"it was, and every record is intact") from None
    for heading, table in verdicts.items():
        print_fn(f"\n{heading}: which variant wins\n{table.to_string(index=False)}")
    if verdicts:
        print_fn(f"\n{VERDICT_NOTE}")
    else:
        print_fn(f"\nwhich variant wins: not judged. {NO_RANKING}")
    for heading, table in tables.items():
        print_fn(f"\n{heading}\n{table.to_string(index=False)}")
    print_fn(f"\n{MARKS_NOTE} {CI_NOTE}")
    for heading, table in published.display_tables(beside).items():
        print_fn(f"\n{heading}: published results beside ours\n{table.to_string(index=False)}")
        for n in published.notes(beside, heading):
            print_fn(f"  {n}")
    if len(beside):
        print_fn(f"\n{published.NOTE}")
    if len(comparison):
        significant = comparison[comparison["significant"]]
        print_fn(f"\n{len(significant)} of {len(comparison)} pairwise differences significant at 5 % (Holm); "
                 f"every verdict in {out / 'comparison.md'}")
        for v in significant["verdict"].head(12):
            print_fn(f"  {v}")
    print_fn(f"\ntables: {out / 'summary.md'}, {out / 'comparison.md'}, {out / 'runs.csv'}; plots: {plots}/")
    drawn = {section: [f for f in paths if f.exists()] for section, paths in drawn.items()}
    return Report(runs, summary, comparison, tables, drawn, beside, records, ranking, wins, verdicts)


def environment_table(report: Report) -> pd.DataFrame:
    """Per run: its table row and what produced it (git revision, device, package versions)."""
    env = [r.get("environment") or {} for r in report.records]
    table = report.runs[["dataset", "variant", "seed", "status", "steps", "run_id"]].copy()
    table["git revision"] = [e.get("git_revision", "–") for e in env]
    table["device"] = [e.get("device_name") or e.get("device") or "–" for e in env]
    table["versions"] = [", ".join(f"{k} {v}" for k, v in (e.get("versions") or {}).items() if v) or "–" for e in env]
    return table.rename(columns={"dataset": "table", "run_id": "run id"})


HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 110em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.best { font-weight: bold; background: #e6f4e1; }
td.tied { background: #f3f9f0; }
.wide { overflow-x: auto; }
.note { color: #555; font-size: 0.9em; max-width: 60em; }
nav { font-size: 0.9em; }
details { margin: 0.3em 0 0.8em; }
summary { cursor: pointer; }
li.significant { font-weight: bold; }
img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.85em; }
"""
SECTIONS = {"verdict": "Which variant wins", "tables": "Summary tables", "published": "Published results beside ours",
            "curves": "Learning curves", "samples": "Samples and final metrics per seed", "sweeps": "Sweeps",
            "pairs": "Every pairwise test", "runs": "Runs: what produced each"}


def html_table(df: pd.DataFrame) -> str:
    """A table, every cell escaped; a cell marked best (or tied with it) gets that class."""
    esc = html.escape
    head = "".join(f"<th>{esc(str(c))}</th>" for c in df.columns)

    def cell(value) -> str:
        text = "–" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
        mark = ' class="best"' if text.endswith(" " + BEST) else ' class="tied"' if text.endswith(" " + TIED) else ""
        return f"<td{mark}>{esc(text)}</td>"
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>\n" for row in df.itertuples(index=False))
    return f'<div class="wide"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table></div>'


def html_figure(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    name = html.escape(Path(path).name)
    return f'<figure><img src="data:image/png;base64,{data}" alt="{name}"><figcaption>{name}</figcaption></figure>'


def write_html(report: Report, out: Path) -> Path:
    """The whole report as one self-contained page, ``out/report.html``, that any browser opens from
    disk, in reading order: which variant wins (ranks and win/tie/loss per table), the summary
    tables (best cells marked), published results beside ours, learning curves, samples and per-seed
    metrics, sweeps, every pairwise test (folded, one block per table), and what produced each run.
    Figures are PNG data URIs; inline CSS; no script, no external resource; every text escaped."""
    esc = html.escape
    revisions = pd.Series([(r.get("environment") or {}).get("git_revision", "unknown") for r in report.records])
    made = "; ".join(f"{esc(rev)} ({n} run{'s' if n > 1 else ''})" for rev, n in revisions.value_counts().items())
    beside = published.display_tables(report.published)
    present = {"verdict": bool(report.verdicts or report.figures["verdict"]), "tables": True,
               "published": bool(beside), "curves": bool(report.figures["curves"]),
               "samples": bool(report.figures["samples"]), "sweeps": bool(report.figures["sweeps"]),
               "pairs": True, "runs": True}
    nav = " · ".join(f'<a href="#{key}">{esc(title)}</a>' for key, title in SECTIONS.items() if present[key])
    parts = [f"<h1>bench report: {esc(str(out))}</h1>",
             f'<p class="note">{len(report.records)} run records; git revisions: {made}.</p>', f"<nav>{nav}</nav>"]

    def section(key: str) -> None:
        parts.append(f'<h2 id="{key}">{esc(SECTIONS[key])}</h2>')

    if not present["verdict"]:
        parts.append(f'<p class="note">Which variant wins: not judged. {esc(NO_RANKING)}</p>')
    if present["verdict"]:
        section("verdict")
        for heading, table in report.verdicts.items():
            parts += [f"<h3>{esc(heading)}</h3>", html_table(table)]
            stem = heading.replace(" · ", "_") + "_verdict.png"
            parts += [html_figure(f) for f in report.figures["verdict"] if Path(f).name == stem]
        parts.append(f'<p class="note">{esc(VERDICT_NOTE)}</p>')
    section("tables")
    for heading, table in report.tables.items():
        parts += [f"<h3>{esc(heading)}</h3>", html_table(table)]
    parts.append(f'<p class="note">{esc(MARKS_NOTE)} {esc(CI_NOTE)}</p>')
    if present["published"]:
        section("published")
        for heading, table in beside.items():
            parts += [f"<h3>{esc(heading)}</h3>", html_table(table)]
            parts += ["<ul>" + "".join(f"<li>{esc(n)}</li>" for n in published.notes(report.published, heading))
                      + "</ul>"]
        parts.append(f'<p class="note">{esc(published.NOTE)}</p>')
    for key in ("curves", "samples", "sweeps"):
        if present[key]:
            section(key)
            parts += [html_figure(f) for f in report.figures[key]]
    section("pairs")
    for dataset, g in report.comparison.groupby("dataset", sort=False) if len(report.comparison) else ():
        parts += [f"<details><summary>{esc(dataset)}: {esc(comparison_intro(g))}</summary>", "<ul>"]
        parts += [f'<li{" class=significant" if sig else ""}>{esc(v)}</li>'
                  for v, sig in zip(g["verdict"], g["significant"])] + ["</ul></details>"]
    if not len(report.comparison):  # an empty table has no columns to group by
        parts.append(f"<p>{esc(NO_COMPARISONS)}</p>")
    section("runs")
    parts.append(html_table(environment_table(report)))
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>bench report: {esc(str(out))}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(parts) + "\n</body>\n</html>\n")
    path = Path(out) / "report.html"
    try:
        files.atomic_write(path, lambda f: f.write(page.encode()))
    except OSError as err:
        raise BenchError(f"cannot write {path}: {err.strerror or err}; the page there is as it was") from None
    return path

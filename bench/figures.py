"""The report's figures, drawn from stored records and the tables built from them (bench.report):
samples, per-seed final metrics, learning curves, sweeps, and the verdict figures (ranks and
wins). Each is rendered to memory and handed to a files.Staged, so a report is written whole."""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import matplotlib.colors
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import scikit_posthocs
import seaborn as sns
import torch
from torchvision.utils import make_grid, save_image

from bench import files, stats, store
from bench import spec as spec_lib
from bench.datasets import DATASETS
from bench.errors import BenchError
from bench.metrics import METRICS
from bench.records import dataset_label, setting

matplotlib.use("Agg")  # files only, no display needed


def title(key: str) -> str:
    """A metric's column title with the direction that is better: ``HQ % ↑``, ``MMD² ↓``."""
    return METRICS[key][0] + (" ↓" if METRICS[key][1] == "lower" else " ↑")


def save_figure(fig, path: Path, dpi: int, staged: files.Staged | None = None) -> None:
    """Render to memory, then hand to ``staged`` (written with the rest of the report), or write
    atomically now: an interrupted report leaves the old plot intact."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    if staged is not None:
        staged.add(path, buffer.getvalue())
    else:
        files.atomic_write(path, lambda f: f.write(buffer.getvalue()))


def _lowest_seed_per_variant(records: list[dict], names: dict) -> dict[str, dict]:
    first = {}
    for r in sorted(records, key=lambda r: r["spec"]["seed"]):
        if r.get("samples_file"):
            first.setdefault(names[r["variant_id"]], r)
    return first


def plot_samples(records: list[dict], names: dict, path: Path, staged: files.Staged) -> None:
    """Generated samples (colour) over held-out data (grey): one panel per variant."""
    first = _lowest_seed_per_variant(records, names)
    if not first:
        return
    variants = list(first)
    fig, axes = plt.subplots(1, len(variants), figsize=(3.2 * len(variants), 3.8), squeeze=False)
    palette = dict(zip(variants, sns.color_palette("deep", len(variants))))
    some = next(iter(first.values()))
    dataset = DATASETS.create(some["spec"]["dataset"], **(some["spec"].get("dataset_options") or {}))
    data = dataset.held_out().numpy()
    lim = np.abs(data).max() * 1.3
    for ax, (v, r) in zip(axes[0], first.items()):
        xy = store.load_samples(r)
        if xy.ndim != 2 or xy.shape[1] != dataset.dim:
            raise BenchError(f"samples file of {r['path']} holds shape {xy.shape}, not (n, {dataset.dim}) "
                             f"points of {r['spec']['dataset']}; {store.REDO}")
        xy = xy[np.isfinite(xy).all(1)]
        if dataset.dim == 1:  # histogram of samples over the true density
            grid = np.linspace(-lim, lim, 400)
            ax.plot(grid, dataset.density(torch.from_numpy(grid)[:, None]).numpy(), c="0.4")
            ax.hist(xy[:, 0], bins=80, range=(-lim, lim), density=True, color=palette[v], alpha=0.6)
        else:
            ax.scatter(data[:, 0], data[:, 1], s=2, c="0.75", linewidths=0)
            ax.scatter(xy[:, 0], xy[:, 1], s=2, color=palette[v], linewidths=0, alpha=0.6)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_yticks([])
        f = r["final"]
        ax.set_title(f"{v} on {dataset_label(r)}, seed {r['spec']['seed']}\nmodes {f.get('modes_covered')}, "
                     f"HQ {f.get('high_quality_pct') or 0:.0f}%" + ("  DIVERGED" if r["status"] == "diverged" else ""),
                     fontsize=8)
        ax.set_xlim(-lim, lim)
        ax.set_xticks([])
    fig.tight_layout()
    save_figure(fig, path, 110, staged)


def plot_image_grids(records: list[dict], names: dict, folder: Path, stem: str, staged: files.Staged) -> None:
    """A 10×10 grid of stored samples per variant (PNG each), and all variants side by side."""
    first = _lowest_seed_per_variant(records, names)
    if not first:
        return
    fig, axes = plt.subplots(1, len(first), figsize=(3.3 * len(first), 3.6), squeeze=False)
    for ax, (v, r) in zip(axes[0], first.items()):
        stored = store.load_samples(r)
        if stored.shape[1:] not in ((28, 28), (3, 28, 28)):
            raise BenchError(f"samples file of {r['path']} holds shape {stored.shape}, not (n, 28, 28) or "
                             f"(n, 3, 28, 28) images; {store.REDO}")
        images = torch.from_numpy(stored[:100]).float().div(255)
        grid = make_grid(images.unsqueeze(1) if images.ndim == 3 else images, nrow=10, padding=1, pad_value=0.5)
        safe = "".join(c if c.isalnum() or c in "-_=." else "-" for c in v)
        image = io.BytesIO()
        save_image(grid, image, format="png")
        staged.add(folder / f"{stem}_{safe}.png", image.getvalue())
        ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
        fd = r["final"].get("fid")
        count = "digits" if "digits_covered" in r["final"] else "modes"  # 3 channels: Stacked-MNIST's modes
        ax.set_title(f"{v}\nFD {fd:.1f}, {count} {r['final'].get(count + '_covered')}" if fd is not None else v,
                     fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, folder / f"{stem}_samples.png", 110, staged)


def plot_final_metrics(runs: pd.DataFrame, path: Path, staged: files.Staged) -> bool:
    """Per metric: every finished seed as a point over a box of its variant's seeds. Returns
    whether a figure was drawn (not when no run of the table finished)."""
    ok = runs[runs["status"].isin(["ok", "reference"])]
    metrics = [k for k in METRICS if k in ok and ok[k].notna().any()]
    if not metrics:
        staged.remove(path)  # nothing to draw: no stale figure from an earlier report
        return False
    long = ok.melt(id_vars=["dataset", "variant", "seed"], value_vars=metrics, var_name="metric").dropna()
    long["metric"] = long["metric"].map(title)
    grid = sns.catplot(long, kind="box", x="variant", y="value", hue="variant", col="metric",
                       col_wrap=min(7, len(metrics)),
                       sharey=False, height=2.5, aspect=1.0, legend=False, showfliers=False,
                       boxprops={"alpha": 0.35})
    np.random.seed(0)  # the strip plot's jitter: the same figure from the same records
    grid.map_dataframe(sns.stripplot, x="variant", y="value", color="black", size=3, jitter=0.15)
    grid.set_titles("{col_name}")
    grid.figure.suptitle(f"{runs['dataset'].iloc[0]}: final metrics, one point per seed", y=1.0)
    for ax in grid.axes.flat:
        ax.tick_params(axis="x", labelbottom=True, rotation=30)
        ax.set_xlabel("")
    grid.tight_layout()
    save_figure(grid.figure, path, 100, staged)
    return True


FEW_SEEDS = 5  # up to this many seeds a curve shows each seed, beyond it the 95 % band of the mean
CURVE_AXES = {"step": "generator steps", "train_seconds": "training wall-clock (s)"}
NOT_CURVES = ("train_seconds", "steps_per_second")  # the x axes and a rate, not sample quality


def curve_metrics(hist: pd.DataFrame) -> list[str]:
    """The metrics a table's evaluation history holds values of, in display order."""
    return [k for k in METRICS if k not in NOT_CURVES and k in hist and hist[k].notna().any()]


def set_value_scale(ax, values: np.ndarray) -> None:
    """Per metric: a signed estimator (any value ≤ 0, the unbiased MMD²) stays linear with its zero
    line, never a symlog that folds a confidence band through zero; positive values spanning more
    than two decades (FD early in training) go on a log axis; the rest linear."""
    v = values[np.isfinite(values)]
    if not len(v):
        return
    if (v <= 0).any():
        if (v < 0).any():
            ax.axhline(0, color="0.5", linewidth=0.8)
    elif v.max() / v.min() > 100:
        ax.set_yscale("log")


def points_by_index(g: pd.DataFrame, metric: str) -> list[tuple]:
    """(mean step, mean, CI low, CI high) at each evaluation: seeds of a step budget evaluate at the
    same steps, so the i-th evaluations of all seeds belong together. A seed stopped early
    (``--patience``) holds its last evaluation, as in the tables and tests: otherwise the mean past
    its stop would be over the seeds still training only, and its band over one or two of them."""
    wide = stats.held_grid(g, "point", ["seed"], metric)
    steps = g.groupby("point")["step"].mean()
    return [(steps[i], *stats.mean_ci(row.dropna().tolist())) for i, row in wide.iterrows()]


def points_in_time(g: pd.DataFrame, metric: str, n: int = 40) -> list[tuple]:
    """(time, mean, CI low, CI high) on a common grid of training seconds: each seed's curve
    interpolated linearly between its evaluations, up to the time every seed reached. Seeds train at
    different speeds (a busy machine, a stalled process), so the i-th evaluations of two seeds are
    at different times, and a mean at their mean time would sit where no seed was."""
    seeds = [(s["train_seconds"].to_numpy(float), s[metric].to_numpy(float)) for _, s in g.groupby("seed")]
    seeds = [(t[np.isfinite(v)], v[np.isfinite(v)]) for t, v in seeds]
    seeds = [(t, v) for t, v in seeds if len(t)]
    if not seeds:
        return []
    grid = np.linspace(0.0, min(t.max() for t, _ in seeds), n) if min(t.max() for t, _ in seeds) > 0 else np.zeros(1)
    values = np.array([np.interp(grid, t, v) for t, v in seeds])
    return [(at, *stats.mean_ci(values[:, i].tolist())) for i, at in enumerate(grid)]


def plot_curves(hist: pd.DataFrame, table: str, path: Path, staged: files.Staged, x: str = "step") -> bool:
    """Learning curves of one table: every metric its history holds against generator steps or
    training seconds (``x``), the mean over seeds at each evaluation with its 95 % band (up to
    FEW_SEEDS seeds: each seed's own line instead), one panel per metric. Evaluations are matched
    by their index, so seeds of a time budget, evaluated at different steps, still average.
    Returns whether a figure was drawn."""
    h = hist[hist["dataset"] == table] if not hist.empty else hist
    metrics = curve_metrics(h)
    if h.empty or not metrics:
        staged.remove(path)  # nothing to draw: no stale figure from an earlier report
        return False
    h = h.assign(point=h.groupby(["variant", "seed"]).cumcount())
    cols = min(len(metrics), 5)
    rows_ = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(3.5 * cols, 3.0 * rows_), squeeze=False)
    few = h.groupby("variant")["seed"].nunique().max() <= FEW_SEEDS
    held = x == "step" and (h.groupby(["variant", "seed"])["point"].max().groupby("variant").nunique() > 1).any()
    for ax, metric in zip(axes.flat, metrics):
        for variant, g in h.groupby("variant", sort=False):
            points = (points_by_index(g, metric) if x == "step" else points_in_time(g, metric)) or [(0.0, *[np.nan] * 3)]
            at, mean, lo, hi = map(np.array, zip(*points))
            line, = ax.plot(at, mean, marker="o", ms=2, label=variant)
            if few:  # a t-interval over 2-5 seeds is wider than the data: show the seeds themselves
                for _, seed in g.groupby("seed"):
                    ax.plot(seed[x], seed[metric], color=line.get_color(), alpha=0.3, linewidth=0.7)
            elif np.isfinite(lo).any():
                ax.fill_between(at, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        set_value_scale(ax, h[metric].to_numpy(dtype=float))
        ax.set_title(title(metric), fontsize=9)
        ax.set_xlabel(CURVE_AXES[x], fontsize=8)
        if x == "step":
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v else "0"))
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{table}: every metric against {CURVE_AXES[x]} (mean over seeds"
                 + (", each seed interpolated to common times, up to the time every seed reached" if x != "step" else "")
                 + ("; thin lines: each seed" if few else "; 95 % CI band")
                 + ("; a seed stopped early holds its last value)" if held else ")"), fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, 100, staged)
    return True


def plot_sweeps(records: list[dict], path: Path, staged: files.Staged) -> None:
    """For each numeric setting or option that varies between variants of a method: each main
    metric against its value, one line per method and value of the other varying settings
    (mean and 95 % CI over seeds)."""
    def value(spec, key):
        return (spec.get("method_options") or {}).get(key, setting(spec, key))

    ok = [r for r in records if r["status"] == "ok"]
    keys: dict[tuple, set] = {}
    for r in ok:
        overrides = {**dict(r["spec"].get("method_overrides") or {}), **dict(r["spec"].get("run_overrides") or {})}
        keys.setdefault((dataset_label(r), r["spec"]["method"]), set()).update(overrides)
    rows = []
    for r in ok:
        table, method = dataset_label(r), r["spec"]["method"]
        varying = sorted(keys[table, method])
        for key in varying:
            x = value(r["spec"], key)
            if isinstance(x, (int, float)) and not isinstance(x, bool):
                rest = ",".join(f"{k}={spec_lib.describe_overrides({k: value(r['spec'], k)})[len(k) + 1:]}"
                                for k in varying if k != key)
                rows.append({"dataset": table, "key": key, "line": f"{method}[{rest}]" if rest else method,
                             "value": float(x), **{k: r["final"].get(k) for k in METRICS if METRICS[k][2]}})
    df = pd.DataFrame(rows)
    if df.empty:
        return staged.remove(path)  # nothing to draw: no stale figure from an earlier report
    df = df.groupby(["dataset", "key", "line"]).filter(lambda g: g["value"].nunique() > 1)
    if df.empty:
        return staged.remove(path)  # nothing to draw: no stale figure from an earlier report
    metrics = [k for k in METRICS if METRICS[k][2] and k in df and df[k].notna().any()]
    panels = list(dict.fromkeys(zip(df["dataset"], df["key"])))
    fig, axes = plt.subplots(len(panels), len(metrics), figsize=(3 * len(metrics), 2.8 * len(panels)), squeeze=False)
    for row, (table, key) in enumerate(panels):
        d = df[(df["dataset"] == table) & (df["key"] == key)]
        for col, k in enumerate(metrics):
            ax = axes[row][col]
            for line, g in d.groupby("line"):
                pts = [(v, *stats.mean_ci(p[k].tolist())) for v, p in g.groupby("value")]
                x, m, lo, hi = map(np.array, zip(*pts))
                drawn, = ax.plot(x, m, marker="o", label=line)
                ax.fill_between(x, lo, hi, color=drawn.get_color(), alpha=0.2, linewidth=0)
            ax.set_xscale("log" if (d["value"] > 0).all() and d["value"].max() / d["value"].min() > 20 else "linear")
            ax.set_xlabel(key)
            ax.set_title(f"{title(k)} · {table}", fontsize=8)
        axes[row][0].legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, path, 100, staged)




OUTCOMES = {"win": 1, "tie": 0, "loss": -1}
OUTCOME_COLOURS = matplotlib.colors.ListedColormap(["#d6604d", "#e0e0e0", "#4dac26"])  # loss, tie, win


def plot_verdict(ranking: pd.DataFrame, wins: pd.DataFrame, table: str, path: Path, staged: files.Staged,
                 colours: dict | None = None) -> bool:
    """The one-glance answer for one table, per main metric: a critical-difference diagram
    (scikit-posthocs) of the variants' mean ranks over seeds, bars joining variants the pairwise
    tests (Wilcoxon or Mann-Whitney, Holm) do not separate, the omnibus test in the title; below
    it the win/tie/loss matrix of those same tests (row against column), variants in the order of
    their mean rank over all metrics. ``colours``: variant -> colour, as in the other figures.
    Returns whether a figure was drawn."""
    r = ranking[ranking["dataset"] == table] if len(ranking) else ranking
    w = wins[wins["dataset"] == table] if len(wins) else wins
    metrics = list(dict.fromkeys(r["metric"])) if len(r) else []
    if not metrics:
        staged.remove(path)  # nothing to draw: no stale figure from an earlier report
        return False
    k = r.groupby("metric")["variant"].nunique().max()
    width = max(3.6, 0.45 * k + 0.14 * r["variant"].str.len().max() + 1.2)  # the CD labels sit beside the axis
    overall = list(r.groupby("variant", sort=False)["mean_rank"].mean().sort_values(kind="stable").index)
    fig, axes = plt.subplots(2, len(metrics), figsize=(width * len(metrics), 2.2 + 0.45 * k + 2.0),
                             squeeze=False, gridspec_kw={"height_ratios": [1.0 + 0.12 * k, 0.45 * k + 0.6]})
    for col, metric in enumerate(metrics):
        m = r[r["metric"] == metric]
        variants = list(m["variant"])
        pairs = w[w["metric"] == metric]
        p = pd.DataFrame(1.0, index=variants, columns=variants)
        for a, b, p_holm in zip(pairs["variant"], pairs["other"], pairs["p_holm"]):
            if a in p.index and b in p.index:
                p.loc[a, b] = p.loc[b, a] = p_holm
        ax = axes[0][col]
        scikit_posthocs.critical_difference_diagram(dict(zip(variants, m["mean_rank"])), p, ax=ax,
                                                    alpha=stats.ALPHA, label_props={"fontsize": 8},
                                                    color_palette=colours)
        row = m.iloc[0]
        ax.set_title(f"{title(metric)}: mean rank over {row['n']} {'seeds' if 'Friedman' in row['test'] else 'runs'} "
                     f"(1 = best)\n{row['test'].split(',')[0]} p = {stats.format_p(row['p'])}", fontsize=8)
        variants = [v for v in overall if v in variants]
        grid = pd.DataFrame(np.nan, index=variants, columns=variants)
        for a, b, outcome in zip(pairs["variant"], pairs["other"], pairs["outcome"]):
            if a in grid.index and b in grid.columns:
                grid.loc[a, b] = OUTCOMES[outcome]
        ax = axes[1][col]
        ax.imshow(grid.to_numpy(dtype=float), cmap=OUTCOME_COLOURS, vmin=-1, vmax=1)
        for i, a in enumerate(variants):
            for j, b in enumerate(variants):
                value = grid.loc[a, b]
                if np.isfinite(value):
                    ax.text(j, i, {1: "win", 0: "tie", -1: "loss"}[int(value)], ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(variants)), variants, rotation=35, ha="right", fontsize=7)
        ax.set_yticks(range(len(variants)), variants, fontsize=7)
        ax.set_title(f"{title(metric)}: row against column", fontsize=8)
    fig.suptitle(f"{table}: which variant wins (pairwise tests, Holm, 5 %; bars and 'tie': no significant difference)",
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, 100, staged)
    return True

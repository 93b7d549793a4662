"""Tables and plots, always rebuilt from the stored records (``python -m bench report``)."""
from __future__ import annotations

import base64
import dataclasses
import html
import io
import itertools
import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from torchvision.utils import make_grid, save_image

from bench import convergence, files, published, stats, store
from bench import spec as spec_lib
from bench.datasets import DATASETS
from bench.errors import BenchError
from bench.metrics import METRICS
from methods import METHODS

matplotlib.use("Agg")  # files only, no display needed

CI_NOTE = ("Cells: mean ± half-width of the 95 % Student-t confidence interval over finished seeds "
           "(diverged and failed runs are counted, not averaged). converged: finished seeds whose tracked metrics "
           "had stopped moving when training ended (" + convergence.RULE + "; bench/convergence.py). "
           "A quick profile is a smoke-test budget. hparams=shared: every method the same "
           "optimiser, learning rate, batch and generator steps; hparams=recommended: each method its paper's "
           "optimiser, learning rates, batch and D steps, the same generator steps.")


def _title(key: str) -> str:
    return METRICS[key][0] + (" ↓" if METRICS[key][1] == "lower" else " ↑")


def dataset_label(record: dict) -> str:
    """What a table or figure is about: a dataset under one budget profile and one hyperparameter
    policy (``ring8 · quick`` is the shared policy, ``ring8 · quick · recommended``: each method's own)."""
    s = record["spec"]
    policy = s.get("hparams", "shared")
    return f"{s['dataset']} · {s.get('profile', 'quick')}" + (f" · {policy}" if policy != "shared" else "")


def _order(record: dict) -> tuple:
    """Datasets and methods in registry order (unknown names last), then variant and seed."""
    s = record["spec"]
    rank = lambda names, n: names.index(n) if n in names else len(names)
    return (rank(DATASETS.names(), s["dataset"]), record["status"] != "reference",
            rank(METHODS.names(), s["method"]), record["variant"], s["seed"])


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
        policy = next(iter(variants.values()))["spec"].get("hparams", "shared")
        notes[table] = ", ".join(p for p in (f"hparams={policy}", spec_lib.describe_overrides(common)) if p)
        for vid, r in variants.items():
            name = r["variant"]
            extra = {k: overrides.get(vid, {}).get(k, _setting(r["spec"], k)) for k in varying}
            if extra and not r["spec"].get("label"):
                inner = name[len(r["spec"]["method"]) + 1:-1] if name.endswith("]") else ""
                both = ",".join(p for p in (inner, spec_lib.describe_overrides(extra)) if p)
                name = f"{r['spec']['method']}[{both}]"
            names[vid] = name
    return names, notes


def _setting(spec: dict, key: str):
    """A run setting ('lr') or dataset option ('ring8.std') of a stored spec."""
    target, dot, option = key.partition(".")
    return (spec.get("dataset_options") or {}).get(option) if dot else spec.get(key)


def converged(record: dict):
    """The record's convergence verdict (True, False, None: cannot be judged), from its history by
    :func:`bench.convergence.verdict` with its dataset's tracked metrics; None for a failed run or
    a reference row."""
    if record["status"] not in ("ok", "diverged"):
        return None
    dataset = record["spec"]["dataset"]
    tracked = DATASETS.get(dataset).tracked if dataset in DATASETS.names() else ()
    return convergence.verdict(record["history"], tracked, record["status"])["converged"]


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


def _cell(mean, lo, hi) -> str:
    if pd.isna(mean):
        return "–"
    text = f"{mean:.0f}" if abs(mean) >= 100 else f"{mean:.3g}"
    return text + (f" ± {(hi - lo) / 2:.2g}" if pd.notna(lo) and hi > lo else "")


def display_tables(summary: pd.DataFrame, notes: dict | None = None) -> dict[str, pd.DataFrame]:
    """Per dataset, formatted cells (mean ± 95 % CI half-width over seeds) under readable titles."""
    tables = {}
    for dataset, rows in summary.groupby("dataset", sort=False):
        metrics = [k for k in METRICS if k in rows and rows[k].notna().any()]
        table = pd.DataFrame({"method": rows["variant"], "seeds": rows["seeds"], "diverged": rows["n_diverged"],
                              "failed": rows["n_failed"],
                              "converged": [f"{c}/{n}" if j else "–" for c, n, j in
                                            zip(rows["converged"], rows["seeds"], rows["judged"])]})
        for k in metrics:
            table[METRICS[k][0]] = [_cell(m, lo, hi) for m, lo, hi in zip(rows[k], rows[k + "_lo"], rows[k + "_hi"])]
        heading = dataset + (f" ({notes[dataset]})" if notes and notes.get(dataset) else "")
        tables[heading] = table.reset_index(drop=True)
    return tables


def _history_frame(records: list[dict], names: dict) -> pd.DataFrame:
    rows = [{"dataset": dataset_label(r), "variant": names[r["variant_id"]], "seed": r["spec"]["seed"], **h}
            for r in records if r["status"] == "ok" for h in r["history"]]
    return pd.DataFrame(rows)


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
    long["metric"] = long["metric"].map(_title)
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


def plot_curves(hist: pd.DataFrame, metrics, table: str, path: Path, staged: files.Staged) -> bool:
    """Learning curves of one table: each metric against generator steps, the mean over seeds with
    its 95 % band, one panel per metric, linear axes (a signed estimator such as the unbiased MMD²
    gets its zero line). Returns whether a figure was drawn."""
    h = hist[hist["dataset"] == table] if not hist.empty else hist
    metrics = [m for m in metrics if m in h and h[m].notna().any()]
    if h.empty or not metrics:
        staged.remove(path)  # nothing to draw: no stale figure from an earlier report
        return False
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), squeeze=False)
    few = h.groupby("variant")["seed"].nunique().max() <= FEW_SEEDS
    for ax, metric in zip(axes[0], metrics):
        for variant, g in h.groupby("variant", sort=False):
            rows = [(step, *stats.mean_ci(p[metric].dropna().tolist())) for step, p in g.groupby("step")]
            x, mean, lo, hi = map(np.array, zip(*rows))
            line, = ax.plot(x, mean, marker="o", ms=2, label=variant)
            if few:  # a t-interval over 2-5 seeds is wider than the data: show the seeds themselves
                for _, seed in g.groupby("seed"):
                    ax.plot(seed["step"], seed[metric], color=line.get_color(), alpha=0.3, linewidth=0.7)
            elif np.isfinite(lo).any():
                ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        if (h[metric] < 0).any():
            ax.axhline(0, color="0.5", linewidth=0.8)
        ax.set_title(_title(metric), fontsize=9)
        ax.set_xlabel("generator steps")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v else "0"))
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{table}: learning curves (mean over seeds, "
                 + ("thin lines: each seed)" if few else "95 % CI band)"), fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, 100, staged)
    return True


def plot_metric_vs_time(hist: pd.DataFrame, path: Path, staged: files.Staged, metric: str = "mmd2") -> None:
    """A metric against training wall-clock: mean over seeds at each evaluation, with a 95 % band
    (symlog: unbiased MMD² can be < 0)."""
    if hist.empty or metric not in hist or hist[metric].isna().all():
        return staged.remove(path)  # nothing to draw: no stale figure from an earlier report
    tables = list(dict.fromkeys(hist["dataset"]))
    fig, axes = plt.subplots(1, len(tables), figsize=(5 * len(tables), 3.6), squeeze=False)
    for ax, table in zip(axes[0], tables):
        h = hist[hist["dataset"] == table]
        for variant, g in h.groupby("variant", sort=False):
            # evaluations by index: seeds of a step budget evaluate at the same steps
            g = g.assign(point=g.groupby("seed").cumcount())
            rows = [(p["train_seconds"].mean(), *stats.mean_ci(p[metric].tolist())) for _, p in g.groupby("point")]
            t, m, lo, hi = map(np.array, zip(*rows))
            line, = ax.plot(t, m, marker="o", ms=3, label=variant)
            if np.isfinite(lo).any():
                ax.fill_between(t, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.set_title(table, fontsize=9)
        ax.set_xlabel("training wall-clock (s)")
        ax.set_ylabel(f"{METRICS[metric][0]} (mean, 95 % CI over seeds)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, 100, staged)


def plot_sweeps(records: list[dict], path: Path, staged: files.Staged) -> None:
    """For each numeric setting or option that varies between variants of a method: each main
    metric against its value, one line per method and value of the other varying settings
    (mean and 95 % CI over seeds)."""
    def value(spec, key):
        return (spec.get("method_options") or {}).get(key, _setting(spec, key))

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
            ax.set_title(f"{_title(k)} · {table}", fontsize=8)
        axes[row][0].legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, path, 100, staged)


@dataclasses.dataclass
class Report:
    runs: pd.DataFrame
    summary: pd.DataFrame
    comparison: pd.DataFrame
    tables: dict
    figures: list
    published: pd.DataFrame   # published results beside ours (bench.published); empty without a preset's runs
    records: list             # the run records, in the order of ``runs`` (their environments)


NO_COMPARISONS = "No comparisons: every variant needs at least 2 finished seeds."


def comparison_intro(g: pd.DataFrame) -> str:
    """What one table's pairwise tests are (``g``: its rows of the comparison table)."""
    return (f"{len(g)} tests ({g['test'].iloc[0].split(',')[0]} where seeds pair up, Mann-Whitney U otherwise), "
            f"Holm-Bonferroni corrected over the table; significant at 5 %: {int(g['significant'].sum())}.")


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


def build(out: Path, print_fn=print) -> Report:
    """Write runs.csv, summary.{csv,md}, comparison.{csv,md} and plots/ under ``out``; print the tables.
    Every record is read and checked before anything is written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BenchError(f"--out {out} is a file, not a folder of results")
    records = sorted(store.load_records(out), key=_order)
    if not records:
        raise BenchError(f"no finished runs under {out}/runs; train some with `python -m bench run`")
    store.check_samples(records)  # before any file is replaced
    names, notes = _row_names(records)
    runs = runs_table(records)
    summary = summary_table(runs)
    comparison = comparison_table(runs)
    tables = display_tables(summary, notes)
    beside = published.beside_ours(runs, {r["variant_id"]: r for r in records})
    md = []
    for heading, table in tables.items():
        md += [f"## {heading}", "", table.to_markdown(index=False), ""]
    md += [CI_NOTE, ""] + published_markdown(beside)
    comparison_md = "\n".join(comparison_markdown(comparison)) if len(comparison) else NO_COMPARISONS + "\n"
    plots = out / "plots"
    staged = files.Staged()  # every file of the report is written at the end, all or none
    figures = []
    history = _history_frame(records, names)
    for name in dict.fromkeys(dataset_label(r) for r in records):
        mine = [r for r in records if dataset_label(r) == name]
        stem = name.replace(" · ", "_")
        if DATASETS.get(mine[0]["spec"]["dataset"]).kind == "images":
            plot_image_grids(mine, names, plots, stem, staged)
            figures.append(plots / f"{stem}_samples.png")
        else:
            plot_samples(mine, names, plots / f"{stem}_samples.png", staged)
            figures.append(plots / f"{stem}_samples.png")
        if plot_final_metrics(runs[runs["dataset"] == name], plots / f"{stem}_final_metrics.png", staged):
            figures.append(plots / f"{stem}_final_metrics.png")
        dataset = mine[0]["spec"]["dataset"]
        tracked = DATASETS.get(dataset).tracked if dataset in DATASETS.names() else ()
        if plot_curves(history, tracked, name, plots / f"{stem}_curves.png", staged):
            figures.append(plots / f"{stem}_curves.png")
    plot_metric_vs_time(history, plots / "mmd_vs_time.png", staged)
    plot_sweeps(records, plots / "sweeps.png", staged)
    figures += [plots / "mmd_vs_time.png", plots / "sweeps.png"]
    staged.add(out / "runs.csv", runs.to_csv(index=False).encode())
    staged.add(out / "summary.csv", summary.to_csv(index=False).encode())
    staged.add(out / "summary.md", "\n".join(md).encode())
    staged.add(out / "comparison.csv", comparison.to_csv(index=False).encode())
    staged.add(out / "comparison.md", comparison_md.encode())
    try:
        staged.commit()
    except OSError as err:
        raise BenchError(f"cannot write the report under {out}: {err.strerror or err}; the report there is as "
                         f"it was, and every record is intact") from None
    for heading, table in tables.items():
        print_fn(f"\n{heading}\n{table.to_string(index=False)}")
    print_fn(f"\n{CI_NOTE}")
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
    return Report(runs, summary, comparison, tables, [f for f in figures if f.exists()], beside, records)


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
.wide { overflow-x: auto; }
.note { color: #555; font-size: 0.9em; max-width: 60em; }
li.significant { font-weight: bold; }
img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.85em; }
"""


def write_html(report: Report, out: Path) -> Path:
    """The whole report as one self-contained page, ``out/report.html``, that any browser opens from
    disk: the summary tables, published results beside ours, the pairwise verdicts, every figure (PNG
    as a data URI) and each run's git revision and environment. Inline CSS; no script, no external
    resource; every text escaped."""
    esc = html.escape

    def frame(df: pd.DataFrame) -> str:
        return f'<div class="wide">{df.to_html(index=False, escape=True, border=0, na_rep="–")}</div>'

    revisions = pd.Series([(r.get("environment") or {}).get("git_revision", "unknown") for r in report.records])
    made = "; ".join(f"{esc(rev)} ({n} run{'s' if n > 1 else ''})" for rev, n in revisions.value_counts().items())
    parts = [f"<h1>bench report: {esc(str(out))}</h1>",
             f'<p class="note">{len(report.records)} run records; git revisions: {made}.</p>',
             "<h2>Summary</h2>"]
    for heading, table in report.tables.items():
        parts += [f"<h3>{esc(heading)}</h3>", frame(table)]
    parts.append(f'<p class="note">{esc(CI_NOTE)}</p>')
    beside = published.display_tables(report.published)
    if beside:
        parts.append("<h2>Published results beside ours</h2>")
        for heading, table in beside.items():
            parts += [f"<h3>{esc(heading)}</h3>", frame(table)]
            parts += ["<ul>" + "".join(f"<li>{esc(n)}</li>" for n in published.notes(report.published, heading))
                      + "</ul>"]
        parts.append(f'<p class="note">{esc(published.NOTE)}</p>')
    parts.append("<h2>Which variant is better</h2>")
    for dataset, g in report.comparison.groupby("dataset", sort=False) if len(report.comparison) else ():
        parts += [f"<h3>{esc(dataset)}</h3>", f"<p>{esc(comparison_intro(g))}</p>", "<ul>"]
        parts += [f'<li{" class=significant" if sig else ""}>{esc(v)}</li>'
                  for v, sig in zip(g["verdict"], g["significant"])] + ["</ul>"]
    if not len(report.comparison):  # an empty table has no columns to group by
        parts.append(f"<p>{esc(NO_COMPARISONS)}</p>")
    parts.append("<h2>Figures</h2>")
    for path in report.figures:
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{esc(Path(path).name)}">'
                     f"<figcaption>{esc(Path(path).name)}</figcaption></figure>")
    parts += ["<h2>Runs: what produced each</h2>", frame(environment_table(report))]
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>bench report: {esc(str(out))}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(parts) + "\n</body>\n</html>\n")
    path = Path(out) / "report.html"
    try:
        files.atomic_write(path, lambda f: f.write(page.encode()))
    except OSError as err:
        raise BenchError(f"cannot write {path}: {err.strerror or err}; the page there is as it was") from None
    return path

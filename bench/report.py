"""Tables and plots, always rebuilt from the stored records (``python -m bench report``)."""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402

from bench import store  # noqa: E402
from bench.datasets import DATASETS  # noqa: E402
from bench.registry import BenchError  # noqa: E402

# Final metrics in display order, with their column titles; a dataset shows those it has.
METRICS = {
    "fid": "FD",
    "kid": "KID",
    "precision": "precision",
    "recall": "recall",
    "density": "density",
    "coverage": "coverage",
    "classifier_score": "CS",
    "digits_covered": "digits",
    "kl_digits": "KL digits",
    "modes_covered": "modes",
    "high_quality_pct": "HQ %",
    "kl_modes": "KL modes",
    "mmd2": "MMD²",
    "energy": "energy",
    "train_seconds": "train s",
    "steps_per_second": "steps/s",
}
LOWER_IS_BETTER = {"fid", "kid", "kl_digits", "kl_modes", "mmd2", "energy", "train_seconds"}


def label(record: dict) -> str:
    """What a table or figure is about: a dataset under one budget profile."""
    c = record["config"]
    return f"{c['dataset']} · {c.get('profile', 'quick')}"


def _order(record: dict) -> tuple:
    """Datasets and methods in registry order (unknown names last), then seed."""
    from methods import METHODS
    c = record["config"]
    rank = lambda names, n: names.index(n) if n in names else len(names)
    return rank(DATASETS.names(), c["dataset"]), rank(METHODS.names(), c["method"]), c["method"], c["seed"]


def runs_table(records: list[dict]) -> pd.DataFrame:
    """One row per run: its configuration, status and final metrics."""
    rows = []
    for r in records:
        c = r["config"]
        row = {"dataset": label(r), "method": c["method"], "seed": c["seed"], "status": r["status"],
               "steps": r["steps_done"], "budget": c["steps"], "device": r["environment"]["device"]}
        row.update({k: r["final"].get(k) for k in METRICS})
        rows.append(row)
    df = pd.DataFrame(rows)
    return df.astype({k: float for k in METRICS if k in df}) if rows else df


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (dataset, method); ``n_diverged`` counts failed runs."""
    metrics = [k for k in METRICS if runs[k].notna().any()]
    groups = runs.groupby(["dataset", "method"], sort=False)
    out = groups.agg(seeds=("seed", "count"), n_diverged=("status", lambda s: int((s == "diverged").sum())))
    means, stds = groups[metrics].mean(), groups[metrics].std()
    for k in metrics:
        out[k], out[k + "_std"] = means[k], stds[k]
    return out.reset_index()


def _save(fig, path: Path, dpi: int) -> None:
    """Render to memory, then write atomically: an interrupted report leaves the old plot intact."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    store.atomic_write(path, lambda f: f.write(buffer.getvalue()))


def _fmt(mean, std) -> str:
    if pd.isna(mean):
        return "–"
    text = f"{mean:.0f}" if abs(mean) >= 100 else f"{mean:.3g}"
    return text + (f" ± {std:.2g}" if pd.notna(std) and std > 0 else "")


def display_tables(summary: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per dataset, a table of formatted cells (mean ± std over seeds) with readable titles."""
    tables = {}
    for dataset, rows in summary.groupby("dataset", sort=False):
        metrics = [k for k in METRICS if k in rows and rows[k].notna().any()]
        table = pd.DataFrame({"method": rows["method"], "seeds": rows["seeds"],
                              "diverged": rows["n_diverged"]})
        for k in metrics:
            table[METRICS[k]] = [_fmt(m, s) for m, s in zip(rows[k], rows[k + "_std"])]
        tables[dataset] = table.reset_index(drop=True)
    return tables


def _history_frame(records: list[dict]) -> pd.DataFrame:
    rows = [{"dataset": label(r), "method": r["config"]["method"], "seed": r["config"]["seed"], **h}
            for r in records for h in r["history"]]
    return pd.DataFrame(rows)


def _lowest_seed_per_method(records: list[dict]) -> dict[str, dict]:
    first = {}
    for r in sorted(records, key=lambda r: r["config"]["seed"]):
        first.setdefault(r["config"]["method"], r)
    return first


def plot_samples(records: list[dict], path: Path) -> None:
    """Generated samples (colour) over held-out data (grey): one panel per method."""
    first = _lowest_seed_per_method(records)
    methods = list(first)
    fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods), 3.4), squeeze=False)
    palette = dict(zip(methods, sns.color_palette("deep", len(methods))))
    some = next(iter(first.values()))
    dataset = DATASETS.create(some["config"]["dataset"], **some["config"].get("dataset_options", {}))
    data = dataset.held_out().numpy()
    lim = np.abs(data).max() * 1.3
    for ax, (m, r) in zip(axes[0], first.items()):
        xy = store.load_samples(r)
        if dataset.dim == 1:  # histogram of samples over the true density
            grid = np.linspace(-lim, lim, 400)
            ax.plot(grid, dataset.density(torch.from_numpy(grid)[:, None]).numpy(), c="0.4")
            ax.hist(xy[:, 0], bins=80, range=(-lim, lim), density=True, color=palette[m], alpha=0.6)
        else:
            ax.scatter(data[:, 0], data[:, 1], s=2, c="0.75", linewidths=0)
            ax.scatter(xy[:, 0], xy[:, 1], s=2, color=palette[m], linewidths=0, alpha=0.6)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_yticks([])
        f = r["final"]
        ax.set_title(f"{m} on {label(r)}\nmodes {f.get('modes_covered')}, HQ {f.get('high_quality_pct') or 0:.0f}%"
                     + ("  DIVERGED" if r["status"] == "diverged" else ""), fontsize=9)
        ax.set_xlim(-lim, lim)
        ax.set_xticks([])
    fig.tight_layout()
    _save(fig, path, 110)


def plot_image_grids(records: list[dict], folder: Path, stem: str) -> None:
    """A 10×10 grid of stored samples per method (PNG each), and all methods side by side."""
    from torchvision.utils import make_grid, save_image
    first = _lowest_seed_per_method(records)
    fig, axes = plt.subplots(1, len(first), figsize=(3.3 * len(first), 3.6), squeeze=False)
    for ax, (m, r) in zip(axes[0], first.items()):
        images = torch.from_numpy(store.load_samples(r)[:100]).float().div(255).unsqueeze(1)
        grid = make_grid(images, nrow=10, padding=1, pad_value=0.5)
        store.atomic_write(folder / f"{stem}_{m.replace(' ', '-')}.png", lambda f: save_image(grid, f, format="png"))
        ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
        f = r["final"]
        fd = f.get("fid")
        ax.set_title(f"{m}\nFD {fd:.1f}, digits {f.get('digits_covered')}" if fd is not None else m, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    _save(fig, folder / f"{stem}_samples.png", 110)


def plot_final_metrics(runs: pd.DataFrame, path: Path) -> None:
    metrics = [k for k in METRICS if runs[k].notna().any()]
    long = runs.melt(id_vars=["dataset", "method", "seed"], value_vars=metrics, var_name="metric")
    long["metric"] = long["metric"].map(lambda k: METRICS[k] + (" ↓" if k in LOWER_IS_BETTER else " ↑"))
    grid = sns.catplot(long, kind="bar", x="method", y="value", hue="method", col="metric", col_wrap=7,
                       sharey=False, height=2.4, aspect=0.9, errorbar="sd", legend=False)
    grid.set_titles("{col_name}")
    grid.figure.suptitle(runs["dataset"].iloc[0], y=1.0)
    for ax in grid.axes.flat:
        ax.tick_params(axis="x", labelbottom=True, rotation=30)
    grid.tight_layout()
    _save(grid.figure, path, 100)


def plot_mmd_vs_time(records: list[dict], path: Path) -> None:
    """Evaluation MMD² against training wall-clock seconds (symlog: unbiased MMD² can be < 0)."""
    hist = _history_frame(records)
    if hist.empty or "mmd2" not in hist:
        return
    grid = sns.relplot(hist, kind="line", x="train_seconds", y="mmd2", hue="method", col="dataset",
                       units="seed", estimator=None, marker="o", facet_kws={"sharex": False, "sharey": False},
                       height=3.2)
    for ax in grid.axes.flat:
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.set_ylim(bottom=min(0.0, float(hist["mmd2"].min())))
    grid.set_axis_labels("training wall-clock (s)", "MMD² to held-out data")
    _save(grid.figure, path, 100)


def build(out: Path, print_fn=print) -> dict[str, pd.DataFrame]:
    """Write runs.csv, summary.csv, summary.md and plots/ under ``out``; print the tables."""
    out = Path(out)
    records = sorted(store.load_records(out), key=_order)
    if not records:
        raise BenchError(f"no finished runs under {out}/runs; train some with `python -m bench run`")
    runs = runs_table(records)
    summary = summary_table(runs)
    tables = display_tables(summary)
    md = []
    for dataset, table in tables.items():
        md += [f"## {dataset}", "", table.to_markdown(index=False), ""]
    md_text = "\n".join(md)
    store.atomic_write(out / "runs.csv", lambda f: f.write(runs.to_csv(index=False).encode()))
    store.atomic_write(out / "summary.csv", lambda f: f.write(summary.to_csv(index=False).encode()))
    store.atomic_write(out / "summary.md", lambda f: f.write(md_text.encode()))
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    for name in dict.fromkeys(label(r) for r in records):
        mine = [r for r in records if label(r) == name]
        stem = name.replace(" · ", "_")
        if DATASETS.get(mine[0]["config"]["dataset"]).kind == "images":
            plot_image_grids(mine, plots, stem)
        else:
            plot_samples(mine, plots / f"{stem}_samples.png")
        plot_final_metrics(runs[runs["dataset"] == name], plots / f"{stem}_final_metrics.png")
    plot_mmd_vs_time(records, plots / "mmd_vs_time.png")
    for dataset, table in tables.items():
        print_fn(f"\n{dataset}\n{table.to_string(index=False)}")
    print_fn(f"\ntables: {out / 'summary.md'}, {out / 'summary.csv'}, {out / 'runs.csv'}; plots: {plots}/")
    return tables

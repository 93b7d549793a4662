"""``python -m bench perf mmd``: time MMD² value + gradient for every backend on a grid of sizes.

The reference in every row is the MMD a user would write with ``torch.cdist`` (three dense
kernel matrices); ratios are against it and against the fastest backend, measured in the same run.
A cell is skipped (and says why) when it would not fit in memory, or when the same backend's
time at the previous size, scaled by (N/N_prev)², predicts more than ``--max-seconds``.
"""
from __future__ import annotations

import math
import os
import re
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from bench import mmd, store

BACKENDS = ("dense", "blocked", "keops", "auto", "geomloss-auto", "cdist-naive")


def naive_cdist_mmd2(x, y, sigma):
    """The biased Gaussian MMD² as most code writes it: three full kernel matrices."""
    k = lambda a, b: torch.exp(-torch.cdist(a, b) ** 2 / (2 * sigma ** 2))
    return k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()


def geomloss_auto_mmd2(x, y, sigma):
    """GeomLoss with its own backend choice (by N·M alone); it returns half the biased MMD²."""
    from geomloss import SamplesLoss
    return 2 * SamplesLoss("gaussian", blur=sigma, backend="auto")(x, y)


def _call(backend, x, y, sigma):
    if backend == "cdist-naive":
        return naive_cdist_mmd2(x, y, sigma), "dense"
    if backend == "geomloss-auto":
        return geomloss_auto_mmd2(x, y, sigma), "online" if x.shape[0] * y.shape[0] > 5000 ** 2 else "tensorized"
    return mmd.mmd2(x, y, "gaussian", (sigma,), "biased", backend=backend, return_backend=True)


def _bytes_needed(backend, n, dtype_bytes=4) -> float:
    """Memory a backend needs beyond the inputs (what it keeps for the backward pass)."""
    if backend in ("dense", "cdist-naive"):
        return 6 * n * n * dtype_bytes
    if backend == "geomloss-auto" and n * n <= 5000 ** 2:
        return 6 * n * n * dtype_bytes
    return 0.0


def time_value_and_gradient(backend, n, dim, device, min_total=1.0, max_repeats=30):
    """Median seconds of one value + gradient (after one warm-up call, which compiles KeOps)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, dim, generator=gen).to(device).requires_grad_()
    y = (torch.randn(n, dim, generator=gen) + 0.1).to(device)
    sigma = math.sqrt(dim)  # keeps the kernel away from 0 and 1 whatever the dimension

    def once():
        value, chosen = _call(backend, x, y, sigma)
        value.backward()
        x.grad = None
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return chosen

    chosen = once()
    times = []
    while len(times) < max_repeats and (not times or sum(times) < min_total):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times), chosen


def flops(n, dim) -> float:
    """Counted work of value + gradient w.r.t. x: forward, 3 kernel sums over n² pairs at 2D flops
    (the matrix product) + ~10 (clamp, scale, exp, reduction) per pair; backward, the 2 sums that
    involve x, each one more product (2D) + ~5 per pair."""
    return n * n * (3 * (2 * dim + 10) + 2 * (2 * dim + 5))


def peak_gflops(device) -> tuple[float, str]:
    """A rough single-precision peak, to show the distance to the physical limit."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        table = {"H100": 67e3, "H200": 67e3, "A100": 19.5e3, "V100": 15.7e3, "L4": 30e3, "A10": 31e3, "T4": 8.1e3}
        for key, value in table.items():
            if key in name:
                return value, f"{name}, FP32 non-tensor-core peak from the datasheet"
        return math.nan, f"{name}: peak unknown"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    flags, mhz = "", 0.0
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = re.search(r"^flags\s*:(.*)$", text, re.M).group(1)
        mhz = float(re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M).group(1))
    except (OSError, AttributeError, ValueError):
        pass
    per_cycle = 64 if " avx512f" in flags else 32 if " fma" in flags else 8
    return cores * mhz / 1e3 * per_cycle, f"{cores} cores × {mhz / 1e3:.2f} GHz × {per_cycle} FP32 flops/cycle"


def run_mmd_benchmark(sizes, dims, device, max_seconds=20.0, backends=BACKENDS, log=print,
                      checkpoint=None) -> pd.DataFrame:
    """``checkpoint(rows)``, if given, is called after every cell, so an interrupted run keeps
    what it measured."""
    free = mmd._free_bytes(device)
    peak, peak_note = peak_gflops(device)
    log(f"device: {device} ({peak_note}); free memory {free / 2**30:.1f} GiB; keops: {mmd.keops_status()}")
    rows, last = [], {}
    for dim in dims:
        last.clear()
        for n in sizes:
            for backend in backends:
                row = {"N": n, "D": dim, "backend": backend}
                predicted = last.get(backend, (0, 0))[1] * (n / max(last.get(backend, (1, 0))[0], 1)) ** 2
                if backend in ("keops", "geomloss-auto") and mmd.keops_status() != "ok" and n * n > 5000 ** 2:
                    row["skipped"] = "pykeops unusable"
                elif _bytes_needed(backend, n) > 0.8 * free:
                    row["skipped"] = f"needs ~{_bytes_needed(backend, n) / 2**30:.0f} GiB"
                elif predicted > max_seconds:
                    row["skipped"] = f"predicted {predicted:.0f} s > --max-seconds"
                else:
                    try:
                        seconds, repeats, chosen = time_value_and_gradient(backend, n, dim, device)
                        row.update(seconds=seconds, repeats=repeats, ran=chosen,
                                   gflops=flops(n, dim) / seconds / 1e9)
                        last[backend] = (n, seconds)
                    except torch.OutOfMemoryError:
                        row["skipped"] = "out of memory"
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                rows.append(row)
                log(f"  N={n:>8} D={dim:>4} {backend:<14} "
                    + (f"{row['seconds'] * 1e3:10.2f} ms ({row['ran']})" if "seconds" in row else row["skipped"]))
                if checkpoint is not None:
                    checkpoint(pd.DataFrame(rows))
    return finish(pd.DataFrame(rows), device, peak, peak_note)


def finish(df: pd.DataFrame, device, peak: float, peak_note: str) -> pd.DataFrame:
    """Derived columns: GFLOP/s against peak, ratios to the fastest backend and to the naive code."""
    for col in ("seconds", "repeats", "ran", "gflops", "skipped"):
        if col not in df:
            df[col] = None
    df["peak_gflops"] = peak
    df["pct_of_peak"] = 100 * df["gflops"] / peak
    best = df[df["backend"].isin(["dense", "blocked", "keops"])].groupby(["N", "D"])["seconds"].min()
    naive = df[df["backend"] == "cdist-naive"].set_index(["N", "D"])["seconds"]
    key = list(zip(df["N"], df["D"]))
    df["vs_fastest"] = df["seconds"].to_numpy() / best.reindex(key).to_numpy()
    df["speedup_vs_naive"] = naive.reindex(key).to_numpy() / df["seconds"].to_numpy()
    df["device_name"] = torch.cuda.get_device_name(device) if device.type == "cuda" else peak_note
    return df


def csv_path(out: Path, device) -> Path:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return Path(out) / f"mmd_{re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-')}.csv"


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (N, D): milliseconds per backend, what auto ran, auto's ratio to the fastest."""
    ms = df.pivot_table(index=["N", "D"], columns="backend", values="seconds", aggfunc="first") * 1e3
    ms = ms.reindex(columns=[b for b in BACKENDS if b in ms.columns])
    auto = df[df["backend"] == "auto"].set_index(["N", "D"])
    ms["auto ran"] = auto["ran"]
    ms["auto/fastest"] = auto["vs_fastest"]
    fastest = df[df["backend"].isin(["dense", "blocked", "keops"])].dropna(subset=["seconds"])
    best = fastest.loc[fastest.groupby(["N", "D"])["seconds"].idxmin()].set_index(["N", "D"])
    ms["fastest"] = best["backend"]
    ms["fastest GFLOP/s"] = best["gflops"]
    ms["% of peak"] = best["pct_of_peak"]
    return ms.reset_index().sort_values(["D", "N"])


def write(df: pd.DataFrame, path: Path) -> Path:
    store.atomic_write(path, lambda f: f.write(df.to_csv(index=False).encode()))
    return path

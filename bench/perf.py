"""``python -m bench perf mmd``: time MMD² value + gradient for every backend on a grid of sizes.

The reference in every row is the MMD a user would write with ``torch.cdist`` (three dense
kernel matrices); ratios are against it, against the fastest column (GeomLoss included) and, for
``dense``, against GeomLoss's tensorized path (the same formula), all measured in the same run.
``auto`` says which rule chose its backend (stored calibration or shipped default).
A cell is skipped (and says why) when it would not fit in memory, or when the same backend's
time at the previous size, scaled by (N/N_prev)², predicts more than ``--max-seconds``.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from bench import files, mmd, report, store, studies
from bench.errors import BenchError

TIMED_BACKENDS = ("dense", "blocked", "keops", "auto", "geomloss-auto", "geomloss-tensorized", "cdist-naive")
OURS = ("dense", "blocked", "keops")


def naive_cdist_mmd2(x, y, sigma):
    """The biased Gaussian MMD² as most code writes it: three full kernel matrices."""
    k = lambda a, b: torch.exp(-torch.cdist(a, b) ** 2 / (2 * sigma ** 2))
    return k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()


def geomloss_auto_mmd2(x, y, sigma):
    """GeomLoss with its own backend choice (by N·M alone); it returns half the biased MMD²."""
    from geomloss import SamplesLoss
    return 2 * SamplesLoss("gaussian", blur=sigma, backend="auto")(x, y)


def geomloss_tensorized_mmd2(x, y, sigma):
    """GeomLoss's dense path (full kernel matrices): the same formula as our ``dense``."""
    from geomloss import SamplesLoss
    return 2 * SamplesLoss("gaussian", blur=sigma, backend="tensorized")(x, y)


def _call(backend, x, y, sigma):
    if backend == "cdist-naive":
        return naive_cdist_mmd2(x, y, sigma), "dense"
    if backend == "geomloss-tensorized":
        return geomloss_tensorized_mmd2(x, y, sigma), "tensorized"
    if backend == "geomloss-auto":
        return geomloss_auto_mmd2(x, y, sigma), "online" if x.shape[0] * y.shape[0] > 5000 ** 2 else "tensorized"
    return mmd.mmd2(x, y, "gaussian", (sigma,), "biased", backend=backend, return_backend=True)


def _bytes_needed(backend, n, dtype_bytes=4) -> float:
    """Memory a backend needs beyond the inputs (what it keeps for the backward pass)."""
    if backend in ("dense", "cdist-naive", "geomloss-tensorized"):
        return 6 * n * n * dtype_bytes
    if backend == "geomloss-auto" and n * n <= 5000 ** 2:
        return 6 * n * n * dtype_bytes
    return 0.0


def _problem(n, dim, device, dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, dim, generator=gen, dtype=dtype).to(device).requires_grad_()
    y = (torch.randn(n, dim, generator=gen, dtype=dtype) + 0.1).to(device)
    return x, y, math.sqrt(dim)  # sigma: keeps the kernel away from 0 and 1 whatever the dimension


def time_value_and_gradient(backend, n, dim, device, min_total=1.0, max_repeats=30):
    """Median seconds of one value + gradient (after one warm-up call, which compiles KeOps)."""
    x, y, sigma = _problem(n, dim, device)

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


def matmul_gflops(device, n=2000, dim=784, repeats=5) -> float:
    """Measured float32 rate of the product x yᵀ that dominates ``dense`` at D = 784: the
    practical matmul peak of this machine under its current load (best of ``repeats``)."""
    x, y, _ = _problem(n, dim, device)
    x = x.detach()
    best = math.inf
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        x @ y.T
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n * n * dim / best / 1e9


# --------------------------------------------------------------------------- calibration
CALIBRATION_SIZES = {"cpu": (500, 1000, 1500, 2000, 3000, 4000, 6000),
                     "cuda": (1000, 2000, 4000, 8000, 16000, 32000, 64000)}
CALIBRATION_BUDGET_S = {"cpu": 8.0, "cuda": 4.0}  # per dimension, after KeOps has compiled


def _interleaved_timer(device, dtype, min_total=1.0, max_repeats=10):
    """timer(n, dim) -> (dense seconds, keops seconds): value + gradient, warm-up first (KeOps
    compiles), then the two backends alternated and the best time of each kept (the least
    disturbed by other processes)."""
    def timer(n, dim):
        x, y, sigma = _problem(n, dim, device, dtype)

        def once(backend):
            t0 = time.perf_counter()
            mmd.mmd2(x, y, "gaussian", (sigma,), "biased", backend=backend).backward()
            x.grad = None
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return time.perf_counter() - t0
        once("dense"), once("keops")
        best = {"dense": math.inf, "keops": math.inf}
        spent, repeats = 0.0, 0
        while repeats < 2 or (repeats < max_repeats and spent < min_total):
            for backend in best:
                t = once(backend)
                best[backend], spent = min(best[backend], t), spent + t
            repeats += 1
        return best["dense"], best["keops"]
    return timer


def _crossover(dim, sizes, timer, budget_s, timings, log):
    """The smallest N from which keops beats dense at this dimension: interpolated in log-log
    between the last size where dense won and the first where keops won, once keops has won at
    the next size too (one win alone may be noise); extrapolated from the last two sizes (at
    most 2× beyond) when the time budget ends before keops wins."""
    spent, prev, win = 0.0, None, None
    for n in sizes:
        t_dense, t_keops = timer(n, dim)
        ratio = t_keops / t_dense
        timings.append({"dim": dim, "n": n, "dense_s": t_dense, "keops_s": t_keops})
        log(f"  D={dim:>4} N={n:>6}: dense {t_dense * 1e3:9.2f} ms, keops {t_keops * 1e3:9.2f} ms (keops/dense {ratio:.2f})")
        spent += 3 * (t_dense + t_keops)
        if ratio <= 1:
            if win is None:
                win = (prev, n, ratio)
            if win[1] != n or n == sizes[-1]:  # confirmed at the next size (or no next size)
                before, n1, r1 = win
                if before is None:
                    return {"max_dim": dim, "keops_min_n": n1, "how": f"keops faster from the smallest size, N={n1}"}
                n0, r0 = before
                frac = math.log(r0) / (math.log(r0) - math.log(r1))
                cross = math.ceil(math.exp(math.log(n0) + frac * (math.log(n1) - math.log(n0))) - 1e-9)
                return {"max_dim": dim, "keops_min_n": cross, "how": f"measured between N={n0} and N={n1}"}
            continue
        win = None
        if prev is not None and spent > budget_s:
            n0, r0 = prev
            slope = (math.log(ratio) - math.log(r0)) / (math.log(n) - math.log(n0))
            if slope < 0:
                cross = math.exp(math.log(n) - math.log(ratio) / slope)
                if cross <= 2 * n:
                    return {"max_dim": dim, "keops_min_n": math.ceil(cross - 1e-9),
                            "how": f"extrapolated from N={n0} and N={n} (time budget)"}
            break
        prev = (n, ratio)
    return {"max_dim": dim, "keops_min_n": None, "how": f"keops slower up to N={n} (×{ratio:.2f})"}


def calibrate(device, dtype=torch.float32, timer=None, log=print) -> dict:
    """Time dense against keops around the expected crossovers, for each dimension of
    ``mmd.CALIBRATION_DIMS``, and store the crossovers where ``auto`` reads them
    (``mmd.calibration_path``), written atomically. ``timer(n, dim) -> (dense s, keops s)``
    replaces the clock in tests. Needs a working pykeops."""
    if mmd.keops_status() != "ok":
        raise BenchError(f"--calibrate times keops against dense, but {mmd.keops_status()}; "
                         f"auto uses dense (or blocked) without a calibration")
    kind = mmd.device_kind(device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if kind == "cpu" and load > 0.5 * cores:
        log(f"warning: load average {load:.1f} on {cores} cores: other processes share the CPU, the "
            f"crossovers measured now may be off; calibrate again on a quiet machine")
    timer = timer or _interleaved_timer(device, dtype)
    timings, rules = [], []
    for dim in mmd.CALIBRATION_DIMS[kind]:
        rules.append(_crossover(dim, CALIBRATION_SIZES[kind], timer, CALIBRATION_BUDGET_S[kind], timings, log))
    data = {"key": mmd.calibration_key(device, dtype), "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_average": load, "rules": rules, "timings": timings}
    mmd.validate_calibration(data, data["key"])
    path = mmd.calibration_path(device, dtype)
    files.write_json(path, data)
    mmd.stored_calibration.cache_clear()
    data["path"] = str(path)
    return data


def ensure_calibration(device, dtype=torch.float32, timer=None, log=print) -> dict | None:
    """Before a benchmark run: a stale or corrupt stored calibration is redone (seconds), since
    timing is the point of this command; a missing one is left missing (auto then uses the shipped
    defaults, and says so). Training and tests never calibrate: ``auto`` only reads the file."""
    rules, note = mmd.stored_calibration(mmd.device_kind(device), dtype)
    if rules is None and note in ("invalid calibration", "unreadable calibration") and mmd.keops_status() == "ok":
        log(f"{note}: recalibrating first")
        data = calibrate(device, dtype, timer, log)
        log(calibration_table(data))
        return data
    return None


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
    cores = min(cores, torch.get_num_threads())  # the cores torch uses (OMP_NUM_THREADS)
    flags, mhz = "", 0.0
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = re.search(r"^flags\s*:(.*)$", text, re.M).group(1)
        mhz = float(re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M).group(1))
    except (OSError, AttributeError, ValueError):
        pass
    per_cycle = 64 if " avx512f" in flags else 32 if " fma" in flags else 8
    return cores * mhz / 1e3 * per_cycle, f"{cores} cores × {mhz / 1e3:.2f} GHz × {per_cycle} FP32 flops/cycle"


def run_mmd_benchmark(sizes, dims, device, max_seconds=20.0, backends=TIMED_BACKENDS, log=print,
                      checkpoint=None) -> pd.DataFrame:
    """``checkpoint(rows)``, if given, is called after every cell, so an interrupted run keeps
    what it measured."""
    free = mmd.free_bytes(device)
    peak, peak_note = peak_gflops(device)
    mm = matmul_gflops(device)
    rules, where = mmd.stored_calibration(mmd.device_kind(device), torch.float32)
    log(f"device: {device} ({peak_note}); measured matmul {mm:.0f} GFLOP/s; free memory {free / 2**30:.1f} GiB; "
        f"keops: {mmd.keops_status()}; auto: {'calibration ' + where if rules else 'shipped defaults (' + where + ')'}")
    rows, last = [], {}
    for dim in dims:
        last.clear()
        for n in sizes:
            for backend in backends:
                row = {"N": n, "D": dim, "backend": backend}
                if backend == "auto":
                    row["rule"] = mmd.explain_choice(n, n, dim, device, torch.float32)[1]
                # geomloss-auto runs KeOps above 5000² pairs: predict it from keops's own time
                basis = "keops" if backend == "geomloss-auto" and n * n > 5000 ** 2 else backend
                predicted = last.get(basis, (0, 0))[1] * (n / max(last.get(basis, (1, 0))[0], 1)) ** 2
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
                log(f"  N={n:>8} D={dim:>4} {backend:<19} "
                    + (f"{row['seconds'] * 1e3:10.2f} ms ({row['ran']})" if "seconds" in row else row["skipped"]))
                if checkpoint is not None:
                    checkpoint(pd.DataFrame(rows))
    return finish(pd.DataFrame(rows), device, peak, peak_note, mm)


def finish(df: pd.DataFrame, device, peak: float, peak_note: str, matmul: float = math.nan) -> pd.DataFrame:
    """Derived columns: GFLOP/s against the datasheet peak and the measured matmul rate; ratios to
    the fastest column (every one but auto, GeomLoss included) and to the naive code."""
    for col in ("seconds", "repeats", "ran", "rule", "gflops", "skipped"):
        if col not in df:
            df[col] = None
    df["peak_gflops"] = peak
    df["pct_of_peak"] = 100 * df["gflops"] / peak
    df["matmul_gflops"] = matmul
    df["pct_of_matmul"] = 100 * df["gflops"] / matmul
    best = df[df["backend"] != "auto"].groupby(["N", "D"])["seconds"].min()
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
    """One row per (N, D): milliseconds per backend; what auto ran, by which rule, and its ratio
    to the fastest column; dense against GeomLoss's tensorized path; dense's GFLOP/s and its share
    of the measured matmul rate."""
    ms = df.pivot_table(index=["N", "D"], columns="backend", values="seconds", aggfunc="first") * 1e3
    ms = ms.reindex(columns=[b for b in TIMED_BACKENDS if b in ms.columns])
    auto = df[df["backend"] == "auto"].set_index(["N", "D"])
    ms["auto ran"] = auto["ran"]
    ms["auto/fastest"] = auto["vs_fastest"]
    timed = df[df["backend"] != "auto"].dropna(subset=["seconds"])
    best = timed.loc[timed.groupby(["N", "D"])["seconds"].idxmin()].set_index(["N", "D"])
    ms["fastest"] = best["backend"]
    if {"dense", "geomloss-tensorized"} <= set(ms.columns):
        ms["dense/gl-tens"] = ms["dense"] / ms["geomloss-tensorized"]
    dense = df[df["backend"] == "dense"].set_index(["N", "D"])
    ms["dense GFLOP/s"] = dense["gflops"]
    ms["dense % matmul"] = dense["pct_of_matmul"]
    ms["auto rule"] = auto["rule"]
    return ms.reset_index().sort_values(["D", "N"])


def calibration_table(data: dict) -> str:
    lines = [f"{'D≤':>5} {'keops from N':>13}  how"]
    for rule in data["rules"]:
        lines.append(f"{rule['max_dim']:>5} {rule['keops_min_n'] or '-':>13}  {rule['how']}")
    return "\n".join(lines)


def write(df: pd.DataFrame, path: Path) -> Path:
    files.atomic_write(path, lambda f: f.write(df.to_csv(index=False).encode()))
    return path


# ------------------------------------------------------------------------- executor benchmark
def run_study_benchmark(steps: int = 400, seeds: int = 4, out: Path = Path("results/perf"), log=print):
    """``python -m bench perf study``: one toy study (3 methods × 2 datasets × ``seeds`` seeds,
    ``steps`` steps) run four ways in one session — one process at torch's default threads, one
    process at 1 thread, ``--jobs 2`` and Ray with 2 workers — then resumed with nothing left to
    do. Prints throughputs and ratios; checks that every way gave the same metrics."""
    ways = [("jobs 1, default threads", dict(jobs=1)), ("jobs 1, 1 thread", dict(jobs=1, threads=1)),
            ("jobs 2 (1 thread each)", dict(jobs=2)), ("ray, 2 workers", dict(jobs=2, executor="ray"))]
    root = Path(tempfile.mkdtemp(prefix="bench-perf-study-"))
    rows, finals = [], {}
    try:
        for name, how in ways:
            folder = root / name.split(" (")[0].replace(" ", "-").replace(",", "")
            p = studies.plan(["gmn", "gan", "nsgan"], ["ring8", "grid25"], list(range(seeds)), out=folder, steps=steps,
                     eval_points=1, device="cpu", **how)
            t0 = time.perf_counter()
            outcome = studies.execute(p, progress=False, log=lambda *a: None)
            seconds = time.perf_counter() - t0
            if outcome.failed:
                raise BenchError(f"{outcome.failed} runs failed under {name}; see {folder}")
            finals[name] = report.runs_table(store.load_records(folder)).sort_values(
                ["dataset", "variant", "seed"])[["mmd2", "energy", "modes_covered", "high_quality_pct"]].to_numpy()
            rows.append({"way": name, "runs": outcome.ran, "seconds": seconds, "runs_per_minute": 60 * outcome.ran / seconds,
                         "threads_per_run": p.threads or "default"})
            log(f"  {name:<26} {outcome.ran} runs in {seconds:6.1f} s")
        t0 = time.perf_counter()
        resumed = subprocess.run([sys.executable, "-m", "bench", "run", "--methods", "gmn,gan,nsgan", "--datasets",
                                  "ring8,grid25", "--seeds", f"0-{seeds - 1}", "--steps", str(steps), "--eval-points", "1",
                                  "--device", "cpu", "--out", str(root / "jobs-1-default-threads"), "--no-progress"],
                                 capture_output=True, text=True)
        resume_seconds = time.perf_counter() - t0
        if resumed.returncode != 0:
            raise BenchError(f"the resumed study failed: {resumed.stderr.strip().splitlines()[-1:]}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    df = pd.DataFrame(rows).set_index("way")
    rate = df["runs_per_minute"]
    base = finals[ways[0][0]]
    same = {name: bool(((f == base) | (pd.isna(f) & pd.isna(base))).all()) for name, f in finals.items()}
    ratios = {
        "jobs 2 / jobs 1 at 1 thread (target ≥ 1.8)": rate[ways[2][0]] / rate[ways[1][0]],
        "jobs 2 / jobs 1 at default threads (target ≥ 1)": rate[ways[2][0]] / rate[ways[0][0]],
        "ray / jobs 2 throughput (target ≥ 1/1.15 = 0.87)": rate[ways[3][0]] / rate[ways[2][0]],
    }
    df["same_metrics_as_first"] = pd.Series(same)
    log("\n" + df.to_string(float_format=lambda v: f"{v:.3g}"))
    for text, value in ratios.items():
        log(f"{text}: {value:.2f}")
    log(f"resumed study with nothing left to do (whole command, imports included; target < 10 s): "
        f"{resume_seconds:.1f} s")
    out = Path(out)
    files.atomic_write(out / "study_cpu.csv", lambda f: f.write(
        df.assign(resume_seconds=resume_seconds).to_csv().encode()))
    return df, ratios, resume_seconds

"""``python -m bench perf train``: how close a training step and an evaluation come to this
machine's pace.

Per method and network family: steps per second of the harness's step (:func:`bench.harness.train_step`,
what every run executes), of a bare PyTorch loop of the same networks and loss written here, and
of a 1024² fp32 matrix product, all in one process at one thread count, timed in interleaved
rounds (harness, bare, matmul, harness, ...) so that a machine slowing down mid-way slows all
three alike and the ratios hold; medians over rounds. FLOPs per step are counted by torch's
FlopCounterMode (matrix products and convolutions; elementwise work such as a kernel's exp is
not counted, so a step dominated by it shows a low GFLOP/s). Per dataset: one evaluation split
into its parts (preparing the reference, sampling, each metric function), by cProfile.
"""
from __future__ import annotations

import cProfile
import math
import os
import pstats
import statistics
import time
from pathlib import Path

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench import environment, harness
from bench import spec as spec_lib
from bench.datasets import DATASETS
from bench.errors import BenchError
from methods import METHODS

# network family -> the dataset and profile (or preset) that builds it
FAMILIES = {
    "toy-mlp": ("ring8", "quick"),
    "veegan-mlp": ("ring8", "veegan-toy"),
    "pacgan-mlp": ("ring8", "pacgan-toy"),
    "gdpp-mlp": ("ring8", "gdpp-toy"),
    "mnist-dcgan": ("mnist", "quick"),
    "pacgan-dcgan": ("stacked-mnist", "pacgan-stacked"),
}
EVAL_DATASETS = ("ring8", "grid25", "mnist", "stacked-mnist")
MATMUL_N = 1024
CPU = torch.device("cpu")


def bare_mmd2(x: torch.Tensor, y: torch.Tensor, bandwidths) -> torch.Tensor:
    """Unbiased Gaussian MMD², summed over bandwidths, as anyone would write it: three kernel
    matrices from cdist, autograd for the gradient."""
    def k(a, b):
        d2 = torch.cdist(a, b).square()
        return sum(torch.exp(d2 * (-0.5 / s ** 2)) for s in bandwidths)
    n, m = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return ((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
            - 2 * kxy.mean())


def bare_step(method, nets, real):
    """The same networks and loss in a plain loop: no requires_grad toggling, no loss dictionary, no
    divergence check. None for a method this command has no bare loop for (a plugin's own step)."""
    G, D = nets.generator, nets.discriminator
    if D is not None and hasattr(method, "discriminator_objective"):
        d_steps = getattr(method, "d_steps", 1)

        def step():
            for _ in range(d_steps):
                x = real()
                with torch.no_grad():
                    fake = G(nets.noise(len(x)))
                nets.d_opt.zero_grad(set_to_none=True)
                method.discriminator_objective(D, x, fake).backward()
                nets.d_opt.step()
                method.after_discriminator_step(D)
            nets.g_opt.zero_grad(set_to_none=True)
            method.generator_objective(D, G(nets.noise(len(x))), real).backward()
            nets.g_opt.step()
        return step
    if D is None and getattr(method, "kernel", None) == "gaussian" and not method.uses_autoencoder:
        method.step(nets, real)  # the median heuristic picks the bandwidths at the first step

        def step():
            x = real().flatten(1)
            loss = bare_mmd2(G(nets.noise(len(x))).flatten(1), x, method.bandwidths_)
            if method.root:
                loss = loss.clamp_min(1e-12).sqrt()
            nets.g_opt.zero_grad(set_to_none=True)
            loss.backward()
            nets.g_opt.step()
        return step
    return None


def rate(fn, seconds: float, device: torch.device = CPU) -> float:
    """Calls of ``fn`` per second over at least ``seconds`` (and at least 2 calls); on a GPU the
    queue is drained before and after, so the time is the work's, not the launches'."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    calls, t0 = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - t0 < seconds:
        fn()
        calls += 1
    sync()
    return calls / (time.perf_counter() - t0)


def count_flops(fn) -> float:
    """FLOPs of one call, by torch's counter; NaN where it cannot follow the step (it fails on a
    double backward such as WGAN-GP's gradient penalty)."""
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
    except RuntimeError:
        return math.nan
    return float(counter.get_total_flops())


def matmul_step(device: torch.device = CPU):
    a, b = torch.randn(MATMUL_N, MATMUL_N, device=device), torch.randn(MATMUL_N, MATMUL_N, device=device)
    return lambda: a @ b


def time_train(method: str, family: str, threads: int, rounds: int, seconds: float,
               device: torch.device = CPU) -> dict | None:
    """One row: the method's step on the family's networks against its bare loop and the matmul."""
    dataset, profile = FAMILIES[family]
    try:
        spec = spec_lib.resolve(method, dataset, 0, profile, device=device.type, threads=threads)
    except BenchError:  # e.g. a preset that fixes an option this method does not have
        return None
    _, _, m, nets, real = harness.build(spec)
    _, _, m_bare, nets_bare, real_bare = harness.build(spec)
    ours = lambda: harness.train_step(m, nets, real)  # noqa: E731
    bare = bare_step(m_bare, nets_bare, real_bare)
    matmul = matmul_step(device)
    for fn in (ours, bare, matmul):  # first calls allocate
        if fn is not None:
            rate(fn, seconds / 3, device)
    flops = count_flops(ours)
    runs = {"harness": [], "bare": [], "matmul": []}
    for _ in range(rounds):
        runs["harness"].append(rate(ours, seconds, device))
        if bare is not None:
            runs["bare"].append(rate(bare, seconds, device))
        runs["matmul"].append(rate(matmul, seconds, device) * 2 * MATMUL_N ** 3 / 1e9)
    steps = statistics.median(runs["harness"])
    bare_steps = statistics.median(runs["bare"]) if runs["bare"] else math.nan
    matmul_gflops = statistics.median(runs["matmul"])
    return {"family": family, "method": method, "dataset": dataset, "profile": profile, "batch": spec.batch_size,
            "threads": threads, "steps_per_s": steps, "bare_steps_per_s": bare_steps,
            "step_over_bare": bare_steps / steps, "mflop_per_step": flops / 1e6, "gflops": flops * steps / 1e9,
            "matmul_gflops": matmul_gflops, "of_matmul": flops * steps / 1e9 / matmul_gflops, "rounds": rounds}


def profile_parts(fn, parents=("evaluate",)) -> dict[str, float]:
    """Seconds of one call of ``fn`` by the functions that the ``parents`` functions call directly
    (an evaluate calling a parent class's evaluate is looked through), from cProfile."""
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    table = pstats.Stats(profiler).stats
    parts = {}
    for (file, _, name), (_, _, _, _, callers) in table.items():
        if name in parents or file == "~":  # Python's built-ins (dict.update, ...): not a part
            continue
        seconds = sum(c[3] for (_, _, caller), c in callers.items() if caller in parents)
        if seconds > 0:
            parts[f"{Path(file).stem}.{name}"] = parts.get(f"{Path(file).stem}.{name}", 0.0) + seconds
    return parts


def time_evaluation(dataset: str, threads: int, device: torch.device = CPU) -> list[dict]:
    """Rows of one evaluation of ``dataset`` at its quick profile's sample count: preparing the
    reference (once per process, shared by its runs), sampling the generator, and each metric function."""
    spec = spec_lib.resolve("nsgan", dataset, 0, "quick", device=device.type, threads=threads)
    device, ds, _, nets, _ = harness.build(spec)
    ds.reference(device)  # first call may train and cache a classifier: not what a run pays
    t0 = time.perf_counter()
    reference = ds.reference(device)
    rows = [("reference (once per process)", time.perf_counter() - t0)]
    z = nets.noise(ds.eval_size)
    t0 = time.perf_counter()
    samples = harness.generate(nets.generator, z)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    rows.append(("sampling", time.perf_counter() - t0))
    t0 = time.perf_counter()
    parts = profile_parts(lambda: ds.evaluate(samples, reference))
    total = time.perf_counter() - t0
    rows += sorted(parts.items(), key=lambda kv: -kv[1])
    rows.append(("evaluate, total (profiled)", total))
    return [{"dataset": dataset, "samples": ds.eval_size, "threads": threads, "part": part, "seconds": s}
            for part, s in rows]


def time_batched(method: str, family: str, seeds: int, threads: int, rounds: int, seconds: float,
                 device: torch.device = CPU) -> dict | None:
    """One row: ``seeds`` seeds of the method on the family's networks, one step each, trained as
    one model (``run --batch-seeds``) against one after another; interleaved rounds, medians. None
    for a method that cannot be batched."""
    dataset, profile = FAMILIES[family]
    try:
        specs = [spec_lib.resolve(method, dataset, s, profile, device=device.type, threads=threads)
                 for s in range(seeds)]
    except BenchError:
        return None
    if harness.group_key(specs[0]) is None:
        return None
    separate = [harness.build(spec) for spec in specs]
    _, _, m, nets, real, _, _ = harness.build_batched(specs)

    def one_by_one():
        for _, _, m_s, nets_s, real_s in separate:
            m_s.step(nets_s, real_s)
    batched = lambda: m.batched_step(nets, real)  # noqa: E731
    for fn in (one_by_one, batched):
        rate(fn, seconds / 3, device)
    runs = {"separate": [], "batched": []}
    for _ in range(rounds):
        runs["separate"].append(rate(one_by_one, seconds, device) * seeds)
        runs["batched"].append(rate(batched, seconds, device) * seeds)
    sep, bat = statistics.median(runs["separate"]), statistics.median(runs["batched"])
    return {"family": family, "method": method, "dataset": dataset, "profile": profile, "batch": specs[0].batch_size,
            "threads": threads, "seeds": seeds, "separate_seed_steps_per_s": sep, "batched_seed_steps_per_s": bat,
            "speedup": bat / sep, "rounds": rounds}


def run_train_benchmark(methods, families, threads: int, rounds: int, seconds: float, out: Path,
                        evaluations=EVAL_DATASETS, batched_seeds: int = 0, device: torch.device = CPU,
                        log=print) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    torch.set_num_threads(threads)
    load = os.getloadavg()[0]  # written beside the numbers: a busy machine slows every column
    rows, batched = [], []
    for family in families:
        dataset = FAMILIES[family][0]
        try:
            DATASETS.create(dataset)
        except BenchError as err:  # MNIST files missing: said, and the family skipped
            log(f"skipped {family}: {err}")
            continue
        for method in methods:
            row = time_train(method, family, threads, rounds, seconds, device)
            if row is None:
                continue
            rows.append(row)
            log(f"{family:>12} {method:>8}: {row['steps_per_s']:8.1f} steps/s, {row['step_over_bare']:.2f}× the bare "
                f"loop's time, {row['mflop_per_step']:.0f} MFLOP, {row['gflops']:.1f} GFLOP/s = "
                f"{100 * row['of_matmul']:.0f} % of the matmul's {row['matmul_gflops']:.0f}")
            row = time_batched(method, family, batched_seeds, threads, rounds, seconds, device) if batched_seeds > 1 else None
            if row is not None:
                batched.append(row)
                log(f"{family:>12} {method:>8}: {batched_seeds} seeds as one model {row['speedup']:.2f}× the "
                    f"seed-steps/s of one after another ({row['batched_seed_steps_per_s']:.0f} against "
                    f"{row['separate_seed_steps_per_s']:.0f})")
    evals = []
    for dataset in evaluations:
        try:
            evals += time_evaluation(dataset, threads, device)
        except BenchError as err:
            log(f"skipped the {dataset} evaluation: {err}")
    train, evaluation, batched = pd.DataFrame(rows), pd.DataFrame(evals), pd.DataFrame(batched)
    out.mkdir(parents=True, exist_ok=True)
    name_of_device, revision = environment.device_name(device), environment.git_revision()
    for df, name in ((train, "train"), (evaluation, "evaluation"), (batched, "batched")):
        if df.empty:  # a narrower run (--evaluations none) leaves the other CSV as it was
            continue
        df.insert(0, "device", name_of_device)
        df["git_revision"] = revision
        df["load_1min_before"] = load
        df.to_csv(out / f"{name}-{device.type}.csv", index=False)
    return train, evaluation, batched

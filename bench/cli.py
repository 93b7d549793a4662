"""Command line: ``python -m bench {list,run,report,perf,theory}``. Bad input exits with code 2."""
from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

from bench.registry import BenchError

DEFAULT_DATASETS = "ring8,grid25"


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise BenchError(f"--seeds takes comma-separated non-negative integers, e.g. 0,1,2; got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise BenchError(f"--seeds takes comma-separated non-negative integers, e.g. 0,1,2; got {text!r}")
    return list(dict.fromkeys(seeds))


def _parse_settings(items: list[str], methods: list[str], datasets: list[str]) -> dict[str, dict]:
    """``--set gmn.kernel=energy --set ring8.std=0.02`` -> {"gmn": {"kernel": "energy"}, ...}."""
    settings: dict[str, dict] = {}
    for item in items:
        target, _, rest = item.partition(".")
        key, eq, value = rest.partition("=")
        if not (target and key and eq):
            raise BenchError(f"--set takes NAME.OPTION=VALUE (NAME a chosen method or dataset); got {item!r}")
        if target not in methods + datasets:
            raise BenchError(f"--set {item!r}: {target!r} is not among the chosen methods or datasets "
                             f"({', '.join(methods + datasets)})")
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value  # a bare word such as energy
        settings.setdefault(target, {})[key] = parsed
    return settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="list the registered methods and datasets")

    run = sub.add_parser("run", help="train methods on datasets, then write tables and plots")
    run.add_argument("--methods", default=None, help="comma-separated (default: every registered method)")
    run.add_argument("--datasets", default=DEFAULT_DATASETS, help=f"comma-separated (default: {DEFAULT_DATASETS})")
    run.add_argument("--seeds", default="0", help="comma-separated non-negative integers (default: 0)")
    run.add_argument("--steps", type=int, default=None, help="generator updates per run (default: the dataset's)")
    run.add_argument("--batch-size", type=int, default=None)
    run.add_argument("--lr", type=float, default=None)
    run.add_argument("--profile", default="quick",
                     help="budget preset of each dataset: quick (CPU minutes) or paper (original scale, GPU)")
    run.add_argument("--arch", default=None, help="generator/discriminator: mlp (default) or dcgan (images)")
    run.add_argument("--noise", default=None, choices=["gaussian", "uniform"], help="default: the dataset's")
    run.add_argument("--eval-points", type=int, default=None, help="evaluations during training")
    run.add_argument("--data-dir", default=None,
                     help="folder with the four MNIST files (default: $BENCH_MNIST_DIR, ../shared/data/mnist, ...)")
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    run.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: results/)")
    run.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME.OPTION=VALUE",
                     help="an option of a method or dataset, e.g. gmn.kernel=energy, gan.d_steps=2")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    report = sub.add_parser("report", help="rebuild tables and plots from stored records, without training")
    report.add_argument("--out", type=Path, default=Path("results"))

    perf = sub.add_parser("perf", help="time the MMD backends (value + gradient) on a grid of sizes")
    perf.add_argument("what", choices=["mmd"])
    perf.add_argument("--sizes", default="1000,10000,100000,1000000", help="comma-separated N (= M)")
    perf.add_argument("--dims", default="2,32,784", help="comma-separated dimensions D")
    perf.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    perf.add_argument("--max-seconds", type=float, default=20.0,
                      help="skip a cell whose time, extrapolated from the previous size, exceeds this")
    perf.add_argument("--out", type=Path, default=Path("results/perf"))
    perf.add_argument("--calibrate", nargs="?", const="float32", default=None, metavar="DTYPE",
                      help="time dense against keops on this machine (seconds), store the crossovers "
                           "that backend='auto' follows from then on, print them and exit; "
                           "DTYPE float32 (default) or float64")

    theory = sub.add_parser("theory", help="check the GAN theorems on 1-D Gaussians (figures + tables)")
    theory.add_argument("--out", type=Path, default=Path("results/theory"))
    theory.add_argument("--quick", action="store_true", help="a fifth of the steps (a smoke test)")
    theory.add_argument("--no-progress", action="store_true")
    return parser


def cmd_list(args) -> None:
    from bench.datasets import DATASETS
    from methods import METHODS
    for title, registry in (("methods", METHODS), ("datasets", DATASETS)):
        print(f"{title}:")
        for name, text in registry.describe().items():
            print(f"  {name:<8} {text}")


def cmd_run(args) -> None:
    from bench import report
    from bench.datasets import DATASETS
    from bench.harness import RunConfig, evaluate_calibration, train_and_evaluate
    from methods import METHODS

    # Everything is validated before anything is trained or written.
    methods = METHODS.parse(args.methods or ",".join(METHODS.names()))
    datasets = DATASETS.parse(args.datasets)
    seeds = _parse_seeds(args.seeds)
    settings = _parse_settings(args.settings, methods, datasets)
    if args.data_dir is not None and "mnist" in datasets:
        settings.setdefault("mnist", {})["data_dir"] = args.data_dir
    configs = []
    for d in datasets:
        DATASETS.create(d, **settings.get(d, {}))
        for m in methods:
            METHODS.create(m, **settings.get(m, {}))
            for s in seeds:
                configs.append(RunConfig(method=m, dataset=d, seed=s, profile=args.profile, steps=args.steps,
                                         batch_size=args.batch_size, lr=args.lr, noise=args.noise,
                                         arch=args.arch, eval_points=args.eval_points,
                                         device=args.device, method_options=settings.get(m, {}),
                                         dataset_options=settings.get(d, {})).resolved())
    if args.out.exists() and not args.out.is_dir():
        raise BenchError(f"--out {args.out} exists and is not a folder")

    start = time.perf_counter()
    for cfg in configs:
        record = train_and_evaluate(cfg, args.out, progress=not args.no_progress)
        if record["status"] != "ok":
            print(f"warning: {cfg.method} on {cfg.dataset} (seed {cfg.seed}) diverged at step "
                  f"{record['diverged_at_step']}; recorded as diverged", file=sys.stderr)
    for d in datasets:  # reference rows (e.g. MNIST's training set and uniform noise)
        evaluate_calibration(d, args.profile, args.out, settings.get(d, {}), args.device)
    report.build(args.out)
    print(f"total wall-clock: {time.perf_counter() - start:.1f} s for {len(configs)} runs")


def cmd_report(args) -> None:
    from bench import report
    report.build(args.out)


def _positive_ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise BenchError(f"{flag} takes comma-separated positive integers; got {text!r}")
    return values


CALIBRATION_DTYPES = ("float32", "float64")


def cmd_perf(args) -> None:
    import torch

    from bench import environment, perf
    if args.calibrate is not None:
        if args.calibrate not in CALIBRATION_DTYPES:
            raise BenchError(f"--calibrate takes a dtype, {' or '.join(CALIBRATION_DTYPES)} (default float32); "
                             f"got {args.calibrate!r}")
        device = environment.resolve_device(args.device)
        dtype = getattr(torch, args.calibrate)
        print(f"calibrating auto on {device} ({args.calibrate}): dense against keops, value + gradient")
        data = perf.calibrate(device, dtype)
        print("\ncrossovers (auto runs keops from these N, dense below; dense above the last D)")
        print(perf.calibration_table(data))
        print(f"\nwritten: {data['path']}")
        return
    sizes, dims = _positive_ints(args.sizes, "--sizes"), _positive_ints(args.dims, "--dims")
    if args.max_seconds <= 0:
        raise BenchError(f"--max-seconds must be positive; got {args.max_seconds}")
    device = environment.resolve_device(args.device)
    perf.ensure_calibration(device, torch.float32)
    path = perf.csv_path(args.out, device)
    df = perf.run_mmd_benchmark(sizes, dims, device, args.max_seconds,
                                checkpoint=lambda rows: perf.write(rows, path.with_suffix(".partial.csv")))
    perf.write(df, path)
    path.with_suffix(".partial.csv").unlink(missing_ok=True)
    print("\nmilliseconds per value + gradient (Gaussian MMD², biased, float32; median of repeats)")
    print(perf.summary(df).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"\nwritten: {path}")


def cmd_theory(args) -> None:
    from bench import theory
    if args.out.exists() and not args.out.is_dir():
        raise BenchError(f"--out {args.out} exists and is not a folder")
    theory.run_all(args.out, quick=args.quick, progress=not args.no_progress)


COMMANDS = {"list": cmd_list, "run": cmd_run, "report": cmd_report, "perf": cmd_perf, "theory": cmd_theory}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; the run in progress wrote nothing", file=sys.stderr)
        return 130
    return 0

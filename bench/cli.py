"""Command line: ``python -m bench {list,run,report,export,perf,theory}``. Bad input exits with code 2."""
from __future__ import annotations

import argparse
import os
import time
import sys
from pathlib import Path

from bench.errors import BenchError

# import names of the packages pyproject.toml requires (a missing one is an install problem, said plainly)
DEPENDENCIES = {"torch", "torchvision", "geomloss", "pykeops", "sklearn", "scipy", "statsmodels", "pandas",
                "seaborn", "matplotlib", "tqdm", "tabulate", "numpy", "scikit_posthocs"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="show pykeops' messages (compilation, CUDA)")
    sub = parser.add_subparsers(dest="command", required=True)

    plugin_help = ("a .py file or module to import for this command (it registers methods or datasets); "
                   "repeat for several. Installed plugins (entry points bench.methods / bench.datasets) need none")
    listing = sub.add_parser("list", help="list the registered methods and datasets, and where each comes from")
    listing.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE", help=plugin_help)

    run = sub.add_parser("run", help="train methods on datasets (a study), then write tables and plots",
                         description="Plans every run (methods × datasets × sweeps × seeds), skips those already "
                                     "finished under --out, runs the rest, and rebuilds the report.")
    run.add_argument("--study", type=Path, default=None,
                     help="a TOML study file holding any of these settings (flags given here override it)")
    run.add_argument("--methods", default=None, help="comma-separated (default: every registered method)")
    run.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE", help=plugin_help)
    run.add_argument("--hparams", default=None,
                     help="shared (default: one optimiser and batch for every method, the budget is equal) or "
                          "recommended (each method's paper's optimiser, learning rates, batch, D steps)")
    run.add_argument("--datasets", default=None,
                     help="comma-separated (default: ring8,grid25, or those the --preset covers)")
    run.add_argument("--seeds", default=None, help="seeds and ranges, e.g. 0-9 or 0,1,2 (default: 0)")
    run.add_argument("--steps", default=None, help="generator updates per run (default: the profile's)")
    run.add_argument("--budget-seconds", default=None,
                     help="instead of --steps: seconds of training wall-clock per run (evaluations evenly in time)")
    run.add_argument("--batch-size", default=None)
    run.add_argument("--lr", default=None)
    run.add_argument("--profile", default=None,
                     help="budget of each dataset: quick (a smoke test, CPU minutes, default), standard (toy mixtures: 10 × quick, where the learning curves plateau) or paper (original scale, GPU)")
    run.add_argument("--preset", default=None,
                     help="a paper's whole protocol instead of a profile (networks, optimiser, batch, budget, data); "
                          "`bench list` shows them. --steps and --set still override it, and the record says so")
    run.add_argument("--arch", default=None, help="generator/discriminator: mlp (default) or dcgan (images)")
    run.add_argument("--noise", default=None, help="gaussian or uniform (default: the profile's)")
    run.add_argument("--eval-points", default=None, help="evaluations during training")
    run.add_argument("--patience", default=None, metavar="N",
                     help="stop a run once it is judged converged at N evaluations in a row (--steps is then a cap)")
    run.add_argument("--lr-schedule", default=None, metavar="NAME",
                     help="constant (default) or cosine: every learning rate annealed to 0 over --steps")
    run.add_argument("--train-size", default=None,
                     help="a fixed training set of this many samples, drawn once per run (default: fresh samples)")
    run.add_argument("--data-dir", default=None,
                     help="folder with the four IDX files of the chosen datasets that read files (mnist, "
                          "fashion-mnist, stacked-mnist), or a torchvision root holding MNIST/raw, FashionMNIST/raw "
                          "(default: $BENCH_MNIST_DIR, $BENCH_FASHION_MNIST_DIR, ../shared/data/mnist, ...)")
    run.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    run.add_argument("--out", type=Path, default=None, help="output folder (default: results/)")
    run.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME.OPTION=VALUE",
                     help="an option of a method or dataset, e.g. gmn.kernel=energy, gan.d_steps=2")
    run.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2,...",
                     help="several values of a run setting or option; several --sweep make a cartesian product, "
                          "e.g. --sweep gan.d_steps=1,2,5 --sweep lr=1e-4,2e-4")
    run.add_argument("--jobs", default=None, help="runs at once, each in its own process (default: 1)")
    run.add_argument("--threads", default=None, help="torch threads per run (default: cores / jobs)")
    run.add_argument("--batch-seeds", default=None, metavar="N",
                     help="train up to N seeds of a variant as one model (gan, nsgan, lsgan, hinge; step budgets): "
                          "for GPUs, see the README (default: 1, each seed alone)")
    run.add_argument("--executor", default=None, help="auto (default: local processes), local or ray")
    run.add_argument("--address", default=None, help="with --executor ray: the cluster (default: a new local Ray)")
    run.add_argument("--force", action="store_true", help="rerun runs that have already finished")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    html_help = "also write the whole report as one self-contained page, OUT/report.html (figures embedded)"
    run.add_argument("--html", action="store_true", help=html_help)

    report = sub.add_parser("report", help="rebuild tables and plots from stored records, without training")
    report.add_argument("--out", type=Path, default=Path("results"))
    report.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE", help=plugin_help)
    report.add_argument("--html", action="store_true", help=html_help)
    report.add_argument("--against", type=Path, metavar="FOLDER",
                        help="another results folder (its report built): set its pairwise verdicts beside this "
                             "one's, each survived, reversed, vanished or new, in OUT/changes.md")

    export = sub.add_parser("export", help="stored runs into TensorBoard or MLflow, without retraining",
                            description="Reads the records under OUT and writes every run's evaluation history "
                                        "(steps and training seconds) to TensorBoard event files or an MLflow "
                                        "tracking store. Optional extras: pip install -e \".[tensorboard]\" or "
                                        "\".[mlflow]\".")
    export.add_argument("tool", choices=["tensorboard", "mlflow"])
    export.add_argument("out", type=Path, help="a results folder (the --out of run and report)")
    export.add_argument("--to", type=Path, default=None,
                        help="tensorboard: the folder of TensorBoard runs (default: OUT/tensorboard; an earlier "
                             "export there is replaced); then: tensorboard --logdir TO")
    export.add_argument("--tracking-uri", default=None,
                        help="mlflow: the tracking store (default: sqlite:///OUT/mlflow.db; any MLflow URI, "
                             "e.g. http://host:5000); then: mlflow ui --backend-store-uri URI")
    export.add_argument("--experiment", default=None, help="mlflow: experiment name (default: OUT's folder name)")

    perf = sub.add_parser("perf", help="mmd: time the MMD backends on a grid of sizes; study: the executors' "
                                       "throughput on a toy study; train: each method's step against a bare "
                                       "loop and the matmul rate, and an evaluation's parts")
    perf.add_argument("what", choices=["mmd", "study", "train"])
    perf.add_argument("--methods", default=None, help="train: comma-separated (default: the built-in methods)")
    perf.add_argument("--families", default=None,
                      help="train: network families, comma-separated (default: all of toy-mlp, veegan-mlp, "
                           "pacgan-mlp, gdpp-mlp, mnist-dcgan, pacgan-dcgan; 'none' for none)")
    perf.add_argument("--threads", type=int, default=None, help="train: torch threads (default: the cores)")
    perf.add_argument("--rounds", type=int, default=5, help="train: interleaved timing rounds (default 5)")
    perf.add_argument("--seconds", type=float, default=0.5, help="train: seconds per timing in a round")
    perf.add_argument("--evaluations", default=None,
                      help="train: datasets whose evaluation is split into parts (default: ring8,grid25,mnist,"
                           "stacked-mnist; 'none' for none)")
    perf.add_argument("--batched", type=int, default=0, metavar="S",
                      help="train: also time S seeds trained as one model against one after another (batchable "
                           "methods; default: not timed)")
    perf.add_argument("--steps", type=int, default=400, help="study: steps per run (default 400)")
    perf.add_argument("--seeds", type=int, default=4, help="study: seeds per (method, dataset) (default 4)")
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


def cmd_list(args) -> int:
    """Every method and dataset with its source; plugins that cannot be used are listed on stderr
    and make the exit code 2."""
    from bench import plugins
    from bench.datasets import DATASETS
    from bench.presets import PRESETS
    from methods import METHODS
    for title, registry in (("methods", METHODS), ("datasets", DATASETS), ("presets", PRESETS)):
        print(f"{title}:")
        sources = {name: registry.source(name) for name in registry.names()}
        width = max(map(len, sources.values()), default=7)
        names = max([8, *map(len, sources)])
        for name, text in registry.describe().items():
            if registry is PRESETS:  # what a preset covers decides where it can be used
                text = f"[{', '.join(registry.get(name).settings)}] {text}"
            print(f"  {name:<{names}} {sources[name]:<{width}}  {text}")
    problems = plugins.problems()
    for text in problems.values():
        print(f"error: {text}", file=sys.stderr)
    return 2 if problems else 0


def _int_flag(text, flag):
    try:
        return int(text)
    except (TypeError, ValueError):
        raise BenchError(f"{flag} takes a positive integer; got {text!r}") from None


def study_arguments(args) -> dict:
    """The run command's flags (over the study file's settings, if any) -> keyword arguments of
    :func:`bench.study.plan`."""
    from bench import studies as study
    kwargs = study.read_study(args.study) if args.study else {}
    for flag, key in (("methods", "methods"), ("datasets", "datasets"), ("seeds", "seeds"), ("profile", "profile"),
                      ("preset", "preset"),
                      ("out", "out"), ("executor", "executor"), ("address", "address"), ("device", "device")):
        if getattr(args, flag) is not None:
            kwargs[key] = getattr(args, flag)
    if args.plugin:  # a study file's plugins (a list, or one name) and then the command line's
        given = kwargs.get("plugins", [])
        kwargs["plugins"] = [*([given] if isinstance(given, str) else given), *args.plugin]
    for flag in ("jobs", "threads", "batch_seeds"):
        if getattr(args, flag) is not None:
            kwargs[flag] = _int_flag(getattr(args, flag), f"--{flag.replace('_', '-')}")
    for key in study.SETTING_TYPES:
        value = getattr(args, key, None)
        if value is not None:
            kwargs[key] = value
    if "datasets" not in kwargs:  # a preset runs on the datasets it covers
        kwargs["datasets"] = study.default_datasets(kwargs.get("preset"))
    options = kwargs.setdefault("options", {})
    for item in args.settings:
        key, value = study.parse_assignment(item, "--set")
        target, dot, option = key.partition(".")
        if not (dot and target and option):
            raise BenchError(f"--set takes NAME.OPTION=VALUE (NAME a chosen method or dataset); got {item!r}")
        options.setdefault(target, {})[option] = study.parse_option(value)
    if args.data_dir is not None:  # to every chosen dataset with a data_dir option
        from bench.datasets import DATASETS
        datasets = kwargs["datasets"].split(",") if isinstance(kwargs["datasets"], str) else kwargs["datasets"]
        datasets = [d.strip() for d in datasets if isinstance(d, str) and d.strip()]  # plan() judges the rest
        readers = [d for d in datasets if "data_dir" in DATASETS.defaults(d)]
        if datasets and not readers:
            takers = [n for n in DATASETS.names() if "data_dir" in DATASETS.defaults(n)]
            raise BenchError(f"--data-dir is for datasets read from files ({', '.join(takers)}); none of the "
                             f"chosen datasets ({', '.join(datasets)}) reads any")
        for d in readers:
            options.setdefault(d, {})["data_dir"] = args.data_dir
    sweep = kwargs.setdefault("sweep", {})
    swept = {}  # key -> the --sweep that gave it (the study file's [sweep] is overridden, not repeated)
    for item in args.sweep:
        key, value = study.parse_assignment(item, "--sweep")
        if key in swept:
            raise BenchError(f"--sweep {key} is given twice ({swept[key]!r} and {item!r}); give every value in "
                             f"one: --sweep {key}=V1,V2,...")
        swept[key] = item
        values = study.split_values(value)
        if any(not v for v in values):
            raise BenchError(f"--sweep {item!r}: an empty value; write KEY=V1,V2,...")
        sweep[key] = [study.parse_option(v) if "." in key else v for v in values]
    return kwargs


def cmd_run(args) -> None:
    from bench import plugins, report, studies as study
    start = time.perf_counter()
    # Everything is validated before anything is trained or written.
    plan = study.plan(**study_arguments(args))
    for name, text in plugins.problems().items():  # plugins not asked for: said, not fatal
        print(f"warning: {text}", file=sys.stderr)
    outcome = study.execute(plan, force=args.force, progress=not args.no_progress)
    built = report.build(plan.out)
    if args.html:
        print(f"html: {report.write_html(built, plan.out)}")
    print(f"total wall-clock: {time.perf_counter() - start:.1f} s; {outcome.ran} runs ran ({outcome.diverged} diverged, "
          f"{outcome.failed} failed), {outcome.skipped} already finished, {outcome.busy} left to another process")


def cmd_report(args) -> None:
    from bench import changes, report
    before = changes.load_comparison(args.against) if args.against else None  # a bad folder stops before writing
    built = report.build(args.out)
    if args.html:
        print(f"html: {report.write_html(built, args.out)}")
    if before is not None:
        print("\n" + changes.write(before, built.comparison, args.against, args.out))


def cmd_export(args) -> None:
    from bench import export
    if args.tool == "tensorboard":
        if args.tracking_uri or args.experiment:
            raise BenchError("--tracking-uri and --experiment are for export mlflow; tensorboard takes --to")
        to, n = export.tensorboard(args.out, args.to)
        print(f"{n} runs written as TensorBoard scalars under {to}; view them with: tensorboard --logdir {to}")
        return
    if args.to:
        raise BenchError("--to is for export tensorboard; mlflow takes --tracking-uri and --experiment")
    uri, name, logged, skipped = export.mlflow(args.out, args.tracking_uri, args.experiment)
    print(f"{logged} runs logged to MLflow experiment {name!r} at {uri}"
          + (f" ({skipped} exported before, skipped)" if skipped else "")
          + f"; view them with: mlflow ui --backend-store-uri {uri}")


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
    if args.what == "train":
        return perf_train(args)
    if args.what == "study":
        if args.steps < 1 or args.seeds < 2:
            raise BenchError(f"perf study needs --steps >= 1 and --seeds >= 2; got {args.steps}, {args.seeds}")
        perf.run_study_benchmark(args.steps, args.seeds, args.out)
        return
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


def perf_train(args) -> None:
    from bench import environment, pace
    from methods import METHODS
    builtin = [m for m in METHODS.names() if METHODS.source(m) == "builtin"]
    methods = _names(args.methods, builtin, METHODS.names(), "--methods")
    families = [] if args.families == "none" else _names(args.families, list(pace.FAMILIES), list(pace.FAMILIES),
                                                         "--families")
    evaluations = [] if args.evaluations == "none" else _names(args.evaluations, list(pace.EVAL_DATASETS),
                                                               list(pace.EVAL_DATASETS), "--evaluations")
    threads = (os.cpu_count() or 1) if args.threads is None else args.threads
    if threads < 1 or args.rounds < 1 or not args.seconds > 0 or args.batched < 0:
        raise BenchError(f"perf train needs --threads >= 1, --rounds >= 1, --seconds > 0 and --batched >= 0; got "
                         f"{threads}, {args.rounds}, {args.seconds}, {args.batched}")
    if args.out.exists() and not args.out.is_dir():
        raise BenchError(f"--out {args.out} is a file; give a folder for the CSVs")
    device = environment.resolve_device(args.device)
    train, evaluation, batched = pace.run_train_benchmark(methods, families, threads, args.rounds, args.seconds,
                                                          args.out, evaluations, args.batched, device)
    if len(train):
        print("\nsteps/s: the harness's step; bare: a plain loop of the same networks and loss; "
              "of matmul: achieved GFLOP/s over a 1024² fp32 matmul's, same process (medians of interleaved rounds)")
        print(train[["family", "method", "steps_per_s", "bare_steps_per_s", "step_over_bare", "mflop_per_step",
                     "gflops", "matmul_gflops", "of_matmul"]].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if len(batched):
        print(f"\n{args.batched} seeds trained as one model (run --batch-seeds) against one after another: "
              f"seed-steps per second (medians of interleaved rounds)")
        print(batched[["family", "method", "seeds", "separate_seed_steps_per_s", "batched_seed_steps_per_s",
                       "speedup"]].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if len(evaluation):
        print("\none evaluation, seconds by part")
        print(evaluation[["dataset", "samples", "part", "seconds"]].to_string(
            index=False, float_format=lambda v: f"{v:.3g}"))
    written = [args.out / f"{name}-{device.type}.csv" for name, df in (("train", train), ("evaluation", evaluation),
                                                              ("batched", batched)) if len(df)]
    print(f"\nwritten: {', '.join(map(str, written)) or 'nothing (nothing was measured)'}")


def _names(text, default: list, allowed: list, flag: str) -> list:
    if text is None:
        return default
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise BenchError(f"{flag}: unknown {', '.join(map(repr, unknown)) or 'empty list'}; choose from: "
                         f"{', '.join(allowed)}")
    return names


def cmd_theory(args) -> None:
    from bench import theory
    if args.out.exists() and not args.out.is_dir():
        raise BenchError(f"--out {args.out} exists and is not a folder")
    theory.run_all(args.out, quick=args.quick, progress=not args.no_progress)


COMMANDS = {"list": cmd_list, "run": cmd_run, "report": cmd_report, "export": cmd_export, "perf": cmd_perf,
            "theory": cmd_theory}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        os.environ["PYKEOPS_VERBOSE"] = os.environ["KEOPS_VERBOSE"] = "1"
    try:
        if getattr(args, "plugin", None):
            from bench import plugins
            plugins.load_plugins(args.plugin)
        code = COMMANDS[args.command](args)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; the run in progress wrote nothing", file=sys.stderr)
        return 130
    except ModuleNotFoundError as err:  # bench itself imported, its dependencies not (a bare interpreter)
        if err.name and err.name.split(".")[0] in DEPENDENCIES:
            print(f"error: {err.name.split('.')[0]}, which bench needs, is not installed for {sys.executable}; "
                  f"install bench with its dependencies: pip install -e .", file=sys.stderr)
            return 2
        raise
    return code or 0

"""Studies: plan the runs (methods × datasets × sweeps × seeds), skip the finished ones, run the
rest on an executor, store every record, rebuild the report. The CLI, study files and the Python
API (:func:`study`) all go through :func:`plan` and :func:`execute`, so they validate alike.

    >>> import bench
    >>> result = bench.study(methods=["gmn", "gan"], datasets=["ring8"], seeds=range(3), steps=500,
    ...                      out="results/demo", jobs=2)
    >>> result.summary, result.comparison          # pandas DataFrames
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import re
import sys
from pathlib import Path

from tqdm import tqdm

from bench import environment, files, harness, presets, published, records, report, store
from bench import plugins as plugin_lib
from bench import spec as specs
from bench.datasets import DATASETS
from bench.errors import BenchError
from bench.executors import check_ray_address, cores, make_executor, resolve_executor
from bench.harness import evaluate_calibration
from bench.settings import HPARAMS, RUN_SETTINGS
from methods import METHODS

# How each run setting is read from text (--steps, --sweep lr=..., study files); hparams, the
# policy, is swept and set like one.
SETTING_TYPES = {**{name: s.kind for name, s in RUN_SETTINGS.items()}, "hparams": str}


# ------------------------------------------------------------------------------------ parsing
MAX_SEEDS = 10_000  # seeds in one study: more is a typo far more often than a plan (and a folder each)


def parse_seeds(text) -> list[int]:
    """'0-9', '0,3,7', '0-4,10' (or a list of ints, from a study file) -> distinct seeds in order,
    each at most :data:`bench.spec.MAX_SEED`, at most :data:`MAX_SEEDS` of them."""
    message = f"seeds are non-negative integers and ranges, e.g. 0-9 or 0,1,2; got {text!r}"
    too_many = (f"seeds {text!r}: more than {MAX_SEEDS:,} seeds in one study; give fewer (a study file or "
                f"several commands for more)")
    if isinstance(text, (list, tuple, range)):
        if len(text) > MAX_SEEDS:
            raise BenchError(too_many)
        items = list(text)
        if not items or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in items):
            raise BenchError(message)
        for s in items:
            specs.check_seed(s)
        return list(dict.fromkeys(items))
    if not isinstance(text, str):
        raise BenchError(message)
    seeds = []
    for part in (p.strip() for p in text.split(",")):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise BenchError(message)
        lo, hi = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if hi < lo:
            raise BenchError(f"seed range {part!r} runs backwards; write it low-high, e.g. 0-9")
        specs.check_seed(hi)
        if len(seeds) + hi - lo + 1 > MAX_SEEDS:
            raise BenchError(too_many)
        seeds += range(lo, hi + 1)
    if not seeds:
        raise BenchError(message)
    return list(dict.fromkeys(seeds))


def split_values(text: str) -> list[str]:
    """Comma-separated values, commas inside brackets kept: '1,2' -> ['1', '2']; '[1,2],[3]' -> 2 values."""
    values, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "[(" and 1 or (ch in "])" and -1 or 0)
        if ch == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += ch
    values.append(current.strip())
    return values


def parse_assignment(item: str, flag: str) -> tuple[str, str]:
    key, eq, value = item.partition("=")
    if not (key.strip() and eq and value.strip()):
        raise BenchError(f"{flag} takes KEY=VALUE (KEY a run setting, or NAME.OPTION of a method or dataset); "
                         f"got {item!r}")
    return key.strip(), value.strip()


def parse_setting(name: str, value):
    """A run setting from text or a study file's value, of its declared type only."""
    kind = SETTING_TYPES[name]
    choices = RUN_SETTINGS[name].choices if name in RUN_SETTINGS else HPARAMS
    what = {int: "an integer", float: "a number"}.get(kind) or (
        f"one of {', '.join(choices)}" if choices else "a string")
    if isinstance(value, str) and kind is not str:
        try:
            value = kind(value)
        except ValueError:
            raise BenchError(f"{name} takes {what}; got {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BenchError(f"{name} takes {what}; got {value!r}")
    return value


def parse_option(text: str) -> str:
    """An option value as typed on the command line stays text: the method's or dataset's
    declared constraints read it by type when the run is resolved (bench.options)."""
    return text


# ------------------------------------------------------------------------------------ planning
@dataclasses.dataclass
class Plan:
    """What to run, resolved: the specs, and where and how to run them."""
    specs: list
    out: Path
    jobs: int = 1
    threads: int | None = None
    executor: str = "sequential"
    address: str | None = None
    device: str = "auto"
    datasets: list = dataclasses.field(default_factory=list)
    dataset_options: dict = dataclasses.field(default_factory=dict)
    profile: str = "quick"
    plugins: tuple = ()            # --plugin files (absolute) and modules, imported by every worker
    batch_seeds: int = 1           # seeds of one variant trained as one model, at most this many


def default_datasets(preset=None) -> list[str]:
    """The datasets a study runs on when it names none: those its preset covers, else the toy mixtures."""
    if isinstance(preset, str) and presets.is_preset(preset):
        return list(presets.get(preset).settings)
    return ["ring8", "grid25"]


def plan(methods=None, datasets=None, seeds=(0,), profile=None, options=None, sweep=None,
         labels=None, out="results", jobs=1, threads=None, executor="auto", address=None, device="auto",
         plugins=(), preset=None, batch_seeds=1, **settings) -> Plan:
    """Every run of a study as a validated spec; raises BenchError before anything runs.

    options: {"gmn": {"kernel": "energy", "lr_g": 2e-4}, "ring8": {"std": 0.02}}; sweep:
    {"gan.d_steps": [1, 2], "lr": [1e-4, 2e-4], "hparams": ["shared", "recommended"]} (the cartesian
    product); labels: {"gmn[kernel=energy]": "GMN energy"}; plugins: ["my_loss.py", "my_module"]
    (imported here and by every worker); hparams: "shared" (default) or "recommended"; profile:
    each dataset's "quick" (default) or "paper"; preset: a paper's protocol instead (bench list);
    batch_seeds: train up to this many seeds of a variant as one model (batchable methods, step budgets)."""
    unknown = sorted(set(settings) - set(SETTING_TYPES))
    if unknown:
        raise BenchError(f"unknown argument {', '.join(unknown)}; a study takes methods, datasets, seeds, out, "
                         f"profile, preset, options, sweep, labels, jobs, threads, executor, address, device, "
                         f"plugins, batch_seeds and the run settings {', '.join(SETTING_TYPES)}")
    if options is not None and not (isinstance(options, dict) and all(
            isinstance(k, str) and isinstance(v, dict) for k, v in options.items())):
        raise BenchError(f"options takes a dict of NAME -> {{OPTION: value}}, e.g. {{'gmn': {{'kernel': 'energy'}}}}; "
                         f"got {options!r}")
    if sweep is not None and not (isinstance(sweep, dict) and all(isinstance(k, str) for k in sweep)):
        raise BenchError(f"sweep takes a dict of KEY -> list of values, e.g. {{'lr': [1e-4, 2e-4]}}; got {sweep!r}")
    if labels is not None and not (isinstance(labels, dict) and all(
            isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in labels.items())):
        raise BenchError(f"labels take a variant's name -> a label (text), e.g. {{'gan[d_steps=5]': 'gan, 5 D "
                         f"steps'}}; got {labels!r}")
    if isinstance(plugins, str):
        plugins = [plugins]
    plugin_lib.load_plugins(plugins)
    if preset is not None:
        if profile is not None:
            raise BenchError(f"give a preset or a profile, not both (--preset {preset}, --profile {profile})")
        if not isinstance(preset, str) or not presets.is_preset(preset):
            raise BenchError(f"unknown preset {preset!r}; choose from: {', '.join(presets.PRESETS.names())}")
        profile = preset
    profile = "quick" if profile is None else profile
    datasets = default_datasets(preset) if datasets is None else datasets
    plugins = tuple(str(Path(p).resolve()) if p.endswith(".py") or "/" in p else p for p in plugins)
    if methods is None and METHODS.problems:
        raise BenchError(f"cannot run every method: {next(iter(METHODS.problems.values()))}; "
                         f"name the methods to run with --methods")
    methods = _chosen(METHODS, methods if methods is not None else METHODS.names())
    datasets = _chosen(DATASETS, datasets)
    seeds = parse_seeds(seeds)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise BenchError(f"--jobs takes a positive integer (processes at once); got {jobs!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise BenchError(f"--threads takes a positive integer; got {threads!r}")
    if isinstance(batch_seeds, bool) or not isinstance(batch_seeds, int) or batch_seeds < 1:
        raise BenchError(f"--batch-seeds takes a positive integer (seeds trained as one model; 1: each alone); "
                         f"got {batch_seeds!r}")
    if batch_seeds > 1 and settings.get("budget_seconds") is not None:
        raise BenchError("--batch-seeds needs a step budget: a wall-clock budget (--budget-seconds) is each run's "
                         "own time, which seeds trained as one model do not have; give --steps, or leave "
                         "--batch-seeds out")
    executor = resolve_executor(executor, jobs)
    if address is not None and executor != "ray":
        raise BenchError("--address is the Ray cluster's address: use it with --executor ray")
    if executor == "ray":
        check_ray_address(address)
    if executor == "processes" and jobs > cores():
        print(f"note: --jobs {jobs} is more than the {cores()} cores here: the runs share them, one thread each",
              file=sys.stderr)
    if threads is None and executor != "sequential":
        threads = max(1, cores() // jobs)  # N processes × threads ≤ cores
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BenchError(f"--out {out} exists and is not a folder")

    options = {k: dict(v) for k, v in (options or {}).items()}
    for target in options:
        if target not in methods + datasets:
            raise BenchError(f"--set {target}.…: {target!r} is not among the chosen methods or datasets "
                             f"({', '.join(methods + datasets)})")
    settings = {k: parse_setting(k, v) for k, v in settings.items() if v is not None}
    axes = []
    for key, values in (sweep or {}).items():
        if not isinstance(values, (list, tuple)) or not values:
            raise BenchError(f"--sweep {key}: give one or more values, e.g. {key}=1,2,5; got {values!r}")
        target, dot, option = key.partition(".")
        if dot:
            if target not in methods + datasets:
                raise BenchError(f"--sweep {key}: {target!r} is not among the chosen methods or datasets "
                                 f"({', '.join(methods + datasets)})")
            axes.append([("option", target, option, v) for v in values])
        elif key in SETTING_TYPES:
            axes.append([("setting", None, key, parse_setting(key, v)) for v in values])
        else:
            raise BenchError(f"--sweep {key}: not a run setting ({', '.join(SETTING_TYPES)}) "
                             f"nor NAME.OPTION of a chosen method or dataset")
    labels = dict(labels or {})

    planned, seen, used = [], set(), set()  # used: the labels that named a variant
    for point in itertools.product(*axes) if axes else [()]:
        opts = {k: dict(v) for k, v in options.items()}
        run = dict(settings)
        for kind, target, key, value in point:
            if kind == "option":
                opts.setdefault(target, {})[key] = value
            else:
                run[key] = value
        for d in datasets:
            for m in methods:
                for s in seeds:
                    spec = specs.resolve(m, d, s, profile, opts.get(m, {}), opts.get(d, {}), device=device,
                                         threads=threads, plugins=plugins, **run)
                    if spec.variant in labels:
                        used.add(spec.variant)
                        spec = dataclasses.replace(spec, label=labels[spec.variant])
                    if spec.run_id not in seen:  # a sweep of gan.d_steps leaves gmn's runs alone
                        seen.add(spec.run_id)
                        planned.append(spec)
    unused = sorted(set(labels) - used)
    if unused:
        names = sorted({s.variant for s in planned})
        raise BenchError(f"label for {', '.join(map(repr, unused))} matches no variant of this study; its variants "
                         f"are: {', '.join(names)}")
    # calibration rows see the data the runs saw (a preset's dataset options included)
    resolved = {s.dataset: s.options("dataset") for s in planned}
    if batch_seeds > 1:
        alone = sorted({s.variant for s in planned if harness.group_key(s) is None})
        if alone:
            print(f"note: --batch-seeds: the seeds of {', '.join(alone)} run one by one (not a batchable method, or a "
                  f"wall-clock budget; README, Training pace)", file=sys.stderr)
    return Plan(planned, out, jobs, threads, executor, address, device, datasets,
                {d: resolved.get(d, options.get(d, {})) for d in datasets}, profile, plugins, batch_seeds)


def _chosen(registry, names) -> list[str]:
    if isinstance(names, str):
        return registry.parse(names)
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise BenchError(f"{registry.kind}s: give a list of names; got {names!r}")
    return registry.parse(",".join(names))


# ------------------------------------------------------------------------------- study files
STUDY_KEYS = {"methods", "datasets", "seeds", "profile", "preset", "out", "jobs", "threads", "executor", "address",
              "device", "batch_seeds", "set", "sweep", "labels", "plugins", *SETTING_TYPES}


def read_study(path: Path) -> dict:
    """A TOML study file -> keyword arguments of :func:`plan`; every key and type checked."""
    path = Path(path)
    data = files.read_toml(path, "study file")
    unknown = sorted(set(data) - STUDY_KEYS)
    if unknown:
        raise BenchError(f"study file {path}: unknown key {', '.join(unknown)}; allowed: {', '.join(sorted(STUDY_KEYS))}")
    if not data:  # would silently plan the whole default study
        raise BenchError(f"study file {path} is empty: give at least methods or datasets (allowed keys: "
                         f"{', '.join(sorted(STUDY_KEYS))})")

    def need(key, kinds, what):
        if key in data and (not isinstance(data[key], kinds) or isinstance(data[key], bool)):
            raise BenchError(f"study file {path}: {key} takes {what}; got {data[key]!r}")
    need("methods", (list, str), "a list of method names")
    need("datasets", (list, str), "a list of dataset names")
    need("seeds", (list, str), 'a list of seeds or a range such as "0-9"')
    for key in ("profile", "preset", "out", "executor", "address", "device", "noise", "arch", "hparams"):
        need(key, str, "a string")
    need("plugins", (list, str), "a list of .py files or module names")
    for key in ("jobs", "threads", "batch_seeds"):
        need(key, int, "a positive integer")
    for key in ("set", "sweep", "labels"):
        need(key, dict, "a table")
    for key in ("methods", "datasets"):
        if key in data and not data[key]:
            raise BenchError(f"study file {path}: {key} is empty")
    for key in SETTING_TYPES:  # typed here so that the message names the file
        if key in data:
            try:
                data[key] = parse_setting(key, data[key])
            except BenchError as err:
                raise BenchError(f"study file {path}: {err}") from None
    kwargs = {k: v for k, v in data.items() if k not in ("set", "sweep")}
    options: dict[str, dict] = {}
    for key, value in data.get("set", {}).items():
        target, dot, option = key.partition(".")
        if not dot or isinstance(value, dict):
            raise BenchError(f"study file {path}: [set] takes \"NAME.OPTION\" = value; got {key!r}")
        options.setdefault(target, {})[option] = value
    kwargs["options"] = options
    sweep = data.get("sweep", {})
    for key, values in sweep.items():
        if not isinstance(values, list) or not values:
            raise BenchError(f"study file {path}: [sweep] {key} takes a non-empty list of values; got {values!r}")
    kwargs["sweep"] = sweep
    if "out" in kwargs:  # relative to where the command runs, as on the command line
        kwargs["out"] = Path(kwargs["out"])
    return kwargs


# ---------------------------------------------------------------------------------- running
@dataclasses.dataclass
class Outcome:
    planned: int
    skipped: int
    busy: int
    ran: int
    failed: int
    diverged: int


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".bench-write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise BenchError(f"--out {out} is not writable ({err.strerror or err}); choose a folder you can write to") from None


LONG_STUDY_STEPS = 100_000  # from this many steps in all, run measures the pace and says how long it will take


def expected_duration(todo: list, jobs: int, batch_seeds: int = 1) -> str:
    """The training time of ``todo`` on this machine, from each variant's step rate measured here
    for a second (evaluation and start-up not included), spread over ``jobs`` processes."""
    rates, seconds = {}, 0.0
    for spec in todo:
        if spec.budget_seconds is not None:
            seconds += spec.budget_seconds
            continue
        if spec.variant_id not in rates:
            rates[spec.variant_id] = (spec.variant, spec.dataset, harness.measure_pace(spec))
        seconds += spec.steps / rates[spec.variant_id][2]
    wall = seconds / max(1, min(jobs, len(todo)))
    paces = ", ".join(f"{v} on {d} {r:.0f} steps/s" for v, d, r in rates.values())
    batched = "; each seed timed alone, --batch-seeds may make it shorter" if batch_seeds > 1 else ""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    busy = (f"; load average {load:.1f} on {cores()} cores: other work running now slows these rates, "
            f"and a run's threads beyond what is free slow them much more") if load >= cores() / 2 else ""
    capped = any(spec.patience for spec in todo)  # a run that converges stops before its step budget
    return (f"expected: {'at most ' if capped else ''}about {_duration(wall)} of training for {len(todo)} runs "
            f"with --jobs {jobs}{' (--patience stops a converged run sooner)' if capped else ''} "
            f"(measured here just now: {paces}; evaluations not included{batched}{busy})")


def _duration(seconds: float) -> str:
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{max(minutes, 1)} min"


def prepare(plan_: Plan) -> None:
    """Build once, before fanning out, what every worker would otherwise build at the same time:
    the MNIST classifier/autoencoder caches and the KeOps formulas of the evaluation."""
    device = environment.resolve_device(plan_.device)
    done = set()
    for spec in plan_.specs:
        key = (spec.dataset, specs.canonical_json(spec.options("dataset")))
        if key in done:
            continue
        done.add(key)
        dataset = DATASETS.create(spec.dataset, **spec.options("dataset"))
        reference = dataset.reference(device)
        if dataset.kind == "points":
            dataset.evaluate(dataset.held_out(device), reference)
        if spec.options("method").get("code_space") == "autoencoder":
            dataset.autoencoder()


def execute(plan_: Plan, force: bool = False, progress: bool = True, log=print) -> Outcome:
    """Run what the plan holds and is not finished yet, store each record as it arrives."""
    out = plan_.out
    revision = environment.git_revision()  # before anything is written (stamp_runtime says why)
    existing = {r["run_id"]: r for r in store.load_records(out)} if (out / "runs").exists() else {}
    rerun = {s.run_id for s in plan_.specs} if force else set()  # their stored samples are replaced
    store.check_samples([r for rid, r in existing.items() if rid not in rerun])  # the report reads them all
    executor = make_executor(plan_.executor, plan_.jobs, plan_.threads or 1, plan_.address,
                             progress=progress and plan_.executor == "sequential", batch_seeds=plan_.batch_seeds)
    try:
        _check_writable(out)
    except BenchError:
        executor.close()
        raise
    finished = {rid for rid, r in existing.items() if r["status"] in records.FINISHED}
    if presets.is_preset(plan_.profile):  # say up front when a preset's rows will not be comparable
        rows = published.load()
        verdicts = [published.run_protocol(s.to_dict(), rows) for s in plan_.specs]
        for note in dict.fromkeys(note for comparable, note in verdicts if not comparable):
            log(f"{plan_.profile}: {note}: not comparable with the published numbers (the report says so per row)")
    todo = [s for s in plan_.specs if force or s.run_id not in finished]
    if sum(s.steps or 0 for s in todo) >= LONG_STUDY_STEPS:  # a study of hours is never a surprise
        log(expected_duration(todo, plan_.jobs, plan_.batch_seeds))
    skipped = len(plan_.specs) - len(todo)
    if skipped:
        log(f"{skipped} of {len(plan_.specs)} runs already finished under {out}: skipped (--force reruns them)")
    locks, busy, late = {}, [], []
    counts = {"ok": 0, "diverged": 0, "error": 0}

    def claimed():
        """Each run's folder made and locked as the run starts (not at planning): a run another
        process is training is left to it, one it finished meanwhile is skipped."""
        for spec in todo:
            folder = store.run_dir(out, spec)
            fd = store.claim(folder)
            if fd is None:
                busy.append(folder)
                continue
            if not force and (folder / store.RECORD).exists() and \
                    store.read_record(folder / store.RECORD)["status"] in records.FINISHED:
                store.release(fd)
                late.append(folder)
                continue
            locks[spec.run_id] = fd
            yield spec

    try:
        if todo and plan_.executor != "sequential":
            prepare(plan_)
        bar = tqdm(total=len(todo), unit="run", desc="study", disable=not progress or None, dynamic_ncols=True,
                   position=0)
        for spec, record, samples in executor.map(claimed()):
            record = records.stamp_runtime(record, plan_.executor, plan_.jobs, spec.threads, revision)
            try:
                store.write_run(store.run_dir(out, spec), samples, record)
            except OSError as err:
                raise BenchError(f"cannot write the record of {spec.variant} on {spec.dataset} (seed {spec.seed}) "
                                 f"under {out}: {err.strerror or err}; finished records are intact") from None
            store.release(locks.pop(spec.run_id))
            counts[record["status"]] += 1
            bar.update(1)
            if record["status"] == "diverged":
                tqdm.write(f"warning: {spec.variant} on {spec.dataset} (seed {spec.seed}) diverged at step "
                           f"{record['diverged_at_step']}; recorded as diverged, kept out of the means",
                           file=sys.stderr)
            elif record["status"] == "error":
                tqdm.write(f"warning: {spec.variant} on {spec.dataset} (seed {spec.seed}) failed: "
                           f"{record['error'].splitlines()[0]}; recorded as error, the study goes on",
                           file=sys.stderr)
        bar.close()
        skipped += len(late)
        if busy:  # the report waits for them, so that it shows the whole study
            log(f"{len(busy)} runs are being trained by another process on {out}: left to it")
            log(f"waiting for the {len(busy)} runs of the other process to finish")
            for folder in busy:
                store.release(store.claim(folder, wait=True))
    finally:
        for fd in locks.values():
            store.release(fd)
        executor.close()
    for d in plan_.datasets:  # reference rows (e.g. MNIST's training set and uniform noise)
        options = plan_.dataset_options.get(d, {})
        for record, samples in evaluate_calibration(d, plan_.profile, options, plan_.device):
            record["environment"]["git_revision"] = revision  # read before anything was written, as the runs'
            folder = store.reference_dir(out, d, plan_.profile, record["variant"])
            if force or not (folder / store.RECORD).exists():
                store.write_run(folder, samples, record)
    return Outcome(len(plan_.specs), skipped, len(busy), sum(counts.values()), counts["error"], counts["diverged"])


@dataclasses.dataclass
class StudyResult:
    """What :func:`study` returns: the tables as pandas DataFrames and the figures' paths."""
    outcome: Outcome
    runs: object
    summary: object
    comparison: object
    figures: list
    ranking: object = None   # mean ranks and omnibus tests per table and metric (bench.report.ranking_table)

    def __repr__(self):
        o = self.outcome
        return (f"StudyResult({o.ran} runs ran, {o.skipped} skipped, {o.failed} failed, {o.diverged} diverged; "
                f"summary {self.summary.shape}, comparison {self.comparison.shape}, {len(self.figures)} figures)")


def study(methods=None, datasets=None, seeds=(0,), out="results", *, force=False, progress=False,
          quiet=True, **kwargs) -> StudyResult:
    """Run a study from Python (same validation as the CLI) and return its tables.

    Keyword arguments are those of :func:`plan` (profile, options, sweep, labels, jobs, threads,
    executor, address, device, and run settings such as steps or budget_seconds)."""
    plan_ = plan(methods, datasets, seeds, out=out, **kwargs)
    outcome = execute(plan_, force=force, progress=progress, log=(lambda *a: None) if quiet else print)
    tables = report.build(plan_.out, print_fn=(lambda *a: None) if quiet else print)
    return StudyResult(outcome, tables.runs, tables.summary, tables.comparison, tables.figure_files(), tables.ranking)

"""The training loop, in one place: build, train, evaluate on a schedule, record."""
from __future__ import annotations

import functools
import math
import time

import torch
from tqdm import tqdm

from bench import convergence, datasets, environment, records
from bench.datasets import DATASETS
from bench.errors import BenchError
from bench.spec import RunSpec, canonical_json
from methods import METHODS
from methods.base import Nets, is_batchable
from methods.networks import DecodedGenerator, Stacked, build_networks, noise_sampler


def eval_schedule(steps: int, points: int) -> list[int]:
    return sorted({0, steps} | {round(steps * i / points) for i in range(1, points + 1)})


def generate(generator, z: torch.Tensor, chunk: int = 2500) -> torch.Tensor:
    """The generator's samples for ``z``, in eval mode and chunks, as every evaluation draws them."""
    was_training = generator.training
    generator.eval()
    with torch.no_grad():
        out = torch.cat([generator(z[i:i + chunk]) for i in range(0, len(z), chunk)])
    generator.train(was_training)
    return out


def eval_times(budget_seconds: float, points: int) -> list[float]:
    """Evaluation points of a wall-clock budget: evenly spaced training seconds, the last at the end."""
    return [budget_seconds * i / points for i in range(1, points + 1)]


# How each optimiser of bench.settings.OPTIMIZERS is built from a network's optimiser settings
# (its name was checked when the spec was resolved).
OPTIMIZER_FACTORIES = {"adam": lambda params, s: torch.optim.Adam(params, s["lr"], betas=tuple(s["betas"])),
                       "rmsprop": lambda params, s: torch.optim.RMSprop(params, s["lr"]),
                       "sgd": lambda params, s: torch.optim.SGD(params, s["lr"], momentum=s["momentum"])}


def make_optimizer(params, optimizer: dict) -> torch.optim.Optimizer:
    return OPTIMIZER_FACTORIES[optimizer["name"]](params, optimizer)


def lr_schedulers(nets, spec: RunSpec) -> list:
    """The run's learning-rate schedule over its generator steps, one scheduler per optimiser
    (stepped once per generator step; a D with several steps per G step anneals alike)."""
    if spec.lr_schedule is None:
        return []
    optimizers = [opt for opt in (nets.g_opt, nets.d_opt) if opt is not None]
    return [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=spec.steps) for opt in optimizers]


def build(spec: RunSpec, dataset=None):
    """The run's dataset, method, networks (seeded) and data stream, on its device: what
    :func:`train_and_evaluate` trains, and what :func:`bench.testing.check_method` steps by hand.
    ``dataset``: one already made from the spec's dataset options (the seeds of a batched group share one)."""
    device = environment.resolve_device(spec.device)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    dataset = DATASETS.create(spec.dataset, **spec.options("dataset")) if dataset is None else dataset
    method = METHODS.create(spec.method, **spec.options("method"))

    torch.manual_seed(spec.seed)  # network initialisation
    data_stream = torch.Generator().manual_seed(spec.seed)
    noise_stream = torch.Generator().manual_seed(spec.seed + 1)
    encoder = None
    if method.uses_autoencoder:  # GMMN+AE: train in the code space of a cached autoencoder
        autoencoder = dataset.autoencoder()
        generator, discriminator = DecodedGenerator(spec.noise_dim, autoencoder.decoder, autoencoder.code_dim), None
        encoder = autoencoder.encoder.requires_grad_(False).to(device)
    else:
        generator, discriminator = build_networks(dataset, spec, with_discriminator=method.uses_discriminator,
                                                  inputs=method.discriminator_inputs,
                                                  outputs=method.discriminator_outputs)
    generator.to(device)
    nets = Nets(generator=generator, g_opt=make_optimizer(generator.parameters(), spec.optimizer("generator")),
                noise=noise_sampler(spec.noise, spec.noise_dim, noise_stream, device), encoder=encoder)
    if discriminator is not None:
        nets.discriminator = discriminator.to(device)
        nets.d_opt = make_optimizer(discriminator.parameters(), spec.optimizer("discriminator"))

    if spec.train_size is None:
        def real():
            return dataset.sample(spec.batch_size, data_stream).to(device)
    else:  # a fixed training set, drawn once from the run's stream; batches drawn from it with replacement
        train = dataset.sample(spec.train_size, data_stream)

        def real():
            return train[torch.randint(spec.train_size, (spec.batch_size,), generator=data_stream)].to(device)
    return device, dataset, method, nets, real


def train_step(method, nets: Nets, real) -> tuple[dict, bool]:
    """One step of the loop: the method's update, then the one cheap check a step (are its losses
    finite?) that stops a diverged run there rather than at the next evaluation."""
    losses = method.step(nets, real)
    finite = not losses or bool(torch.isfinite(torch.stack([v.float() for v in losses.values()])).all())
    return losses, finite


def measure_pace(spec: RunSpec, seconds: float = 1.0, warmup: float = 0.5) -> float:
    """Training steps per second of ``spec`` on this machine, timed for about ``seconds`` after
    ``warmup`` seconds of steps (first steps allocate) and at least two steps; what a study's
    expected duration is estimated from. Nothing is evaluated or written."""
    device, dataset, method, nets, real = build(spec)
    t0, steps = time.perf_counter(), 0
    while steps < 2 or time.perf_counter() - t0 < warmup:
        method.step(nets, real)
        steps += 1
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        method.step(nets, real)
        steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps / (time.perf_counter() - t0)


_REFERENCES: dict = {}  # this process's last reference: the runs of a study on one dataset share it


def reference_for(spec: RunSpec, dataset, device: torch.device) -> dict:
    """The dataset's evaluation reference (held-out data, classifier features), prepared once per
    process and dataset options and reused by the runs that follow (Stacked-MNIST's takes 78,000
    classifier passes); one kept at a time, as one can hold hundreds of MB."""
    key = (spec.dataset, canonical_json(spec.options("dataset")), str(device))
    if key not in _REFERENCES:
        _REFERENCES.clear()
        _REFERENCES[key] = dataset.reference(device)
    return _REFERENCES[key]


def group_key(spec: RunSpec) -> str | None:
    """What seeds trained as one model share: the spec but its seed; None for a spec that cannot be
    trained so (a method that is not batchable, a wall-clock budget: each run's own clock)."""
    if spec.budget_seconds is not None or not is_batchable(METHODS.get(spec.method)):
        return None
    return canonical_json({k: v for k, v in spec.to_dict().items() if k != "seed"})


def build_batched(specs: list[RunSpec]):
    """The seeds of one variant as one model: each seed built by :func:`build` exactly as its own
    run (so its initial weights and its data and noise streams are that run's), then its networks
    stacked (:class:`~methods.networks.Stacked`) under one optimiser per network; ``real()`` and
    ``nets.noise(n)`` draw from every seed's own stream and stack the draws. Returns also each
    seed's method and generator (evaluation loads a seed's weights into its generator)."""
    built = [build(specs[0])]
    built += [build(spec, dataset=built[0][1]) for spec in specs[1:]]  # one dataset: MNIST's is 47 MB
    device, dataset, method = built[0][:3]
    nets_list, reals = [b[3] for b in built], [b[4] for b in built]
    generator = Stacked([n.generator for n in nets_list])
    noises = [n.noise for n in nets_list]
    nets = Nets(generator=generator, g_opt=make_optimizer(generator.parameters(), specs[0].optimizer("generator")),
                noise=lambda n: torch.stack([noise(n) for noise in noises]))
    if nets_list[0].discriminator is not None:
        nets.discriminator = Stacked([n.discriminator for n in nets_list])
        nets.d_opt = make_optimizer(nets.discriminator.parameters(), specs[0].optimizer("discriminator"))

    def real():
        return torch.stack([r() for r in reals])
    return device, dataset, method, nets, real, [b[2] for b in built], [n.generator for n in nets_list]


def train_and_evaluate(spec: RunSpec, progress: bool = False, observer=None) -> tuple[dict, object]:
    """Spec in, record and samples out: one run, trained and evaluated on its schedule.

    Writes nothing (the caller stores the record, wherever the run happened). ``observer(step,
    nets, samples)``, if given, is called at every evaluation: the theory lab watches the same
    loop the benchmark runs instead of copying it."""
    return train_group([spec], progress, observer)[0]


def train_group(specs: list[RunSpec], progress: bool = False, observer=None) -> list[tuple[dict, object]]:
    """:func:`train_and_evaluate` for one run, or for the seeds of one variant trained as one model
    (``run --batch-seeds``: a batchable method, a step budget, specs that differ only in their seed;
    :func:`build_batched`). Each seed is evaluated on its own schedule and noise and gets its own
    record; a seed that diverges is evaluated after the step that went non-finite and recorded
    then, while the others train on (no operation mixes seeds, so its values never reach them)."""
    spec, size = specs[0], len(specs)
    if size == 1:
        device, dataset, method, nets, real = build(spec)
        method_of, generators = [method], [nets.generator]

        def step_all():
            losses, finite = train_step(method, nets, real)
            return [losses], [finite]
    else:
        keys = {group_key(s) for s in specs}
        if None in keys or len(keys) > 1:
            raise BenchError(f"seeds trained as one model must be of one variant (specs equal but for the seed) of "
                             f"a batchable method with a step budget; got {', '.join(s.variant for s in specs)}")
        if observer is not None:
            raise BenchError("an observer watches one run: give train_group a single spec")
        device, dataset, method, nets, real, method_of, generators = build_batched(specs)

        def step_all():
            losses = method.batched_step(nets, real)
            if method.learned():  # one object steps every seed: what it learned would be no seed's own
                raise BenchError(f"{spec.method} learned {', '.join(method.learned())} in a batched step; a "
                                 f"batchable method keeps no learned state (set batchable = False)")
            finite = torch.isfinite(torch.stack([v.float() for v in losses.values()])).all(0).tolist()
            return [{k: v[i] for k, v in losses.items()} for i in range(size)], finite

    schedulers = lr_schedulers(nets, spec)
    reference = reference_for(spec, dataset, device)
    resolution = functools.partial(datasets.resolution, spec.dataset, spec.options("dataset"))  # measured if asked
    eval_z = [noise_sampler(s.noise, s.noise_dim, torch.Generator().manual_seed(s.seed + 2), device)(
        dataset.eval_size) for s in specs]  # the same z at every evaluation: curves show G changing, not z
    by_time = spec.budget_seconds is not None
    schedule = eval_times(spec.budget_seconds, spec.eval_points) if by_time else eval_schedule(spec.steps,
                                                                                              spec.eval_points)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    runs = [{"history": [], "status": "ok", "diverged_at": None, "losses": {}, "eval_seconds": 0.0,
             "done": False, "converged_for": 0, "stopped_early": None} for _ in specs]
    train_seconds = 0.0
    seeds = ", ".join(str(s.seed) for s in specs)
    bar = tqdm(total=spec.budget_seconds if by_time else spec.steps, unit="s" if by_time else "step",
               desc=f"{spec.variant} on {spec.dataset} (seed{'s' if size > 1 else ''} {seeds})",
               disable=not progress or None, dynamic_ncols=True, leave=False)
    step, next_eval = 0, 0
    while True:
        due = (step == 0 or (next_eval < len(schedule) and train_seconds >= schedule[next_eval])) if by_time \
            else step in schedule
        next_eval += due and step > 0
        last = next_eval >= len(schedule) if by_time else step == spec.steps
        for i, run in enumerate(runs):
            if run["done"] or not (due or run["status"] == "diverged"):
                continue
            t0 = time.perf_counter()  # evaluation, timed apart from training
            if size > 1:
                nets.generator.load_seed(i, generators[i])
            run["samples"] = samples = generate(generators[i], eval_z[i])
            mean_losses = {k: float(torch.stack(v).mean()) for k, v in run["losses"].items()}
            run["losses"] = {}
            if run["status"] == "ok" and not torch.isfinite(samples).all():
                run["status"], run["diverged_at"] = "diverged", step
            metrics = dataset.evaluate(samples, reference)
            sync()
            run["eval_seconds"] += time.perf_counter() - t0
            run["history"].append({"step": step, "train_seconds": train_seconds / size, **mean_losses, **metrics})
            if observer is not None:
                observer(step, nets, samples)
            bar.set_postfix({k: f"{v:.3g}" for k, v in mean_losses.items()}, refresh=False)
            patience = specs[i].patience
            if patience and step > 0 and run["status"] == "ok":  # --patience: stop once converged, budget a cap
                judged = convergence.verdict(run["history"], dataset.tracked, "ok", resolution)["converged"]
                run["converged_for"] = run["converged_for"] + 1 if judged else 0
                if run["converged_for"] >= patience and not last:
                    run["stopped_early"] = {"step": step, "patience": patience,
                                            "why": f"judged converged at {patience} evaluations in a row"}
            if run["status"] == "diverged" or last or run["stopped_early"]:
                run.update(done=True, steps_done=step, train_seconds=train_seconds)
        if all(run["done"] for run in runs):
            break
        t0 = time.perf_counter()
        step_losses, finite = step_all()
        for scheduler in schedulers:
            scheduler.step()
        sync()
        train_seconds += time.perf_counter() - t0
        step += 1
        for run, losses, ok in zip(runs, step_losses, finite):
            if run["done"]:
                continue
            for name, value in losses.items():
                run["losses"].setdefault(name, []).append(value)
            if not ok:
                run["status"], run["diverged_at"] = "diverged", step
        bar.update(1 if not by_time else min(train_seconds, spec.budget_seconds) - bar.n)
    bar.close()

    results = []
    for s, run, method_s in zip(specs, runs, method_of):
        seconds = run["train_seconds"] / size  # a batched seed's share of its group's training time
        timing = {"train_seconds": seconds, "eval_seconds": run["eval_seconds"],
                  "steps_per_second": run["steps_done"] / seconds if seconds > 0 else math.nan}
        if size > 1:
            timing["group_train_seconds"] = run["train_seconds"]
        record = records.run_record(
            s, run["status"], history=run["history"], steps_done=run["steps_done"], diverged_at=run["diverged_at"],
            timing=timing, method_settings=method_s.options(), method_learned=method_s.learned(),
            sources={"method": METHODS.source(s.method), "dataset": DATASETS.source(s.dataset)},
            evaluation={"samples": dataset.eval_size, "mmd_kernel": "gaussian", "mmd_estimator": "unbiased",
                        "mmd_bandwidths": list(reference["bandwidths"])}, device=device, tracked=dataset.tracked,
            resolution=resolution, stopped_early=run["stopped_early"])
        if size > 1:
            record["runtime"] = {"batched": {"seeds": [x.seed for x in specs], "engine": "torch.func.vmap"}}
        results.append((record, dataset.to_storage(run["samples"].cpu())))
    return results


def evaluate_calibration(dataset_name: str, profile: str, dataset_options: dict | None = None,
                         device: str = "cpu") -> list[tuple[dict, object]]:
    """Reference rows for the tables (e.g. MNIST's training set and uniform noise), evaluated
    exactly like a method's samples; records with status 'reference'."""
    dataset = DATASETS.create(dataset_name, **(dataset_options or {}))
    samples_by_name = getattr(dataset, "calibration_samples", lambda: {})()
    if not samples_by_name:
        return []
    device = environment.resolve_device(device)
    reference = dataset.reference(device)
    results = []
    for name, samples in samples_by_name.items():
        t0 = time.perf_counter()
        metrics = dataset.evaluate(samples, reference)
        spec = records.reference_spec(name, dataset_name, profile, dataset_options)
        record = records.reference_record(spec, metrics, time.perf_counter() - t0, device)
        results.append((record, dataset.to_storage(samples)))
    return results

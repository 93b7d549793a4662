"""The training loop, in one place: build, train, evaluate on a schedule, record."""
from __future__ import annotations

import math
import time

import torch
from tqdm import tqdm

from bench import environment, records
from bench.datasets import DATASETS
from bench.spec import RunSpec, canonical_json
from methods import METHODS
from methods.base import Nets
from methods.networks import DecodedGenerator, build_networks, noise_sampler


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


def build(spec: RunSpec):
    """The run's dataset, method, networks (seeded) and data stream, on its device: what
    :func:`train_and_evaluate` trains, and what :func:`bench.testing.check_method` steps by hand."""
    device = environment.resolve_device(spec.device)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    dataset = DATASETS.create(spec.dataset, **spec.options("dataset"))
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


def train_and_evaluate(spec: RunSpec, progress: bool = False, observer=None) -> tuple[dict, object]:
    """Spec in, record and samples out: one run, trained and evaluated on its schedule.

    Writes nothing (the caller stores the record, wherever the run happened). ``observer(step,
    nets, samples)``, if given, is called at every evaluation: the theory lab watches the same
    loop the benchmark runs instead of copying it."""
    device, dataset, method, nets, real = build(spec)
    generator = nets.generator

    reference = reference_for(spec, dataset, device)
    eval_z = noise_sampler(spec.noise, spec.noise_dim, torch.Generator().manual_seed(spec.seed + 2), device)(
        dataset.eval_size)  # the same z at every evaluation: curves show G changing, not z
    by_time = spec.budget_seconds is not None
    schedule = eval_times(spec.budget_seconds, spec.eval_points) if by_time else eval_schedule(spec.steps,
                                                                                              spec.eval_points)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    history, status, diverged_at = [], "ok", None
    train_seconds = eval_seconds = 0.0
    losses: dict[str, list] = {}
    samples = None
    bar = tqdm(total=spec.budget_seconds if by_time else spec.steps, unit="s" if by_time else "step",
               desc=f"{spec.variant} on {spec.dataset} (seed {spec.seed})", disable=not progress or None,
               dynamic_ncols=True, leave=False)
    step, next_eval = 0, 0
    while True:
        due = (step == 0 or (next_eval < len(schedule) and train_seconds >= schedule[next_eval])) if by_time \
            else step in schedule
        if due or status == "diverged":  # evaluate (timed apart from training)
            next_eval += step > 0
            t0 = time.perf_counter()
            samples = generate(generator, eval_z)
            mean_losses = {k: float(torch.stack(v).mean()) for k, v in losses.items()}
            losses = {}
            if status == "ok" and not torch.isfinite(samples).all():
                status, diverged_at = "diverged", step
            metrics = dataset.evaluate(samples, reference)
            sync()
            eval_seconds += time.perf_counter() - t0
            history.append({"step": step, "train_seconds": train_seconds, **mean_losses, **metrics})
            if observer is not None:
                observer(step, nets, samples)
            bar.set_postfix({k: f"{v:.3g}" for k, v in mean_losses.items()}, refresh=False)
            if status == "diverged" or (next_eval >= len(schedule) if by_time else step == spec.steps):
                break
        t0 = time.perf_counter()
        step_losses, finite = train_step(method, nets, real)
        sync()
        train_seconds += time.perf_counter() - t0
        for name, value in step_losses.items():
            losses.setdefault(name, []).append(value)
        step += 1
        if not finite:
            status, diverged_at = "diverged", step
        bar.update(1 if not by_time else min(train_seconds, spec.budget_seconds) - bar.n)
    bar.close()

    timing = {"train_seconds": train_seconds, "eval_seconds": eval_seconds,
              "steps_per_second": step / train_seconds if train_seconds > 0 else math.nan}
    record = records.run_record(
        spec, status, history=history, steps_done=step, diverged_at=diverged_at, timing=timing,
        method_settings=method.options(), method_learned=method.learned(),
        sources={"method": METHODS.source(spec.method), "dataset": DATASETS.source(spec.dataset)},
        evaluation={"samples": dataset.eval_size, "mmd_kernel": "gaussian", "mmd_estimator": "unbiased",
                    "mmd_bandwidths": list(reference["bandwidths"])}, device=device, tracked=dataset.tracked)
    return record, dataset.to_storage(samples.cpu())


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

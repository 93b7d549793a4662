"""The training loop, in one place: build, train, evaluate on a schedule, record."""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from bench import environment, store
from bench.datasets import DATASETS
from bench.registry import BenchError
from methods import METHODS
from methods.base import Nets
from methods.networks import ARCHS, DecodedGenerator, build_networks, noise_sampler


@dataclasses.dataclass
class RunConfig:
    """Everything that fixes a run. ``None`` fields take the dataset's profile defaults."""
    method: str
    dataset: str
    seed: int = 0
    profile: str = "quick"            # the dataset's budget preset (quick: CPU minutes; paper: GPU)
    steps: int | None = None          # generator updates: the budget, equal for every method
    batch_size: int | None = None
    lr: float | None = None           # Adam(lr, betas=(0.5, 0.999)) for G and D alike
    noise: str | None = None          # gaussian or uniform
    noise_dim: int | None = None
    arch: str | None = None
    width: int | None = None
    depth: int | None = None
    eval_points: int | None = None    # evaluations after step 0, evenly spaced, the last at the end
    device: str = "auto"
    method_options: dict = dataclasses.field(default_factory=dict)
    dataset_options: dict = dataclasses.field(default_factory=dict)

    def resolved(self) -> "RunConfig":
        """Validate and fill the profile's defaults; raises BenchError on impossible settings."""
        dataset_cls = DATASETS.get(self.dataset)
        METHODS.get(self.method)
        if self.profile not in dataset_cls.profiles:
            raise BenchError(f"dataset {self.dataset!r} has no profile {self.profile!r}; "
                             f"choose from: {', '.join(dataset_cls.profiles)}")
        defaults = dataset_cls.profiles[self.profile]
        filled = dataclasses.replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})
        given = METHODS.validate(self.method, self.method_options)  # text from --set -> typed values
        filled.method_options = METHODS.validate(self.method, {**dataset_cls.method_defaults(self.method, given), **given})
        filled.dataset_options = DATASETS.validate(self.dataset, self.dataset_options)
        if filled.method_options.get("code_space") == "autoencoder" and not hasattr(dataset_cls, "autoencoder"):
            raise BenchError(f"{self.method} with code_space=autoencoder needs a dataset with an autoencoder "
                             f"(mnist); {self.dataset} has none")
        for name in ("steps", "batch_size", "noise_dim", "width", "depth", "eval_points"):
            if int(getattr(filled, name)) < 1:
                raise BenchError(f"{name} must be a positive integer; got {getattr(filled, name)}")
        if filled.batch_size < 2:
            raise BenchError(f"batch_size must be at least 2 (MMD needs pairs); got {filled.batch_size}")
        if filled.seed < 0:
            raise BenchError(f"seed must be >= 0; got {filled.seed}")
        if not (filled.lr > 0 and math.isfinite(filled.lr)):
            raise BenchError(f"lr must be positive; got {filled.lr}")
        if filled.noise not in ("gaussian", "uniform"):
            raise BenchError(f"unknown noise {filled.noise!r}; choose from gaussian, uniform")
        if filled.arch not in ARCHS[dataset_cls.kind]:
            raise BenchError(f"unknown arch {filled.arch!r} for {self.dataset}; "
                             f"choose from: {', '.join(ARCHS[dataset_cls.kind])}")
        if filled.device not in ("auto", "cpu", "cuda"):
            raise BenchError(f"unknown device {filled.device!r}; choose from auto, cpu, cuda")
        return filled


def eval_schedule(steps: int, points: int) -> list[int]:
    return sorted({0, steps} | {round(steps * i / points) for i in range(1, points + 1)})


def _generate(generator, z: torch.Tensor, chunk: int = 2500) -> torch.Tensor:
    was_training = generator.training
    generator.eval()
    with torch.no_grad():
        out = torch.cat([generator(z[i:i + chunk]) for i in range(0, len(z), chunk)])
    generator.train(was_training)
    return out


def train_and_evaluate(config: RunConfig, out: Path | None = None, progress: bool = True,
                       observer=None) -> dict:
    """One (method, dataset, seed) run. Returns its record; writes it under ``out`` if given.

    ``observer(step, nets, samples)``, if given, is called at every evaluation: the theory lab
    watches the same loop the benchmark runs instead of copying it."""
    cfg = config.resolved()
    device = environment.resolve_device(cfg.device)
    dataset = DATASETS.create(cfg.dataset, **cfg.dataset_options)
    method = METHODS.create(cfg.method, **cfg.method_options)

    torch.manual_seed(cfg.seed)  # network initialisation
    data_stream = torch.Generator().manual_seed(cfg.seed)
    noise_stream = torch.Generator().manual_seed(cfg.seed + 1)
    encoder = None
    if method.uses_autoencoder:  # GMMN+AE: train in the code space of a cached autoencoder
        autoencoder = dataset.autoencoder()
        generator, discriminator = DecodedGenerator(cfg.noise_dim, autoencoder.decoder, autoencoder.code_dim), None
        encoder = autoencoder.encoder.requires_grad_(False).to(device)
    else:
        generator, discriminator = build_networks(dataset, cfg, with_discriminator=method.uses_discriminator)
    generator.to(device)
    betas = (0.5, 0.999)
    nets = Nets(generator=generator, g_opt=torch.optim.Adam(generator.parameters(), cfg.lr, betas=betas),
                noise=noise_sampler(cfg.noise, cfg.noise_dim, noise_stream, device), encoder=encoder)
    if discriminator is not None:
        nets.discriminator = discriminator.to(device)
        nets.d_opt = torch.optim.Adam(discriminator.parameters(), cfg.lr, betas=betas)

    reference = dataset.reference(device)
    eval_z = noise_sampler(cfg.noise, cfg.noise_dim, torch.Generator().manual_seed(cfg.seed + 2), device)(
        dataset.eval_size)  # the same z at every evaluation: curves show G changing, not z
    schedule = eval_schedule(cfg.steps, cfg.eval_points)

    def real():
        return dataset.sample(cfg.batch_size, data_stream).to(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    history, status, diverged_at = [], "ok", None
    train_seconds = eval_seconds = 0.0
    losses: dict[str, list] = {}
    samples = None
    bar = tqdm(total=cfg.steps, desc=f"{cfg.method} on {cfg.dataset} (seed {cfg.seed})",
               disable=not progress, unit="step", dynamic_ncols=True)
    step = 0
    while True:
        if step in schedule:  # evaluate (timed apart from training)
            t0 = time.perf_counter()
            samples = _generate(generator, eval_z)
            mean_losses = {k: float(torch.stack(v).mean()) for k, v in losses.items()}
            losses = {}
            if not all(map(math.isfinite, mean_losses.values())) or not torch.isfinite(samples).all():
                status, diverged_at = "diverged", step
            metrics = dataset.evaluate(samples, reference)
            sync()
            eval_seconds += time.perf_counter() - t0
            history.append({"step": step, "train_seconds": train_seconds, **mean_losses, **metrics})
            if observer is not None:
                observer(step, nets, samples)
            bar.set_postfix({k: f"{v:.3g}" for k, v in mean_losses.items()}, refresh=False)
            if status == "diverged" or step == cfg.steps:
                break
        t0 = time.perf_counter()
        for name, value in method.step(nets, real).items():
            losses.setdefault(name, []).append(value)
        sync()
        train_seconds += time.perf_counter() - t0
        step += 1
        bar.update(1)
    bar.close()

    final = {k: v for k, v in history[-1].items()}
    final["steps_per_second"] = step / train_seconds if train_seconds > 0 else math.nan
    record = {
        "schema": 1,
        "status": status,
        "diverged_at_step": diverged_at,
        "steps_done": step,
        "config": dataclasses.asdict(cfg),
        "method_settings": method.options(),
        "method_learned": method.learned(),
        "timing": {"train_seconds": train_seconds, "eval_seconds": eval_seconds,
                   "steps_per_second": final["steps_per_second"]},
        "evaluation": {"samples": dataset.eval_size, "mmd_kernel": "gaussian", "mmd_estimator": "unbiased",
                       "mmd_bandwidths": list(reference["bandwidths"])},
        "final": final,
        "history": history,
        "environment": environment.describe(device),
        "samples_file": store.SAMPLES,
    }
    if out is not None:
        folder = store.run_dir(out, cfg.dataset, cfg.profile, cfg.method, cfg.seed)
        store.write_run(folder, dataset.to_storage(samples.cpu()), record)
        record["path"] = str(folder)
    return record


def evaluate_calibration(dataset_name: str, profile: str, out: Path, dataset_options: dict | None = None,
                         device: str = "cpu") -> list[dict]:
    """Reference rows for the tables (e.g. MNIST's training set and uniform noise), evaluated
    exactly like a method's samples and stored as records with status 'reference'."""
    dataset = DATASETS.create(dataset_name, **(dataset_options or {}))
    samples_by_name = getattr(dataset, "calibration_samples", lambda: {})()
    if not samples_by_name:
        return []
    device = environment.resolve_device(device)
    reference = dataset.reference(device)
    records = []
    for name, samples in samples_by_name.items():
        t0 = time.perf_counter()
        metrics = dataset.evaluate(samples, reference)
        record = {"schema": 1, "status": "reference", "diverged_at_step": None, "steps_done": 0,
                  "config": {"method": name, "dataset": dataset_name, "seed": 0, "profile": profile, "steps": 0,
                             "dataset_options": dataset_options or {}},
                  "method_settings": {}, "timing": {"eval_seconds": time.perf_counter() - t0},
                  "final": metrics, "history": [], "environment": environment.describe(device),
                  "samples_file": store.SAMPLES}
        store.write_run(store.run_dir(out, dataset_name, profile, name.replace(" ", "-"), 0),
                        dataset.to_storage(samples), record)
        records.append(record)
    return records

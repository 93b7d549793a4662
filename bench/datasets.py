"""Datasets, registered by name. Training draws fresh samples; evaluation uses a held-out set
drawn with a fixed seed of its own, the same for every method and run seed."""
from __future__ import annotations

import functools
import json
import math
import warnings

import numpy as np
import torch

from bench import metrics, mmd, mnist
from bench.options import Boolean, Integer, Optional, Real, Text, option_faults
from bench.registry import Registry

DATASETS = Registry("dataset", group="bench.datasets")  # base class set below
EVAL_SEED = 2_147_483_647  # held-out data never shares a seed with training streams
RESOLUTION_SEED = 2_147_483_646  # nor do the fresh data samples that measure a metric's resolution


POSITIVE = Real(min=0, exclusive=True)


class Dataset:
    """A source of training samples, a held-out reference set and the metrics that compare them.
    Options are the keyword arguments of ``__init__``, their values declared in ``constraints``
    (:mod:`bench.options`) and checked by the registry before ``__init__`` runs."""
    constraints: dict = {}
    dim: int
    kind = "points"  # "points" (plotted as a scatter, or a histogram in 1-D) or "images"
    channels = 1  # of an image (kind "images"): the shared networks take and make this many
    eval_size = 2500
    # Options whose value here means "off", left out of the run's identity at that value: an option
    # added after runs were stored keeps their ids (as methods' neutral_options)
    neutral_options: dict = {}
    # The metrics whose history says whether a run had converged (bench.convergence)
    tracked: tuple[str, ...] = ("mmd2",)
    # Fresh data samples scored to measure each tracked metric's resolution (the convergence rule's
    # floor); 0: not measured. Each costs one evaluation: cheap for points, not for images.
    resolution_draws = 0
    # Evaluation MMD: Gaussian kernels with σ = these × median distance of the held-out set.
    eval_bandwidth_factors: tuple[float, ...] = (1 / 16, 1 / 4, 1.0)
    # Training budget and shared-network settings per profile, the same for every method.
    profiles = {
        "quick": dict(steps=3000, batch_size=256, lr=1e-3, noise="gaussian", noise_dim=8, arch="mlp",
                      width=128, depth=3, eval_points=10),
        # quick's networks and optimiser for 10 × the steps: on the toy mixtures the learning curves
        # (studies/toy-curves.toml) plateau by 20,000-30,000 steps, at the papers' HQ % levels
        "standard": dict(steps=30_000, batch_size=256, lr=1e-3, noise="gaussian", noise_dim=8, arch="mlp",
                         width=128, depth=3, eval_points=30),
        "paper": dict(steps=20_000, batch_size=256, lr=1e-3, noise="gaussian", noise_dim=8, arch="mlp",
                      width=128, depth=3, eval_points=20),
    }
    @classmethod
    def method_defaults(cls, method: str, options: dict) -> dict:
        """Per-method option defaults on this dataset (the user's --set options override them); a
        method's own defaults per kind of data are its ``dataset_defaults``."""
        return {}

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def held_out(self, device="cpu") -> torch.Tensor:
        gen = torch.Generator().manual_seed(EVAL_SEED)
        return self.sample(self.eval_size, gen).to(device)

    def eval_bandwidths(self, held_out: torch.Tensor) -> tuple[float, ...]:
        return mmd.gaussian_bandwidths(mmd.median_distance(held_out), self.eval_bandwidth_factors)

    def reference(self, device="cpu") -> dict:
        """What evaluation compares against: a function of the dataset's options alone (its own
        seeded streams, never the global RNG), as the harness prepares it once per process and
        reuses it for every run on the same options; evaluate must not change it."""
        held_out = self.held_out(device)
        return {"held_out": held_out, "bandwidths": self.eval_bandwidths(held_out)}

    def evaluate(self, samples: torch.Tensor, reference: dict) -> dict:
        return metrics.distance_metrics(samples, reference["held_out"], reference["bandwidths"])

    def resolution(self, reference: dict) -> dict[str, float]:
        """Each tracked metric's standard deviation over ``resolution_draws`` fresh samples of
        ``eval_size`` from the data itself, scored against ``reference``: how much the evaluation
        moves for a generator equal to the data, which no training can get below. Empty when
        ``resolution_draws`` is under 2. A stream of its own: a function of the options alone.
        ``reference``: :meth:`reference` prepared on the CPU."""
        if self.resolution_draws < 2:
            return {}
        gen = torch.Generator().manual_seed(RESOLUTION_SEED)
        scores = [self.evaluate(self.sample(self.eval_size, gen), reference) for _ in range(self.resolution_draws)]
        return {k: float(np.std([s[k] for s in scores], ddof=1)) for k in self.tracked
                if all(isinstance(s.get(k), (int, float)) for s in scores)}

    def to_storage(self, samples: torch.Tensor):
        """The generated samples as kept beside the record."""
        return samples.numpy().astype("float32")


class GaussianMixture(Dataset):
    """Equal-weight isotropic Gaussian mixture with known means: mode coverage is measurable and
    the density is known in closed form."""
    constraints = {"std": POSITIVE, "n_std": POSITIVE}
    tracked = ("high_quality_pct", "modes_covered", "mmd2")
    resolution_draws = 50

    def __init__(self, means: torch.Tensor, std: float, n_std: float = 3.0):
        self.means = means.to(torch.float32)
        self.dim = self.means.shape[1]
        self.std, self.n_std = float(std), float(n_std)

    def sample(self, n, generator):
        modes = torch.randint(len(self.means), (n,), generator=generator)
        noise = torch.randn(n, self.dim, generator=generator)
        return self.means[modes] + self.std * noise

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """p(x) for x of shape (n, dim), in float64."""
        d2 = torch.cdist(x.to(torch.float64), self.means.to(torch.float64)) ** 2
        norm = (2 * math.pi * self.std ** 2) ** (self.dim / 2)
        return torch.exp(-d2 / (2 * self.std ** 2)).mean(1) / norm

    def evaluate(self, samples, reference):
        out = super().evaluate(samples, reference)
        out.update(metrics.mode_metrics(samples, self.means, self.std, self.n_std))
        return out


@DATASETS.register("ring8")
class Ring8(GaussianMixture):
    """8 Gaussians on a circle of radius 1, std 0.01 (VEEGAN/PacGAN)."""
    constraints = {**GaussianMixture.constraints, "modes": Integer(min=1), "radius": POSITIVE, "endpoint": Boolean()}
    neutral_options = {"endpoint": False}

    def __init__(self, modes: int = 8, radius: float = 1.0, std: float = 0.01, n_std: float = 3.0,
                 endpoint: bool = False):
        """endpoint: the angles of ``linspace(0, 2π, modes)``, endpoint included, as GDPP's and the
        Unrolled GAN notebook's code build their ring: the first and last means coincide, so
        ``modes - 1`` distinct modes, one of double weight, still scored as ``modes`` (a sample near
        the shared point is nearest to one of the two by a rounding-level difference; a perfect
        sampler covers all of them). The default, 2πi/modes, is the ring the papers describe."""
        steps = modes - 1 if endpoint and modes > 1 else modes
        angle = 2 * math.pi * torch.arange(modes, dtype=torch.float64) / steps
        super().__init__(radius * torch.stack([angle.cos(), angle.sin()], 1), std, n_std)


@DATASETS.register("grid25")
class Grid25(GaussianMixture):
    """25 Gaussians on the grid {-4,-2,0,2,4}², std 0.05 (VEEGAN/PacGAN)."""
    constraints = {**GaussianMixture.constraints, "side": Integer(min=1), "spacing": POSITIVE}

    def __init__(self, side: int = 5, spacing: float = 2.0, std: float = 0.05, n_std: float = 3.0):
        ticks = spacing * (torch.arange(side, dtype=torch.float64) - (side - 1) / 2)
        gx, gy = torch.meshgrid(ticks, ticks, indexing="ij")
        super().__init__(torch.stack([gx.flatten(), gy.flatten()], 1), std, n_std)


@DATASETS.register("gauss1d")
class Gauss1D(GaussianMixture):
    """One 1-D Gaussian N(mean, std²), density known in closed form (the theory lab's data)."""
    constraints = {**GaussianMixture.constraints, "mean": Real()}

    def __init__(self, mean: float = 2.0, std: float = 0.5, n_std: float = 3.0):
        super().__init__(torch.tensor([[float(mean)]]), std, n_std)


@DATASETS.register("mix1d")
class Mix1D(GaussianMixture):
    """Two-mode 1-D mixture ½N(-separation/2, std²) + ½N(separation/2, std²), density known."""
    constraints = {**GaussianMixture.constraints, "separation": POSITIVE}

    def __init__(self, separation: float = 4.0, std: float = 0.5, n_std: float = 3.0):
        super().__init__(torch.tensor([[-separation / 2], [separation / 2]]), std, n_std)


class ImageDataset(Dataset):
    """Images in [0, 1], stored as uint8; besides their classifier-feature metrics, MMD²/energy in
    pixel space on the first ``pixel_mmd_size`` samples (float64: costly in 784-D and more)."""
    kind = "images"
    pixel_mmd_size = 2_500
    eval_bandwidth_factors = (0.5, 1.0, 2.0)  # × median distance: smaller σ in 784-D sees nothing

    def pixel_metrics(self, samples: torch.Tensor, reference: dict) -> dict:
        pixels = samples[:self.pixel_mmd_size].flatten(1)
        return metrics.distance_metrics(pixels, reference["pixels"], reference["bandwidths"])

    def to_storage(self, samples):
        return mnist.to_uint8(samples)


@DATASETS.register("mnist")
class MNIST(ImageDataset):
    """The real MNIST (60k train, 10k test), quality measured in an MNIST classifier's features."""
    dim = 784
    source = "mnist"  # the files, their checksums and the cached classifier: a key of mnist.SOURCES
    constraints = {"data_dir": Optional(Text()), "digits_min_share": Real(min=0, max=1)}
    eval_size = 10_000  # generated samples per evaluation, against the 10,000 test images
    tracked = ("fid", "digits_covered", "coverage")
    profiles = {
        # recognisable digits from every method on 2 CPU cores, minutes per method. The GMMN MLP
        # generator (--arch mlp) left both GANs collapsed on one blob at this budget (lr 1e-3 and 2e-4).
        "quick": dict(steps=1500, batch_size=128, lr=2e-4, noise="uniform", noise_dim=10, arch="dcgan",
                      width=128, depth=3, eval_points=1),
        # the scale of the original papers (~130 epochs), for a GPU
        "paper": dict(steps=30_000, batch_size=256, lr=2e-4, noise="uniform", noise_dim=10, arch="dcgan",
                      width=128, depth=3, eval_points=10),
    }
    @property
    def classes(self) -> tuple[str, ...]:
        """The name of each label: the digits, or Fashion-MNIST's T-shirt/top, Trouser, ..."""
        return mnist.SOURCES[self.source].classes

    def autoencoder(self):
        return mnist.autoencoder(self.data_dir, source=self.source)[0]

    def __init__(self, data_dir: str | None = None, digits_min_share: float = 0.01):
        self.data_dir = None if data_dir is None else str(data_dir)
        self.data = mnist.load(self.data_dir, source=self.source)
        self.train = torch.from_numpy(np.array(self.data["train_images"]))
        self.digits_min_share = float(digits_min_share)

    def sample(self, n, generator):
        return mnist.to_float(self.train[torch.randint(len(self.train), (n,), generator=generator)])

    def held_out(self, device="cpu"):
        return mnist.to_float(self.data["test_images"]).to(device)

    def reference(self, device="cpu"):
        model, meta = mnist.classifier(self.data_dir, source=self.source)
        test = self.held_out()
        features = mnist.features_and_probs(model, test)[0].float()  # k-NN and KID in float32, sums in float64
        pixels = test[:self.pixel_mmd_size].flatten(1)
        return {"model": model, "features": features, "pixels": pixels, "classifier": meta,
                "radii3": metrics.kth_neighbour_radii(features, 3), "radii5": metrics.kth_neighbour_radii(features, 5),
                "bandwidths": self.eval_bandwidths(pixels)}

    def evaluate(self, samples, reference):
        samples = samples.detach().cpu().float()
        if not torch.isfinite(samples).all():
            return {}
        features, probs = mnist.features_and_probs(reference["model"], samples)
        real, features = reference["features"], features.float()
        kid_mean, kid_std = metrics.kernel_inception_distance(real, features)
        out = {"fid": metrics.frechet_distance(real, features), "kid": kid_mean, "kid_std": kid_std,
               **metrics.neighbourhood_metrics(real, features, 3, 5, reference["radii3"], reference["radii5"]),
               "classifier_score": metrics.classifier_score(probs),
               **metrics.class_histogram(probs, len(self.classes), min_share=self.digits_min_share),
               **self.pixel_metrics(samples, reference)}
        return out

    def calibration_samples(self) -> dict[str, torch.Tensor]:
        """Reference rows: the best achievable (training images) and the worst (uniform noise)."""
        gen = torch.Generator().manual_seed(EVAL_SEED)
        train = self.train[torch.randperm(len(self.train), generator=gen)[:self.eval_size]]
        return {"train set": mnist.to_float(train), "uniform noise": torch.rand(self.eval_size, 1, 28, 28, generator=gen)}


@DATASETS.register("fashion-mnist")
class FashionMNIST(MNIST):
    """Fashion-MNIST (Xiao et al. 2017), not shipped: --data-dir or $BENCH_FASHION_MNIST_DIR; measured as MNIST is."""
    source = "fashion-mnist"  # its classes (T-shirt/top, Trouser, ...) are what the "digits" columns count


@DATASETS.register("stacked-mnist")
class StackedMNIST(ImageDataset):
    """Three independent MNIST digits as the 3 channels of one image: 1,000 modes (Metz et al. 2017; VEEGAN; PacGAN)."""
    channels = 3
    dim = 3 * 784
    constraints = {"data_dir": Optional(Text())}
    eval_size = 26_000  # generated samples per evaluation: the published protocol (Unrolled GAN, VEEGAN, PacGAN)
    tracked = ("fid", "modes_covered", "kl_modes")
    profiles = {
        "quick": dict(MNIST.profiles["quick"]),  # MNIST's: only the networks' first and last layers see 3 channels
        # larger, for a GPU: the DCGAN settings the Stacked-MNIST papers build on (batch 64, 100-d noise)
        "paper": dict(steps=30_000, batch_size=64, lr=2e-4, noise="uniform", noise_dim=100, arch="dcgan",
                      width=128, depth=3, eval_points=10),
    }

    def __init__(self, data_dir: str | None = None):
        self.data_dir = None if data_dir is None else str(data_dir)
        data = mnist.load(self.data_dir, source="mnist")
        self.train = torch.from_numpy(np.array(data["train_images"]))
        self.test = torch.from_numpy(np.array(data["test_images"]))

    def stack(self, images: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """n images (n, 3, 28, 28) in [0, 1] whose channels are drawn from ``images`` independently
        and uniformly (with replacement), from ``generator``."""
        return mnist.to_float(images[torch.randint(len(images), (n, self.channels), generator=generator)])

    def sample(self, n, generator):
        return self.stack(self.train, n, generator)

    def held_out(self, device="cpu"):
        """The reference: 26,000 stacks of test images, drawn with a fixed seed of their own."""
        return self.stack(self.test, self.eval_size, torch.Generator().manual_seed(EVAL_SEED)).to(device)

    def channel_features(self, model, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The MNIST classifier's features (n, 3, 128; float32) and predicted digit (n, 3) of every channel."""
        # each channel classified as one image, in chunks of as many images as MNIST's
        features, probs = mnist.features_and_probs(model, images, batch=max(1, mnist.FEATURE_BATCH // self.channels))
        return features.float().view(len(images), self.channels, -1), probs.argmax(1).view(len(images), self.channels)

    def reference(self, device="cpu"):
        model, meta = mnist.classifier(self.data_dir, source="mnist")
        test = self.held_out()
        features = self.channel_features(model, test)[0]
        pixels = test[:self.pixel_mmd_size].flatten(1).clone()  # a copy: the 245 MB held-out set is freed
        return {"model": model, "features": features, "pixels": pixels, "classifier": meta,
                "bandwidths": self.eval_bandwidths(pixels)}

    def evaluate(self, samples, reference):
        """Modes (digit triples) covered and KL from uniform over the 1,000; FD and KID per channel in
        the classifier's features against the same channel of the reference, and their means."""
        samples = samples.detach().cpu().float()
        if not torch.isfinite(samples).all():
            return {}
        features, digits = self.channel_features(reference["model"], samples)
        real = reference["features"]
        out = metrics.stacked_mode_metrics(digits)
        for c in range(self.channels):
            out[f"fid_c{c}"] = metrics.frechet_distance(real[:, c], features[:, c])
            out[f"kid_c{c}"] = metrics.kernel_inception_distance(real[:, c], features[:, c])[0]
        for key in ("fid", "kid"):
            out[key] = sum(out[f"{key}_c{c}"] for c in range(self.channels)) / self.channels
        out.update(self.pixel_metrics(samples, reference))
        return out

    def calibration_samples(self) -> dict[str, torch.Tensor]:
        """Reference rows: stacked training images (the best achievable) and uniform noise (the worst)."""
        gen = torch.Generator().manual_seed(EVAL_SEED)
        return {"train set": self.stack(self.train, self.eval_size, gen),
                "uniform noise": torch.rand(self.eval_size, self.channels, 28, 28, generator=gen)}


DATASETS.base = Dataset
DATASETS.check = lambda name, cls: option_faults(cls)


@functools.lru_cache(maxsize=16)
def _resolution(name: str, options_json: str) -> tuple:
    dataset = DATASETS.create(name, **json.loads(options_json))
    return tuple(dataset.resolution(dataset.reference("cpu")).items())


def resolution(name: str, options: dict | None = None) -> dict[str, float]:
    """:meth:`Dataset.resolution` of the registered dataset ``name`` with these options, measured
    on the CPU once per process and options (about 10 s for a mixture on one core); empty for a
    dataset that measures none, is not installed, or cannot be built with these options (a stored
    record's, from an older version): a verdict is then judged without the floor, with a warning."""
    if name not in DATASETS.names() or DATASETS.get(name).resolution_draws < 2:
        return {}
    full = {**DATASETS.defaults(name), **(options or {})}  # {} and the defaults named: one measurement
    try:
        return dict(_resolution(name, json.dumps(full, sort_keys=True, default=str)))
    except Exception as e:  # noqa: BLE001 (a floor is a refinement: never lose a run or a report to it)
        warnings.warn(f"cannot measure the resolution of {name} with options {options or {}}: {e}; its "
                      f"convergence verdicts are judged without the floor", stacklevel=2)
        return {}

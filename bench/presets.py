"""Presets: a paper's whole protocol as one named profile (``--preset pacgan-toy``).

A preset fixes, per dataset it covers, every run setting (networks, noise, budget, batch,
training-set size), the optimiser of each network and, per method, the options the paper used; it
refuses changes to the dataset's options (the mixture constants and metric thresholds its
published numbers measure). A run made with a preset stores the
preset's name as its ``profile``; what the user changed on top (``--steps``, ``--set``) is in the
spec's ``run_overrides`` / ``method_overrides``, and :func:`comparability` says whether the run
still follows the paper closely enough to be set beside its published numbers.

Presets register like methods and datasets (``@PRESETS.register``; plugins through the
``bench.presets`` entry-point group). Each one's docstring cites the paper, section and table,
and says what was chosen where the paper is silent.
"""
from __future__ import annotations

import math

from bench.datasets import DATASETS
from bench.errors import BenchError
from bench.registry import Registry
from bench.settings import NOT_IDENTITY_OPTIONS, OPTIONAL_SETTINGS, RUN_KEYS, RUN_SETTINGS

PRESETS = Registry("preset", group="bench.presets")  # base and check set below Preset


class Preset:
    """A published protocol. Subclasses set the class attributes below; the docstring's first
    line is what ``bench list`` shows, the rest cites the source."""
    # dataset -> its run settings (every key of bench.settings.RUN_SETTINGS; budget_seconds, train_size optional)
    settings: dict[str, dict] = {}
    # optimiser keys (bench.settings.RUN_KEYS but batch_size) applied to every method's networks
    optimizer: dict = {}
    # method options the paper itself varies (PacGAN's pack): a run may set them and stay comparable
    compared: tuple[str, ...] = ()
    # True: batch_size counts the discriminator's inputs, so a method packing p samples into one
    # input trains on p × batch_size samples (PacGAN: "100 packed rows" of p samples each)
    packed_batch = False
    # dataset -> the options its data take under this protocol (the user may not change them)
    dataset_options: dict[str, dict] = {}
    # the paper's training budget in bench's steps (one generator update each; settings' steps default to it)
    published_steps: dict[str, int] = {}

    @classmethod
    def method_defaults(cls, method: str, options: dict) -> dict:
        """The options the paper used for ``method`` (the user's --set wins), given its other options."""
        return {}


def preset_faults(name: str, cls) -> list[str]:
    """What keeps ``cls`` from being registered as a preset (empty if nothing)."""
    needed = set(RUN_SETTINGS) - set(OPTIONAL_SETTINGS)
    faults = []
    if any(name in DATASETS.get(d).profiles for d in DATASETS.names()):
        faults.append(f"{name!r} is the name of the datasets' own profile; choose another")
    if not cls.settings:
        faults.append("settings is empty: give each dataset the preset covers its run settings")
    for dataset, settings in cls.settings.items():
        missing, unknown = sorted(needed - set(settings)), sorted(set(settings) - set(RUN_SETTINGS))
        if missing or unknown:
            faults.append(f"settings[{dataset!r}] must give {', '.join(sorted(needed))} (and may give train_size); "
                          f"missing {missing}, unknown {unknown}")
        if dataset not in cls.published_steps:
            faults.append(f"published_steps has no budget for {dataset!r}")
    unknown = sorted(set(cls.optimizer) - set(RUN_KEYS) | ({"batch_size"} & set(cls.optimizer)))
    if unknown:
        faults.append(f"optimizer names {', '.join(unknown)}; allowed: {', '.join(k for k in RUN_KEYS if k != 'batch_size')}")
    return faults


def get(name: str) -> type[Preset]:
    return PRESETS.get(name)


def is_preset(name: str) -> bool:
    return name in PRESETS.names()


def defaults(name: str, dataset: str) -> dict:
    """The run settings of preset ``name`` on ``dataset``; BenchError if the preset does not cover it."""
    preset = get(name)
    if dataset not in preset.settings:
        raise BenchError(f"preset {name!r} covers {', '.join(preset.settings)}; not {dataset!r} "
                         f"(see `python -m bench list`)")
    return {**OPTIONAL_SETTINGS, **preset.settings[dataset]}


def check_dataset_options(name: str, dataset: str, given: dict) -> None:
    """A preset's data and metric thresholds are what its published numbers measure: changing
    them is refused (a run with other data would be compared with numbers about different data)."""
    protocol = {**DATASETS.defaults(dataset), **get(name).dataset_options.get(dataset, {})}
    refused = sorted(k for k in given if k not in NOT_IDENTITY_OPTIONS and k in protocol)
    if refused:
        raise BenchError(f"preset {name!r} fixes {', '.join(f'{dataset}.{k}={protocol[k]!r}' for k in refused)}: "
                         f"its published numbers measure that data with those thresholds. Run without --preset "
                         f"(--profile quick or paper) to change them")


def comparability(spec: dict, read=()) -> tuple[bool, str]:
    """Whether a stored run (its ``spec`` as the record holds it) follows its preset's protocol
    closely enough to be set beside the published numbers, and if not, why. ``read``: method options
    and optimiser keys a published row names as its reading of settings the paper does not give (not
    departures), however the run gave them (``--lr`` or ``--set NAME.lr``)."""
    name = spec.get("profile")
    if not name or not is_preset(name):
        return False, f"not run with a preset (profile {name!r})"
    preset = get(name)
    reasons = []
    overrides = dict(spec.get("run_overrides") or {})
    overrides.pop("eval_points", None)  # how often bench looks during training, not how it trains
    for key in read:  # a row's reading of a setting, whether the run gave it as --lr or as --set NAME.lr
        overrides.pop(key, None)
    steps = overrides.pop("steps", None)
    published = preset.published_steps.get(spec.get("dataset"))
    if spec.get("budget_seconds") is not None:
        reasons.append(f"a wall-clock budget ({spec['budget_seconds']:g} s) instead of the paper's "
                       f"{published:,} steps")
        overrides.pop("budget_seconds", None)
    elif steps is not None and published:
        reasons.append(f"steps {steps:,} {'<' if steps < published else '>'} the paper's {published:,}"
                       + (" (reduced budget)" if steps < published else ""))
    if overrides:
        reasons.append("settings changed: " + ", ".join(f"{k}={v}" for k, v in sorted(overrides.items())))
    changed = sorted(k for k in dict(spec.get("method_overrides") or {}) if k not in preset.compared and k not in read)
    if changed:
        reasons.append("method options changed: " + ", ".join(changed))
    if spec.get("hparams", "shared") != "shared":
        reasons.append(f"hparams={spec['hparams']}")
    return (not reasons), "; ".join(reasons) or "follows the paper's protocol"


PRESETS.base = Preset
PRESETS.check = preset_faults
TOY = ("ring8", "grid25")


@PRESETS.register("pacgan-toy")
class PacGANToy(Preset):
    """PacGAN's 2-D mixtures (Lin et al. 2018, Table 1 of arXiv 1712.04086): maxout D, 400,000 steps.

    Source: the paper's Table 1 (ring of 8, grid of 25; modes, % high quality, reverse KL; 10 trials,
    ± standard error) and its code, fjxmlzn/PacGAN synthetic_data_experiments/2DRing_GAN&PacGAN and
    2DGrid_GAN&PacGAN (config.py, pacgan_task.py; the paper's appendix text was not available to us,
    the code is what was followed): data as bench's ring8/grid25 defaults (radius 1, std 0.01; spacing
    2, std 0.05), a fixed training set of 100,000 points; G 2-D Gaussian noise → 4 × 400 (BatchNorm,
    ReLU) → 2, D 3 × maxout(200, 5 pieces) → 1 (``--arch pacgan-mlp``), init N(0, 0.02); the
    non-saturating loss (``nsgan``; ``pack`` = PacGAN's degree of packing); Adam lr 1e-4, β1 0.8;
    batch 100 packed rows (100·pack samples); 400 epochs = 400,000 steps; 2,500 evaluation samples,
    high quality within 3 std, KL of the high-quality samples' mode histogram to uniform.

    Where bench differs: its loop alternates one D step and one G step (the code updates both at
    once from one minibatch); Blocks' β2 default is taken to be Adam's 0.999; the evaluation noise
    is fixed per run seed (the code's is one stream for all runs).
    """
    settings = {d: dict(steps=400_000, batch_size=100, lr=1e-4, noise="gaussian", noise_dim=2, arch="pacgan-mlp",
                        width=400, depth=4, eval_points=10, train_size=100_000) for d in TOY}
    optimizer = {"betas": (0.8, 0.999)}
    compared = ("pack",)
    packed_batch = True
    published_steps = {d: 400_000 for d in TOY}


@PRESETS.register("veegan-toy")
class VEEGANToy(Preset):
    """VEEGAN's 2-D mixtures (Srivastava et al. 2017, Table 1): 2 × 128 MLPs, batch 500, 100,000 steps.

    Source: the paper's §5 (2,500 samples per model, high quality within 3 std, averages over five
    runs, no ±) and its code, akashgit/VEEGAN VEEGAN_2D_RING.ipynb (which, despite its name, trains
    the grid; the ring is the paper's and PacGAN's: radius 1, std 0.01, angles 2πk/8): G
    255-dimensional Gaussian noise (the notebook's 254 + 1) → 128 → 128 → 2, ReLU; Adam lr 1e-3,
    β1 0.5; batch 500; 100 × 1,000 = 100,000 iterations; fresh samples every batch.

    Where the paper is silent: the GAN baseline's networks and loss. bench gives its D the
    notebook's discriminator without the noise input (2 → 128 → 1, ReLU) and maps the paper's
    "GAN" to the non-saturating ``nsgan`` (the loss of its TensorFlow code's sigmoid cross-entropy).
    """
    settings = {d: dict(steps=100_000, batch_size=500, lr=1e-3, noise="gaussian", noise_dim=255, arch="veegan-mlp",
                        width=128, depth=2, eval_points=10) for d in TOY}
    optimizer = {"betas": (0.5, 0.999)}
    published_steps = {d: 100_000 for d in TOY}


@PRESETS.register("gdpp-toy")
class GDPPToy(Preset):
    """GDPP's 2-D mixtures (Elfeki et al. 2019, Table 1): 2 × 128 tanh MLPs, batch 512, 25,000 steps.

    Source: the code, M-Elfeki/GDPP ``gdppgan_Synthetic.py`` (the same setting as the Unrolled GAN
    notebook, poolio/unrolled_gan): G 256-d Gaussian noise → 128 → 128 → 2, D 2 → 128 → 128 → logit,
    tanh, every weight orthogonal with gain 1.4, biases 0 (``--arch gdpp-mlp``); Adam β1 0.5,
    ε 1e-8, G lr 1e-3, D lr 1e-4; batch 512, fresh samples each step; 25,000 iterations; 2,500
    samples evaluated, high quality within 3 std. The ring is built with ``linspace(0, 2π, 8)``
    (``ring8.endpoint = true``): 7 distinct modes, one of double weight, scored as 8. Table 1's
    GAN, ALI, Unrolled GAN and VEEGAN rows are copied from VEEGAN's Table 1 (VEEGAN's protocol, not
    this one); WGAN-GP and GDPP were run with this code. Neither gives a spread (5 runs).

    Where bench differs: bench alternates a D step and a G step (each on its own noise), where the
    code updates both at once from one batch (one ``sess.run``); ``--set NAME.updates=simultaneous``
    trains as the code does (studies/gdpp-toy-simultaneous.toml).
    """
    settings = {d: dict(steps=25_000, batch_size=512, lr=1e-3, noise="gaussian", noise_dim=256, arch="gdpp-mlp",
                        width=128, depth=2, eval_points=25) for d in TOY}
    optimizer = {"betas": (0.5, 0.999), "lr_d": 1e-4}
    dataset_options = {"ring8": {"endpoint": True}}
    published_steps = {d: 25_000 for d in TOY}


@PRESETS.register("gmmn-mnist")
class GMMNMNIST(Preset):
    """The GMMN paper's MNIST setting (Li et al. 2015, Table 1): MLP G, SGD lr 2, batch 1000, 40,000 steps.

    Source: the paper's Table 1 and its code (the paper's text was not available to us), yujiali/gmmn
    train.py (mnist_mmd_input_space,
    mnist_mmd_code_space): 10-dimensional uniform noise on [-1, 1] → 64 → 256 → 256 → 1024 → 784
    sigmoid (``--arch mlp``); loss √MMD²_b with Gaussian kernels exp(−‖x−y‖²/2s),
    s ∈ {2, 5, 10, 20, 40, 80} (the code's σ is a variance); minibatch 1,000 data and 1,000
    samples; SGD lr 2, momentum 0.9; 40,000 iterations. GMMN+AE (``--set gmn.code_space=autoencoder``):
    one kernel, s = 1, in the autoencoder's code space.

    Where bench differs: the code drops lr to 0.2 and raises momentum to 0.99 at iteration 10,000;
    bench keeps lr 2 and momentum 0.9 throughout (it has no schedules). The code trains on 55,000
    images (5,000 held out to choose the Parzen width); bench on all 60,000. GMMN+AE is not the
    paper's: bench's code generator is 10-64-256-256-32 (the code's has a 1,024 layer more) and
    decodes with bench's own cached autoencoder (the paper's 784-1024-32 was trained with dropout
    and layer-wise pretraining), so its runs are marked not comparable. The paper's measure, a
    Parzen-window log-likelihood, is not computed by bench.
    """
    settings = {"mnist": dict(steps=40_000, batch_size=1000, lr=2.0, noise="uniform", noise_dim=10, arch="mlp",
                              width=1024, depth=4, eval_points=10)}
    optimizer = {"optimizer": "sgd", "momentum": 0.9}
    published_steps = {"mnist": 40_000}

    @classmethod
    def method_defaults(cls, method, options):
        if method != "gmn":
            return {}
        if options.get("code_space", "pixels") == "autoencoder":
            return dict(bandwidths=(1.0,), estimator="biased", root=True)
        return dict(bandwidths=tuple(math.sqrt(s) for s in (2, 5, 10, 20, 40, 80)), estimator="biased", root=True)


@PRESETS.register("pacgan-stacked")
class PacGANStacked(Preset):
    """PacGAN's Stacked-MNIST, VEEGAN setting (Lin et al. 2018, Table 2 of arXiv 1712.04086): DCGAN, 100,000 steps.

    Source: the paper's Table 2 (1,000 modes, reverse KL on 26,000 samples; 10 trials, ± standard
    error; DCGAN, ALI, Unrolled GAN and VEEGAN rows quoted from VEEGAN's Table 2) and its code,
    fjxmlzn/PacGAN stacked_MNIST_experiments/VEEGAN_experiment (config.py, model.py; carpedm20's
    TensorFlow DCGAN): 100-dimensional uniform noise on [-1, 1]; G and D the DCGAN with 5×5
    stride-2 (de)convolutions, gf = df = 64 (``--arch pacgan-dcgan``), init N(0, 0.02); the
    non-saturating loss, ``pack`` = the degree of packing; Adam lr 2e-4, β1 0.5; batch 64 packed
    rows; 50 epochs of 128,000 stacked images = 100,000 iterations.

    Where bench differs: the code takes two G steps per D step (carpedm20's trick), bench one, so
    bench's 100,000 steps are the code's 100,000 iterations (and D steps), half its G steps;
    bench draws each channel's digit afresh from MNIST's 60,000 training images (the code stacks
    128,000 triples once from train and test); G ends in a sigmoid ([0, 1], the data's range;
    the code's tanh output reached the classifier unscaled); modes are read by bench's own MNIST
    classifier (the code's: Keras' mnist_cnn).
    """
    settings = {"stacked-mnist": dict(steps=100_000, batch_size=64, lr=2e-4, noise="uniform", noise_dim=100,
                                      arch="pacgan-dcgan", width=64, depth=4, eval_points=10)}
    optimizer = {"betas": (0.5, 0.999)}
    compared = ("pack",)
    packed_batch = True
    published_steps = {"stacked-mnist": 100_000}


@PRESETS.register("fashion-gan")
class FashionGAN(Preset):
    """The source material's Fashion-MNIST GAN (Goodfellow et al. 2014 retold): lr 1e-4, batch 32, 200 epochs.

    Source: the experiment the project's source material reports (../shared/GUIDE.md: a GAN on
    Fashion-MNIST, learning rate 1e-4, batch 32, up to 200 epochs), with no table of numbers: its
    point was that the original paper had no objective measure of sample fidelity, which bench's
    classifier-feature metrics supply. 200 epochs of 60,000 images at batch 32 = 375,000 steps.

    Where the paper is silent (networks, noise, optimiser, loss): bench's image MLPs (``--arch mlp``:
    G 64-256-256-1024-784 sigmoid, D 784-512-256-1 leaky ReLU), 100-dimensional Gaussian noise, Adam
    with β = (0.5, 0.999) for both networks, and the minimax ``gan`` of Goodfellow et al. as the
    default method to run. Fashion-MNIST is not shipped: point bench at its IDX files
    (``--data-dir``, $BENCH_FASHION_MNIST_DIR).
    """
    settings = {"fashion-mnist": dict(steps=375_000, batch_size=32, lr=1e-4, noise="gaussian", noise_dim=100,
                                      arch="mlp", width=1024, depth=4, eval_points=10)}
    optimizer = {"betas": (0.5, 0.999)}
    published_steps = {"fashion-mnist": 375_000}

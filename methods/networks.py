"""The networks every method shares: one generator and one discriminator per dataset."""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from bench.errors import BenchError


def mlp(sizes: list[int], activation: type[nn.Module], out_activation: nn.Module | None = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    if out_activation is not None:
        layers.append(out_activation)
    return nn.Sequential(*layers)


def mlp_generator(noise_dim: int, out_dim: int, width: int = 128, depth: int = 3) -> nn.Module:
    return mlp([noise_dim] + [width] * depth + [out_dim], nn.ReLU)


def mlp_discriminator(in_dim: int, width: int = 128, depth: int = 3, out_dim: int = 1) -> nn.Module:
    """Outputs a logit: D(x) = sigmoid(logit), so losses use softplus, never log(sigmoid)."""
    return nn.Sequential(nn.Flatten(), mlp([in_dim] + [width] * depth + [out_dim], lambda: nn.LeakyReLU(0.2)))


def noise_sampler(kind: str, dim: int, generator: torch.Generator, device) -> callable:
    """z ~ N(0, I) ('gaussian') or U[-1, 1] ('uniform'), drawn from the run's own stream."""
    def sample(n: int) -> torch.Tensor:
        if kind == "gaussian":
            z = torch.randn(n, dim, generator=generator)
        else:
            z = 2 * torch.rand(n, dim, generator=generator) - 1
        return z.to(device)
    return sample


class Stacked:
    """S copies of one network, the seeds of a batched group (``run --batch-seeds``), as one model:
    each parameter and buffer stacked along a new first dimension (``torch.func.stack_module_state``),
    called through a weightless copy of the network (``functional_call``) under ``vmap``, so each
    seed's slice of an ``[S, ...]`` input goes through that seed's own weights."""

    def __init__(self, modules: list[nn.Module]):
        self.params, self.buffers = stack_module_state(modules)
        self.skeleton = copy.deepcopy(modules[0]).to("meta")

    def __len__(self):
        return next(iter(self.params.values())).shape[0]

    def parameters(self):
        return list(self.params.values())

    def bound(self, params: dict, buffers: dict):
        """One seed's network as a callable, from its slice of the stacked weights (inside vmap)."""
        return lambda *inputs: functional_call(self.skeleton, (params, buffers), inputs)

    def detached(self) -> "Stacked":
        """The same weights cut from autograd (a D that G's loss reads but does not train)."""
        out = copy.copy(self)
        out.params = {k: v.detach() for k, v in self.params.items()}
        return out

    def load_seed(self, seed_index: int, module: nn.Module) -> nn.Module:
        """Seed ``seed_index``'s current weights copied into ``module`` (a plain network, for evaluation)."""
        with torch.no_grad():
            for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
                tensor.copy_((self.params if name in self.params else self.buffers)[name][seed_index])
        return module

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return per_seed(lambda net, x: net(x), self, x)


def per_seed(fn, *args) -> torch.Tensor:
    """``fn`` for each seed of a batched group, under vmap: a :class:`Stacked` argument is passed as
    that seed's network (a callable), a tensor as that seed's slice (``[S, ...]`` -> ``[...]``); the
    results come back stacked (``[S, ...]``). Nothing in ``fn`` may mix seeds or use the global RNG."""
    states = [(a.params, a.buffers) if isinstance(a, Stacked) else a for a in args]

    def one(*sliced):
        return fn(*(a.bound(*s) if isinstance(a, Stacked) else s for a, s in zip(args, sliced)))
    return vmap(one)(*states)


def gmmn_generator(noise_dim: int, channels: int = 1) -> nn.Module:
    """The GMMN paper's MNIST generator: 64-256-256-1024-784·channels, sigmoid output (pixels in [0, 1])."""
    return nn.Sequential(mlp([noise_dim, 64, 256, 256, 1024, 784 * channels], nn.ReLU, nn.Sigmoid()),
                         nn.Unflatten(1, (channels, 28, 28)))


def image_mlp_discriminator(inputs: int = 1, outputs: int = 1, channels: int = 1) -> nn.Module:
    return nn.Sequential(nn.Flatten(), mlp([784 * channels * inputs, 512, 256, outputs], lambda: nn.LeakyReLU(0.2)))


def dcgan_generator(noise_dim: int, channels: int = 1) -> nn.Module:
    """DCGAN-style generator for 28×28: 7×7×128 -> 14×14×64 -> 28×28×channels, sigmoid output."""
    return nn.Sequential(
        nn.Linear(noise_dim, 128 * 7 * 7), nn.BatchNorm1d(128 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (128, 7, 7)),
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.ConvTranspose2d(64, channels, 4, 2, 1), nn.Sigmoid())


def dcgan_discriminator(inputs: int = 1, outputs: int = 1, channels: int = 1) -> nn.Module:
    """``inputs`` images of ``channels`` channels each, stacked as channels (PacGAN packing)."""
    return nn.Sequential(
        nn.Conv2d(inputs * channels, 64, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(128 * 7 * 7, outputs))


class DecodedGenerator(nn.Module):
    """GMMN+AE: G = frozen decoder ∘ code generator. Trained in code space (``codes``), it still
    outputs images, so it is evaluated like every other generator."""

    def __init__(self, noise_dim: int, decoder: nn.Module, code_dim: int):
        super().__init__()
        self.code_generator = mlp([noise_dim, 64, 256, 256, code_dim], nn.ReLU, nn.Sigmoid())
        self.decoder = decoder.requires_grad_(False)

    def codes(self, z):
        return self.code_generator(z)

    def forward(self, z):
        return self.decoder(self.code_generator(z))


# ----------------------------------------------------------------- the papers' own networks (presets)
def normal_init(net: nn.Module, std: float = 0.02) -> nn.Module:
    """Weights N(0, std²), biases 0: the initialisation of PacGAN's and DCGAN's code."""
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


class Maxout(nn.Module):
    """A linear layer to units × pieces outputs, then the max over each unit's pieces (Goodfellow
    et al. 2013; Blocks' LinearMaxout, which groups consecutive outputs)."""

    def __init__(self, in_dim: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_dim, units * pieces)

    def forward(self, x):
        return self.linear(x).view(len(x), self.units, self.pieces).amax(-1)


def pacgan_mlp(dataset, noise_dim: int, inputs: int, outputs: int):
    """PacGAN's 2-D networks (fjxmlzn/PacGAN, synthetic_data_experiments/*/pacgan_task.py, config.py):
    G: noise_dim → 4 × [400, no bias, BatchNorm (ε 1e-4, population momentum 0.05), ReLU] → linear;
    D: 3 × maxout(200 units, 5 pieces) → linear; packing widens D's input only. Init N(0, 0.02)."""
    layers: list[nn.Module] = []
    for a in [noise_dim] + [400] * 3:
        layers += [nn.Linear(a, 400, bias=False), nn.BatchNorm1d(400, eps=1e-4, momentum=0.05), nn.ReLU()]
    g = nn.Sequential(*layers, nn.Linear(400, dataset.dim))
    d = nn.Sequential(nn.Flatten(), Maxout(dataset.dim * inputs, 200, 5), Maxout(200, 200, 5), Maxout(200, 200, 5),
                      nn.Linear(200, outputs))
    return normal_init(g), normal_init(d)


def veegan_mlp(dataset, noise_dim: int, inputs: int, outputs: int):
    """VEEGAN's 2-D networks (akashgit/VEEGAN, VEEGAN_2D_RING.ipynb): G noise_dim (254 + 1) → 128 → 128
    → 2, D 2 → 128 → logit, ReLU (the notebook's D also sees the noise, a plain GAN's cannot)."""
    return (mlp([noise_dim, 128, 128, dataset.dim], nn.ReLU),
            nn.Sequential(nn.Flatten(), mlp([dataset.dim * inputs, 128, outputs], nn.ReLU)))


def gdpp_mlp(dataset, noise_dim: int, inputs: int, outputs: int):
    """GDPP's 2-D networks (M-Elfeki/GDPP gdppgan_Synthetic.py, the Unrolled GAN notebook's): G
    noise_dim → 128 → 128 → out, D in → 128 → 128 → logit, tanh; every weight orthogonal with gain
    1.4 (TensorFlow's orthogonal_initializer), biases 0. D's last hidden layer is GDPP's feature."""
    g = mlp([noise_dim, 128, 128, dataset.dim], nn.Tanh)
    d = nn.Sequential(nn.Flatten(), mlp([dataset.dim * inputs, 128, 128, outputs], nn.Tanh))
    for net in (g, d):
        for m in net.modules():
            if isinstance(m, nn.Linear):
                nn.init.orthogonal_(m.weight, gain=1.4)
                nn.init.zeros_(m.bias)
    return g, d


def pacgan_dcgan(dataset, noise_dim: int, inputs: int, outputs: int):
    """The DCGAN of PacGAN's Stacked-MNIST code (VEEGAN setting; stacked_MNIST_experiments/VEEGAN_experiment/
    model.py, carpedm20's TensorFlow DCGAN, gf = df = 64): G z → 2×2×512 → 5×5 stride-2 deconvolutions to
    4×4×256, 7×7×128, 14×14×64, 28×28×channels, BatchNorm + ReLU between; D 5×5 stride-2 convolutions
    to 64 (no BatchNorm), 128, 256, 512 (BatchNorm), leaky ReLU 0.2, linear. TensorFlow's 'SAME'
    output sizes by padding 2 and output_padding 1, 0, 1, 1 (TensorFlow pads stride-2 layers
    asymmetrically, so the sizes match, not the pixel alignment). Output sigmoid ([0, 1], the data's
    range; the code's tanh output was fed to the classifier unscaled)."""
    c = getattr(dataset, "channels", 1)
    deconv = lambda a, b, extra: nn.ConvTranspose2d(a, b, 5, 2, 2, output_padding=extra)
    g = nn.Sequential(
        nn.Linear(noise_dim, 2 * 2 * 512), nn.Unflatten(1, (512, 2, 2)), nn.BatchNorm2d(512, eps=1e-5, momentum=0.1),
        nn.ReLU(),
        deconv(512, 256, 1), nn.BatchNorm2d(256, eps=1e-5, momentum=0.1), nn.ReLU(),
        deconv(256, 128, 0), nn.BatchNorm2d(128, eps=1e-5, momentum=0.1), nn.ReLU(),
        deconv(128, 64, 1), nn.BatchNorm2d(64, eps=1e-5, momentum=0.1), nn.ReLU(),
        deconv(64, c, 1), nn.Sigmoid())
    conv = lambda a, b: nn.Conv2d(a, b, 5, 2, 2)
    d = nn.Sequential(
        conv(c * inputs, 64), nn.LeakyReLU(0.2),
        conv(64, 128), nn.BatchNorm2d(128, eps=1e-5, momentum=0.1), nn.LeakyReLU(0.2),
        conv(128, 256), nn.BatchNorm2d(256, eps=1e-5, momentum=0.1), nn.LeakyReLU(0.2),
        conv(256, 512), nn.BatchNorm2d(512, eps=1e-5, momentum=0.1), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(512 * 2 * 2, outputs))
    return normal_init(g), normal_init(d)


PAPER_ARCHS = {"pacgan-mlp": ("points", pacgan_mlp), "veegan-mlp": ("points", veegan_mlp),
               "gdpp-mlp": ("points", gdpp_mlp),
               "pacgan-dcgan": ("images", pacgan_dcgan)}
ARCHS = {kind: base + tuple(a for a, (k, _) in PAPER_ARCHS.items() if k == kind)
         for kind, base in {"points": ("mlp",), "images": ("mlp", "dcgan")}.items()}


def check_arch(arch: str, dataset_name: str, kind: str) -> None:
    """BenchError unless ``arch`` names networks for a dataset of this ``kind`` (points or images)."""
    if arch not in ARCHS[kind]:
        raise BenchError(f"unknown arch {arch!r} for {dataset_name}; choose from: {', '.join(ARCHS[kind])}")


def build_networks(dataset, cfg, with_discriminator: bool, inputs: int = 1, outputs: int = 1):
    """The generator (and discriminator) for a dataset: identical for every method. D takes
    ``inputs`` samples concatenated (the method's ``discriminator_inputs``, PacGAN's packing) and
    returns ``outputs`` numbers (``discriminator_outputs``: 1, a logit or a critic's score; more
    for a feature map such as MMD GAN's). Image networks take and make ``dataset.channels`` channels."""
    if cfg.arch in PAPER_ARCHS:
        g, d = PAPER_ARCHS[cfg.arch][1](dataset, cfg.noise_dim, inputs, outputs)
        return g, (d if with_discriminator else None)
    if dataset.kind == "points":
        g = mlp_generator(cfg.noise_dim, dataset.dim, cfg.width, cfg.depth)
        d = mlp_discriminator(dataset.dim * inputs, cfg.width, cfg.depth, outputs)
    elif cfg.arch == "mlp":
        g = gmmn_generator(cfg.noise_dim, dataset.channels)
        d = image_mlp_discriminator(inputs, outputs, dataset.channels)
    else:
        g = dcgan_generator(cfg.noise_dim, dataset.channels)
        d = dcgan_discriminator(inputs, outputs, dataset.channels)
    return g, (d if with_discriminator else None)

"""The networks every method shares: one generator and one discriminator per dataset."""
from __future__ import annotations

import torch
from torch import nn


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
    if kind not in ("gaussian", "uniform"):
        raise ValueError(f"unknown noise {kind!r}; choose from gaussian, uniform")

    def sample(n: int) -> torch.Tensor:
        if kind == "gaussian":
            z = torch.randn(n, dim, generator=generator)
        else:
            z = 2 * torch.rand(n, dim, generator=generator) - 1
        return z.to(device)
    return sample


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


ARCHS = {"points": ("mlp",), "images": ("mlp", "dcgan")}


def build_networks(dataset, cfg, with_discriminator: bool, inputs: int = 1, outputs: int = 1):
    """The generator (and discriminator) for a dataset: identical for every method. D takes
    ``inputs`` samples concatenated (the method's ``discriminator_inputs``, PacGAN's packing) and
    returns ``outputs`` numbers (``discriminator_outputs``: 1, a logit or a critic's score; more
    for a feature map such as MMD GAN's). Image networks take and make ``dataset.channels`` channels."""
    if cfg.arch not in ARCHS[dataset.kind]:
        raise ValueError(f"unknown arch {cfg.arch!r}; choose from {', '.join(ARCHS[dataset.kind])}")
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

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


def mlp_discriminator(in_dim: int, width: int = 128, depth: int = 3) -> nn.Module:
    """Outputs a logit: D(x) = sigmoid(logit), so losses use softplus, never log(sigmoid)."""
    return nn.Sequential(nn.Flatten(), mlp([in_dim] + [width] * depth + [1], lambda: nn.LeakyReLU(0.2)))


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


ARCHS = ("mlp",)


def build_networks(dataset, cfg, with_discriminator: bool):
    """The generator (and discriminator) for a dataset: identical for every method."""
    if cfg.arch not in ARCHS:
        raise ValueError(f"unknown arch {cfg.arch!r}; choose from {', '.join(ARCHS)}")
    generator = mlp_generator(cfg.noise_dim, dataset.dim, cfg.width, cfg.depth)
    discriminator = mlp_discriminator(dataset.dim, cfg.width, cfg.depth) if with_discriminator else None
    return generator, discriminator

"""What the harness hands a method, and what a method must do with it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass
class Nets:
    """The networks and optimisers of one run, built by the harness (same for every method)."""
    generator: nn.Module
    g_opt: torch.optim.Optimizer
    noise: Callable[[int], torch.Tensor]  # n -> a batch of generator inputs
    discriminator: nn.Module | None = None
    d_opt: torch.optim.Optimizer | None = None
    encoder: nn.Module | None = None  # frozen, for methods with uses_autoencoder (GMMN+AE)


class Method:
    """One training objective. Subclasses implement :meth:`step`; the harness owns the loop,
    seeds, devices, timing, evaluation and files, so a method never prints, saves or times.

    Options are keyword arguments of ``__init__`` (set with ``--set name.option=value``).
    """
    uses_discriminator = False
    uses_autoencoder = False  # the harness then builds G as frozen decoder ∘ code generator

    def step(self, nets: Nets, real: Callable[[], torch.Tensor]) -> dict[str, torch.Tensor]:
        """One generator update (and whatever else the objective does per update).

        ``real()`` returns a fresh batch of data each call. Returns named, detached losses.
        """
        raise NotImplementedError

    def options(self) -> dict:
        """The method's settings, for the run record."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)

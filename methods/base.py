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

    Options are keyword arguments of ``__init__`` (set with ``--set name.option=value``), whose
    values ``constraints`` declares (:mod:`bench.options`; the registry checks them before
    ``__init__`` runs). ``__init__`` stores each option under its own name and checks only rules
    between options; values learned during a run go in attributes ending in ``_`` (scikit-learn's
    convention), so ``type(m)(**m.options())`` rebuilds the method as it was configured.
    """
    constraints: dict = {}
    uses_discriminator = False
    uses_autoencoder = False  # the harness then builds G as frozen decoder ∘ code generator

    def step(self, nets: Nets, real: Callable[[], torch.Tensor]) -> dict[str, torch.Tensor]:
        """One generator update (and whatever else the objective does per update).

        ``real()`` returns a fresh batch of data each call. Returns named, detached losses.
        """
        raise NotImplementedError

    def options(self) -> dict:
        """The settings the method was built with (its constructor's arguments), for the run record."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and not k.endswith("_")}

    def learned(self) -> dict:
        """What the method set during the run (attributes ending in ``_``), for the run record."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k.endswith("_")}


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)

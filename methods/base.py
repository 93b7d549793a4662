"""What the harness hands a method, what a method must do with it, and the registry methods join
(``@register_method("name")``; ``methods`` re-exports both for plugins)."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from bench.errors import BenchError
from bench.options import option_faults
from bench.registry import Registry
from bench.settings import RUN_KEYS, check_recommended


@dataclass
class Nets:
    """The networks and optimisers of one run, built by the harness (same for every method). For a
    batched group (:meth:`batched_step`) the networks are :class:`~methods.networks.Stacked`, the
    optimisers work on the stacked weights and ``noise(n)`` returns ``[S, n, ...]``."""
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
    # True: seeds of this method can train as one model (run --batch-seeds) through its
    # ``batched_step(nets, real)``, the vmapped twin of ``step``. Each class says so itself, it is never
    # inherited (is_batchable): a subclass's objective may not run under vmap. A batchable method keeps
    # no learned state (one object steps every seed).
    batchable = False
    uses_autoencoder = False  # the harness then builds G as frozen decoder ∘ code generator
    # How the harness builds D (when uses_discriminator): it takes ``discriminator_inputs`` samples
    # concatenated as one input (PacGAN packing) and returns ``discriminator_outputs`` numbers per input.
    discriminator_inputs = 1
    discriminator_outputs = 1
    # The paper's own training recipe, used under ``--hparams recommended`` (see bench.spec): keys are
    # what ``--set NAME.KEY`` takes: optimiser settings (lr, lr_g, lr_d, betas, betas_g, betas_d,
    # optimizer, optimizer_g, optimizer_d), batch_size, and the method's own options (d_steps, ...).
    recommended: dict = {}
    # Options whose value here means "off", left out of the run's identity at that value: an option
    # added after runs were stored keeps their ids (pack=1 is the GAN without packing).
    neutral_options: dict = {}

    @classmethod
    def dataset_defaults(cls, dataset_cls, options: dict) -> dict:
        """Option defaults on a dataset of this class (its ``kind``, ``channels``, ...), given the
        user's options; the user's --set options override them."""
        return {}

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


def is_batchable(cls) -> bool:
    """Whether the seeds of method class ``cls`` can be trained as one model: ``batchable = True`` in
    the class itself."""
    return vars(cls).get("batchable") is True


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


def contract_faults(name: str, cls) -> list[str]:
    """What keeps ``cls`` from being registered as a method (empty if nothing): checked for every
    method, built in or plugin, when it registers. The behaviour (losses, seeds, files) is checked
    by :func:`bench.testing.check_method`."""
    faults = option_faults(cls)
    if cls.step is Method.step:
        faults.append(f"{cls.__qualname__} does not implement step(nets, real)")
    batchable = vars(cls).get("batchable", False)
    if batchable not in (True, False):
        faults.append(f"batchable must be True or False; got {batchable!r}")
    elif batchable and not callable(getattr(cls, "batched_step", None)):
        faults.append(f"{cls.__qualname__} says batchable = True but has no batched_step(nets, real)")
    elif batchable:
        step_owner = next(c for c in cls.__mro__ if "step" in vars(c))
        batched_owner = next(c for c in cls.__mro__ if "batched_step" in vars(c))
        if step_owner is not batched_owner and issubclass(step_owner, batched_owner):
            faults.append(f"{cls.__qualname__} says batchable = True but overrides step and not batched_step "
                          f"(of {batched_owner.__qualname__}), which would train something else; override both, "
                          f"or leave batchable out")
    try:
        params = set(inspect.signature(cls).parameters) - {"self"}
    except (TypeError, ValueError):
        params = set()
    reserved = sorted(params & set(RUN_KEYS))  # --set NAME.KEY routes these to the run specification
    if reserved:
        faults.append(f"option {', '.join(reserved)} is reserved for the optimiser and batch settings "
                      f"(--set {name}.lr_d=...); rename it")
    if not isinstance(cls.recommended, dict):
        faults.append(f"recommended must be a dict; got {cls.recommended!r}")
    else:
        try:
            check_recommended(name, cls)
        except BenchError as err:
            faults.append(str(err))
    return faults


METHODS = Registry("method", base=Method, check=contract_faults, group="bench.methods")
register_method = METHODS.register

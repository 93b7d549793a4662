"""The run settings' vocabulary: every run setting (type, least value, doc) as one table, the
optimiser and batch keys of ``--set NAME.KEY`` and how they apply to each network's optimiser.

Below the specification and the methods: :mod:`bench.spec` resolves runs with it and
:mod:`methods.base` checks a method's ``recommended`` recipe with it.
"""
from __future__ import annotations

import dataclasses
import inspect
import math

from bench.errors import BenchError
from bench.options import Choice, Floats, Integer, Real, Reject, validate_options


@dataclasses.dataclass(frozen=True)
class Setting:
    """One run setting: how text is read (``kind``), the smallest value allowed, and what it is."""
    kind: type
    doc: str
    minimum: int | None = None     # for numbers: the least value (reals: strictly above 0 when 0)
    choices: tuple = ()            # for words: the values allowed ('' : any, e.g. arch, checked per dataset)
    optional: bool = False         # a profile may leave it out; None then, and left out of the run's identity
    why: str = ""                  # why the least value is what it is
    unset: str = ""                # what an optional setting left out means, in a table's row name


# Run settings every method on a dataset shares: profiles and presets give each one's default.
RUN_SETTINGS = {
    "steps": Setting(int, "generator updates per run (None when the budget is in seconds)", 1),
    "budget_seconds": Setting(float, "seconds of training wall-clock per run, instead of steps", 0, optional=True,
                              unset="none"),
    "batch_size": Setting(int, "samples per batch", 2, why="MMD needs pairs"),
    "lr": Setting(float, "every network's learning rate unless an optimiser key sets one", 0),
    "noise": Setting(str, "the generator's input distribution", choices=("gaussian", "uniform")),
    "noise_dim": Setting(int, "the generator's input dimension", 1),
    "arch": Setting(str, "the networks (the dataset's kind decides which exist: methods.networks.ARCHS)"),
    "width": Setting(int, "hidden units per layer of the MLPs", 1),
    "depth": Setting(int, "hidden layers of the MLPs", 1),
    "eval_points": Setting(int, "evaluations during training, the last at the end", 1),
    "train_size": Setting(int, "a fixed training set of this many samples (None: fresh samples every batch)", 1,
                          optional=True, unset="fresh"),
    "patience": Setting(int, "stop a run once it is judged converged (bench.convergence) at this many evaluations "
                             "in a row; the budget is then a cap (None: train the whole budget)", 1, optional=True,
                        unset="none"),
    "lr_schedule": Setting(str, "how every learning rate moves over the step budget: constant, or cosine (from its "
                                "value down to 0 at the last step, Loshchilov & Hutter 2017)",
                           choices=("constant", "cosine"), optional=True, unset="constant"),
}
# Run settings a profile may leave out, and their value then (None: left out of the run's identity,
# so runs stored before train_size existed keep their ids)
OPTIONAL_SETTINGS = {name: None for name, s in RUN_SETTINGS.items() if s.optional}


MAX_BUDGET_SECONDS = 30 * 24 * 3600


def check_setting(name: str, value):
    """``value`` of run setting ``name`` as :class:`RunSpec` holds it (reals as float); BenchError if not allowed."""
    setting = RUN_SETTINGS[name]
    if value is None and (setting.optional or name == "steps"):
        return None
    if setting.choices and setting.optional and value == setting.unset:
        return None  # naming the default (lr_schedule=constant) is leaving it out: one identity, the stored runs
    if setting.kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BenchError(f"{name} must be a positive integer; got {value!r}")
        if value < setting.minimum:
            raise BenchError(f"{name} must be at least {setting.minimum} ({setting.why}); got {value}")
    elif setting.kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            what = "a positive number of seconds" if name == "budget_seconds" else "a positive number"
            raise BenchError(f"{name} must be {what}; got {value!r}")
        if name == "budget_seconds" and value > MAX_BUDGET_SECONDS:
            raise BenchError(f"budget_seconds {value:g} is more than 30 days a run ({MAX_BUDGET_SECONDS:,} s); "
                             f"give a budget a run can finish")
        value = float(value) if name == "lr" else value
    elif setting.choices and value not in setting.choices:
        raise BenchError(f"unknown {name} {value!r}; choose from {', '.join(setting.choices)}")
    return value


BETAS = (0.5, 0.999)  # Adam's β for every network (DCGAN's choice; the fair-budget default)
HPARAMS = ("shared", "recommended")
NOT_IDENTITY_OPTIONS = ("data_dir",)  # dataset options: where the data lie, not what they are (checksummed anyway)
OPTIMIZERS = {"adam": ("lr", "betas"), "rmsprop": ("lr",), "sgd": ("lr", "momentum")}  # each one's settings
NETWORKS = {"g": "generator", "d": "discriminator"}


class Betas(Floats):
    def describe(self):
        return "two real numbers in [0, 1), comma-separated (e.g. 0.5,0.999)"

    def parse(self, value):
        values = super().parse(value)
        if len(values) != 2 or not all(0 <= b < 1 for b in values):
            raise Reject
        return values


# What --set NAME.KEY routes to the run specification (optimiser and batch), by key family.
RUN_KEY_CONSTRAINTS = {"lr": Real(min=0, exclusive=True), "betas": Betas(min_len=2), "momentum": Real(min=0, max=1),
                       "optimizer": Choice(*OPTIMIZERS), "batch_size": Integer(min=2)}
RUN_KEYS = ("lr", "lr_g", "lr_d", "betas", "betas_g", "betas_d", "momentum", "momentum_g", "momentum_d",
            "optimizer", "optimizer_g", "optimizer_d", "batch_size")


def key_family(key: str) -> tuple[str, str | None]:
    """'lr_d' -> ('lr', 'discriminator'); 'betas' -> ('betas', None); 'batch_size' -> ('batch_size', None)."""
    head, _, tail = key.rpartition("_")
    if head in ("lr", "betas", "momentum", "optimizer") and tail in NETWORKS:
        return head, NETWORKS[tail]
    return key, None


def split_run_keys(options: dict) -> tuple[dict, dict]:
    """A method's --set options -> (its constructor options, the optimiser/batch keys)."""
    return ({k: v for k, v in options.items() if k not in RUN_KEYS},
            {k: v for k, v in options.items() if k in RUN_KEYS})


def parse_run_keys(owner: str, keys: dict) -> dict:
    """Optimiser and batch keys read by their declared type (text from --set, or Python values)."""
    out = {}
    for key, value in keys.items():
        out.update(validate_options(owner, {key: RUN_KEY_CONSTRAINTS[key_family(key)[0]]}, {key: value}))
    return out


def apply_optimizer_keys(owner: str, optimizers: dict, keys: dict) -> dict:
    """Per-network optimiser settings with ``keys`` applied (optimiser names first, then lr,
    then betas; both networks' keys before one network's)."""
    out = {net: dict(settings) for net, settings in optimizers.items()}
    order = {"optimizer": 0, "lr": 1, "betas": 2, "momentum": 2}
    items = sorted(((k, v) for k, v in keys.items() if k != "batch_size"),
                   key=lambda kv: (key_family(kv[0])[1] is not None, order[key_family(kv[0])[0]]))
    for key, value in items:
        family, network = key_family(key)
        if network is not None and network not in out:
            raise BenchError(f"{owner} has no {network}; its optimiser keys are: "
                             f"{', '.join(k for k in RUN_KEYS if k != 'batch_size' and key_family(k)[1] in (None, *out))}")
        for net in [network] if network else list(out):
            settings = out[net]
            if family == "optimizer":
                settings["name"] = value
                # the new optimiser's own settings, at their defaults; the old one's dropped
                for extra, default in (("betas", BETAS), ("momentum", 0.0)):
                    if extra in OPTIMIZERS[value]:
                        settings.setdefault(extra, default)
                    else:
                        settings.pop(extra, None)
            elif family not in OPTIMIZERS[settings["name"]]:
                raise BenchError(f"{owner}: {key} is not a setting of {settings['name']} (the {net}'s optimiser); "
                                 f"{settings['name']} takes: {', '.join(OPTIMIZERS[settings['name']])}")
            else:
                settings[family] = value
    return out


def networks_of(cls) -> list[str]:
    with_d = getattr(cls, "uses_discriminator", False)
    return ["generator"] + (["discriminator"] if with_d else [])


def check_recommended(name: str, cls) -> dict:
    """A method's ``recommended`` dict checked like the user's --set (names, types, networks)."""
    options, keys = split_run_keys(dict(cls.recommended))
    owner = f"{name} recommended"
    keys = parse_run_keys(owner, keys)
    apply_optimizer_keys(owner, {net: {"name": "adam", "lr": 1e-3, "betas": BETAS} for net in networks_of(cls)}, keys)
    allowed = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise BenchError(f"{owner} names {', '.join(unknown)}, neither an option ({', '.join(allowed) or 'none'}) "
                         f"nor an optimiser or batch key ({', '.join(RUN_KEYS)})")
    return {**validate_options(owner, getattr(cls, "constraints", None), options), **keys}

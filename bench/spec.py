"""The run specification: everything that fixes a run, resolved before anything trains.

A :class:`RunSpec` is immutable. Its :meth:`~RunSpec.identity` — method and options, dataset and
options, networks, noise, each network's optimiser, budget, evaluation settings and seed — is
hashed into the run's id, which keys the store: two runs that differ in anything that is
identity never share a folder or a table row. Device, data paths, thread counts and the user's
label are recorded but are not identity (compare_gan hashes its gin config the same way).

Hyperparameter policy (``hparams``, identity): under ``shared`` every method gets the profile's
optimiser (Adam, lr, β = (0.5, 0.999)) for every network and the profile's batch, so the budget
is equal; under ``recommended`` each method starts from its class's ``recommended`` dict (its
paper's optimiser, learning rates, betas, batch, discriminator steps). Either way the user's
``--set NAME.KEY=VALUE`` comes last; the optimiser keys are

=================  ==================================  ===========================
key                 sets                                example
=================  ==================================  ===========================
``lr``              both networks' learning rate        ``--set gan.lr=2e-4``
``lr_g``, ``lr_d``  the generator's / discriminator's   ``--set gan.lr_d=4e-4``
``betas``...        Adam's β of both / ``_g`` / ``_d``  ``--set wgan-gp.betas=0.0,0.9``
``momentum``...     SGD's momentum of both / _g / _d     ``--set gmn.momentum=0.9``
``optimizer``...    ``adam``, ``rmsprop`` or ``sgd``    ``--set mmdgan.optimizer_d=rmsprop``
``batch_size``      this method's batch                 ``--set wgan-gp.batch_size=64``
=================  ==================================  ===========================

They go to the spec's ``optimizers`` and ``batch_size``, never to the method's constructor.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

from bench import presets
from bench.datasets import DATASETS
from bench.errors import BenchError
from bench.settings import (BETAS, HPARAMS, NOT_IDENTITY_OPTIONS, OPTIONAL_SETTINGS, RUN_SETTINGS, apply_optimizer_keys,
                            check_recommended, check_setting, key_family, parse_run_keys, split_run_keys)
from methods import METHODS
from methods.networks import check_arch

SPEC_VERSION = 1
MAX_SEED = 2 ** 64 - 3  # a run also seeds seed + 1 and seed + 2 of torch's 64-bit generators


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise BenchError(f"seed must be an integer from 0 to {MAX_SEED} (2⁶⁴ − 3: a run also seeds seed + 1 and "
                         f"seed + 2 of torch's 64-bit generators); got {seed!r}")
    return seed


def _freeze(value):
    """Lists -> tuples, recursively, so a spec is hashable."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def _thaw(pairs) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in pairs}


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=list)


def format_value(value) -> str:
    """0.0002 -> '0.0002', (1, 0.5) -> '(1,0.5)': how a value reads in a variant's name."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "(" + ",".join(format_value(v) for v in value) + ")"
    return str(value)


def describe_overrides(overrides: dict) -> str:
    """{'kernel': 'energy', 'lr': 0.0002} -> 'kernel=energy,lr=0.0002'."""
    return ",".join(f"{k}={format_value(v)}" for k, v in overrides.items())


@dataclasses.dataclass(frozen=True)
class RunSpec:
    method: str
    dataset: str
    seed: int
    profile: str
    method_options: tuple          # sorted (name, value) pairs, every option (defaults included)
    dataset_options: tuple
    steps: int | None              # generator updates; None when the budget is wall-clock seconds
    budget_seconds: float | None
    batch_size: int
    lr: float
    noise: str
    noise_dim: int
    arch: str
    width: int
    depth: int
    eval_points: int
    optimizers: tuple              # (network, (("betas", ..), ("lr", ..), ("name", "adam"))) pairs
    hparams: str = "shared"        # the hyperparameter policy (identity; left out of the hash when shared)
    train_size: int | None = None  # a fixed training set of that many samples; None: fresh samples every batch
    patience: int | None = None    # stop when converged at this many evaluations in a row; None: the whole budget
    lr_schedule: str | None = None  # "cosine": every learning rate annealed to 0 over the steps; None: constant
    # recorded, not identity
    method_overrides: tuple = ()   # the method options that differ from the defaults on this dataset
    run_overrides: tuple = ()      # run settings and dataset options that differ from the profile's
    label: str | None = None
    device: str = "auto"
    threads: int | None = None
    plugins: tuple = ()            # the --plugin files and modules every process that runs it imports first

    def identity(self) -> dict:
        out = {"spec_version": SPEC_VERSION, "method": self.method, "dataset": self.dataset, "seed": self.seed,
               "profile": self.profile, "method_options": _thaw(self.method_options),
               "dataset_options": {k: v for k, v in _thaw(self.dataset_options).items()
                                   if k not in NOT_IDENTITY_OPTIONS},
               "optimizers": {net: _thaw(opts) for net, opts in self.optimizers}}
        out.update({k: getattr(self, k) for k in RUN_SETTINGS if k != "lr"})  # lr lives in optimizers
        for key in ("train_size", "patience", "lr_schedule"):  # settings added later: runs stored before keep their ids
            if out[key] is None:
                del out[key]
        if self.hparams != "shared":  # runs stored before the policy existed keep their ids
            out["hparams"] = self.hparams
        return json.loads(canonical_json(out))

    @property
    def run_id(self) -> str:
        """The canonical hash of the identity: the store's key."""
        return hashlib.sha256(canonical_json(self.identity()).encode()).hexdigest()[:12]

    @property
    def variant_id(self) -> str:
        """The hash of the identity without the seed: one table row per variant."""
        ident = {k: v for k, v in self.identity().items() if k != "seed"}
        return hashlib.sha256(canonical_json(ident).encode()).hexdigest()[:12]

    @property
    def variant(self) -> str:
        """A readable name: the label, or the method with its non-default options (gmn[kernel=energy])."""
        if self.label:
            return self.label
        text = describe_overrides(dict(self.method_overrides))
        return f"{self.method}[{text}]" if text else self.method

    def options(self, which: str) -> dict:
        return dict(getattr(self, f"{which}_options"))

    def optimizer(self, network: str) -> dict:
        return dict(dict(self.optimizers)[network])

    def preset_verdict(self) -> dict | None:
        """Under a preset: whether the run follows the paper's protocol closely enough to stand
        beside its published numbers, and if not why (:func:`bench.presets.comparability`)."""
        if not presets.is_preset(self.profile):
            return None
        comparable, note = presets.comparability(self.to_dict())
        return {"name": self.profile, "comparable": comparable, "note": note}

    def to_dict(self) -> dict:
        """The whole spec as JSON-ready data (what the record stores; :func:`from_dict` inverts it)."""
        out = dataclasses.asdict(self)
        for key in ("method_options", "dataset_options", "method_overrides", "run_overrides"):
            out[key] = _thaw(getattr(self, key))
        out["optimizers"] = {net: _thaw(opts) for net, opts in self.optimizers}
        return json.loads(canonical_json(out))


def from_dict(data: dict) -> RunSpec:
    """Inverse of :meth:`RunSpec.to_dict` (a record's ``spec``); raises KeyError/TypeError if malformed."""
    fields = {f.name for f in dataclasses.fields(RunSpec)}
    unknown = set(data) - fields
    if unknown:
        raise TypeError(f"unknown spec fields {sorted(unknown)}")
    values = dict(data)
    for key in ("method_options", "dataset_options", "method_overrides", "run_overrides"):
        values[key] = _freeze(values.get(key, {}))
    values["optimizers"] = tuple(sorted((net, _freeze(opts)) for net, opts in values["optimizers"].items()))
    values["plugins"] = tuple(values.get("plugins") or ())
    return RunSpec(**values)


def _plain(options: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items()}


@dataclasses.dataclass
class Layer:
    """One source of defaults, or the user's overrides: run settings, optimiser and batch keys
    (``--set NAME.KEY``, :data:`bench.settings.RUN_KEYS`) and method options. Later layers win."""
    name: str
    settings: dict = dataclasses.field(default_factory=dict)
    keys: dict = dataclasses.field(default_factory=dict)
    options: dict = dataclasses.field(default_factory=dict)


def protocol_layer(profile: str, dataset_cls, dataset_options: dict, hparams: str) -> tuple[Layer, object]:
    """The dataset's profile, or the preset that replaces it (with its optimiser; its method
    options, which depend on the user's, are added by :func:`resolve`)."""
    dataset = dataset_cls.registered_name
    if presets.is_preset(profile):
        preset = presets.get(profile)
        if hparams != "shared":
            raise BenchError(f"preset {profile!r} fixes every network's optimiser (its paper's); "
                             f"--hparams {hparams} does not apply to it")
        settings = presets.defaults(profile, dataset)
        presets.check_dataset_options(profile, dataset, dataset_options)
        return Layer(f"preset {profile}", settings, parse_run_keys(f"preset {profile}", dict(preset.optimizer))), preset
    if profile in dataset_cls.profiles:
        return Layer(f"profile {profile}", {**OPTIONAL_SETTINGS, **dataset_cls.profiles[profile]}), None
    covering = [p for p in presets.PRESETS.names() if dataset in presets.get(p).settings]
    raise BenchError(f"dataset {dataset!r} has no profile {profile!r}; choose from: "
                     f"{', '.join([*dataset_cls.profiles, *covering])}")


def recommended_layer(method: str, method_cls, hparams: str) -> Layer:
    """Under ``--hparams recommended``: the method's paper's optimiser, batch and options."""
    if hparams != "recommended":
        return Layer("shared")
    options, keys = split_run_keys(check_recommended(method, method_cls))
    batch = {"batch_size": keys["batch_size"]} if "batch_size" in keys else {}
    return Layer(f"{method} recommended", batch, keys, options)


def user_layer(method: str, method_options: dict, settings: dict) -> Layer:
    """What the user gave: run settings (None keeps the defaults), option text, optimiser keys."""
    unknown = sorted(set(settings) - set(RUN_SETTINGS))
    if unknown:
        raise BenchError(f"unknown run setting {', '.join(unknown)}; the run settings are: {', '.join(RUN_SETTINGS)}")
    given = {k: v for k, v in settings.items() if v is not None}
    if given.get("budget_seconds") is not None:
        if "steps" in given:
            raise BenchError("give a budget in steps (--steps) or in seconds (--budget-seconds), not both")
        given["steps"] = None
    options, keys = split_run_keys(dict(method_options or {}))
    return Layer("user", given, parse_run_keys(method, keys), options)


def _method_options(method: str, defaults: dict, options: dict) -> tuple[object, dict, dict]:
    """The method built once from its defaults on this run and the user's options (its
    constructor checks the rules between options), with every option, and with the defaults alone
    (normalised alike: a default of 1 and a given 1.0 must hash alike)."""
    given = METHODS.validate(method, {**defaults, **options})
    built = METHODS.create(method, **given)
    full = METHODS.validate(method, {**METHODS.defaults(method), **given})
    default = METHODS.validate(method, {**METHODS.defaults(method), **METHODS.validate(method, defaults)})
    return built, _plain(full), _plain(default)


def _optimizers(method: str, networks: list[str], lr: float, lr_given: bool, layers: list[Layer]) -> tuple[dict, dict]:
    """Each network's optimiser: Adam(lr, BETAS) for all, then each layer's keys in order (an
    explicit --lr sets every network before the user's keys). Returns it and the user's keys that
    changed it."""
    optimizers = {net: {"betas": BETAS, "lr": lr, "name": "adam"} for net in networks}
    *defaults, user = layers
    for layer in defaults:
        keys = {k: v for k, v in layer.keys.items() if key_family(k)[1] in (None, *networks)}  # gmn has no D
        optimizers = apply_optimizer_keys(layer.name, optimizers, keys)
    if lr_given:
        optimizers = apply_optimizer_keys(method, optimizers, {"lr": lr})
    baseline = optimizers
    optimizers = apply_optimizer_keys(method, baseline, user.keys)
    changed = {k: v for k, v in user.keys.items() if k != "batch_size" and any(
        optimizers[n] != baseline[n] for n in ([key_family(k)[1]] if key_family(k)[1] else networks))}
    return optimizers, changed


def resolve(method: str, dataset: str, seed: int = 0, profile: str = "quick", method_options: dict | None = None,
            dataset_options: dict | None = None, label: str | None = None, device: str = "auto",
            threads: int | None = None, hparams: str = "shared", plugins: tuple = (), **settings) -> RunSpec:
    """Defaults, policy and the user's overrides -> one validated :class:`RunSpec`; raises
    BenchError on anything impossible. ``settings`` are run settings (steps, lr, ...); None keeps
    the default. ``method_options`` may hold the optimiser and batch keys (``lr_d``, ...).

    The layers, later ones winning: the dataset's method defaults, the profile or preset (run
    settings, optimiser, the paper's method options), the method's recommended recipe under
    ``--hparams recommended``, the user's overrides."""
    dataset_cls, method_cls = DATASETS.get(dataset), METHODS.get(method)
    if hparams not in HPARAMS:
        raise BenchError(f"unknown --hparams {hparams!r}; choose from: {', '.join(HPARAMS)}")
    check_seed(seed)
    if device not in ("auto", "cpu", "cuda"):
        raise BenchError(f"unknown device {device!r}; choose from auto, cpu, cuda")
    dataset_options = dict(dataset_options or {})
    user = user_layer(method, method_options, settings)
    recipe = recommended_layer(method, method_cls, hparams)
    protocol, preset = protocol_layer(profile, dataset_cls, dataset_options, hparams)
    user.options = METHODS.validate(method, user.options)  # text from --set -> typed values
    if preset:
        protocol.options = preset.method_defaults(method, user.options)
    on_dataset = Layer(f"dataset {dataset}", options={**dataset_cls.method_defaults(method, user.options),
                                                       **method_cls.dataset_defaults(dataset_cls, user.options)})
    layers = [on_dataset, protocol, recipe, user]

    defaults = {}
    for layer in layers[:-1]:
        defaults.update(layer.settings)
    run = {**defaults, **user.settings}
    for name in RUN_SETTINGS:
        run[name] = check_setting(name, run[name])
    if run["lr_schedule"] and run["steps"] is None:
        raise BenchError(f"lr_schedule {run['lr_schedule']} anneals over a step budget; give --steps, not "
                         f"--budget-seconds")
    check_arch(run["arch"], dataset, dataset_cls.kind)

    option_defaults = {}
    for layer in layers[:-1]:
        option_defaults.update(layer.options)
    built, m_opts, m_defaults = _method_options(method, option_defaults, user.options)
    if m_opts.get("code_space") == "autoencoder" and not hasattr(dataset_cls, "autoencoder"):
        raise BenchError(f"{method} with code_space=autoencoder needs a dataset with an autoencoder (mnist); "
                         f"{dataset} has none")
    d_opts = _dataset_options(dataset, {**(preset.dataset_options.get(dataset, {}) if preset else {}),
                                        **dataset_options})
    d_neutral = dataset_cls.neutral_options or {}
    d_opts = {k: v for k, v in d_opts.items() if not (k in d_neutral and v == d_neutral[k])}

    networks = ["generator"] + (["discriminator"] if built.uses_discriminator else [])
    optimizers, keys_changed = _optimizers(method, networks, run["lr"], "lr" in user.settings, layers)
    inputs = built.discriminator_inputs if built.uses_discriminator else 1
    if preset and preset.packed_batch:  # the preset's batch counts D's inputs; the user's counts samples
        defaults["batch_size"] *= inputs
        if "batch_size" not in user.settings:
            run["batch_size"] = defaults["batch_size"]
    run_overrides = {k: v for k, v in run.items() if v != defaults.get(k)}
    if user.keys.get("batch_size", run["batch_size"]) != run["batch_size"]:  # --set NAME.batch_size
        keys_changed["batch_size"] = run["batch_size"] = user.keys["batch_size"]
    if run["batch_size"] % inputs:
        raise BenchError(f"{method} feeds its discriminator {inputs} samples at once (pack={inputs}): the batch "
                         f"size must be a multiple of {inputs}; it is {run['batch_size']}")
    neutral = method_cls.neutral_options or {}
    identity_options = {k: v for k, v in m_opts.items() if not (k in neutral and v == neutral[k])}
    d_defaults = {**DATASETS.defaults(dataset), **(preset.dataset_options.get(dataset, {}) if preset else {})}
    run_overrides.update({f"{dataset}.{k}": v for k, v in d_opts.items()
                          if k not in NOT_IDENTITY_OPTIONS and v != d_defaults.get(k)})
    return RunSpec(method=method, dataset=dataset, seed=seed, profile=profile,
                   method_options=_freeze(identity_options), dataset_options=_freeze(d_opts),
                   optimizers=tuple((net, _freeze(optimizers[net])) for net in sorted(networks)), hparams=hparams,
                   method_overrides=_freeze({**{k: v for k, v in m_opts.items() if v != m_defaults.get(k)},
                                             **keys_changed}),
                   run_overrides=_freeze(run_overrides), label=label, device=device, threads=threads,
                   plugins=tuple(plugins), **{k: run[k] for k in RUN_SETTINGS})


_DATASET_CACHE: dict[str, dict] = {}


def _dataset_options(name: str, options: dict) -> dict:
    """A dataset's options, every one, validated; the dataset is opened once per distinct set of
    options, so that missing or corrupt data files stop the command before anything trains
    (MNIST's files are read and checksummed once per process)."""
    key = canonical_json([name, options])
    if key not in _DATASET_CACHE:
        options = DATASETS.validate(name, options)
        DATASETS.create(name, **options)
        _DATASET_CACHE[key] = _plain(DATASETS.validate(name, {**DATASETS.defaults(name), **options}))
    return dict(_DATASET_CACHE[key])

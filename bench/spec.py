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
import inspect
import json
import math

from bench.options import Choice, Floats, Integer, OptionError, Real, _Reject, validate_options
from bench.registry import BenchError

SPEC_VERSION = 1
# Run settings every method on a dataset shares, with their profile defaults.
RUN_SETTINGS = ("steps", "budget_seconds", "batch_size", "lr", "noise", "noise_dim", "arch", "width", "depth",
                "eval_points", "train_size")
# Run settings a profile may leave out, and their value then (None: left out of the run's identity,
# so runs stored before train_size existed keep their ids)
OPTIONAL_SETTINGS = {"budget_seconds": None, "train_size": None}
BETAS = (0.5, 0.999)  # Adam's β for every network (DCGAN's choice; the fair-budget default)
NOT_IDENTITY_OPTIONS = ("data_dir",)  # where the data lie, not what they are (checksummed anyway)
HPARAMS = ("shared", "recommended")
OPTIMIZERS = {"adam": ("lr", "betas"), "rmsprop": ("lr",), "sgd": ("lr", "momentum")}  # each one's settings
NETWORKS = {"g": "generator", "d": "discriminator"}


class Betas(Floats):
    def describe(self):
        return "two real numbers in [0, 1), comma-separated (e.g. 0.5,0.999)"

    def parse(self, value):
        values = super().parse(value)
        if len(values) != 2 or not all(0 <= b < 1 for b in values):
            raise _Reject
        return values


# What --set NAME.KEY routes to the run specification (optimiser and batch), by key family.
RUN_KEY_CONSTRAINTS = {"lr": Real(min=0, exclusive=True), "betas": Betas(min_len=2), "momentum": Real(min=0, max=1),
                       "optimizer": Choice(*OPTIMIZERS), "batch_size": Integer(min=2)}
RUN_KEYS = ("lr", "lr_g", "lr_d", "betas", "betas_g", "betas_d", "momentum", "momentum_g", "momentum_d",
            "optimizer", "optimizer_g", "optimizer_d", "batch_size")


def _family(key: str) -> tuple[str, str | None]:
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
        try:
            out.update(validate_options(owner, {key: RUN_KEY_CONSTRAINTS[_family(key)[0]]}, {key: value}))
        except OptionError as err:
            raise BenchError(str(err)) from None
    return out


def apply_optimizer_keys(owner: str, optimizers: dict, keys: dict) -> dict:
    """Per-network optimiser settings with ``keys`` applied (optimiser names first, then lr,
    then betas; both networks' keys before one network's)."""
    out = {net: dict(settings) for net, settings in optimizers.items()}
    order = {"optimizer": 0, "lr": 1, "betas": 2, "momentum": 2}
    items = sorted(((k, v) for k, v in keys.items() if k != "batch_size"),
                   key=lambda kv: (_family(kv[0])[1] is not None, order[_family(kv[0])[0]]))
    for key, value in items:
        family, network = _family(key)
        if network is not None and network not in out:
            raise BenchError(f"{owner} has no {network}; its optimiser keys are: "
                             f"{', '.join(k for k in RUN_KEYS if k != 'batch_size' and _family(k)[1] in (None, *out))}")
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


def _networks(cls) -> list[str]:
    with_d = getattr(cls, "uses_discriminator", False)
    return ["generator"] + (["discriminator"] if with_d else [])


def check_recommended(name: str, cls) -> dict:
    """A method's ``recommended`` dict checked like the user's --set (names, types, networks)."""
    options, keys = split_run_keys(dict(cls.recommended))
    owner = f"{name} recommended"
    keys = parse_run_keys(owner, keys)
    apply_optimizer_keys(owner, {net: {"name": "adam", "lr": 1e-3, "betas": BETAS} for net in _networks(cls)}, keys)
    allowed = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise BenchError(f"{owner} names {', '.join(unknown)}, neither an option ({', '.join(allowed) or 'none'}) "
                         f"nor an optimiser or batch key ({', '.join(RUN_KEYS)})")
    try:
        options = validate_options(owner, getattr(cls, "constraints", None), options)
    except OptionError as err:
        raise BenchError(str(err)) from None
    return {**options, **keys}


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


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "(" + ",".join(_fmt(v) for v in value) + ")"
    return str(value)


def describe_overrides(overrides: dict) -> str:
    """{'kernel': 'energy', 'lr': 0.0002} -> 'kernel=energy,lr=0.0002'."""
    return ",".join(f"{k}={_fmt(v)}" for k, v in overrides.items())


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
    # recorded, not identity
    method_overrides: tuple = ()   # the method options that differ from the defaults on this dataset
    run_overrides: tuple = ()      # run settings and dataset options that differ from the profile's
    label: str | None = None
    device: str = "auto"
    threads: int | None = None

    def identity(self) -> dict:
        out = {"spec_version": SPEC_VERSION, "method": self.method, "dataset": self.dataset, "seed": self.seed,
               "profile": self.profile, "method_options": _thaw(self.method_options),
               "dataset_options": {k: v for k, v in _thaw(self.dataset_options).items()
                                   if k not in NOT_IDENTITY_OPTIONS},
               "optimizers": {net: _thaw(opts) for net, opts in self.optimizers}}
        out.update({k: getattr(self, k) for k in RUN_SETTINGS if k != "lr"})  # lr lives in optimizers
        if self.train_size is None:
            del out["train_size"]
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
    return RunSpec(**values)


def signature_defaults(factory) -> dict:
    return {name: p.default for name, p in inspect.signature(factory).parameters.items()
            if name != "self" and p.default is not inspect.Parameter.empty}


def _canonical_options(registry, name: str, options: dict, extra_defaults: dict | None = None):
    """Build an entry (validating its options: types, constraints, cross-option checks) and
    return it with every option, defaults filled in, normalised by the validator."""
    given = registry.validate(name, {**(extra_defaults or {}), **options})
    built = registry.create(name, **given)
    # defaults normalised too: a default of 1 and a given 1.0 must hash alike
    merged = registry.validate(name, {**signature_defaults(registry.get(name)), **given})
    return built, {k: (list(v) if isinstance(v, tuple) else v) for k, v in merged.items()}


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BenchError(f"{name} must be a positive integer; got {value!r}")
    return value


def resolve(method: str, dataset: str, seed: int = 0, profile: str = "quick", method_options: dict | None = None,
            dataset_options: dict | None = None, label: str | None = None, device: str = "auto",
            threads: int | None = None, hparams: str = "shared", **settings) -> RunSpec:
    """Defaults, profile, policy and overrides -> one validated :class:`RunSpec`; raises
    BenchError on anything impossible. ``settings`` are run settings (steps, lr, ...); None keeps
    the profile's. ``method_options`` may hold the optimiser and batch keys (``lr_d``, ...)."""
    from bench import presets
    from bench.datasets import DATASETS
    from methods import METHODS

    unknown = sorted(set(settings) - set(RUN_SETTINGS))
    if unknown:
        raise BenchError(f"unknown run setting {', '.join(unknown)}; the run settings are: {', '.join(RUN_SETTINGS)}")
    dataset_cls = DATASETS.get(dataset)
    method_cls = METHODS.get(method)
    if hparams not in HPARAMS:
        raise BenchError(f"unknown --hparams {hparams!r}; choose from: {', '.join(HPARAMS)}")
    method_options, user_keys = split_run_keys(dict(method_options or {}))
    user_keys = parse_run_keys(method, user_keys)
    recipe = check_recommended(method, method_cls) if hparams == "recommended" else {}
    recipe_options, recipe_keys = split_run_keys(recipe)
    preset = presets.get(profile) if presets.is_preset(profile) else None
    if preset:
        if hparams != "shared":
            raise BenchError(f"preset {profile!r} fixes every network's optimiser (its paper's); "
                             f"--hparams {hparams} does not apply to it")
        defaults = presets.defaults(profile, dataset)
        presets.check_dataset_options(profile, dataset, dict(dataset_options or {}))
        recipe_keys = parse_run_keys(f"preset {profile}", dict(preset.optimizer))
    elif profile in dataset_cls.profiles:
        defaults = {**OPTIONAL_SETTINGS, **dataset_cls.profiles[profile]}
    else:
        covering = [p for p in presets.PRESETS.names() if dataset in presets.get(p).settings]
        raise BenchError(f"dataset {dataset!r} has no profile {profile!r}; choose from: "
                         f"{', '.join([*dataset_cls.profiles, *covering])}")
    given = {k: v for k, v in settings.items() if v is not None}
    if given.get("budget_seconds") is not None:
        if "steps" in given:
            raise BenchError("give a budget in steps (--steps) or in seconds (--budget-seconds), not both")
        given["steps"] = None
    if "batch_size" in recipe_keys:  # the policy's batch; --batch-size and --set NAME.batch_size win
        defaults["batch_size"] = recipe_keys["batch_size"]
    run = {**defaults, **given}
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise BenchError(f"seed must be an integer >= 0; got {seed!r}")
    for name in ("batch_size", "noise_dim", "width", "depth", "eval_points"):
        _positive_int(name, run[name])
    for name in ("steps", "train_size"):
        if run[name] is not None:
            _positive_int(name, run[name])
    if run["budget_seconds"] is not None and not (isinstance(run["budget_seconds"], (int, float))
                                                  and 0 < run["budget_seconds"] < math.inf):
        raise BenchError(f"budget_seconds must be a positive number of seconds; got {run['budget_seconds']!r}")
    if run["batch_size"] < 2:
        raise BenchError(f"batch_size must be at least 2 (MMD needs pairs); got {run['batch_size']}")
    if not (isinstance(run["lr"], (int, float)) and run["lr"] > 0 and math.isfinite(run["lr"])):
        raise BenchError(f"lr must be a positive number; got {run['lr']!r}")
    run["lr"] = float(run["lr"])
    if run["noise"] not in ("gaussian", "uniform"):
        raise BenchError(f"unknown noise {run['noise']!r}; choose from gaussian, uniform")
    from methods.networks import ARCHS
    if run["arch"] not in ARCHS[dataset_cls.kind]:
        raise BenchError(f"unknown arch {run['arch']!r} for {dataset}; choose from: {', '.join(ARCHS[dataset_cls.kind])}")
    if device not in ("auto", "cpu", "cuda"):
        raise BenchError(f"unknown device {device!r}; choose from auto, cpu, cuda")

    method_options = METHODS.validate(method, method_options)  # text from --set -> typed values
    on_dataset = {**dataset_cls.method_defaults(method, method_options), **recipe_options,
                  **(preset.method_defaults(method, method_options) if preset else {})}
    built, m_opts = _canonical_options(METHODS, method, method_options, on_dataset)
    m_defaults = _canonical_options(METHODS, method, {}, on_dataset)[1] if method_options else m_opts
    if m_opts.get("code_space") == "autoencoder" and not hasattr(dataset_cls, "autoencoder"):
        raise BenchError(f"{method} with code_space=autoencoder needs a dataset with an autoencoder (mnist); "
                         f"{dataset} has none")
    d_opts = _dataset_options(dataset, dict(dataset_options or {}))
    d_defaults = signature_defaults(dataset_cls)

    networks = ["generator"] + (["discriminator"] if built.uses_discriminator else [])
    shared = {net: {"betas": BETAS, "lr": run["lr"], "name": "adam"} for net in networks}
    recipe_keys = {k: v for k, v in recipe_keys.items() if _family(k)[1] in (None, *networks)}  # gmn has no D
    baseline = apply_optimizer_keys(f"{method} recommended", shared, recipe_keys)
    if "lr" in given:  # --lr, given explicitly, sets every network of every method
        baseline = apply_optimizer_keys(method, baseline, {"lr": run["lr"]})
    optimizers = apply_optimizer_keys(method, baseline, user_keys)
    keys_changed = {k: v for k, v in user_keys.items() if k != "batch_size" and any(
        optimizers[n] != baseline[n] for n in ([_family(k)[1]] if _family(k)[1] else networks))}
    inputs = getattr(built, "discriminator_inputs", 1) if built.uses_discriminator else 1
    if preset and preset.packed_batch:  # the preset's batch counts D's inputs; the user's counts samples
        defaults["batch_size"] *= inputs
        if "batch_size" not in given:
            run["batch_size"] = defaults["batch_size"]
    run_overrides = {k: v for k, v in run.items() if v != defaults.get(k)}
    if user_keys.get("batch_size", run["batch_size"]) != run["batch_size"]:
        keys_changed["batch_size"] = run["batch_size"] = user_keys["batch_size"]
    if run["batch_size"] % inputs:
        raise BenchError(f"{method} feeds its discriminator {inputs} samples at once (pack={inputs}): the batch "
                         f"size must be a multiple of {inputs}; it is {run['batch_size']}")
    neutral = getattr(method_cls, "neutral_options", {}) or {}
    identity_options = {k: v for k, v in m_opts.items() if not (k in neutral and v == neutral[k])}
    run_overrides.update({f"{dataset}.{k}": v for k, v in d_opts.items()
                          if k not in NOT_IDENTITY_OPTIONS and v != d_defaults.get(k)})
    return RunSpec(method=method, dataset=dataset, seed=seed, profile=profile,
                   method_options=_freeze(identity_options), dataset_options=_freeze(d_opts),
                   optimizers=tuple((net, _freeze(optimizers[net])) for net in sorted(networks)), hparams=hparams,
                   method_overrides=_freeze({**{k: v for k, v in m_opts.items() if v != m_defaults.get(k)},
                                             **keys_changed}),
                   run_overrides=_freeze(run_overrides), label=label, device=device, threads=threads,
                   **{k: run[k] for k in RUN_SETTINGS})


_DATASET_CACHE: dict[str, dict] = {}


def _dataset_options(name: str, options: dict) -> dict:
    """Validate a dataset's options once per distinct set (building MNIST reads 55 MB)."""
    from bench.datasets import DATASETS
    key = canonical_json([name, options])
    if key not in _DATASET_CACHE:
        options = DATASETS.validate(name, options)
        DATASETS.create(name, **options)
        full = DATASETS.validate(name, {**signature_defaults(DATASETS.get(name)), **options})
        _DATASET_CACHE[key] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in full.items()}
    return dict(_DATASET_CACHE[key])

"""The method contract as a test a plugin author runs (scikit-learn's ``check_estimator``)::

    from bench.testing import check_method
    from my_package.my_loss import MyLoss

    def test_my_loss_follows_the_bench_contract():
        check_method(MyLoss)                 # or check_method(MyLoss, options={"margin": 0.5})

It trains a few steps on a toy mixture on the CPU with the harness itself
(:func:`bench.spec.resolve`, :func:`bench.harness.build` and :func:`~bench.harness.train_and_evaluate`,
a tiny budget) and checks that

* the class can be registered: a :class:`~methods.base.Method` with ``step``, every option a
  keyword with a default that its declared constraint accepts, a valid ``recommended`` dict;
* ``step`` returns a dict of named, finite, scalar losses detached from the graph;
* the generator's (and the discriminator's) parameters change;
* options round-trip: ``options()`` is the constructor's arguments, rebuilds the same method,
  survives training and the run record (JSON), and reads back from its ``--set`` text;
* every option declares a constraint, and a bad value raises a BenchError that names it;
* the same seed gives the same losses, metrics and samples twice;
* the method writes no file and prints nothing (stdout and stderr, Python and C level);
* the method pickles (worker processes and Ray ship runs as data, but users pickle methods).

Every failed check is listed in one :class:`ConformanceError` (an AssertionError) with what was
expected. :func:`method_checks` returns the checks by name for ``pytest.mark.parametrize``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import json
import os
import pickle
import re
import sys
import tempfile
import warnings
from typing import Callable

import torch

from bench import options as opts_lib
from bench import records
from bench.errors import BenchError
from bench.harness import build, build_batched, train_and_evaluate
from bench.spec import from_dict, resolve
from methods import METHODS
from methods.base import is_batchable

TINY = dict(steps=6, batch_size=16, eval_points=1, device="cpu")


class ConformanceError(AssertionError):
    """A method breaks the bench contract; the message lists every failed check."""


@dataclasses.dataclass
class Case:
    """One method under test: its registered name, class, options, and the toy run settings."""
    name: str
    cls: type
    options: dict
    dataset: str
    settings: dict
    cache: dict = dataclasses.field(default_factory=dict)

    def spec(self, seed: int = 0, options: dict | None = None):
        return resolve(self.name, self.dataset, seed, method_options=self.options if options is None else options,
                       **self.settings)

    def run(self, key: str = "first"):
        """The whole harness run of the spec (record, samples), computed once per key."""
        if key not in self.cache:
            self.cache[key] = train_and_evaluate(self.spec())
        return self.cache[key]


# --------------------------------------------------------------------------------- the checks
def check_contract(case: Case) -> None:
    faults = METHODS.faults(case.name, case.cls)
    assert not faults, "; ".join(faults)


def check_step_returns_detached_finite_scalars(case: Case) -> None:
    _, _, method, nets, real = build(case.spec())
    for _ in range(2):
        losses = method.step(nets, real)
        assert isinstance(losses, dict) and losses, \
            f"step must return a non-empty dict of named losses; got {type(losses).__name__} {losses!r}"
        for key, value in losses.items():
            where = f"step()[{key!r}]"
            assert isinstance(key, str) and key, f"loss names must be non-empty strings; got {key!r}"
            assert isinstance(value, torch.Tensor), f"{where} is a {type(value).__name__}; return a torch scalar"
            assert value.dim() == 0, f"{where} has shape {tuple(value.shape)}; return a scalar (e.g. loss.mean())"
            assert not value.requires_grad and value.grad_fn is None, \
                f"{where} is attached to the autograd graph; return loss.detach() (it keeps every batch alive)"
            assert bool(torch.isfinite(value)), f"{where} is {value.item()} on a toy mixture after a few steps"


def check_parameters_change(case: Case) -> None:
    _, _, method, nets, real = build(case.spec())
    nets_to_check = {"generator": nets.generator}
    if method.uses_discriminator:
        nets_to_check["discriminator"] = nets.discriminator
    before = {k: [p.detach().clone() for p in n.parameters() if p.requires_grad] for k, n in nets_to_check.items()}
    for _ in range(3):
        method.step(nets, real)
    for key, net in nets_to_check.items():
        after = [p.detach() for p in net.parameters() if p.requires_grad]
        assert any(not torch.equal(a, b) for a, b in zip(before[key], after)), \
            f"the {key}'s parameters did not change in 3 steps: step must call nets.{key[0]}_opt.step()"


def option_text(value) -> str | None:
    """How a value is written on the command line (--set NAME.OPTION=TEXT), or None if it cannot be."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return value if isinstance(value, str) else repr(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                for v in value):
        return ",".join(repr(v) for v in value)
    return None


def check_options_round_trip(case: Case) -> None:
    method = METHODS.create(case.name, **case.options)
    settings = method.options()
    params = [p for p in inspect.signature(case.cls).parameters if p != "self"]
    assert set(settings) == set(params), \
        (f"options() returns {sorted(settings)} but __init__ takes {sorted(params)}: store each option under its "
         f"own name, and what step learns in attributes ending in _")
    rebuilt = case.cls(**settings).options()
    assert rebuilt == settings, f"{case.cls.__name__}(**options()) has options {rebuilt}, not {settings}"
    record, _ = case.run()
    spec = case.spec()
    assert from_dict(json.loads(json.dumps(spec.to_dict()))) == spec, "the run spec does not survive JSON"
    stored = json.loads(json.dumps(record["method_settings"]))
    assert METHODS.validate(case.name, stored) == METHODS.validate(case.name, settings), \
        (f"after training, the record keeps options {stored}, built with {settings}: step must not change "
         f"options (put what it learns in attributes ending in _)")
    for key, value in settings.items():
        text = option_text(value)
        assert text is not None, f"option {key}={value!r} cannot be written as --set {case.name}.{key}=TEXT"
        case.spec(options={**case.options, key: text})  # the command line's route accepts it
        read = METHODS.create(case.name, **{**case.options, key: text}).options()[key]
        assert read == value, \
            (f"--set {case.name}.{key}={text} gives {read!r}, not {value!r}: declare the option's constraint "
             f"so that its text is read by type")


def bad_value(constraint):
    """A value ``constraint`` must refuse (as --set text), or None if none is known."""
    kinds = {opts_lib.Integer: "2.5", opts_lib.Real: "nan", opts_lib.Choice: "not-a-choice",
             opts_lib.Boolean: "maybe", opts_lib.Floats: "x,y", opts_lib.Text: 3}
    if isinstance(constraint, opts_lib.Optional):
        return bad_value(constraint.inner)
    return next((v for k, v in kinds.items() if isinstance(constraint, k)), None)


def check_rejects_bad_values(case: Case) -> None:
    constraints = getattr(case.cls, "constraints", None) or {}
    params = [p for p in inspect.signature(case.cls).parameters if p != "self"]
    undeclared = [p for p in params if p not in constraints]
    assert not undeclared, (f"option {', '.join(undeclared)} declares no constraint, so a bad value passes "
                            f"unchecked: add it to {case.cls.__name__}.constraints (bench.options)")
    for key, constraint in constraints.items():
        bad = bad_value(constraint)
        if bad is None:
            continue
        try:
            case.spec(options={**case.options, key: bad})
        except BenchError as err:
            assert key in str(err), f"--set {case.name}.{key}={bad} is refused, but the message does not name {key}: {err}"
        else:
            raise AssertionError(f"--set {case.name}.{key}={bad!r} was accepted; {constraint.describe()} expected")
    try:
        case.spec(options={**case.options, "no_such_option": "1"})
    except BenchError:
        pass
    else:
        raise AssertionError("an unknown option was accepted")


@contextlib.contextmanager
def _captured_output():
    """Everything written to stdout and stderr inside the block, Python and C level (file descriptors)."""
    sink = tempfile.TemporaryFile()
    text = io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    result = {}
    try:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
            yield result
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        sink.seek(0)
        result["text"] = text.getvalue() + sink.read().decode(errors="replace")
        sink.close()


def check_no_files_no_output(case: Case) -> None:
    records.describe_environment(torch.device("cpu"))  # libraries' own import-time notices are not the method's
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="bench-check-") as folder:
        os.chdir(folder)
        try:
            with _captured_output() as out, warnings.catch_warnings(record=True):
                case.run("quiet")
        finally:
            os.chdir(here)
        left = sorted(os.listdir(folder))
    assert not out["text"].strip(), (f"the run printed {out['text'].strip()[:200]!r}: a method never prints "
                                     f"(the harness reports; return values in the losses dict)")
    assert not left, f"the run wrote {left} into the working directory: a method never writes files"


def check_same_seed_same_result(case: Case) -> None:
    (a, sa), (b, sb) = case.run("first"), case.run("quiet" if "quiet" in case.cache else "second")
    strip = lambda r: [{k: v for k, v in h.items() if k != "train_seconds"} for h in r["history"]]
    assert a["status"] == b["status"] == "ok", f"the toy runs ended {a['status']!r}, {b['status']!r}"
    same = json.dumps(strip(a), default=str) == json.dumps(strip(b), default=str)
    assert same and sa.tobytes() == sb.tobytes(), \
        ("the same seed gave different losses, metrics or samples: draw randomness only from torch's "
         "generators (seeded by the harness) or from nets.noise / real(), never from time, random or numpy")


def check_picklable(case: Case) -> None:
    _, _, method, nets, real = build(case.spec())
    method.step(nets, real)
    try:
        pickle.loads(pickle.dumps(method))
    except Exception as err:  # noqa: BLE001
        raise AssertionError(f"the method cannot be pickled after a step ({type(err).__name__}: {err}); keep "
                             f"networks, tensors with graphs and open files out of its attributes") from None


def check_batched_step_matches_step(case: Case) -> None:
    """For a batchable method: two seeds through ``batched_step`` stay within rounding of their
    own runs through ``step`` (another seed's data or weights would move them far more)."""
    if not is_batchable(case.cls):
        return
    specs = [case.spec(seed) for seed in (0, 1)]
    _, _, method, nets, real, _, _ = build_batched(specs)
    for _ in range(3):
        losses = method.batched_step(nets, real)
    assert all(v.shape == (2,) for v in losses.values()), \
        f"batched_step must return one value per seed ([2] for 2 seeds); got {({k: tuple(v.shape) for k, v in losses.items()})}"
    stacked = {"generator": nets.generator, "discriminator": nets.discriminator}
    for i, spec in enumerate(specs):
        _, _, alone_method, alone, alone_real = build(spec)
        for _ in range(3):
            alone_method.step(alone, alone_real)
        for key, net in stacked.items():
            if net is None:
                continue
            for name, p in getattr(alone, key).named_parameters():
                assert torch.allclose(net.params[name][i], p, rtol=1e-5, atol=1e-5), \
                    (f"seed {i}'s {key} parameter {name} after 3 batched steps is not its separate run's (max "
                     f"difference {float((net.params[name][i] - p).abs().max()):.3g}): batched_step must do what "
                     f"step does, each seed on its own draws")


CHECKS: list[Callable[[Case], None]] = [
    check_contract, check_step_returns_detached_finite_scalars, check_parameters_change, check_options_round_trip,
    check_rejects_bad_values, check_no_files_no_output, check_same_seed_same_result, check_picklable,
    check_batched_step_matches_step]


def method_checks() -> dict[str, Callable[[Case], None]]:
    """The checks by name, in order (for ``pytest.mark.parametrize``)."""
    return {c.__name__: c for c in CHECKS}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "method"


@contextlib.contextmanager
def _registered(method):
    """(name, class): a registered name as is; a class under its registered name, or registered
    for the duration of the check."""
    if isinstance(method, str):
        yield method, METHODS.get(method)
        return
    name = getattr(method, "registered_name", None)
    if name in METHODS.names() and METHODS.get(name) is method:
        yield name, method
        return
    name = f"check-{_slug(getattr(method, '__name__', 'method'))}"
    try:
        context = METHODS.temporarily(name, method, source="bench.testing")
        entered = context.__enter__()
    except BenchError as err:
        raise ConformanceError(f"{getattr(method, '__qualname__', method)!r} fails the bench contract: "
                               f"check_contract: {str(err).split(': ', 1)[-1]}") from None
    try:
        yield entered, method
    finally:
        context.__exit__(None, None, None)


def check_method(method, options: dict | None = None, dataset: str = "ring8", checks=None, **settings) -> None:
    """Run every conformance check on ``method`` (a Method subclass or a registered name) with
    ``options``; raise :class:`ConformanceError` listing each failed check. ``settings`` override
    the tiny run (steps=6, batch_size=16, eval_points=1, device="cpu")."""
    with _registered(method) as (name, cls):
        case = Case(name, cls, dict(options or {}), dataset, {**TINY, **settings})
        failures = []
        selected = method_checks() if checks is None else {c.__name__: c for c in checks}
        for check_name, check in selected.items():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    check(case)
            except AssertionError as err:
                failures.append(f"{check_name}: {err}")
            except Exception as err:  # noqa: BLE001 (a crash is a failed check, named)
                failures.append(f"{check_name}: raised {type(err).__name__}: {err}")
        if failures:
            raise ConformanceError(f"{cls.__qualname__} ({name!r}) fails {len(failures)} of {len(selected)} bench "
                                   f"conformance checks:\n" + "\n".join(f"  - {f}" for f in failures))

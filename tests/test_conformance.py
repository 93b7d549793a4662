"""bench.testing.check_method: every registered method passes it; deliberately broken methods
fail it, each with a message that says what is wrong and what to do."""
import os
import random

import pytest
import torch

from bench import testing
from bench.options import Real
from bench.testing import ConformanceError, check_method
from methods import METHODS
from methods.base import Method
from methods.nsgan import NonSaturatingGAN


@pytest.mark.parametrize("name", METHODS.names())
def test_every_registered_method_passes_the_conformance_check(name):
    check_method(name)


def test_options_other_than_the_defaults_pass_too():
    check_method("nsgan", options={"pack": 2, "d_steps": 2})
    check_method("wgan-gp", options={"gp_weight": 1.0})
    check_method("mmdgan", options={"clip": 0.05, "features": 4})


class Shift(Method):
    """A correct method: G descends the squared distance between batch means."""
    constraints = {"weight": Real(min=0)}

    def __init__(self, weight: float = 1.0):
        self.weight = weight

    def loss(self, nets, real):
        x = real()
        return self.weight * ((nets.generator(nets.noise(len(x))).mean(0) - x.mean(0)) ** 2).sum()

    def step(self, nets, real):
        loss = self.loss(nets, real)
        nets.g_opt.zero_grad(set_to_none=True)
        loss.backward()
        nets.g_opt.step()
        return {"loss": loss.detach()}


def test_an_unregistered_class_is_checked_under_a_temporary_name_and_then_forgotten():
    check_method(Shift)
    assert "check-shift" not in METHODS.names()


class Attached(Shift):
    def step(self, nets, real):
        loss = self.loss(nets, real)
        nets.g_opt.zero_grad(set_to_none=True)
        loss.backward(retain_graph=True)
        nets.g_opt.step()
        return {"loss": loss}


class NotScalar(Shift):
    def step(self, nets, real):
        return {"loss": super().step(nets, real)["loss"].repeat(3)}


class Frozen(Shift):
    def step(self, nets, real):
        return {"loss": self.loss(nets, real).detach()}


class Chatty(Shift):
    def step(self, nets, real):
        print("step!")
        return super().step(nets, real)


class Writer(Shift):
    def step(self, nets, real):
        with open("losses.txt", "a") as f:
            f.write("1\n")
        return super().step(nets, real)


class Unseeded(Shift):
    def step(self, nets, real):
        with torch.no_grad():
            next(nets.generator.parameters()).add_(random.random() * 1e-3)
        return super().step(nets, real)


class Renamed(Shift):
    def __init__(self, weight: float = 1.0):
        self.w = weight


class Unconstrained(Shift):
    constraints = {}


class Forgetful(Shift):
    def step(self, nets, real):
        self.weight = self.weight * 0.5  # changes an option during the run
        return super().step(nets, real)


class Unpicklable(Shift):
    def step(self, nets, real):
        self.hook = lambda: None
        return super().step(nets, real)


class MixedSeeds(NonSaturatingGAN):
    """Batched, but each seed trains on the other seed's data."""
    batchable = True

    def batched_step(self, nets, real):
        return super().batched_step(nets, lambda: real().flip(0))


@pytest.mark.parametrize("cls,check,message", [
    (Attached, testing.check_step_returns_detached_finite_scalars,
     "step()['loss'] is attached to the autograd graph; return loss.detach()"),
    (NotScalar, testing.check_step_returns_detached_finite_scalars, "step()['loss'] has shape (3,); return a scalar"),
    (Frozen, testing.check_parameters_change,
     "the generator's parameters did not change in 3 steps: step must call nets.g_opt.step()"),
    (Chatty, testing.check_no_files_no_output, "the run printed 'step!"),
    (Writer, testing.check_no_files_no_output, "the run wrote ['losses.txt'] into the working directory"),
    (Unseeded, testing.check_same_seed_same_result, "the same seed gave different losses, metrics or samples"),
    (Renamed, testing.check_options_round_trip, "options() returns ['w'] but __init__ takes ['weight']"),
    (Unconstrained, testing.check_rejects_bad_values, "option weight declares no constraint"),
    (Forgetful, testing.check_options_round_trip, "step must not change options"),
    (Unpicklable, testing.check_picklable, "the method cannot be pickled after a step"),
    (MixedSeeds, testing.check_batched_step_matches_step, "after 3 batched steps is not its separate run's"),
])
def test_a_broken_method_fails_the_check_that_catches_it_with_a_readable_message(cls, check, message, tmp_path,
                                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConformanceError) as err:
        check_method(cls, checks=[check])
    text = str(err.value)
    assert text.startswith(f"{cls.__name__} ('check-{cls.__name__.lower()}') fails 1 of 1 bench conformance checks:")
    assert f"  - {check.__name__}: " in text and message in text
    assert os.listdir(tmp_path) == []  # the check's own runs happen in a temporary folder
    assert f"check-{cls.__name__.lower()}" not in METHODS.names()


class Sloppy(Shift):
    """Attached losses, prints, no constraint."""
    constraints = {}

    def step(self, nets, real):
        print("hello")
        loss = self.loss(nets, real)
        nets.g_opt.zero_grad(set_to_none=True)
        loss.backward(retain_graph=True)
        nets.g_opt.step()
        return {"loss": loss}


def test_the_whole_check_lists_every_failure_of_a_method_at_once():
    with pytest.raises(ConformanceError) as err:
        check_method(Sloppy)
    text = str(err.value)
    assert f"fails 3 of {len(testing.CHECKS)} bench conformance checks" in text
    for name in ("check_step_returns_detached_finite_scalars", "check_rejects_bad_values", "check_no_files_no_output"):
        assert f"  - {name}: " in text


def test_a_class_that_is_not_a_method_fails_at_once_naming_the_contract():
    class Loose:
        def step(self, nets, real):
            return {}
    with pytest.raises(ConformanceError, match="check_contract: class .*Loose is not a subclass of methods.base.Method"):
        check_method(Loose)

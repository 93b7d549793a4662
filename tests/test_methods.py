"""Each method lowers its own loss on a trivial problem; methods are interchangeable by name."""
import pytest
import torch

from methods import METHODS
from methods.base import Nets
from methods.networks import mlp_discriminator, mlp_generator, noise_sampler
from bench.errors import BenchError


def _nets(with_d, g_lr=1e-2, d_lr=1e-2):
    torch.manual_seed(0)
    g = mlp_generator(4, 2, width=32, depth=2)
    nets = Nets(generator=g, g_opt=torch.optim.Adam(g.parameters(), g_lr),
                noise=noise_sampler("gaussian", 4, torch.Generator().manual_seed(0), "cpu"))
    if with_d:
        nets.discriminator = mlp_discriminator(2, width=32, depth=2)
        nets.d_opt = torch.optim.Adam(nets.discriminator.parameters(), d_lr)
    return nets


def _real():
    gen = torch.Generator().manual_seed(1)
    return lambda: torch.tensor([3.0, -2.0]) + 0.1 * torch.randn(128, 2, generator=gen)


def test_gmn_lowers_its_mmd_loss():
    nets, real = _nets(False), _real()
    method = METHODS.create("gmn")
    losses = [method.step(nets, real)["mmd_loss"].item() for _ in range(60)]
    assert sum(losses[-5:]) / 5 < 0.3 * sum(losses[:5]) / 5


@pytest.mark.parametrize("name", ["gan", "nsgan"])
def test_gan_generator_step_lowers_generator_loss_against_a_fixed_discriminator(name):
    nets, real = _nets(True, d_lr=0.0), _real()  # D's optimiser does nothing: D stays fixed
    method = METHODS.create(name)
    losses = [method.step(nets, real)["g_loss"].item() for _ in range(30)]
    assert losses[-1] < losses[0] - 0.1


@pytest.mark.parametrize("name", ["gan", "nsgan"])
def test_gan_discriminator_steps_lower_discriminator_loss_against_a_fixed_generator(name):
    nets, real = _nets(True, g_lr=0.0), _real()
    method = METHODS.create(name, d_steps=2)
    losses = [method.step(nets, real)["d_loss"].item() for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]


def test_discriminator_is_frozen_during_generator_step():
    nets, real = _nets(True), _real()
    method = METHODS.create("gan")
    seen = {}
    d_step, g_step = nets.d_opt.step, nets.g_opt.step

    def after_d_backward():
        seen["d_grads"] = [p.grad.clone() for p in nets.discriminator.parameters()]
        d_step()

    def after_g_backward():  # G's backward must neither need nor touch D's gradients
        seen["frozen"] = not any(p.requires_grad for p in nets.discriminator.parameters())
        seen["unchanged"] = all(torch.equal(a, p.grad) for a, p in
                                zip(seen["d_grads"], nets.discriminator.parameters()))
        seen["g_has_grads"] = all(p.grad is not None for p in nets.generator.parameters())
        g_step()
    nets.d_opt.step, nets.g_opt.step = after_d_backward, after_g_backward
    method.step(nets, real)
    assert seen["frozen"] and seen["unchanged"] and seen["g_has_grads"]


def test_registry_lists_three_objectives_and_rejects_unknown_names_and_options():
    assert {"gmn", "gan", "nsgan"} <= set(METHODS.names())
    with pytest.raises(BenchError, match="choose from: .*gmn"):
        METHODS.create("wgan")
    with pytest.raises(BenchError, match="options are: d_steps"):
        METHODS.create("gan", k=2)
    with pytest.raises(BenchError, match="gan option d_steps takes an integer >= 1; got 0"):
        METHODS.create("gan", d_steps=0)


_SETTINGS = {"gmn": dict(kernel="laplacian", bandwidth_factors="1,0.25", estimator="biased", root="true"),
             "gan": dict(d_steps="2"), "nsgan": dict(d_steps=3)}


@pytest.mark.parametrize("name", METHODS.names())
def test_options_are_the_constructor_settings_before_and_after_training(name):
    """scikit-learn's convention: settings stay as built, what a run learns ends in _."""
    cls = METHODS.get(name)
    method = METHODS.create(name, **_SETTINGS.get(name, {}))
    before = method.options()
    assert set(before) == set(cls.constraints)  # every constructor argument, nothing learned
    assert cls(**before).options() == before
    nets, real = _nets(cls.uses_discriminator), _real()
    for _ in range(3):
        method.step(nets, real)
    assert method.options() == before
    rebuilt = cls(**method.options())
    assert type(rebuilt) is cls and rebuilt.options() == before
    assert not any(k.endswith("_") for k in before)


def test_gmn_keeps_learned_bandwidths_and_backend_apart_from_its_settings():
    nets, real = _nets(False), _real()
    method = METHODS.create("gmn")
    assert method.learned() == {"bandwidths_": None, "backend_used_": None}
    method.step(nets, real)
    assert method.bandwidths is None and len(method.bandwidths_) == 7 and method.backend_used_ in ("dense", "keops")
    fixed = METHODS.create("gmn", bandwidths="0.5,2")
    fixed.step(nets, real)
    assert fixed.bandwidths == fixed.bandwidths_ == (0.5, 2.0)
    energy = METHODS.create("gmn", kernel="energy")
    energy.step(nets, real)
    assert energy.bandwidths_ is None and energy.options()["kernel"] == "energy"


def _one_step(name, updates, d_lr, **options):
    nets, real = _nets(True, d_lr=d_lr), _real()
    nets.g_opt = torch.optim.SGD(nets.generator.parameters(), lr=0.1)
    draws = {"real": 0}

    def counted():
        draws["real"] += 1
        return real()
    METHODS.create(name, updates=updates, **options).step(nets, counted)
    return [p.detach().clone() for p in nets.generator.parameters()], draws["real"]


@pytest.mark.parametrize("name,options", [("nsgan", {}), ("gdpp", {}), ("wgan-gp", {"gp_weight": 1.0})])
def test_simultaneous_updates_take_both_gradients_before_either_step(name, options):
    """Under simultaneous updates G's step reads D's weights before D's step, so G ends the same
    whether D's step moved D or not, and one real batch serves both (GDPP's real features too);
    alternating updates, where G answers the updated D, are the control that shows the test can fail."""
    moved, drawn = _one_step(name, "simultaneous", d_lr=0.5, **options)
    still, _ = _one_step(name, "simultaneous", d_lr=0.0, **options)
    assert drawn == 1 and all(torch.equal(a, b) for a, b in zip(moved, still))
    moved, _ = _one_step(name, "alternating", d_lr=0.5, **options)
    still, _ = _one_step(name, "alternating", d_lr=0.0, **options)
    assert not all(torch.equal(a, b) for a, b in zip(moved, still))


def test_simultaneous_updates_refuse_several_discriminator_steps():
    with pytest.raises(BenchError, match=r"updates=simultaneous takes one D step per G step \(d_steps=1\); got d_steps=2"):
        METHODS.create("nsgan", updates="simultaneous", d_steps=2)
    with pytest.raises(BenchError, match="updates takes one of alternating, simultaneous; got 'both'"):
        METHODS.create("gan", updates="both")

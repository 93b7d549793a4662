"""Seeds trained as one model (run --batch-seeds): what must be exact is tested bit for bit (each
seed's initial weights, data and noise draws, a group of one), what cannot be (batched and single
matrix products sum in different orders) to rounding after a few steps and, over 10 seeds, by a
two-sample test on every metric."""
import dataclasses
import math

import pytest
import torch
from scipy.stats import mannwhitneyu
from statsmodels.stats.multitest import multipletests

from bench import executors, harness
from bench.cli import main
from bench.errors import BenchError
from bench.spec import resolve
from bench.studies import plan, read_study
from methods import METHODS, Method
from methods.base import contract_faults, is_batchable
from methods.nsgan import NonSaturatingGAN

SMALL = dict(steps=6, eval_points=2, batch_size=32, width=16, device="cpu")


def specs_for(method="nsgan", seeds=(0, 1, 2), dataset="ring8", method_options=None, **settings):
    return [resolve(method, dataset, s, "quick", method_options, **{**SMALL, **settings}) for s in seeds]


def seed_weights(stacked, i):
    return {**{k: v[i].detach() for k, v in stacked.params.items()}, **{k: v[i] for k, v in stacked.buffers.items()}}


def assert_same(a: dict, b: dict, exact: bool):
    """Bit for bit, or within 1e-5: rounding-level differences after a few Adam steps of lr 1e-3
    (another seed's batch or weights would move them by 1e-3 or more)."""
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), k
        else:
            assert torch.allclose(a[k].float(), b[k].float(), rtol=1e-5, atol=1e-5), (k, (a[k] - b[k]).abs().max())


def test_each_seed_starts_from_its_own_run_and_draws_its_own_streams():
    specs = specs_for(seeds=(0, 1, 5))
    _, _, _, nets, real, _, _ = harness.build_batched(specs)
    draws = [real(), nets.noise(7), real(), nets.noise(7)]
    for i, spec in enumerate(specs):
        _, _, _, alone, alone_real = harness.build(spec)
        assert_same(seed_weights(nets.generator, i), alone.generator.state_dict(), exact=True)
        assert_same(seed_weights(nets.discriminator, i), alone.discriminator.state_dict(), exact=True)
        for drawn, own in zip(draws, [alone_real(), alone.noise(7), alone_real(), alone.noise(7)]):
            assert torch.equal(drawn[i], own)


@pytest.mark.parametrize("method,options,arch", [("gan", {}, "mlp"), ("nsgan", {"d_steps": 2}, "mlp"),
                                                 ("lsgan", {}, "mlp"), ("hinge", {"pack": 2}, "mlp"),
                                                 ("nsgan", {"pack": 2}, "pacgan-mlp"),
                                                 ("nsgan", {"updates": "simultaneous"}, "mlp"),
                                                 ("gan", {"updates": "simultaneous", "pack": 2}, "pacgan-mlp")])
def test_batched_step_is_step(method, options, arch):
    """A group of one through the vmapped step equals the run's own step bit for bit (unpacked: a
    packed input's reshaped product sums in another order); three seeds stay within rounding of
    their separate runs (pacgan-mlp: BatchNorm, maxout, packing)."""
    alone_exact = options.get("pack", 1) == 1
    for seeds, exact in (((4,), alone_exact), ((0, 1, 2), False)):
        specs = specs_for(method, seeds, method_options=options, arch=arch)
        _, _, batched_method, nets, real, _, _ = harness.build_batched(specs)
        for _ in range(5):
            losses = batched_method.batched_step(nets, real)
        assert losses["d_loss"].shape == (len(seeds),)
        for i, spec in enumerate(specs):
            _, _, alone_method, alone, alone_real = harness.build(spec)
            for _ in range(5):
                alone_losses = alone_method.step(alone, alone_real)
            assert_same(seed_weights(nets.generator, i), alone.generator.state_dict(), exact)
            assert_same(seed_weights(nets.discriminator, i), alone.discriminator.state_dict(), exact)
            if exact:
                assert torch.equal(losses["g_loss"][i], alone_losses["g_loss"])


def strip_times(history):
    return [{k: v for k, v in h.items() if k != "train_seconds"} for h in history]


def test_a_diverged_seed_is_recorded_and_leaves_the_others_untouched(monkeypatch):
    specs = specs_for(seeds=(0, 1, 2), steps=8, eval_points=4)
    clean = harness.train_group(specs)
    build_batched = harness.build_batched

    def poisoned(group):
        built = build_batched(group)
        last_bias = list(built[3].discriminator.params)[-1]
        with torch.no_grad():
            built[3].discriminator.params[last_bias][1] = math.nan  # seed 1's D: its losses go NaN at step 1
        return built
    monkeypatch.setattr(harness, "build_batched", poisoned)
    broken = harness.train_group(specs)
    for i in (0, 2):
        assert strip_times(broken[i][0]["history"]) == strip_times(clean[i][0]["history"])
        assert broken[i][0]["status"] == "ok"
        assert torch.equal(torch.as_tensor(broken[i][1]), torch.as_tensor(clean[i][1]))
    record = broken[1][0]
    assert (record["status"], record["diverged_at_step"], record["steps_done"]) == ("diverged", 1, 1)
    assert [h["step"] for h in record["history"]] == [0, 1]


def test_records_of_a_batched_group_are_the_runs_records():
    specs = specs_for(seeds=(3, 4), steps=4)
    for (record, samples), spec in zip(harness.train_group(specs), specs):
        alone, _ = harness.train_and_evaluate(spec)
        for key in ("run_id", "variant_id", "spec", "identity", "steps_done", "status"):
            assert record[key] == alone[key]
        assert record["runtime"]["batched"] == {"seeds": [3, 4], "engine": "torch.func.vmap"}
        assert "runtime" not in alone
        assert [h["step"] for h in record["history"]] == [h["step"] for h in alone["history"]]
        assert len(samples) == len(_)


def test_seed_groups_take_consecutive_seeds_of_one_batchable_variant():
    nsgan = specs_for("nsgan", seeds=range(5))
    gmn = specs_for("gmn", seeds=range(2))
    lsgan = specs_for("lsgan", seeds=range(2))
    by_time = [resolve("nsgan", "ring8", s, "quick", budget_seconds=1.0, device="cpu") for s in range(2)]
    groups = list(executors.seed_groups(nsgan + gmn + lsgan + by_time, 2))
    seeds = [(g[0].method, [s.seed for s in g]) for g in groups]
    assert seeds == [("nsgan", [0, 1]), ("nsgan", [2, 3]), ("nsgan", [4]), ("gmn", [0]), ("gmn", [1]),
                     ("lsgan", [0, 1]), ("nsgan", [0]), ("nsgan", [1])]
    assert [len(g) for g in executors.seed_groups(nsgan, 1)] == [1] * 5


def test_a_batched_study_writes_one_record_per_seed(tmp_path):
    from bench import store, studies
    plan_ = plan(["nsgan", "gmn"], ["ring8"], seeds="0-2", out=tmp_path, batch_seeds=2, **{
        k: v for k, v in SMALL.items() if k != "width"})
    outcome = studies.execute(plan_, progress=False, log=lambda *a: None)
    assert outcome.ran == 6 and outcome.failed == 0
    stored = {r["run_id"]: r for r in store.load_records(tmp_path)}
    assert set(stored) == {s.run_id for s in plan_.specs}
    batched = sorted(r["spec"]["seed"] for r in stored.values() if "batched" in r["runtime"])
    assert batched == [0, 1]  # nsgan's seeds 0-1 as one model, seed 2 alone, gmn alone


def test_batch_seeds_refusals():
    with pytest.raises(BenchError, match="positive integer"):
        plan(["nsgan"], ["ring8"], batch_seeds=0)
    with pytest.raises(BenchError, match="step budget"):
        plan(["nsgan"], ["ring8"], batch_seeds=2, budget_seconds=5.0)

    class Claims(Method):
        batchable = True

        def step(self, nets, real):
            return {}
    assert any("no batched_step" in f for f in contract_faults("claims", Claims))
    Claims.batchable = "yes"
    assert any("True or False" in f for f in contract_faults("claims", Claims))
    builtin = {m for m in METHODS.names() if METHODS.source(m) == "builtin"}
    assert {m for m in builtin if is_batchable(METHODS.get(m))} == {"gan", "nsgan", "lsgan", "hinge"}


def test_a_subclass_is_batched_only_when_it_says_so():
    """batchable is never inherited: a plugin's GAN with its own step or objective trains one seed
    at a time unless it declares batchable (and then its step must have a batched twin)."""
    class OwnLoss(NonSaturatingGAN):
        def generator_objective(self, D, fake, real):
            return super().generator_objective(D, fake, real) + 0.0 * real().sum()  # draws data: not vmap-safe

    class OwnStep(NonSaturatingGAN):
        batchable = True

        def step(self, nets, real):
            return super().step(nets, real)
    assert not is_batchable(OwnLoss) and contract_faults("own-loss", OwnLoss) == []
    assert any("overrides step and not batched_step" in f for f in contract_faults("own-step", OwnStep))
    METHODS.add("own-loss", OwnLoss, source="test")
    try:
        spec = resolve("own-loss", "ring8", 0, "quick", **SMALL)
        assert [len(g) for g in executors.seed_groups([spec, spec], 2)] == [1, 1]
        with pytest.raises(BenchError, match="batchable method"):
            harness.train_group([spec, dataclasses.replace(spec, seed=1)])
    finally:
        METHODS.remove("own-loss")


def test_train_group_refuses_what_is_not_one_variant():
    a, b = specs_for("nsgan", seeds=(0,)), specs_for("lsgan", seeds=(1,))
    with pytest.raises(BenchError, match="one variant"):
        harness.train_group(a + b)
    with pytest.raises(BenchError, match="observer"):
        harness.train_group(specs_for("nsgan", seeds=(0, 1)), observer=lambda *args: None)


def test_batch_seeds_in_a_study_file_must_be_an_integer(tmp_path):
    study = tmp_path / "s.toml"
    study.write_text('methods = ["nsgan"]\nbatch_seeds = 2.5\n')
    with pytest.raises(BenchError, match="batch_seeds takes a positive integer"):
        read_study(study)
    assert main(["run", "--methods", "nsgan", "--batch-seeds", "abc", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_ten_seeds_batched_and_separate_agree_on_every_metric():
    """Trajectories part at rounding level and GAN dynamics amplify it, so seeds are compared as
    samples: no metric differs between 10 batched and 10 separate seeds (Mann-Whitney U, Holm, 5 %)."""
    specs = specs_for("nsgan", seeds=range(10), steps=200, eval_points=1, batch_size=64, width=32)
    batched = [r["final"] for r, _ in harness.train_group(specs)]
    separate = [harness.train_and_evaluate(s)[0]["final"] for s in specs]
    metrics = ["modes_covered", "high_quality_pct", "kl_modes", "mmd2", "energy"]
    p = [mannwhitneyu([r[k] for r in batched], [r[k] for r in separate]).pvalue for k in metrics]
    assert not multipletests(p, alpha=0.05, method="holm")[0].any(), dict(zip(metrics, p))

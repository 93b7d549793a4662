"""Hyperparameter policies and per-network optimiser settings: resolved into the run spec
(identity), built by the harness, named in variants and tables; PacGAN packing builds D for it."""
import json

import pandas as pd
import pytest
import torch

from bench.cli import main
from bench.harness import build
from bench.errors import BenchError
from bench.spec import resolve

TINY = ["--steps", "6", "--eval-points", "1", "--batch-size", "16", "--no-progress", "--device", "cpu"]


def test_shared_runs_keep_the_ids_they_had_before_policies_and_packing_existed():
    # ids of the committed results/toy records (found again by resume)
    assert resolve("gan", "ring8", 0).run_id == "e303621ebd22"
    assert resolve("gmn", "ring8", 0).run_id == "8be4f54b6001"
    assert resolve("gan", "ring8", 1, steps=500, lr=2e-4, method_options={"d_steps": 2}).run_id == "14ae6798b7f2"


def test_recommended_takes_each_papers_recipe_and_is_another_identity():
    shared, rec = resolve("wgan-gp", "ring8", 0), resolve("wgan-gp", "ring8", 0, hparams="recommended")
    assert shared.run_id != rec.run_id and rec.identity()["hparams"] == "recommended"
    assert "hparams" not in shared.identity()
    assert rec.optimizer("discriminator") == rec.optimizer("generator") == {"name": "adam", "lr": 1e-4,
                                                                            "betas": (0.0, 0.9)}
    assert rec.batch_size == 64 and rec.options("method")["d_steps"] == 5 and rec.variant == "wgan-gp"
    assert shared.optimizer("discriminator") == {"name": "adam", "lr": 1e-3, "betas": (0.5, 0.999)}
    assert shared.batch_size == 256 and shared.options("method")["d_steps"] == 1
    mmdgan = resolve("mmdgan", "ring8", 0, hparams="recommended")
    assert mmdgan.optimizer("generator") == {"name": "rmsprop", "lr": 5e-5}
    # explicit flags win over the policy: --batch-size, --lr, then --set NAME.KEY
    mine = resolve("wgan-gp", "ring8", 0, hparams="recommended", batch_size=32, lr=3e-4,
                   method_options={"lr_d": "4e-4"})
    assert mine.batch_size == 32 and mine.optimizer("generator")["lr"] == 3e-4
    assert mine.optimizer("discriminator")["lr"] == 4e-4 and mine.variant == "wgan-gp[lr_d=0.0004]"


def test_optimiser_keys_per_network_reach_the_optimisers_the_harness_builds():
    spec = resolve("gan", "ring8", 0, device="cpu", method_options={"lr_d": "4e-4", "betas_g": "0.0,0.9",
                                                                    "batch_size": "64"})
    assert spec.variant == "gan[batch_size=64,betas_g=(0,0.9),lr_d=0.0004]" and spec.batch_size == 64
    _, _, _, nets, real = build(spec)
    d, g = nets.d_opt.param_groups[0], nets.g_opt.param_groups[0]
    assert (d["lr"], d["betas"]) == (4e-4, (0.5, 0.999)) and (g["lr"], g["betas"]) == (1e-3, (0.0, 0.9))
    assert len(real()) == 64
    rms = resolve("gan", "ring8", 0, device="cpu", method_options={"optimizer_d": "rmsprop"})
    assert isinstance(build(rms)[3].d_opt, torch.optim.RMSprop) and isinstance(build(rms)[3].g_opt, torch.optim.Adam)
    same = resolve("gan", "ring8", 0, method_options={"lr": "1e-3", "betas": "0.5,0.999"})  # the policy's own values
    assert same.run_id == resolve("gan", "ring8", 0).run_id and same.variant == "gan"


@pytest.mark.parametrize("options,message", [
    ({"lr_d": "-1"}, "gan option lr_d takes a real number > 0; got '-1'"),
    ({"betas": "0.5"}, "gan option betas takes two real numbers in [0, 1)"),
    ({"betas_d": "1,2"}, "betas_d takes two real numbers in [0, 1)"),
    ({"optimizer": "adagrad"}, "optimizer takes one of adam, rmsprop, sgd"),
    ({"optimizer": "sgd", "betas": "0.5,0.9"}, "betas is not a setting of sgd"),
    ({"optimizer": "rmsprop", "betas": "0.5,0.9"}, "betas is not a setting of rmsprop"),
    ({"batch_size": "1"}, "batch_size takes an integer >= 2"),
    ({"pack": "3"}, "batch size must be a multiple of 3; it is 256"),
])
def test_bad_optimiser_keys_are_refused_with_what_is_allowed(options, message):
    with pytest.raises(BenchError, match=None) as err:
        resolve("gan", "ring8", 0, method_options=options)
    assert message in str(err.value)


def test_a_method_without_discriminator_refuses_discriminator_keys_and_bad_policies_are_refused():
    with pytest.raises(BenchError, match="gmn has no discriminator; its optimiser keys are: lr, lr_g, betas, betas_g"):
        resolve("gmn", "ring8", 0, method_options={"lr_d": "1e-4"})
    with pytest.raises(BenchError, match="unknown --hparams 'paper'; choose from: shared, recommended"):
        resolve("gan", "ring8", 0, hparams="paper")


def test_pack_builds_d_for_pack_samples_and_keeps_g_and_the_budget():
    spec = resolve("nsgan", "ring8", 0, device="cpu", method_options={"pack": "2"})
    assert spec.variant == "nsgan[pack=2]" and spec.batch_size == 256 and spec.steps == 3000
    _, _, method, nets, real = build(spec)
    assert nets.discriminator[1][0].in_features == 4 and method.discriminator_inputs == 2
    assert nets.generator[0].in_features == spec.noise_dim
    losses = method.step(nets, real)
    assert torch.isfinite(losses["d_loss"])
    assert "pack" not in dict(resolve("nsgan", "ring8", 0).method_options)  # pack=1 is left out of the identity


def test_both_policies_run_from_the_cli_and_get_tables_of_their_own(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["run", "--methods", "gan,wgan-gp", "--datasets", "ring8", "--out", str(out),
                 "--sweep", "hparams=shared,recommended", "--set", "gan.lr_d=4e-4", *TINY[:2], *TINY[4:]]) == 0
    printed = capsys.readouterr().out
    assert "ring8 · quick (hparams=shared" in printed and "ring8 · quick · recommended (hparams=recommended" in printed
    runs = pd.read_csv(out / "runs.csv")
    assert set(zip(runs["dataset"], runs["variant"])) == {
        ("ring8 · quick", "gan[lr_d=0.0004]"), ("ring8 · quick", "wgan-gp"),
        ("ring8 · quick · recommended", "gan[lr_d=0.0004]"), ("ring8 · quick · recommended", "wgan-gp")}
    record = json.loads(next(out.glob("runs/ring8/wgan-gp/*/record.json")).read_text())
    assert record["spec"]["hparams"] in ("shared", "recommended") and record["method_source"] == "builtin"
    assert main(["run", "--methods", "gan", "--datasets", "ring8", "--hparams", "best", "--out",
                 str(tmp_path / "no"), *TINY]) == 2
    assert "unknown --hparams 'best'" in capsys.readouterr().err and not (tmp_path / "no").exists()

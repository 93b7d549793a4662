"""Studies: run identity, resume (after a real kill -9), sweeps, study files, parallel and Ray
execution equal to sequential, two processes on one folder, the Python API."""
import json
import re
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

import bench
from bench import spec as specs
from bench import store
from bench import studies as study
from bench.cli import main
from conftest import Exploding as ExplodingSteps
from bench.environment import PROJECT_ROOT
from bench.errors import BenchError
from bench import files
from methods import METHODS
from methods.base import Method

TINY = ["--steps", "6", "--eval-points", "1", "--batch-size", "16", "--no-progress", "--device", "cpu"]
METRICS = ["mmd2", "energy", "modes_covered", "high_quality_pct", "kl_modes"]


def _bench(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _finals(out) -> pd.DataFrame:
    runs = pd.read_csv(out / "runs.csv")
    return runs[["dataset", "variant", "seed", "status", "steps", *METRICS]].sort_values(
        ["dataset", "variant", "seed"]).reset_index(drop=True)


# ------------------------------------------------------------------------------- identity
def test_identity_ignores_where_and_how_a_run_executes_but_not_what_it_is():
    base = specs.resolve("gmn", "ring8", 0, steps=10)
    same = [specs.resolve("gmn", "ring8", 0, steps=10, device="cpu", threads=1, label="mine"),
            specs.resolve("gmn", "ring8", 0, steps=10, lr=0.001),  # the profile's value, spelled out
            specs.resolve("gmn", "ring8", 0, steps=10, method_options={"kernel": "gaussian"})]
    assert all(s.run_id == base.run_id for s in same)
    other = [specs.resolve("gmn", "ring8", 1, steps=10), specs.resolve("gmn", "ring8", 0, steps=11),
             specs.resolve("gmn", "ring8", 0, steps=10, method_options={"kernel": "energy"}),
             specs.resolve("gmn", "ring8", 0, steps=10, dataset_options={"std": 0.02}),
             specs.resolve("gmn", "ring8", 0, steps=10, lr=2e-4), specs.resolve("gmn", "grid25", 0, steps=10),
             specs.resolve("gmn", "ring8", 0, budget_seconds=5.0)]
    assert len({s.run_id for s in [base, *other]}) == 1 + len(other)
    assert specs.resolve("gmn", "ring8", 1, steps=10).variant_id == base.variant_id  # seeds: one row
    assert other[2].variant == "gmn[kernel=energy]" and base.variant == "gmn"
    assert specs.from_dict(json.loads(json.dumps(other[2].to_dict()))) == other[2]
    with pytest.raises(dataclasses_frozen_error()):
        base.seed = 3


def test_run_ids_are_stable_so_committed_results_stay_found():
    # results/toy holds runs under these ids: a change here means `bench run --study studies/toy.toml`
    # retrains them, unless SPEC_VERSION is bumped (then older records are re-resolved on load)
    assert specs.resolve("gmn", "ring8", 0, "quick").run_id == "8be4f54b6001"
    assert specs.resolve("gan", "grid25", 0, "quick").run_id == "cd11d3d35a84"
    factors = [1, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625]  # the default, written with an int
    assert specs.resolve("gmn", "ring8", 0, method_options={"bandwidth_factors": factors}).run_id == "8be4f54b6001"


def dataclasses_frozen_error():
    import dataclasses
    return dataclasses.FrozenInstanceError


def test_two_variants_of_a_method_coexist_and_the_same_configuration_is_skipped(tmp_path, capsys):
    out = tmp_path / "res"
    args = ["run", "--methods", "gmn", "--datasets", "ring8", "--out", str(out), *TINY]
    assert main(args) == 0
    first = next(out.glob("runs/ring8/gmn/seed0-*/record.json"))
    stamp = first.stat().st_mtime_ns
    assert main([*args, "--set", "gmn.kernel=energy"]) == 0
    assert main(args) == 0
    assert "1 of 1 runs already finished" in capsys.readouterr().out
    assert first.stat().st_mtime_ns == stamp  # never redone by accident
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["variant"]) == {"gmn", "gmn[kernel=energy]"}
    assert main([*args, "--force"]) == 0
    assert first.stat().st_mtime_ns != stamp and len(list(first.parent.glob("samples-*.npz"))) == 1


def test_sweep_is_the_cartesian_product_and_names_each_point(tmp_path):
    out = tmp_path / "res"
    assert main(["run", "--methods", "gan,gmn", "--datasets", "ring8", "--seeds", "0-1", "--out", str(out),
                 "--sweep", "gan.d_steps=1,2", "--sweep", "lr=1e-3,2e-3", *TINY]) == 0
    runs = pd.read_csv(out / "runs.csv")
    # gan: 2 d_steps × 2 lr × 2 seeds; gmn has no d_steps: 2 lr × 2 seeds (not duplicated)
    assert len(runs) == 12
    assert set(runs["variant"]) == {"gan[lr=0.001]", "gan[lr=0.002]", "gan[d_steps=2,lr=0.001]",
                                    "gan[d_steps=2,lr=0.002]", "gmn[lr=0.001]", "gmn[lr=0.002]"}
    assert (out / "plots" / "sweeps.png").stat().st_size > 10_000


@pytest.mark.parametrize("text,seeds", [("0-3", [0, 1, 2, 3]), ("5", [5]), ("0-2,7,1", [0, 1, 2, 7]),
                                        ([3, 1], [3, 1])])
def test_seed_ranges(text, seeds):
    assert study.parse_seeds(text) == seeds


def test_sweep_values_split_outside_brackets_only():
    assert study.split_values("1,2,5") == ["1", "2", "5"]
    assert study.split_values("[1,2],(3, 4),5") == ["[1,2]", "(3, 4)", "5"]


# ---------------------------------------------------------------------------- study files
GOOD = """
methods = ["gmn", "gan"]
datasets = ["ring8"]
seeds = "0-1"
steps = 6
batch_size = 16
eval_points = 1
device = "cpu"
[set]
"gmn.kernel" = "energy"
[sweep]
"gan.d_steps" = [1, 2]
[labels]
"gan[d_steps=2]" = "gan, 2 D steps"
"""


def test_study_file_runs_the_whole_study(tmp_path):
    path = tmp_path / "toy.toml"
    path.write_text(f'out = "{tmp_path / "res"}"\n' + GOOD)
    assert main(["run", "--study", str(path), "--no-progress"]) == 0
    runs = pd.read_csv(tmp_path / "res" / "runs.csv")
    assert set(runs["variant"]) == {"gmn[kernel=energy]", "gan", "gan, 2 D steps"} and len(runs) == 6


@pytest.mark.parametrize("text,message", [
    ("methods = ['gmn']\nepochs = 3\n", "unknown key epochs"),
    ("methods = 'gmn'\nsteps = 'many'\n", "steps takes an integer"),
    ("methods = []\n", "methods is empty"),
    ("methods = ['gmn']\n[sweep]\nlr = []\n", "non-empty list"),
    ("methods = ['gmn']\nseeds = 3\n", "seeds takes"),
    ("methods = ['gmn'\n", "not valid TOML"),
    ("methods = ['gmn']\n[set]\nkernel = 'energy'\n", "NAME.OPTION"),
    ("methods = ['nope']\n", "unknown method 'nope'"),
])
def test_bad_study_files_exit_2_and_write_nothing(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(f'out = "{tmp_path / "res"}"\n' + text)
    assert main(["run", "--study", str(path), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def test_missing_study_file_exits_2(tmp_path, capsys):
    assert main(["run", "--study", str(tmp_path / "none.toml")]) == 2
    assert "cannot be read" in capsys.readouterr().err


# ---------------------------------------------------------------------------- executors
def test_parallel_processes_and_ray_give_the_sequential_results_bit_for_bit(tmp_path):
    pytest.importorskip("ray")
    common = ["--methods", "gmn,gan", "--datasets", "ring8", "--seeds", "0-1", *TINY]
    assert main(["run", *common, "--threads", "1", "--out", str(tmp_path / "seq")]) == 0
    assert main(["run", *common, "--jobs", "2", "--out", str(tmp_path / "par")]) == 0
    assert main(["run", *common, "--executor", "ray", "--jobs", "2", "--out", str(tmp_path / "ray")]) == 0
    seq = _finals(tmp_path / "seq")
    for other in ("par", "ray"):
        pd.testing.assert_frame_equal(_finals(tmp_path / other), seq)
        files = lambda name: sorted(p.name for p in (tmp_path / name).glob("runs/*/*/*/samples-*.npz"))
        assert files(other) == files("seq")  # named by content: the samples are byte-identical
    record = json.loads(next((tmp_path / "ray").glob("runs/ring8/gan/*/record.json")).read_text())
    assert record["runtime"] == {"executor": "ray", "jobs": 2, "threads": 1}


class Exploding(ExplodingSteps, Method):
    """NaN from the 4th step."""
    calls_before_nan = 3


class Failing(Method):
    """Test method that raises in training."""

    def step(self, nets, real):
        raise RuntimeError("boom")


def test_a_diverged_and_a_failed_run_are_recorded_and_the_study_finishes(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(METHODS._entries, "exploding", Exploding)
    monkeypatch.setitem(METHODS._entries, "failing", Failing)
    out = tmp_path / "res"
    assert main(["run", "--methods", "exploding,failing,gan", "--datasets", "ring8", "--seeds", "0-1",
                 "--out", str(out), *TINY]) == 0
    err = capsys.readouterr().err
    assert "diverged at step 4" in err and "failed: RuntimeError: boom" in err
    summary = pd.read_csv(out / "summary.csv").set_index("variant")
    assert summary.loc["exploding", "n_diverged"] == 2 and summary.loc["exploding", "seeds"] == 0
    assert summary.loc["failing", "n_failed"] == 2 and summary.loc["gan", "seeds"] == 2
    assert pd.isna(summary.loc["exploding", "mmd2"])  # kept out of the means
    saved = json.loads(next(out.glob("runs/ring8/exploding/seed0-*/record.json")).read_text())
    assert saved["status"] == "diverged" and saved["diverged_at_step"] == 4 and saved["final"]["mmd2"] is None
    # a failed run is retried when the study starts again; a diverged one is finished
    assert main(["run", "--methods", "exploding,failing,gan", "--datasets", "ring8", "--seeds", "0-1",
                 "--out", str(out), *TINY]) == 0
    assert "4 of 6 runs already finished" in capsys.readouterr().out


def test_every_record_carries_the_revision_read_before_the_study_wrote_anything(tmp_path, monkeypatch):
    """A rerun of a committed study rewrites tracked files, so a check made after the first record
    is written says +dirty: each call here answers differently, and only the first may be stored."""
    import numpy as np
    from bench import records
    calls = iter(range(100))
    monkeypatch.setattr(study.environment, "git_revision", lambda: f"rev{next(calls)}")

    def calibration(dataset, profile, options, device):  # a reference row (MNIST's train set), made after the runs
        spec = records.reference_spec("train set", dataset, profile, options)
        return [(records.reference_record(spec, {"mmd2": 0.0}, 0.0, None), np.zeros((2, 2), "float32"))]
    monkeypatch.setattr(study, "evaluate_calibration", calibration)
    out = tmp_path / "res"
    assert main(["run", "--methods", "gan,nsgan", "--datasets", "ring8", "--seeds", "0-1", "--out", str(out), *TINY]) == 0
    stored = [json.loads(p.read_text())["environment"]["git_revision"] for p in out.glob("runs/*/*/*/record.json")]
    assert len(stored) == 5 and set(stored) == {"rev0"}


# ------------------------------------------------------------------------ faults, concurrency
def test_killed_study_resumes_with_only_the_missing_runs_and_equal_tables(tmp_path):
    args = ["run", "--methods", "gmn,gan,nsgan", "--datasets", "ring8", "--seeds", "0-3", "--threads", "1",
            "--steps", "60", "--eval-points", "1", "--batch-size", "32", "--no-progress", "--device", "cpu"]
    killed = tmp_path / "killed"
    proc = _bench(*args, "--out", str(killed))
    deadline = time.time() + 240
    while len(list(killed.glob("runs/*/*/*/record.json"))) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(killed.glob("runs/*/*/*/record.json")))
    assert 3 <= done < 12, "the study should have been killed part-way"
    resumed = _bench(*args, "--out", str(killed))
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert f"{done} of 12 runs already finished" in stdout
    whole = _bench(*args, "--out", str(tmp_path / "whole"))
    assert whole.wait(timeout=300) == 0
    pd.testing.assert_frame_equal(_finals(killed), _finals(tmp_path / "whole"))


def test_two_processes_on_one_folder_train_each_run_once_and_lose_nothing(tmp_path):
    args = ["run", "--methods", "gmn,gan", "--datasets", "ring8", "--seeds", "0-3", "--threads", "1",
            "--steps", "30", "--eval-points", "1", "--batch-size", "32", "--no-progress", "--device", "cpu",
            "--out", str(tmp_path / "res")]
    procs = [_bench(*args), _bench(*args)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    ran = sum(int(re.search(r"(\d+) runs ran", o)[1]) for o, _ in outputs)
    assert ran == 8  # every run trained by exactly one of the two
    records = [store.read_record(p) for p in (tmp_path / "res").glob("runs/*/*/*/record.json")]
    assert len(records) == 8 and all(r["status"] == "ok" for r in records)


def test_unwritable_out_exits_2_before_training(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root can write to read-only folders")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert main(["run", "--methods", "gan", "--datasets", "ring8", "--out", str(locked / "res"), *TINY]) == 2
    assert "not writable" in capsys.readouterr().err


def test_records_of_the_earlier_layout_load_and_count_as_finished(tmp_path, capsys):
    from bench.harness import train_and_evaluate
    spec = specs.resolve("gan", "ring8", 0, steps=6, eval_points=1, batch_size=16, device="cpu")
    record, samples = train_and_evaluate(spec)
    folder = tmp_path / "res" / "runs" / "ring8" / "quick" / "gan" / "seed0"
    config = {k: record["spec"][k] for k in ("method", "dataset", "seed", "profile", "steps", "batch_size", "lr",
                                            "noise", "noise_dim", "arch", "width", "depth", "eval_points", "device")}
    config.update(method_options={}, dataset_options={})
    old = {"schema": 1, "status": "ok", "diverged_at_step": None, "steps_done": 6, "config": config,
           "method_settings": {"d_steps": 1}, "timing": record["timing"], "final": record["final"],
           "history": record["history"], "environment": record["environment"], "samples_file": "samples.npz"}
    files.write_npz(folder / "samples.npz", samples=samples)
    files.write_json(folder / "record.json", old)
    assert main(["report", "--out", str(tmp_path / "res")]) == 0
    assert main(["run", "--methods", "gan", "--datasets", "ring8", "--out", str(tmp_path / "res"), *TINY]) == 0
    assert "1 of 1 runs already finished" in capsys.readouterr().out


def test_a_record_of_an_older_spec_version_is_re_resolved_and_counts_as_finished(tmp_path, capsys):
    out = tmp_path / "res"
    args = ["run", "--methods", "gan", "--datasets", "ring8", "--out", str(out), *TINY]
    assert main(args) == 0
    path = next(out.glob("runs/ring8/gan/seed0-*/record.json"))
    record = json.loads(path.read_text())
    record["identity"]["spec_version"], record["run_id"] = 0, "from-an-older-bench"
    path.write_text(json.dumps(record))
    assert main(args) == 0
    assert "1 of 1 runs already finished" in capsys.readouterr().out


# ---------------------------------------------------------------------------- Python API
def test_python_api_returns_dataframes_and_validates_like_the_cli(tmp_path):
    result = bench.study(methods=["gmn", "gan"], datasets=["ring8"], seeds="0-1", out=tmp_path / "res",
                         steps=6, eval_points=1, batch_size=16, device="cpu")
    assert isinstance(result.summary, pd.DataFrame) and set(result.summary["variant"]) == {"gmn", "gan"}
    assert isinstance(result.comparison, pd.DataFrame) and len(result.comparison) > 0
    assert result.outcome.ran == 4 and all(p.exists() for p in result.figures)
    again = bench.study(methods=["gmn", "gan"], datasets=["ring8"], seeds="0-1", out=tmp_path / "res",
                        steps=6, eval_points=1, batch_size=16, device="cpu")
    assert again.outcome.skipped == 4 and again.outcome.ran == 0
    with pytest.raises(BenchError, match="unknown method"):
        bench.study(methods=["nope"], out=tmp_path / "other")
    with pytest.raises(BenchError, match="jobs"):
        bench.study(methods=["gan"], jobs=0, out=tmp_path / "other")
    assert not (tmp_path / "other").exists()

"""The loop: reproducible on CPU, divergence recorded rather than raised, records atomic."""
import json
import math

import numpy as np
import pytest
import torch

import subprocess

from bench import environment
from conftest import Exploding as ExplodingSteps
from bench.harness import eval_schedule, eval_times, train_and_evaluate
from bench.errors import BenchError
from bench.spec import resolve
from bench import files
from methods import METHODS
from methods.base import Method

TINY = dict(steps=12, batch_size=32, eval_points=2, device="cpu", width=16, depth=2)


def run(method, seed=0, dataset="ring8", **kw):
    return train_and_evaluate(resolve(method, dataset, seed, **{**TINY, **kw}))


def test_same_seed_same_run_on_cpu_and_other_seed_differs():
    (a, sa), (b, sb), (c, _) = run("gan", 3), run("gan", 3), run("gan", 4)
    strip = lambda r: [{k: v for k, v in h.items() if k != "train_seconds"} for h in r["history"]]
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)
    assert sa.tobytes() == sb.tobytes()


def test_eval_schedule_includes_start_and_end():
    assert eval_schedule(10, 3) == [0, 3, 7, 10]
    assert eval_schedule(2, 10) == [0, 1, 2]
    assert eval_times(3.0, 3) == [1.0, 2.0, 3.0]


class Exploding(ExplodingSteps, Method):
    """NaN from the 6th step."""


def test_divergence_is_caught_at_the_step_it_happens_not_at_the_next_evaluation(monkeypatch):
    monkeypatch.setitem(METHODS._entries, "exploding", Exploding)
    record, samples = run("exploding", eval_points=1)  # the only evaluation after 0 would be at step 12
    assert record["status"] == "diverged"
    assert record["diverged_at_step"] == 6 and record["steps_done"] == 6  # the 6th step's loss is NaN
    assert [h["step"] for h in record["history"]] == [0, 6]


def test_the_revision_is_dirty_for_modified_code_but_not_for_rewritten_results(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                       cwd=tmp_path, check=True, capture_output=True)
    (tmp_path / "results" / "toy").mkdir(parents=True)
    (tmp_path / "results" / "toy" / "record.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "start")
    (tmp_path / "bench").mkdir()  # git runs in a folder below the top: the check must still see the whole checkout
    monkeypatch.setattr(environment, "PROJECT_ROOT", tmp_path / "bench")
    monkeypatch.chdir(tmp_path / "results")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()

    def revision():
        environment.git_revision.cache_clear()
        return environment.git_revision()
    (tmp_path / "results" / "toy" / "record.json").write_text('{"rerun": true}')
    assert revision() == head                       # a rerun study rewrote its committed records
    (tmp_path / "code.py").write_text("x = 2\n")
    assert revision() == head + "+dirty"            # the code that trains is not the commit's
    environment.git_revision.cache_clear()


def test_record_says_what_produced_it():
    record, samples = run("gmn")
    assert record["spec"]["method"] == "gmn" and record["spec"]["steps"] == 12
    assert record["run_id"] == resolve("gmn", "ring8", 0, **TINY).run_id
    env = record["environment"]
    assert env["versions"]["torch"] == torch.__version__.split("+")[0]  # the installed distribution
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=environment.PROJECT_ROOT, capture_output=True,
                          text=True).stdout.strip()
    assert env["git_revision"].split("+")[0] == (head or "unknown")
    assert env["device"] == "cpu"
    assert record["method_settings"]["bandwidths"] is None  # as configured: the median heuristic
    learned = record["method_learned"]
    assert len(learned["bandwidths_"]) == 7 and learned["backend_used_"] == "dense"
    assert record["timing"]["train_seconds"] > 0 and math.isfinite(record["timing"]["steps_per_second"])
    assert samples.shape == (2500, 2) and samples.dtype == np.float32
    assert [h["step"] for h in record["history"]] == [0, 6, 12]


def test_budget_in_seconds_evaluates_evenly_in_time_and_records_the_steps_it_bought():
    record, _ = run("gan", steps=None, budget_seconds=0.6, eval_points=3)
    times = [h["train_seconds"] for h in record["history"]]
    assert times[0] == 0 and len(times) == 4
    assert all(t >= 0.2 * i for i, t in enumerate(times))  # each evaluation once its time has passed
    assert times[-1] >= 0.6 and record["steps_done"] > 0 and record["spec"]["steps"] is None


def test_interrupted_write_leaves_previous_file_intact(tmp_path):
    path = tmp_path / "record.json"
    files.write_json(path, {"a": 1})

    def failing(f):
        f.write(b"{half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(path, failing)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # no temporary left behind


@pytest.mark.parametrize("field,value", [("steps", 0), ("seed", -1), ("batch_size", 1), ("lr", 0.0),
                                         ("dataset", "cifar"), ("method", "wgan"), ("budget_seconds", -1.0),
                                         ("profile", "huge"), ("noise", "pink")])
def test_impossible_configs_are_rejected(field, value):
    kw = {"method": "gmn", "dataset": "ring8", **TINY, field: value}
    with pytest.raises(BenchError):
        resolve(**kw)


def test_runs_on_one_dataset_share_its_reference_and_measure_what_a_fresh_one_gives(monkeypatch):
    from bench.datasets import Ring8
    calls = []
    real_reference = Ring8.reference
    monkeypatch.setattr(Ring8, "reference", lambda self, device="cpu": calls.append(self.std) or
                        real_reference(self, device))
    strip = lambda r: [{k: v for k, v in h.items() if k != "train_seconds"} for h in r["history"]]
    run("gan", 0, dataset_options={"std": 0.011})
    first, _ = run("gan", 1, dataset_options={"std": 0.011})  # the same options: the reference is reused
    assert calls == [0.011]
    run("gan", 0, dataset_options={"std": 0.02})  # other options: prepared anew (and the old one dropped)
    again, _ = run("gan", 1, dataset_options={"std": 0.011})
    assert calls == [0.011, 0.02, 0.011] and strip(again) == strip(first)

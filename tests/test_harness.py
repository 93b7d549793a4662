"""The loop: reproducible on CPU, divergence recorded rather than raised, records atomic."""
import json
import math

import numpy as np
import pytest
import torch

from bench import store
from bench.harness import RunConfig, eval_schedule, train_and_evaluate
from bench.registry import BenchError
from methods import METHODS
from methods.base import Method

TINY = dict(dataset="ring8", steps=12, batch_size=32, eval_points=2, device="cpu", width=16, depth=2)


def test_same_seed_same_run_on_cpu_and_other_seed_differs():
    a = train_and_evaluate(RunConfig(method="gan", seed=3, **TINY), progress=False)
    b = train_and_evaluate(RunConfig(method="gan", seed=3, **TINY), progress=False)
    c = train_and_evaluate(RunConfig(method="gan", seed=4, **TINY), progress=False)
    strip = lambda r: [{k: v for k, v in h.items() if k != "train_seconds"} for h in r["history"]]
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)


def test_eval_schedule_includes_start_and_end():
    assert eval_schedule(10, 3) == [0, 3, 7, 10]
    assert eval_schedule(2, 10) == [0, 1, 2]


class Exploding(Method):
    """Test method whose loss becomes NaN after a few steps."""
    def __init__(self):
        self.calls = 0

    def step(self, nets, real):
        self.calls += 1
        if self.calls > 5:
            with torch.no_grad():
                for p in nets.generator.parameters():
                    p.fill_(float("nan"))
        return {"loss": torch.tensor(float("nan") if self.calls > 5 else 1.0)}


def test_divergence_is_recorded_not_raised(tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS._entries, "exploding", Exploding)
    record = train_and_evaluate(RunConfig(method="exploding", **{**TINY, "eval_points": 4}), tmp_path, progress=False)
    assert record["status"] == "diverged"
    assert 5 < record["diverged_at_step"] <= 12
    saved = json.loads((tmp_path / "runs/ring8/quick/exploding/seed0/record.json").read_text())
    assert saved["status"] == "diverged" and saved["final"]["mmd2"] is None  # NaN stored as null


def test_record_says_what_produced_it(tmp_path):
    record = train_and_evaluate(RunConfig(method="gmn", **TINY), tmp_path, progress=False)
    saved = json.loads((tmp_path / "runs/ring8/quick/gmn/seed0/record.json").read_text())
    assert saved["config"]["method"] == "gmn" and saved["config"]["steps"] == 12
    env = saved["environment"]
    assert env["versions"]["torch"] == torch.__version__.split("+")[0] or env["versions"]["torch"]
    assert env["device"] == "cpu" and env["git_revision"]
    assert saved["method_settings"]["bandwidths"] is None  # as configured: the median heuristic
    learned = saved["method_learned"]
    assert len(learned["bandwidths_"]) == 7 and learned["backend_used_"] in ("dense", "keops")
    assert saved["timing"]["train_seconds"] > 0 and math.isfinite(saved["timing"]["steps_per_second"])
    samples = np.load(tmp_path / "runs/ring8/quick/gmn/seed0/samples.npz")["samples"]
    assert samples.shape == (2500, 2)
    assert [h["step"] for h in saved["history"]] == [0, 6, 12]
    assert record["final"]["mmd2"] == saved["final"]["mmd2"]


def test_interrupted_write_leaves_previous_file_intact(tmp_path):
    path = tmp_path / "record.json"
    store.write_json(path, {"a": 1})

    def failing(f):
        f.write(b"{half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        store.atomic_write(path, failing)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # no temporary left behind


@pytest.mark.parametrize("field,value", [("steps", 0), ("seed", -1), ("batch_size", 1), ("lr", 0.0),
                                         ("dataset", "cifar"), ("method", "wgan")])
def test_impossible_configs_are_rejected(field, value):
    cfg = RunConfig(**{"method": "gmn", **TINY, field: value})
    with pytest.raises(BenchError):
        cfg.resolved()

"""The stored calibration that `auto` follows: written by `perf mmd --calibrate`, validated when
read (corrupt or stale: a warning and the shipped defaults, and the benchmark command redoes it),
and followed by the dispatch. A fake timer replaces the clock: no test measures time."""
import json
import warnings

import pytest
import torch

from bench import cli, mmd, perf
from bench.errors import BenchError

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(mmd.ENV_NO_CALIBRATION, raising=False)
    mmd.stored_calibration.cache_clear()
    yield tmp_path
    mmd.stored_calibration.cache_clear()


def fake_timer(crossover_by_dim):
    """keops/dense = crossover / N at each D (None: keops 3× slower at any N); milliseconds."""
    calls = []

    def timer(n, dim):
        calls.append((n, dim))
        cross = crossover_by_dim[dim]
        return 1e-3, 1e-3 * (3.0 if cross is None else cross / n)
    timer.calls = calls
    return timer


def test_calibrate_writes_crossovers_that_auto_follows(monkeypatch):
    monkeypatch.setattr(mmd, "free_bytes", lambda device: 1 << 40)  # dense fits, on any machine
    timer = fake_timer({2: 2400, 8: 500, 32: None})
    data = perf.calibrate(CPU, torch.float32, timer, log=lambda *a: None)
    rules = {r["max_dim"]: r for r in data["rules"]}
    assert rules[2]["keops_min_n"] == 2400  # log-log interpolation of the ratio between 2000 and 3000
    assert rules[8]["keops_min_n"] == 500 and rules[32]["keops_min_n"] is None
    assert mmd.calibration_path(CPU, torch.float32).exists()
    assert mmd.explain_choice(2400, 2400, 2, CPU) == ("keops", "calibration cpu/float32: keops from N≥2400 at D≤2")
    assert mmd.choose_backend(2300, 2300, 2, CPU) == "dense"
    assert mmd.choose_backend(600, 600, 5, CPU) == "keops"  # D=5 follows the D≤8 rule
    assert mmd.choose_backend(9000, 9000, 20, CPU) == "dense"
    assert mmd.explain_choice(600, 600, 100, CPU)[1] == "calibration cpu/float32: dense above D=32"
    assert "shipped default" in mmd.explain_choice(600, 600, 2, CPU, torch.float64)[1]  # float64 not calibrated


def test_without_calibration_auto_uses_the_shipped_defaults(monkeypatch):
    monkeypatch.setattr(mmd, "free_bytes", lambda device: 1 << 40)  # dense fits
    n = int(mmd.KEOPS_MIN_PAIRS["cpu"] ** 0.5)
    assert mmd.explain_choice(n - 1, n - 1, 2, CPU)[1].startswith("shipped default: dense")
    if mmd.keops_status() == "ok":
        assert mmd.explain_choice(n, n, 2, CPU)[1].startswith("shipped default: keops")
    assert mmd.stored_calibration("cpu", torch.float32) == (None, "no calibration")


@pytest.mark.parametrize("content", [
    "{not json",
    "[]",
    json.dumps({"rules": []}),
    "KEY:" + json.dumps([{"max_dim": 2, "keops_min_n": -5, "how": "x"}]),
    "KEY:" + json.dumps([{"max_dim": 2, "keops_min_n": "2000", "how": "x"}]),
    "KEY:" + json.dumps([{"max_dim": 8, "keops_min_n": 10, "how": "x"}, {"max_dim": 2, "keops_min_n": 10, "how": "x"}]),
    "KEY:" + json.dumps([{"max_dim": True, "keops_min_n": 10, "how": "x"}]),
    "STALE",
])
def test_corrupt_or_stale_calibration_warns_once_never_crashes_and_is_redone(content):
    path = mmd.calibration_path(CPU, torch.float32)
    path.parent.mkdir(parents=True)
    key = mmd.calibration_key(CPU, torch.float32)
    if content.startswith("KEY:"):
        content = json.dumps({"key": key, "rules": json.loads(content[4:])})
    elif content == "STALE":
        content = json.dumps({"key": {**key, "torch": "0.0"}, "rules": [{"max_dim": 2, "keops_min_n": 10, "how": "x"}]})
    path.write_text(content)
    with pytest.warns(UserWarning, match="ignored"):
        assert mmd.choose_backend(10, 10, 2, CPU) == "dense"  # shipped default, not the file's N≥10
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # read once per process: no second warning
        mmd.choose_backend(10, 10, 2, CPU)
    if mmd.keops_status() != "ok":
        pytest.skip("recalibration times keops")
    timer = fake_timer({2: 2400, 8: 500, 32: None})
    assert perf.ensure_calibration(CPU, torch.float32, timer, log=lambda *a: None) is not None
    assert mmd.stored_calibration("cpu", torch.float32)[0][0]["keops_min_n"] == 2400
    assert perf.ensure_calibration(CPU, torch.float32, timer, log=lambda *a: None) is None  # valid: kept


def test_missing_calibration_is_not_made_implicitly():
    assert perf.ensure_calibration(CPU, torch.float32, fake_timer({}), log=lambda *a: None) is None
    assert not mmd.calibration_path(CPU, torch.float32).exists()


def test_calibration_extrapolates_within_twice_the_largest_size(monkeypatch):
    monkeypatch.setattr(perf, "CALIBRATION_BUDGET_S", {"cpu": 0.0})  # stop after two sizes
    data = perf.calibrate(CPU, torch.float32, fake_timer({2: 1500, 8: 5000, 32: None}), log=lambda *a: None)
    rules = {r["max_dim"]: r for r in data["rules"]}
    assert rules[2]["keops_min_n"] == 1500 and "extrapolated" in rules[2]["how"]  # 1.5 at N=1000, ∝ 1/N
    assert rules[8]["keops_min_n"] is None  # 5000 > 2 × 1000: not extrapolated that far
    assert rules[32]["keops_min_n"] is None and "slower" in rules[32]["how"]


def test_calibrate_refuses_without_keops(monkeypatch):
    monkeypatch.setattr(mmd, "keops_status", lambda: "pykeops unusable: ImportError: test")
    with pytest.raises(BenchError, match="keops"):
        perf.calibrate(CPU, torch.float32, fake_timer({}), log=lambda *a: None)


def test_bad_calibrate_argument_exits_2(capsys):
    assert cli.main(["perf", "mmd", "--calibrate", "float16", "--device", "cpu"]) == 2
    assert "float32 or float64" in capsys.readouterr().err


def test_a_single_keops_win_is_not_a_crossover():
    ratios = {500: 3.0, 1000: 0.9, 1500: 1.5, 2000: 0.8, 3000: 0.5}  # the win at 1000 is noise
    timings = []
    rule = perf._crossover(2, tuple(ratios), lambda n, dim: (1e-3, 1e-3 * ratios[n]), 100.0, timings, lambda *a: None)
    assert rule["keops_min_n"] > 1500 and "between N=1500 and N=2000" in rule["how"]
    assert len(timings) == 5

"""Damaged files, unwritable folders, interrupted processes: a clear answer (exit 2 or 130), and
nothing already written is lost or half-written."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench import files, store
from bench.cli import main
from bench.environment import PROJECT_ROOT
from bench.harness import train_and_evaluate
from bench.spec import resolve

TINY = ["--steps", "6", "--eval-points", "1", "--batch-size", "16", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A folder with one finished study (gmn, gan × 3 seeds on ring8) and its report."""
    out = tmp_path_factory.mktemp("finished") / "res"
    assert main(["run", "--methods", "gmn,gan", "--datasets", "ring8", "--seeds", "0-2", "--out", str(out),
                 *TINY]) == 0
    return out


def _copy(src, tmp_path):
    import shutil
    dst = tmp_path / "res"
    shutil.copytree(src, dst)
    return dst


def _record_path(out, method="gmn", seed=0):
    return next(out.glob(f"runs/ring8/{method}/seed{seed}-*/record.json"))


DAMAGE = {
    "missing seed": lambda r: r["spec"].pop("seed"),
    "seed not an integer": lambda r: r["spec"].update(seed="zero"),
    "missing final": lambda r: r.pop("final"),
    "missing history": lambda r: r.pop("history"),
    "final is a list": lambda r: r.update(final=[1, 2]),
    "all metrics null": lambda r: r.update(final={k: None for k in r["final"]}),
    "a metric is text": lambda r: r["final"].update(mmd2="small"),
    "unknown method": lambda r: r["spec"].update(method="wgan-x"),
    "unknown status": lambda r: r.update(status="done"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_record_stops_report_and_run_before_anything_is_written(finished, tmp_path, capsys, case):
    out = _copy(finished, tmp_path)
    path = _record_path(out)
    record = json.loads(path.read_text())
    DAMAGE[case](record)
    path.write_text(json.dumps(record))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert main(["report", "--out", str(out)]) == 2
    assert str(path) in capsys.readouterr().err
    # a run of another method into the same folder is refused before training
    assert main(["run", "--methods", "gan", "--datasets", "ring8", "--seeds", "7", "--out", str(out), *TINY]) == 2
    assert str(path) in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_a_nan_metric_is_a_corrupt_record_and_tables_stay_as_they_were(finished, tmp_path, capsys):
    out = _copy(finished, tmp_path)
    path = _record_path(out)
    path.write_text(path.read_text().replace('"mmd2": ', '"mmd2": NaN, "was": ', 1))
    summary = (out / "summary.csv").read_bytes()
    assert main(["report", "--out", str(out)]) == 2
    assert "NaN" in capsys.readouterr().err and (out / "summary.csv").read_bytes() == summary


@pytest.mark.parametrize("case", ["truncated", "wrong shape", "all NaN", "missing"])
def test_a_damaged_samples_file_is_a_clear_error(finished, tmp_path, capsys, case):
    out = _copy(finished, tmp_path)
    record = json.loads(_record_path(out).read_text())
    samples = _record_path(out).parent / record["samples_file"]
    if case == "truncated":
        samples.write_bytes(samples.read_bytes()[:100])
    elif case == "wrong shape":
        np.savez(samples.open("wb"), samples=np.zeros((10, 3), dtype=np.float32))
    elif case == "all NaN":
        np.savez(samples.open("wb"), samples=np.full((2500, 2), np.nan, dtype=np.float32))
    else:
        samples.unlink()
    assert main(["report", "--out", str(out)]) == 2
    assert "samples file" in capsys.readouterr().err


def test_out_that_cannot_be_a_folder_exits_2(tmp_path, capsys):
    afile = tmp_path / "file"
    afile.write_text("")
    assert main(["run", "--methods", "gan", "--datasets", "ring8", "--out", str(afile / "res"), *TINY]) == 2
    assert "not writable" in capsys.readouterr().err
    assert main(["run", "--methods", "gan", "--datasets", "ring8", "--out", str(afile), *TINY]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_result_files_follow_the_umask(finished):
    mask = os.umask(0o022)
    os.umask(mask)
    record = _record_path(finished)
    assert record.stat().st_mode & 0o777 == 0o666 & ~mask
    assert (finished / "summary.csv").stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_kill_between_samples_and_record_leaves_the_old_run_whole(finished, tmp_path, monkeypatch):
    out = _copy(finished, tmp_path)
    folder = _record_path(out).parent
    old = json.loads((folder / "record.json").read_text())

    def killed(path, data):
        raise KeyboardInterrupt
    monkeypatch.setattr(files, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        store.write_run(folder, np.ones((2500, 2), dtype=np.float32), {**old, "status": "ok"})
    assert json.loads((folder / "record.json").read_text()) == old
    with np.load(folder / old["samples_file"]) as data:  # the record's own samples, untouched
        assert data["samples"].shape == (2500, 2)


def test_ctrl_c_mid_study_exits_130_keeps_finished_records_and_report_rebuilds(tmp_path):
    out = tmp_path / "res"
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", "--methods", "gmn,gan", "--datasets", "ring8",
                             "--seeds", "0-5", "--steps", "400", "--eval-points", "1", "--batch-size", "32",
                             "--threads", "1", "--no-progress", "--device", "cpu", "--out", str(out)],
                            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # Ctrl-C reaches a foreground process; a test run as a background job
                            # (tox under `cmd &`) would pass SIGINT on ignored, and Python keeps it so
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while not list(out.glob("runs/*/*/*/record.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the study ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    records = list(out.glob("runs/*/*/*/record.json"))
    assert 1 <= len(records) < 12
    for path in records:
        store.read_record(path)  # every record on disk is whole
    assert main(["report", "--out", str(out)]) == 0


@pytest.mark.parametrize("method", ["gmn", "gan", "nsgan"])
def test_every_method_gives_byte_identical_samples_at_a_fixed_seed(method):
    spec = resolve(method, "ring8", 5, steps=20, batch_size=32, eval_points=1, device="cpu")
    first, second = train_and_evaluate(spec)[1], train_and_evaluate(spec)[1]
    assert first.tobytes() == second.tobytes()


def test_summary_equals_an_independent_computation_over_runs_csv(finished):
    runs = pd.read_csv(finished / "runs.csv")
    summary = pd.read_csv(finished / "summary.csv").set_index("variant")
    for variant, g in runs[runs["status"] == "ok"].groupby("variant"):
        x = g["energy"].to_numpy()
        half = sps.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
        assert summary.loc[variant, "energy"] == pytest.approx(x.mean(), rel=1e-12)
        assert summary.loc[variant, "energy_hi"] == pytest.approx(x.mean() + half, rel=1e-9)
        assert summary.loc[variant, "energy_std"] == pytest.approx(x.std(ddof=1), rel=1e-9)

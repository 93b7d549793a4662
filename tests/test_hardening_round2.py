"""Hardening, second round: each case failed before its fix (a crash, a silent surprise or a
traceback) and now ends with a clear error before anything is written, or a report."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import bench
from bench.cli import main
from bench.environment import PROJECT_ROOT
from conftest import write_record

TINY = ["--steps", "6", "--eval-points", "1", "--batch-size", "16", "--no-progress", "--device", "cpu"]
FINAL = {"modes_covered": 8.0, "high_quality_pct": 50.0, "mmd2": 0.01}


def test_a_table_whose_runs_all_diverged_is_reported_not_a_crash(tmp_path, capsys):
    """Every run of ring8 diverged, grid25 is healthy: the report counts them, draws what it can."""
    out = tmp_path / "res"
    for seed in (0, 1):
        write_record(out, "gan", "ring8", seed, {k: None for k in FINAL}, status="diverged")
        write_record(out, "gan", "grid25", seed, {**FINAL, "mmd2": 0.01 * (seed + 1)})
    assert main(["report", "--out", str(out)]) == 0
    summary = pd.read_csv(out / "summary.csv")
    ring = summary[summary["dataset"] == "ring8 · quick"].iloc[0]
    assert (ring["seeds"], ring["n_diverged"]) == (0, 2)
    assert not (out / "plots" / "ring8_quick_final_metrics.png").exists()
    assert (out / "plots" / "grid25_quick_final_metrics.png").exists()
    assert "ring8 · quick" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--seeds", "99999999999999999999"], "seed must be an integer from 0 to 18446744073709551613"),
    (["--seeds", "18446744073709551614"], "seed must be an integer from 0 to 18446744073709551613"),
    (["--seeds", "0-100000"], "more than 10,000 seeds in one study"),
    (["--sweep", "lr=1e-3,2e-3", "--sweep", "lr=5e-4"], "--sweep lr is given twice"),
])
def test_bad_input_exits_2_before_anything_is_written(tmp_path, capsys, args, message):
    out = tmp_path / "res"
    assert main(["run", "--methods", "gan", "--datasets", "ring8", "--out", str(out), *TINY, *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_the_largest_seed_is_accepted(tmp_path):
    from bench.spec import MAX_SEED, resolve
    assert resolve("gan", "ring8", MAX_SEED).seed == 2 ** 64 - 3


def test_a_study_file_with_one_plugin_as_text_and_a_plugin_flag(tmp_path, registries):
    """plugins = "x.py" was split into characters ("--plugin /: no such file") beside --plugin."""
    files = []
    for name in ("first", "second"):
        path = tmp_path / f"{name}.py"
        path.write_text("from methods import register_method\nfrom methods.nsgan import NonSaturatingGAN\n\n\n"
                        f"@register_method('nsgan-{name}')\nclass Copy(NonSaturatingGAN):\n    \"\"\"A copy.\"\"\"\n")
        files.append(path)
    study = tmp_path / "study.toml"
    study.write_text(f'plugins = "{files[0]}"\nmethods = ["nsgan-first", "nsgan-second"]\ndatasets = ["ring8"]\n')
    out = tmp_path / "res"
    assert main(["run", "--study", str(study), "--plugin", str(files[1]), "--out", str(out), *TINY]) == 0
    records = [pd.read_json(r, typ="series") for r in out.glob("runs/ring8/*/*/record.json")]
    assert len(records) == 2 and all(r["spec"]["plugins"] == [str(f) for f in files] for r in records)


@pytest.mark.parametrize("kwargs,message", [
    (dict(stepz=5), "unknown argument stepz"),
    (dict(sweep=5), "sweep takes a dict"),
    (dict(sweep={"lr": 5}), "--sweep lr: give one or more values"),
    (dict(options=["gmn"]), "options takes a dict"),
    (dict(options={"gan": 5}), "options takes a dict"),
    (dict(labels={"gan": [1, 2]}), "labels take a variant's name -> a label"),
    (dict(labels={"gan": 5}), "labels take a variant's name -> a label"),
])
def test_the_python_api_says_what_is_wrong(tmp_path, kwargs, message):
    with pytest.raises(bench.BenchError, match=message.replace("[", r"\[")):
        bench.study(methods=["gan"], datasets=["ring8"], out=tmp_path / "res", **kwargs)
    assert not (tmp_path / "res").exists()


def test_bench_study_documents_itself():
    assert "Returns a StudyResult" in bench.study.__doc__ and bench.BenchError.__module__ == "bench.errors"


def test_labels_in_a_study_file_must_be_text(tmp_path, capsys):
    study = tmp_path / "study.toml"
    study.write_text('methods = ["gan"]\ndatasets = ["ring8"]\n[labels]\ngan = [1, 2]\n')
    assert main(["run", "--study", str(study), "--out", str(tmp_path / "res"), *TINY]) == 2
    assert "labels take a variant's name -> a label" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


# ---------------------------------------------------------------- no worker outlives its command
def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _cmdline(pid: int) -> str:
    """A process's command line; empty once it has ended (a short-lived child such as git may)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _study_with_workers(out):
    """A --jobs 2 study, started and waited for until both of its workers train."""
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", "--methods", "gmn,gan", "--datasets", "ring8",
                             "--seeds", "0-5", "--steps", "3000", "--eval-points", "1", "--jobs", "2",
                             "--no-progress", "--device", "cpu", "--out", str(out)],
                            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: (signal.signal(signal.SIGINT, signal.SIG_DFL), os.setpgrp()))
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        workers = [p for p in _children(proc.pid) if "spawn_main" in _cmdline(p) and "resource_tracker" not in _cmdline(p)]
        if len(workers) == 2 and list(out.glob("runs/*/*/*/.lock")):
            return proc, _children(proc.pid)
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the study and any worker it started
    pytest.fail("the study's workers did not start")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_the_parent_of_jobs_2_leaves_no_process_behind(tmp_path, sig):
    proc, children = _study_with_workers(tmp_path / "res")
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert _all_gone(children), "a worker (or the resource tracker) outlived its study"


def _all_gone(pids, seconds=20) -> bool:
    """Whether every process of ``pids`` has ended within ``seconds`` (one that has closed its files
    may still be tearing down its memory for a moment after the study returned)."""
    deadline = time.time() + seconds
    while any(_alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    return not any(_alive(p) for p in pids)


def test_ctrl_c_with_jobs_2_stops_the_workers_and_exits_130(tmp_path):
    proc, children = _study_with_workers(tmp_path / "res")
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the study and its workers
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert "leaked semaphore" not in err  # a worker ended by os._exit leaves no named semaphore behind
    assert _all_gone(children)


# ----------------------------------------------------- stored files checked before anything trains
def test_a_corrupt_samples_file_stops_run_before_anything_trains_and_force_redoes_it(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["run", "--methods", "gan", "--datasets", "ring8", "--out", str(out), *TINY]) == 0
    (samples,) = out.glob("runs/ring8/gan/*/samples-*.npz")
    samples.write_bytes(b"not a zip file")
    capsys.readouterr()
    assert main(["run", "--methods", "gan,nsgan", "--datasets", "ring8", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert f"samples file {samples} is missing or corrupt" in err and "--force" in err
    assert not (out / "runs" / "ring8" / "nsgan").exists()  # nothing trained, no folder made
    assert main(["run", "--methods", "gan", "--datasets", "ring8", "--out", str(out), "--force", *TINY]) == 0
    assert main(["report", "--out", str(out)]) == 0


@pytest.mark.parametrize("change,message", [
    (lambda r: r.update(variant=5), "'variant' is 5, not text"),
    (lambda r: r.pop("run_id"), "'run_id', 'variant_id' or 'variant' missing"),
    (lambda r: r.pop("variant_id"), "'run_id', 'variant_id' or 'variant' missing"),
    (lambda r: r["history"].append({"step": 7, "mmd2": "low"}), "holds {'mmd2': 'low'}, not numbers"),
    (lambda r: r["history"].append({"mmd2": 0.1}), "holds no step, not numbers"),
])
def test_a_hand_edited_record_is_called_corrupt_not_a_traceback(tmp_path, capsys, change, message):
    import json
    out = tmp_path / "res"
    write_record(out, "gan", "ring8", 0, FINAL)
    write_record(out, "gan", "ring8", 1, FINAL)
    (path,) = [p for p in out.glob("runs/ring8/gan/seed0-*/record.json")]
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))
    assert main(["report", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"run record {path} is corrupt" in err and message in err and "Traceback" not in err


@pytest.mark.parametrize("reply", [None, b"HTTP/1.1 400 Bad Request\r\n\r\n"])
def test_a_ray_address_that_is_not_ray_fails_at_once(tmp_path, capsys, reply):
    """A port that accepts TCP but is not Ray (silent, or another protocol) used to hang for minutes."""
    import socket
    import threading
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def serve():
        connection, _ = server.accept()
        if reply:
            connection.recv(100)
            connection.sendall(reply)
        time.sleep(5)
        connection.close()
    threading.Thread(target=serve, daemon=True).start()
    try:
        assert main(["run", "--methods", "gan", "--datasets", "ring8", "--executor", "ray", "--address",
                     f"127.0.0.1:{port}", "--out", str(tmp_path / "res"), *TINY]) == 2
    finally:
        server.close()
    assert "does not answer as a Ray cluster" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def test_a_full_disk_during_report_leaves_the_old_report_whole(tmp_path, capsys, monkeypatch):
    import errno
    from bench import files
    out = tmp_path / "res"
    for seed in (0, 1):
        write_record(out, "gan", "ring8", seed, {**FINAL, "mmd2": 0.01 * (seed + 1)})
    assert main(["report", "--out", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and "runs" not in p.parts}
    write_record(out, "nsgan", "ring8", 0, FINAL)  # the next report differs
    calls = []
    real = files.Staged.write_one

    def full_disk(self, path, data):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, path, data)
    monkeypatch.setattr(files.Staged, "write_one", full_disk)
    capsys.readouterr()
    assert main(["report", "--out", str(out)]) == 2
    assert "cannot write the report under" in capsys.readouterr().err and len(calls) == 3
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and "runs" not in p.parts}
    assert after == before  # every old file as it was, no temporary file left


def test_a_long_study_says_how_long_it_will_take(monkeypatch):
    from bench import harness, studies
    p = studies.plan(methods=["nsgan"], datasets=["ring8"], seeds="0-3", preset="pacgan-toy",
                     sweep={"nsgan.pack": [1, 2]}, out="unused", device="cpu")
    rates = {"nsgan": 40.0, "nsgan[pack=2]": 20.0}
    monkeypatch.setattr(harness, "measure_pace", lambda spec: rates[spec.variant])
    # 4 seeds × 400,000 steps at 40 and at 20 steps/s = 40,000 + 80,000 s, over 2 processes: 16 h 40 min
    text = studies.expected_duration(p.specs, 2)
    assert text.startswith("expected: about 16 h 40 min of training for 8 runs with --jobs 2")
    assert "nsgan on ring8 40 steps/s" in text and "nsgan[pack=2] on ring8 20 steps/s" in text
    monkeypatch.setattr(studies.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert "load average" not in studies.expected_duration(p.specs, 2)
    monkeypatch.setattr(studies.os, "getloadavg", lambda: (9.0, 0.0, 0.0))  # measured beside other work: said
    assert f"load average 9.0 on {studies.cores()} cores" in studies.expected_duration(p.specs, 2)
    patient = studies.plan(methods=["nsgan"], datasets=["ring8"], seeds="0-3", preset="pacgan-toy", patience=5,
                           sweep={"nsgan.pack": [1, 2]}, out="unused", device="cpu")
    assert studies.expected_duration(patient.specs, 2).startswith(
        "expected: at most about 16 h 40 min of training for 8 runs with --jobs 2 (--patience stops a converged run sooner)")
    timed = studies.plan(methods=["gan"], datasets=["ring8"], seeds="0-5", budget_seconds=600, out="unused")
    assert studies.expected_duration(timed.specs, 3).startswith("expected: about 20 min of training for 6 runs")


def test_the_pace_is_measured_on_the_real_step():
    from bench.harness import measure_pace
    from bench.spec import resolve
    assert measure_pace(resolve("gan", "ring8", 0, batch_size=16, device="cpu"), seconds=0.2) > 1


# ------------------------------------------------------------- weak spots, decided (README, Bad input)
def test_an_empty_study_file_is_refused(tmp_path, capsys):
    study = tmp_path / "study.toml"
    study.write_text("# nothing yet\n")
    assert main(["run", "--study", str(study), "--out", str(tmp_path / "res"), *TINY]) == 2
    assert f"study file {study} is empty" in capsys.readouterr().err and not (tmp_path / "res").exists()


@pytest.mark.parametrize("line,message", [
    ("lr_schedule = 3", "lr_schedule takes one of constant, cosine; got 3"),
    ('steps = "many"', "steps takes an integer; got 'many'"),
    ('lr = "fast"', "lr takes a number; got 'fast'"),
])
def test_a_study_files_setting_of_the_wrong_type_says_what_is_allowed(tmp_path, capsys, line, message):
    study = tmp_path / "study.toml"
    study.write_text(f'methods = ["gan"]\n{line}\n')
    assert main(["run", "--study", str(study), "--out", str(tmp_path / "res")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "res").exists()


@pytest.mark.parametrize("args,message", [
    (["--budget-seconds", "1e300"], "more than 30 days a run"),
])
def test_a_budget_that_cannot_end_is_refused(tmp_path, capsys, args, message):
    out = tmp_path / "res"
    assert main(["run", "--methods", "gan", "--datasets", "ring8", "--out", str(out), "--no-progress", *args]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_a_label_that_matches_no_variant_is_refused(tmp_path):
    with pytest.raises(bench.BenchError, match=r"label for 'gan\[d_steps=5\]' matches no variant.*its variants are: gan"):
        bench.study(methods=["gan"], datasets=["ring8"], labels={"gan[d_steps=5]": "five"}, out=tmp_path / "res")


def test_more_jobs_than_cores_is_said(tmp_path, capsys):
    from bench import studies
    studies.plan(methods=["gan"], datasets=["ring8"], jobs=studies.cores() + 1, out=tmp_path / "res")
    assert f"--jobs {studies.cores() + 1} is more than the {studies.cores()} cores" in capsys.readouterr().err


def test_report_of_a_file_says_so(tmp_path, capsys):
    path = tmp_path / "results.txt"
    path.write_text("not a folder")
    assert main(["report", "--out", str(path)]) == 2
    assert "is a file, not a folder of results" in capsys.readouterr().err


def test_a_record_whose_plugin_is_not_loaded_is_not_called_corrupt(tmp_path, capsys):
    import json
    out = tmp_path / "res"
    write_record(out, "gan", "ring8", 0, FINAL)
    (path,) = out.glob("runs/ring8/gan/*/record.json")
    record = json.loads(path.read_text())
    record["spec"]["method"] = "my-loss"
    path.write_text(json.dumps(record))
    assert main(["report", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "the method 'my-loss', which is not registered here: load the plugin" in err
    assert "corrupt" not in err and "delete" not in err


def test_a_folder_of_runs_is_never_named_by_a_path(tmp_path):
    from bench import store
    from bench.spec import resolve
    import dataclasses
    spec = dataclasses.replace(resolve("gan", "ring8", 0), method="../../etc")
    with pytest.raises(bench.BenchError, match="cannot name a folder of runs"):
        store.run_dir(tmp_path, spec)


def test_a_run_folder_is_made_when_the_run_starts_not_at_planning(tmp_path, monkeypatch):
    """A study used to make (and lock) every run's folder before the first run trained."""
    from bench import store, studies
    out = tmp_path / "res"
    plan = studies.plan(methods=["gan", "nsgan"], datasets=["ring8"], seeds="0-1", out=out, steps=4,
                        batch_size=16, eval_points=1, device="cpu")
    folders_at_write = []
    real = store.write_run

    def counting(folder, samples, record):
        folders_at_write.append(len(list(out.glob("runs/*/*/*"))))
        return real(folder, samples, record)
    monkeypatch.setattr(store, "write_run", counting)
    outcome = studies.execute(plan, progress=False, log=lambda *a: None)
    assert outcome.ran == 4 and folders_at_write == [1, 2, 3, 4]


def test_a_wall_clock_table_names_its_budget_without_a_steps_none(tmp_path, capsys):
    """Runs on a budget of seconds have no step count: the heading says the budget, not steps=None;
    rows that differ in budget name it, a step run's by its unset word."""
    out = tmp_path / "res"
    common = ["run", "--datasets", "ring8", "--eval-points", "1", "--batch-size", "16", "--no-progress",
              "--device", "cpu", "--out", str(out)]
    assert main([*common, "--methods", "gan,nsgan", "--budget-seconds", "0.2"]) == 0
    text = (out / "summary.md").read_text()
    assert "## ring8 · quick (hparams=shared, batch_size=16,budget_seconds=0.2,eval_points=1)" in text
    assert "None" not in text
    assert main([*common, "--methods", "gan", "--steps", "4"]) == 0
    variants = set(pd.read_csv(out / "summary.csv")["variant"])
    assert variants == {"gan[budget_seconds=0.2]", "nsgan[budget_seconds=0.2]", "gan[budget_seconds=none,steps=4]"}

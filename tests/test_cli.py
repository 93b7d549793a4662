"""The command line end to end with a tiny budget; bad input exits 2 and writes nothing."""
import subprocess
import sys

import pandas as pd
import pytest

from bench.cli import main
from bench.environment import PROJECT_ROOT

TINY = ["--steps", "8", "--eval-points", "2", "--batch-size", "32", "--no-progress", "--device", "cpu"]


def test_run_writes_records_tables_and_plots_and_report_rebuilds_them(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["run", "--methods", "gmn,gan,nsgan", "--datasets", "ring8,grid25", "--seeds", "0,1",
                 "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "ring8" in printed and "grid25" in printed and "total wall-clock" in printed
    records = list(out.glob("runs/*/*/*/record.json"))
    assert len(records) == 12 and all(len(list(r.parent.glob("samples-*.npz"))) == 1 for r in records)
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["variant"]) == {"gmn", "gan", "nsgan"} and (summary["seeds"] == 2).all()
    assert set(summary["dataset"]) == {"ring8 · quick", "grid25 · quick"}
    assert {"modes_covered", "high_quality_pct", "kl_modes", "mmd2", "energy", "train_seconds"} <= set(summary)
    assert len(pd.read_csv(out / "runs.csv")) == 12
    assert "| method" in (out / "summary.md").read_text()
    for plot in ("ring8_quick_samples.png", "grid25_quick_final_metrics.png", "ring8_quick_curves_time.png",
                 "grid25_quick_verdict.png"):
        assert (out / "plots" / plot).stat().st_size > 10_000

    (out / "summary.csv").unlink()
    assert main(["report", "--out", str(out), "--html"]) == 0
    assert pd.read_csv(out / "summary.csv").equals(summary)
    # per dataset: the verdict, curves against steps and against seconds, samples, final metrics
    assert (out / "report.html").read_text().count('<img src="data:image/png;base64,') == 10
    assert (out / "plots" / "ring8_quick_curves.png").stat().st_size > 10_000
    assert (summary["converged"] <= summary["judged"]).all() and (summary["judged"] <= summary["seeds"]).all()
    comparison = pd.read_csv(out / "comparison.csv")
    mmd = comparison[comparison["metric"] == "mmd2"]
    assert len(mmd) == 2 * 3 and set(zip(mmd["a"], mmd["b"])) == {("gan", "gmn"), ("gan", "nsgan"), ("gmn", "nsgan")}


@pytest.mark.parametrize("args,message", [
    (["--methods", "gmn,wgan"], "unknown method 'wgan'; choose from: "),
    (["--datasets", "cifar10"], "unknown dataset 'cifar10'; choose from: "),
    (["--steps", "0"], "steps must be a positive integer"),
    (["--seeds", "-3"], "non-negative integers"),
    (["--seeds", "a"], "non-negative integers"),
    (["--seeds", "5-2"], "runs backwards"),
    (["--seeds", ""], "non-negative integers"),
    (["--jobs", "0"], "--jobs takes a positive integer"),
    (["--jobs", "two"], "--jobs takes a positive integer"),
    (["--threads", "0"], "--threads takes a positive integer"),
    (["--sweep", "gan.d_steps"], "--sweep takes KEY=VALUE"),
    (["--sweep", "gan.d_steps=1,,2"], "an empty value"),
    (["--sweep", "momentum=1,2"], "not a run setting"),
    (["--sweep", "lr=1e-3,fast"], "lr takes a number"),
    (["--sweep", "wgan.x=1,2"], "not among the chosen"),
    (["--steps", "2.5"], "steps takes an integer"),
    (["--steps", "100", "--budget-seconds", "5"], "not both"),
    (["--executor", "slurm"], "unknown executor 'slurm'"),
    (["--address", "127.0.0.1:1"], "use it with --executor ray"),
    (["--executor", "ray", "--address", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
    (["--executor", "ray", "--address", "nonsense"], "--address takes HOST:PORT"),
    (["--batch-size", "1"], "batch_size must be at least 2"),
    (["--set", "gmn.kernel=rbf"], "gmn option kernel takes one of gaussian, laplacian, energy; got 'rbf'"),
    (["--set", "gmn.bogus=1"], "has no option bogus"),
    (["--set", "wgan.x=1"], "not among the chosen"),
])
def test_bad_input_exits_2_with_the_allowed_values_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "res"
    assert main(["run", "--out", str(out), *TINY, *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_report_on_corrupt_record_exits_2_and_names_the_file(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["run", "--methods", "gan", "--datasets", "ring8", "--out", str(out), *TINY]) == 0
    record = next(out.glob("runs/ring8/gan/seed0-*/record.json"))
    record.write_text(record.read_text()[:100])
    assert main(["report", "--out", str(out)]) == 2
    assert str(record) in capsys.readouterr().err
    assert main(["report", "--out", str(tmp_path / "empty")]) == 2


def test_python_dash_m_bench_list_and_exit_code():
    listed = subprocess.run([sys.executable, "-m", "bench", "list"], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert listed.returncode == 0
    for name in ("gmn", "gan", "nsgan", "ring8", "grid25"):
        assert f"  {name} " in listed.stdout
    bad = subprocess.run([sys.executable, "-m", "bench", "run", "--methods", "nope"], capture_output=True,
                         text=True, cwd=PROJECT_ROOT)
    assert bad.returncode == 2 and "choose from" in bad.stderr


def test_a_missing_dependency_is_an_install_message_not_a_traceback(monkeypatch, capsys):
    from bench import cli

    def missing(args):
        raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")
    monkeypatch.setitem(cli.COMMANDS, "report", missing)
    assert main(["report"]) == 2
    assert "matplotlib, which bench needs, is not installed" in capsys.readouterr().err

    def other(args):
        raise ModuleNotFoundError("No module named 'my_plugin_helper'", name="my_plugin_helper")
    monkeypatch.setitem(cli.COMMANDS, "report", other)
    with pytest.raises(ModuleNotFoundError):  # not ours to explain: a bug, shown in full
        main(["report"])

"""`bench export tensorboard|mlflow`: the stored histories, read back with each tool's own reader,
equal the records; bad targets exit 2 and leave what was there intact."""
import importlib.util
import json
import math

import pytest

from bench import export
from bench.cli import main
from conftest import write_record

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

HISTORY = {0: [{"step": 0, "train_seconds": 0.0, "mmd2": 2.0, "modes_covered": 0, "kl_modes": None},
               {"step": 100, "train_seconds": 1.5, "mmd2": 0.25, "modes_covered": 5, "kl_modes": 0.3,
                "d_loss": 1.25},
               {"step": 200, "train_seconds": 3.25, "mmd2": -0.001, "modes_covered": 8, "kl_modes": 0.01,
                "d_loss": 1.375}],
           1: [{"step": 0, "train_seconds": 0.0, "mmd2": 1.5, "modes_covered": 1, "kl_modes": float("nan")},
               {"step": 200, "train_seconds": 2.0, "mmd2": 0.5, "modes_covered": 6, "kl_modes": 0.2}]}


def write_runs(out):
    for seed, history in HISTORY.items():
        write_record(out, "gan", "ring8", seed, history[-1], history=history, steps=200)
    return out


def expected(seed: int) -> dict[str, list[tuple[int, float, float]]]:
    """tag -> [(step, value, training seconds)] of the finite numbers of a history."""
    tags = {}
    for h in HISTORY[seed]:
        for key, value in h.items():
            if key not in ("step", "train_seconds") and value is not None and math.isfinite(value):
                tag = ("train/" if key == "d_loss" else "eval/") + key
                tags.setdefault(tag, []).append((h["step"], float(value), h["train_seconds"]))
    return tags


def test_tensorboard_scalars_read_back_equal_the_records(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = write_runs(tmp_path / "res")
    assert main(["export", "tensorboard", str(out)]) == 0
    assert "2 runs written as TensorBoard scalars" in capsys.readouterr().out
    for seed in HISTORY:
        acc = EventAccumulator(str(out / "tensorboard" / "ring8_quick" / "gan" / f"seed{seed}"))
        acc.Reload()
        want = expected(seed)
        assert set(acc.Tags()["scalars"]) == set(want)  # kl_modes at step 0: None, left out; NaN too
        for tag, points in want.items():
            got = [(e.step, e.value, e.wall_time) for e in acc.Scalars(tag)]
            assert got == [(s, pytest.approx(v, rel=1e-6), pytest.approx(t)) for s, v, t in points]
    assert json.loads((out / "tensorboard" / export.MARKER).read_text())["runs"] == 2


def test_a_failed_tensorboard_export_keeps_the_earlier_one_whole(tmp_path, monkeypatch):
    out = write_runs(tmp_path / "res")
    assert main(["export", "tensorboard", str(out)]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in (out / "tensorboard").rglob("*") if p.is_file()}
    from torch.utils.tensorboard import SummaryWriter
    calls = []

    def fail_on_second_run(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 6:
            raise OSError(28, "No space left on device")
    monkeypatch.setattr(SummaryWriter, "add_scalar", fail_on_second_run)
    assert main(["export", "tensorboard", str(out)]) == 2
    after = {p.relative_to(out): p.read_bytes() for p in (out / "tensorboard").rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no staging folder left


def test_mlflow_runs_read_back_equal_the_records_and_a_second_export_skips_them(tmp_path, capsys):
    from mlflow.tracking import MlflowClient
    out = write_runs(tmp_path / "res")
    assert main(["export", "mlflow", str(out), "--experiment", "toy"]) == 0
    uri = f"sqlite:///{(out / 'mlflow.db').resolve()}"
    assert f"2 runs logged to MLflow experiment 'toy' at {uri}" in capsys.readouterr().out
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("toy").experiment_id])
    records = {json.loads(p.read_text())["run_id"]: json.loads(p.read_text()) for p in out.glob("runs/*/*/*/record.json")}
    assert {r.data.tags["bench.run_id"] for r in runs} == set(records)
    for run in runs:
        record = records[run.data.tags["bench.run_id"]]
        seed = record["spec"]["seed"]
        assert run.data.params["seed"] == str(seed) and run.data.params["lr"] == json.dumps(record["spec"]["lr"])
        assert run.data.params["dataset_options.modes"] == "8" and run.info.status == "FINISHED"
        assert run.data.tags["bench.git_revision"] == record["environment"]["git_revision"]
        for tag, points in expected(seed).items():
            got = [(m.step, m.value, m.timestamp) for m in client.get_metric_history(run.info.run_id, tag.replace("/", "."))]
            assert sorted(got) == [(s, pytest.approx(v), int(t * 1000)) for s, v, t in points]
    assert main(["export", "mlflow", str(out), "--experiment", "toy"]) == 0
    assert "0 runs logged" in capsys.readouterr().out and len(client.search_runs(
        [client.get_experiment_by_name("toy").experiment_id])) == 2


@pytest.mark.parametrize("args,message", [
    (["export", "mlflow", "{out}", "--tracking-uri", "http://127.0.0.1:9"], "cannot use the MLflow tracking store"),
    (["export", "tensorboard", "{out}", "--to", "{out}/runs"], "holds files that are not a bench export"),
    (["export", "tensorboard", "{out}", "--to", "{file}"], "is a file"),
    (["export", "tensorboard", "{empty}"], "no finished runs under"),
    (["export", "mlflow", "{empty}"], "no finished runs under"),
    (["export", "tensorboard", "{out}", "--tracking-uri", "x"], "are for export mlflow"),
    (["export", "mlflow", "{out}", "--to", "x"], "--to is for export tensorboard"),
])
def test_bad_targets_exit_2_and_write_nothing(tmp_path, capsys, args, message):
    out = write_runs(tmp_path / "res")
    (tmp_path / "file").write_text("keep")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    args = [a.format(out=out, file=tmp_path / "file", empty=tmp_path / "empty") for a in args]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "file").read_text() == "keep"


def test_a_missing_extra_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    out = write_runs(tmp_path / "res")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    assert main(["export", "mlflow", str(out)]) == 2
    assert 'pip install -e ".[mlflow]"' in capsys.readouterr().err
    assert not (out / "mlflow.db").exists()


def test_the_target_may_be_the_current_folder_or_a_link_and_is_readable(tmp_path, monkeypatch):
    out = write_runs(tmp_path / "res")
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert main(["export", "tensorboard", str(out), "--to", "."]) == 0
    assert (tmp_path / "here" / export.MARKER).exists() and (tmp_path / "here").stat().st_mode & 0o005
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert main(["export", "tensorboard", str(out), "--to", str(tmp_path / "link")]) == 0
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / export.MARKER).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging or old folder left


def test_an_empty_experiment_name_is_refused(tmp_path, capsys):
    out = write_runs(tmp_path / "res")
    assert main(["export", "mlflow", str(out), "--experiment", " "]) == 2
    assert "--experiment takes a name" in capsys.readouterr().err and not (out / "mlflow.db").exists()

"""Plugins: entry points of installed distributions (a dist-info folder on sys.path is what pip
leaves, so no install is needed here), --plugin files in this process and in spawned workers, the
example plugin package built and installed into a folder of its own; every broken plugin exits 2
naming itself, trains and writes nothing, and leaves the built-in methods working."""
import itertools
import json
import os
import re
import shutil
from pathlib import Path
import subprocess
import sys
import textwrap

import pytest

from bench.cli import main
from bench.datasets import DATASETS
from bench.environment import PROJECT_ROOT
from methods import METHODS

TINY = ["--steps", "6", "--eval-points", "1", "--batch-size", "16", "--no-progress", "--device", "cpu"]
_ids = itertools.count()

GOOD = '''
import torch
from bench.datasets import Ring8
from bench.options import Real
from methods.base import Method


class Shift(Method):
    """Shift: G descends the squared distance between the batch means."""
    constraints = {"weight": Real(min=0)}

    def __init__(self, weight: float = 1.0):
        self.weight = weight

    def step(self, nets, real):
        x = real()
        fake = nets.generator(nets.noise(len(x)))
        loss = self.weight * ((fake.mean(0) - x.mean(0)) ** 2).sum()
        nets.g_opt.zero_grad(set_to_none=True)
        loss.backward()
        nets.g_opt.step()
        return {"shift_loss": loss.detach()}


class Ring4(Ring8):
    """4 Gaussians on a circle."""
    def __init__(self, modes: int = 4, radius: float = 1.0, std: float = 0.01, n_std: float = 3.0):
        super().__init__(modes, radius, std, n_std)
'''


def make_dist(root, dist, version, module_source, methods=None, datasets=None):
    """An installed distribution as pip leaves it: a module and NAME-VERSION.dist-info with its
    entry points. Returns the module's (unique) name."""
    root.mkdir(parents=True, exist_ok=True)
    module = f"bench_test_plugin_{next(_ids)}_{os.getpid()}"
    (root / f"{module}.py").write_text(textwrap.dedent(module_source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    groups = [("bench.methods", methods or {}), ("bench.datasets", datasets or {})]
    (info / "entry_points.txt").write_text("".join(
        f"[{g}]\n" + "".join(f"{n} = {module}:{obj}\n" for n, obj in eps.items()) for g, eps in groups if eps))
    return module


def install(monkeypatch, root):
    """What a fresh process does at its first lookup: read the entry points on sys.path."""
    monkeypatch.syspath_prepend(str(root))
    METHODS.load_entry_points()
    DATASETS.load_entry_points()


def test_an_installed_method_and_dataset_are_listed_run_and_recorded_with_their_distribution(
        tmp_path, monkeypatch, registries, capsys):
    make_dist(tmp_path / "site", "bench-shift", "0.3", GOOD, methods={"shift": "Shift"}, datasets={"ring4": "Ring4"})
    install(monkeypatch, tmp_path / "site")
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert re.search(r"\n  shift +dist bench-shift==0\.3 ", listed) and re.search(r"\n  ring4 +dist bench-shift==0\.3 ", listed)
    assert re.search(r"\n  gan +builtin ", listed)
    out = tmp_path / "res"
    assert main(["run", "--methods", "shift,gan", "--datasets", "ring4", "--out", str(out), *TINY]) == 0
    record = json.loads(next(out.glob("runs/ring4/shift/*/record.json")).read_text())
    assert record["status"] == "ok" and record["method_source"] == record["dataset_source"] == "dist bench-shift==0.3"
    assert json.loads(next(out.glob("runs/ring4/gan/*/record.json")).read_text())["method_source"] == "builtin"


BROKEN = {
    "import error": ("raise ImportError('needs torchaudio')\n", "Shift",
                     "its entry point failed to import: ImportError: needs torchaudio"),
    "wrong base class": ("class Shift:\n    def step(self, nets, real):\n        return {}\n", "Shift",
                         "class Shift is not a subclass of methods.base.Method"),
    "duplicate name": (GOOD, "Shift", "the name is taken by builtin"),
    "bad option": (GOOD.replace("weight: float = 1.0", "weight: float = -1.0"), "Shift",
                   "the default of option weight (-1.0) is not a real number >= 0"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_installed_plugin_exits_2_naming_it_and_the_builtins_still_work(
        case, tmp_path, monkeypatch, registries, capsys):
    source, obj, reason = BROKEN[case]
    name = "gan" if case == "duplicate name" else "shift"
    make_dist(tmp_path / "site", "bench-broken", "0.1", source, methods={name: obj})
    install(monkeypatch, tmp_path / "site")
    out = tmp_path / "res"
    assert main(["run", "--methods", name, "--datasets", "ring8", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first.startswith(f"error: method '{name}' cannot be used: ") and reason in first
    assert f"[dist bench-broken==0.1, entry point {name} = " in first and "Traceback" not in err
    assert not out.exists()  # nothing trained or written
    assert main(["run", "--datasets", "ring8", "--out", str(out), *TINY]) == 2  # "every method" includes it
    assert "cannot run every method" in capsys.readouterr().err and not out.exists()
    assert main(["list"]) == 2 and reason in capsys.readouterr().err
    assert main(["run", "--methods", "nsgan", "--datasets", "ring8", "--out", str(out), *TINY]) == 0
    assert f"warning: method '{name}' cannot be used" in capsys.readouterr().err


def test_a_plugin_file_runs_here_and_in_spawned_workers_and_is_recorded_as_a_file(tmp_path, registries, capsys):
    path = tmp_path / "my_loss.py"
    path.write_text(GOOD.replace("class Shift(Method):", "@register_method('shift')\nclass Shift(Method):")
                    .replace("from methods.base import Method", "from methods import register_method\n"
                                                                  "from methods.base import Method"))
    assert main(["list", "--plugin", str(path)]) == 0
    assert f"  shift    file {path}" in capsys.readouterr().out
    out = tmp_path / "res"
    # --jobs 2: fresh interpreters (spawn) that know only the built-ins until they import the plugin
    assert main(["run", "--plugin", str(path), "--methods", "shift", "--datasets", "ring8", "--seeds", "0-1",
                 "--jobs", "2", "--set", "shift.weight=0.5", "--out", str(out), *TINY]) == 0
    records = [json.loads(p.read_text()) for p in out.glob("runs/ring8/shift/*/record.json")]
    assert len(records) == 2 and {r["status"] for r in records} == {"ok"}
    assert {r["method_source"] for r in records} == {f"file {path}"}
    assert records[0]["method_settings"] == {"weight": 0.5} and records[0]["variant"] == "shift[weight=0.5]"


BROKEN_FILES = {
    "syntax error": ("def oops(:\n", "failed to import: SyntaxError"),
    "import error": ("import torchaudio_that_is_not_installed\n",
                     "failed to import: ModuleNotFoundError: No module named 'torchaudio_that_is_not_installed'"),
    "wrong base class": ("from methods import register_method\n@register_method('shift')\nclass Shift:\n    pass\n",
                         "method 'shift' from file {path}: class Shift is not a subclass of methods.base.Method"),
    "duplicate name": (GOOD + "\nfrom methods import register_method\nregister_method('gan')(Shift)\n",
                       "method 'gan' from file {path}: the name is taken by builtin"),
    "bad option": (GOOD.replace("weight: float = 1.0", "weight='heavy'")
                   + "\nfrom methods import register_method\nregister_method('shift')(Shift)\n",
                   "the default of option weight ('heavy') is not a real number >= 0"),
    "registers nothing": ("x = 1\n", "registered no method or dataset"),
}


@pytest.mark.parametrize("case", list(BROKEN_FILES))
def test_a_broken_plugin_file_exits_2_naming_it_and_registers_nothing(case, tmp_path, registries, capsys):
    source, reason = BROKEN_FILES[case]
    path = tmp_path / "broken_loss.py"
    path.write_text(source)
    before = METHODS.names()
    out = tmp_path / "res"
    assert main(["run", "--plugin", str(path), "--methods", "gan", "--datasets", "ring8", "--out", str(out),
                 *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --plugin {path}") and reason.format(path=path) in err.splitlines()[0]
    assert "Traceback" not in err and not out.exists() and METHODS.names() == before
    assert main(["list", "--plugin", str(tmp_path / "missing.py")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_fresh_process_finds_an_installed_plugin_by_itself(tmp_path):
    make_dist(tmp_path / "site", "bench-shift", "0.3", GOOD, methods={"shift": "Shift"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(PROJECT_ROOT)])}
    listed = subprocess.run([sys.executable, "-m", "bench", "list"], capture_output=True, text=True, env=env,
                            cwd=tmp_path)
    assert listed.returncode == 0 and "  shift    dist bench-shift==0.3" in listed.stdout


def test_the_example_plugin_package_builds_installs_and_runs_beside_a_builtin(tmp_path):
    """The README's worked example as a user installs it: a wheel of examples/bench-moments,
    installed into a folder of its own (never into this environment)."""
    example = tmp_path / "bench-moments"  # a copy: building writes build/ and *.egg-info beside the sources
    checkout = Path(__file__).resolve().parents[1]  # tox installs bench into site-packages, not here
    shutil.copytree(checkout / "examples" / "bench-moments", example,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheel"),
                            str(example)], capture_output=True, text=True, cwd=tmp_path)
    if built.returncode != 0 and "No module named" in built.stderr:
        pytest.skip(f"cannot build a wheel here: {built.stderr.strip().splitlines()[-1]}")
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "wheel").glob("bench_moments-*.whl"))
    installed = subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)],
                               capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(PROJECT_ROOT)])}
    bench = [sys.executable, "-m", "bench"]
    listed = subprocess.run([*bench, "list"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert listed.returncode == 0 and "  moments  dist bench-moments==0.1.0" in listed.stdout, listed.stderr
    run = subprocess.run([*bench, "run", "--methods", "moments,gan", "--datasets", "ring8", "--out",
                          str(tmp_path / "res"), *TINY], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    record = json.loads(next((tmp_path / "res").glob("runs/ring8/moments/*/record.json")).read_text())
    assert record["status"] == "ok" and record["method_source"] == "dist bench-moments==0.1.0"

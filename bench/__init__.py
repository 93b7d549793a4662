"""bench: a benchmark of generative objectives. ``bench.study(...)`` runs a study from Python."""
import os

from bench.errors import BenchError

__all__ = ["BenchError", "study"]

# pykeops prints a CUDA warning on every CPU machine and its compile lines on first use: a newcomer
# should see results, not noise (``python -m bench -v ...`` shows them).
for _name in ("KEOPS_VERBOSE", "PYKEOPS_VERBOSE"):
    os.environ.setdefault(_name, "0")


def study(methods=None, datasets=None, seeds=(0,), out="results", *, force=False, progress=False, quiet=True,
          **kwargs):
    """Run a study (the same validation as ``python -m bench run``) and return its tables.

    methods, datasets: lists of names (default: every registered method; the toy mixtures, or the
    datasets a preset covers); seeds: a list or ranges as text ("0-9,20"); out: the results folder.
    Keyword arguments: profile ("quick", "paper") or preset (a paper's protocol, ``bench list``);
    options ({"gmn": {"kernel": "energy"}, "ring8": {"std": 0.02}}); sweep ({"lr": [1e-4, 2e-4]},
    a cartesian product); labels ({"gan[d_steps=5]": "gan, 5 D steps"}); hparams ("shared",
    "recommended"); jobs, threads, executor ("auto", "local", "ray"), address, device, plugins; the
    run settings (steps, budget_seconds, batch_size, lr, noise, noise_dim, arch, width, depth,
    eval_points, train_size); force (rerun finished runs), progress, quiet.

    Returns a StudyResult: ``summary``, ``comparison`` and ``runs`` (pandas DataFrames), ``figures``
    (paths) and ``outcome`` (counts). Bad input raises :class:`bench.BenchError` before anything is
    trained or written. (bench.studies, imported here on the first call: torch is heavy.)
    """
    from bench.studies import study as run_study
    return run_study(methods, datasets, seeds, out, force=force, progress=progress, quiet=quiet, **kwargs)

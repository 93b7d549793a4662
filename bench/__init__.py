"""bench: a benchmark of generative objectives. ``bench.study(...)`` runs a study from Python."""
import os

# pykeops prints a CUDA warning on every CPU machine and its compile lines on first use: a newcomer
# should see results, not noise (``python -m bench -v ...`` shows them).
for _name in ("KEOPS_VERBOSE", "PYKEOPS_VERBOSE"):
    os.environ.setdefault(_name, "0")


def study(*args, **kwargs):
    """Run a study and return its tables; see :func:`bench.studies.study` (imported lazily: torch is heavy)."""
    from bench.studies import study as run_study
    return run_study(*args, **kwargs)

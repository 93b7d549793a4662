"""bench: a benchmark of generative objectives. ``bench.study(...)`` runs a study from Python."""


def study(*args, **kwargs):
    """Run a study and return its tables; see :func:`bench.studies.study` (imported lazily: torch is heavy)."""
    from bench.studies import study as run_study
    return run_study(*args, **kwargs)

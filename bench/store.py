"""Run records on disk. Every file is written to a temporary name and renamed into place, so an
interrupted run never leaves a half-written record; the record is written last, so a run
directory without record.json is an unfinished run and is ignored."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from bench.registry import BenchError

RECORD = "record.json"
SAMPLES = "samples.npz"


def atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(obj):
    """NaN/inf are not JSON: store them as null so any JSON reader can load the record."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def write_json(path: Path, data: dict) -> None:
    text = json.dumps(_jsonable(data), indent=1, allow_nan=False)
    atomic_write(path, lambda f: f.write(text.encode()))


def write_npz(path: Path, **arrays) -> None:
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def write_run(folder: Path, samples, record: dict) -> None:
    """A run's samples, then its record: the record's presence marks the run complete."""
    write_npz(folder / SAMPLES, samples=samples)
    write_json(folder / RECORD, record)


def run_dir(out: Path, dataset: str, profile: str, method: str, seed: int) -> Path:
    return Path(out) / "runs" / dataset / profile / method / f"seed{seed}"


def load_records(out: Path) -> list[dict]:
    """All finished runs under ``out``; a record that cannot be read is a clear error."""
    records = []
    for path in sorted(Path(out).glob(f"runs/*/*/*/*/{RECORD}")):
        try:
            record = json.loads(path.read_text())
            record["config"]["method"], record["config"]["dataset"]  # noqa: B018 (must exist)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise BenchError(f"run record {path} is corrupt ({type(err).__name__}: {err}); "
                             f"delete its folder {path.parent} or run that configuration again") from err
        record["path"] = str(path.parent)
        records.append(record)
    return records


def load_samples(record: dict) -> np.ndarray:
    path = Path(record["path"]) / SAMPLES
    try:
        with np.load(path) as data:
            return data["samples"]
    except (OSError, ValueError, KeyError) as err:
        raise BenchError(f"samples file {path} is missing or corrupt ({err}); run that configuration again") from err

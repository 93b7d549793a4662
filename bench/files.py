"""Files written whole or not at all, and the TOML files users give (the ground floor)."""
from __future__ import annotations

import json
import math
import os
import tempfile
import tomllib
from pathlib import Path

import numpy as np

from bench.errors import BenchError


def atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600: let others read shared results
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def jsonable(obj):
    """NaN/inf are not JSON: store them as null so any JSON reader can load the record."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def read_toml(path: Path, what: str) -> dict:
    """A TOML file the user gives (a study, the published results); BenchError saying why it cannot be read."""
    try:
        return tomllib.loads(Path(path).read_text())
    except OSError as err:
        raise BenchError(f"{what} {path} cannot be read: {err.strerror or err}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise BenchError(f"{what} {path} is not valid TOML: {err}") from None


def write_json(path: Path, data: dict) -> None:
    text = json.dumps(jsonable(data), indent=1, allow_nan=False)
    atomic_write(path, lambda f: f.write(text.encode()))


def write_npz(path: Path, **arrays) -> None:
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))

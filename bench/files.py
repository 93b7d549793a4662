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


class Staged:
    """Files written all or none (a report): :meth:`add` keeps each file's bytes and :meth:`remove`
    marks a stale file; :meth:`commit` writes every file to a temporary name beside its target and
    only then renames them all into place (a rename needs no space), so a full disk or a denied
    folder leaves every old file as it was."""

    def __init__(self):
        self.files: dict[Path, bytes] = {}
        self.removed: list[Path] = []

    def add(self, path: Path, data: bytes) -> None:
        self.files[Path(path)] = data

    def remove(self, path: Path) -> None:
        self.files.pop(Path(path), None)
        self.removed.append(Path(path))

    def write_one(self, path: Path, data: bytes) -> str:
        """``data`` in a temporary file beside ``path``; returns its name."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~umask())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return tmp

    def commit(self) -> None:
        written = []
        try:
            for path, data in self.files.items():
                written.append((self.write_one(path, data), path))
        except BaseException:
            for tmp, _ in written:
                Path(tmp).unlink(missing_ok=True)
            raise
        for tmp, path in written:
            os.replace(tmp, path)
        for path in self.removed:
            path.unlink(missing_ok=True)

"""What produced a record: versions, device, git revision."""
from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

import torch

from bench.errors import BenchError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_CACHE = "BENCH_CACHE_DIR"


def cache_dir() -> Path:
    """Where cached artefacts live (MNIST, verified networks, the MMD calibration):
    ``$BENCH_CACHE_DIR``, else ``~/.cache/bench``."""
    return Path(os.environ.get(ENV_CACHE, Path.home() / ".cache" / "bench"))


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    return torch.device(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


@functools.cache
def git_revision() -> str:
    """HEAD of the checkout the package comes from, else of the folder it is run from (an
    installed package lives outside the checkout); '+dirty' when tracked files outside the top-level
    ``results/`` are modified (results are what runs wrote, not what produced them: a rerun of a
    committed study rewrites them; a study written elsewhere in the checkout still counts)."""
    for folder in dict.fromkeys([PROJECT_ROOT, Path.cwd()]):
        try:
            rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True,
                                 text=True, timeout=10).stdout.strip()
            if rev:
                status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                         ":(top)", ":(top,exclude)results"], cwd=folder,
                                        capture_output=True, text=True, timeout=10)
                if status.returncode:
                    return rev + "+unknown"  # whether the checkout was modified could not be read
                return rev + ("+dirty" if status.stdout.strip() else "")
        except (OSError, subprocess.SubprocessError):
            continue
    return "unknown"


def package_versions(packages) -> dict:
    """Installed version of each distribution (None where it is not installed)."""
    out = {}
    for pkg in packages:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def versions() -> dict:
    return {"python": platform.python_version(), "platform": platform.platform(),
            **package_versions(("bench", "torch", "torchvision", "numpy", "geomloss", "pykeops", "scikit-learn",
                                "pandas"))}

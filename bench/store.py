"""Run records on disk, keyed by the run's identity.

A run lives in ``runs/<dataset>/<method>/seed<k>-<run id>/`` (the run id is the hash of its
:class:`~bench.spec.RunSpec` identity). Every file is written to a temporary name and renamed into
place. The samples file is named by its content and written first; the record, which names it,
is written last and its presence marks the run finished, so a kill at any point leaves either the
old finished run or the new one, never a record beside samples that are not its own. A run being
trained holds an exclusive lock on its folder, so two processes on one ``--out`` never train or
write the same run. Records of the earlier layout (``runs/<dataset>/<profile>/<method>/seed<k>/``)
keep loading.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from bench import files, records
from bench import spec as specs
from bench.datasets import DATASETS
from bench.errors import BenchError
from bench.records import STATUSES
from bench.registry import NAME
from methods import METHODS

RECORD = "record.json"
LOCK = ".lock"


def run_dir(out: Path, spec) -> Path:
    for name in (spec.dataset, spec.method):  # folder names: never a path of their own
        if not NAME.match(name):
            raise BenchError(f"{name!r} cannot name a folder of runs: names are lowercase letters, digits, '-' and '_'")
    return Path(out) / "runs" / spec.dataset / spec.method / f"seed{spec.seed}-{spec.run_id}"


def reference_dir(out: Path, dataset: str, profile: str, name: str) -> Path:
    return Path(out) / "runs" / dataset / "reference" / f"{name.replace(' ', '-')}-{profile}"


def write_run(folder: Path, samples, record: dict) -> dict:
    """The samples under a name of their content, then the record naming them, then the old
    samples file (if another) goes. A failed run (samples None) writes its record only.
    Returns the record as written, with its ``path``."""
    old = read_record(folder / RECORD) if (folder / RECORD).exists() else None
    name = None
    if samples is not None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, samples=samples)
        data = buffer.getvalue()
        name = f"samples-{hashlib.sha256(data).hexdigest()[:12]}.npz"
        files.atomic_write(folder / name, lambda f: f.write(data))
    record = {**record, "samples_file": name}
    record.pop("path", None)
    files.write_json(folder / RECORD, record)
    if old and old.get("samples_file") not in (None, name):
        (folder / old["samples_file"]).unlink(missing_ok=True)
    return {**record, "path": str(folder)}


def claim(folder: Path, wait: bool = False) -> int | None:
    """Lock a run's folder for this process: a file descriptor to :func:`release`, or None if
    another process holds it (with ``wait``, block until it lets go). A killed process releases
    its locks."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK, os.O_CREAT | os.O_RDWR, 0o666 & ~files.umask())
    except OSError as err:
        raise BenchError(f"cannot write in {folder} ({err.strerror or err}); results must go to a folder "
                         f"you can write to (--out)") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def release(fd: int) -> None:
    os.close(fd)


# ---------------------------------------------------------------------------------- reading
def _check_record(data, path: Path) -> dict:
    """One schema for every record, old layout included: what the report and resume rely on."""
    def bad(why):
        raise BenchError(f"run record {path} is corrupt ({why}); bench cannot read it, so it cannot redo it: "
                         f"delete its folder {path.parent} and run that configuration again")
    if not isinstance(data, dict):
        bad("not a JSON object")
    spec = data.get("spec", data.get("config"))
    if not isinstance(spec, dict):
        bad("no 'spec' object")
    for key, kind, what in (("method", str, "a name"), ("dataset", str, "a name"), ("seed", int, "an integer")):
        if not isinstance(spec.get(key), kind) or isinstance(spec.get(key), bool):
            bad(f"spec field {key!r} missing or not {what}")
    for kind, name, registry in (("dataset", spec["dataset"], DATASETS), ("method", spec["method"], METHODS)):
        if (kind == "dataset" or data.get("status") != "reference") and name not in registry.names():
            raise BenchError(f"run record {path} is of the {kind} {name!r}, which is not registered here: load "
                             f"the plugin that has it (--plugin FILE or MODULE, or install its package); "
                             f"known {kind}s: {', '.join(registry.names())}")
    if data.get("status") not in STATUSES:
        bad(f"status {data.get('status')!r} is not one of {', '.join(STATUSES)}")
    if not isinstance(data.get("final"), dict):
        bad("'final' is not an object of metrics")
    if not isinstance(data.get("history"), list) or not all(isinstance(h, dict) for h in data["history"]):
        bad("'history' is not a list of evaluations")
    for key in ("variant", "run_id", "variant_id"):
        if key in data and not isinstance(data[key], str):
            bad(f"{key!r} is {data[key]!r}, not text")
    if "spec" in data and data.get("status") != "reference" and not all(
            isinstance(data.get(k), str) for k in ("run_id", "variant_id", "variant")):
        bad("'run_id', 'variant_id' or 'variant' missing")
    for point in data["history"]:
        wrong = {k: v for k, v in point.items() if v is not None and (isinstance(v, bool) or not isinstance(
            v, (int, float)))}
        if wrong or not isinstance(point.get("step"), (int, float)):
            bad(f"an evaluation in 'history' holds {wrong or 'no step'}, not numbers")
    for key, value in data["final"].items():
        if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value)):
            bad(f"final metric {key!r} is {value!r}, not a finite number (bench stores a missing value as null)")
    if data["status"] == "ok" and not any(v is not None for v in data["final"].values()):
        bad("status 'ok' but every final metric is null")
    return data


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number bench writes (it stores a missing value as null)")


def read_record(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(), parse_constant=_reject_constant)
    except (OSError, ValueError) as err:
        raise BenchError(f"run record {path} is corrupt ({type(err).__name__}: {err}); bench cannot read it, so "
                         f"it cannot redo it: delete its folder {Path(path).parent} and run that configuration "
                         f"again") from err
    return _check_record(data, Path(path))


def _upgrade(record: dict) -> dict:
    """A record of an earlier layout in today's shape: its spec re-resolved (from a schema-1
    'config', or a spec of an older spec version), so it has the run id that a new run of the same
    configuration has and resume finds it. A record of a method or option that no longer exists
    keeps its own id and its name."""
    old = record.pop("config") if "config" in record else record["spec"]
    record["samples_file"] = record.get("samples_file", "samples.npz")
    if record["status"] == "reference":
        run_id, variant_id = records.reference_ids(old)
        record.update(spec=old, variant=old["method"], run_id=run_id, variant_id=variant_id)
        return record
    try:
        settings = {k: old.get(k) for k in specs.RUN_SETTINGS}
        spec = specs.resolve(old["method"], old["dataset"], old["seed"], old.get("profile", "quick"),
                             old.get("method_options") or {}, old.get("dataset_options") or {},
                             label=old.get("label"), device=old.get("device", "auto"), **settings)
        record.update(spec=spec.to_dict(), identity=spec.identity(), run_id=spec.run_id,
                      variant_id=spec.variant_id, variant=spec.variant)
    except BenchError:
        digest = hashlib.sha256(json.dumps(old, sort_keys=True, default=str).encode()).hexdigest()[:12]
        record.update(spec=old, run_id=f"legacy-{digest}", variant=old["method"],
                      variant_id=f"legacy-{old['method']}-{old['dataset']}")
    return record


def _current(record: dict) -> bool:
    return "spec" in record and (record.get("identity") or {}).get("spec_version") == specs.SPEC_VERSION \
        or record.get("status") == "reference" and "spec" in record


def load_records(out: Path) -> list[dict]:
    """Every finished, failed or reference run under ``out``, each checked against the schema
    (a record that cannot be read is a clear error naming it). Where two records are the same
    run (an old-layout record and its rerun), the newer schema wins."""
    by_id: dict[str, dict] = {}
    for path in sorted(Path(out).glob(f"runs/**/{RECORD}")):
        record = read_record(path)
        record = record if _current(record) else _upgrade(record)
        if record["status"] == "reference":  # keyed by what it is, whichever bench wrote it
            record["run_id"], record["variant_id"] = records.reference_ids(record["spec"])
        record["path"] = str(path.parent)
        kept = by_id.get(record["run_id"])
        if kept is None or record.get("schema", 1) >= kept.get("schema", 1):
            by_id[record["run_id"]] = record
    return list(by_id.values())


def load_samples(record: dict) -> np.ndarray:
    path = Path(record["path"]) / record.get("samples_file", "samples.npz")
    try:
        with np.load(path) as data:
            samples = data["samples"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise BenchError(f"samples file {path} is missing or corrupt ({type(err).__name__}: {err}); "
                         f"{REDO}") from err
    return samples


REDO = "its run counts as finished: rerun it with --force, or delete its folder"


def check_samples(records: list[dict]) -> None:
    """Every finished run's (and calibration row's) samples file readable, not empty, not all NaN:
    what the report will read, checked before anything is trained or written."""
    for r in records:
        if r.get("samples_file") and r["status"] in ("ok", "reference"):
            samples = load_samples(r)
            if samples.size == 0 or not np.isfinite(samples.astype(float)).any():
                raise BenchError(f"samples file of {r['path']} is empty or all NaN; {REDO}")

"""Stored runs into the tools researchers already open (``python -m bench export``): TensorBoard
event files and an MLflow tracking store. Both read the records under a results folder; nothing
is retrained. Each is an optional extra (``pip install -e .[tensorboard]`` / ``.[mlflow]``).

Time axes: a record keeps each evaluation's step and its seconds of training, not the clock time
the run started, so an exported point's wall time is its training seconds counted from the epoch
(TensorBoard's "relative" axis and MLflow's timestamps then read as training seconds).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path

from bench import store
from bench.errors import BenchError
from bench.metrics import METRICS
from bench.records import dataset_label

EXTRAS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}  # tool -> (module, extra)
MARKER = "bench-export.json"  # says a folder holds a bench export, so a later export may replace it
AXES = ("step", "train_seconds")


def require(tool: str) -> None:
    """Exit 2 with the install command when the tool's package is missing."""
    module, extra = EXTRAS[tool]
    if importlib.util.find_spec(module) is None:
        raise BenchError(f"export {tool} needs the {module} package, which is not installed; "
                         f"install it with: pip install -e \".[{extra}]\"")


def records_of(out: Path) -> list[dict]:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BenchError(f"{out} is a file, not a folder of results")
    found = [r for r in store.load_records(out) if r["status"] != "reference"]
    if not found:
        raise BenchError(f"no finished runs under {out}/runs to export; train some with `python -m bench run`")
    return found


def scalars(record: dict) -> list[tuple[str, float, int, float]]:
    """Every number of a run's evaluation history as (tag, value, step, training seconds): sample
    metrics under ``eval/``, training losses and anything else under ``train/``; missing values
    (no high-quality sample: no KL) are left out."""
    points = []
    for h in record["history"]:
        for key, value in h.items():
            if key in AXES or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                tag = f"eval/{key}" if key in METRICS else f"train/{key}"
                points.append((tag, float(value), int(h["step"]), float(h.get("train_seconds") or 0.0)))
    return points


def run_path(record: dict) -> str:
    """``ring8_quick/gan/seed0``: the table, the variant and the seed, as folder names."""
    safe = lambda text: "".join(c if c.isalnum() or c in "-_=.,[]+" else "_" for c in text).strip("._") or "_"
    return f"{safe(dataset_label(record).replace(' · ', '_'))}/{safe(record['variant'])}/seed{record['spec']['seed']}"


def unique_paths(records: list[dict]) -> dict[str, str]:
    """run_id -> its run path; a variant name shared by two variants of a table gets the run id."""
    paths, taken = {}, {}
    for r in records:
        taken.setdefault(run_path(r), []).append(r["run_id"])
    for r in records:
        path = run_path(r)
        paths[r["run_id"]] = path if len(taken[path]) == 1 else f"{path}-{r['run_id']}"
    return paths


def tensorboard(out: Path, to: Path | None = None) -> tuple[Path, int]:
    """One TensorBoard run folder per run under ``to`` (default OUT/tensorboard): its history as
    scalars on the step axis, with the training seconds as wall time, and its spec as text. Written
    in a temporary folder beside ``to`` and moved into place at the end: an earlier export there is
    replaced whole, or kept whole if this one fails. Returns the folder and the number of runs."""
    require("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    records = records_of(out)
    to = (Path(to) if to is not None else Path(out) / "tensorboard").resolve()  # ".", links: the real folder
    if to.exists() and not to.is_dir():
        raise BenchError(f"--to {to} is a file; give a folder for the TensorBoard runs")
    if to.is_dir() and any(to.iterdir()) and not (to / MARKER).exists():
        raise BenchError(f"--to {to} holds files that are not a bench export; give an empty or new folder")
    try:
        to.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{to.name}.", dir=to.parent))
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; an export is for others to read
    except OSError as err:
        raise BenchError(f"cannot write under {to.parent}: {err.strerror or err}; nothing was exported") from None
    try:
        paths = unique_paths(records)
        for r in records:
            writer = SummaryWriter(log_dir=str(staging / paths[r["run_id"]]))
            for tag, value, step, seconds in scalars(r):
                writer.add_scalar(tag, value, global_step=step, walltime=seconds)
            writer.add_text("spec", "```\n" + json.dumps(r["spec"], indent=1, sort_keys=True) + "\n```", 0, 0.0)
            writer.add_text("run", f"run {r['run_id']}, variant {r['variant_id']}, status {r['status']}, git "
                                   f"{(r.get('environment') or {}).get('git_revision', 'unknown')}", 0, 0.0)
            writer.close()
        (staging / MARKER).write_text(json.dumps({"results": str(Path(out).resolve()), "runs": len(records)}))
        old = to.with_name(f".{to.name}.old-{os.getpid()}")
        if to.exists():
            to.rename(old)
        staging.rename(to)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise BenchError(f"cannot write the TensorBoard runs to {to}: {err.strerror or err}; what was there "
                         f"is as it was") from None
    except BaseException:  # a bug or Ctrl-C: no half-written folder left beside the target
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return to, len(records)


def flatten(spec: dict, prefix: str = "") -> dict[str, str]:
    """A spec as MLflow params: nested keys joined by dots, values as text (lists as JSON)."""
    params = {}
    for key, value in spec.items():
        if isinstance(value, dict):
            params.update(flatten(value, f"{prefix}{key}."))
        else:
            params[f"{prefix}{key}"] = value if isinstance(value, str) else json.dumps(value)
    return params


def mlflow(out: Path, tracking_uri: str | None = None, experiment: str | None = None) -> tuple[str, str, int, int]:
    """Every run as an MLflow run of one experiment (default: the results folder's name) in the
    tracking store at ``tracking_uri`` (default: an SQLite file, OUT/mlflow.db): the spec as
    params, the history as metrics (step and training seconds), the run's ids, status and git
    revision as tags. Runs exported before (tag ``bench.run_id``) are skipped. If logging fails
    half-way, the runs this call created are deleted. Returns (uri, experiment, logged, skipped)."""
    require("mlflow")
    if experiment is not None and not experiment.strip():
        raise BenchError("--experiment takes a name; got an empty one (leave it out for OUT's folder name)")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # an unreachable server: fail in seconds
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient
    for logger in ("mlflow", "alembic"):  # their INFO lines (creating tables) are not the user's news;
        logging.getLogger(logger).setLevel(logging.WARNING)  # after the import, which sets mlflow's level

    records = records_of(out)
    uri = tracking_uri or f"sqlite:///{(Path(out) / 'mlflow.db').resolve()}"
    name = experiment or Path(out).resolve().name
    try:
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(name)
        experiment_id = found.experiment_id if found else client.create_experiment(name)
        done = {run.data.tags.get("bench.run_id") for run in client.search_runs([experiment_id], max_results=50000)}
    except Exception as err:  # noqa: BLE001 (any failure to reach or open the store is the same answer)
        raise BenchError(f"cannot use the MLflow tracking store {uri}: {type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}; nothing was exported") from None
    created = []
    paths = unique_paths(records)
    todo = [r for r in records if r["run_id"] not in done]
    try:
        for r in todo:
            env = r.get("environment") or {}
            run = client.create_run(experiment_id, run_name=paths[r["run_id"]], tags={
                "bench.run_id": r["run_id"], "bench.variant_id": r["variant_id"], "bench.variant": r["variant"],
                "bench.table": dataset_label(r), "bench.status": r["status"],
                "bench.git_revision": env.get("git_revision", "unknown"), "bench.device": env.get("device", "")})
            created.append(run.info.run_id)
            params = [Param(k, v[:6000]) for k, v in flatten(r["spec"]).items()]
            metrics = [Metric(tag.replace("/", "."), value, int(seconds * 1000), step)
                       for tag, value, step, seconds in scalars(r)]
            for i in range(0, len(params), 100):  # MLflow's limits per batch
                client.log_batch(run.info.run_id, params=params[i:i + 100])
            for i in range(0, len(metrics), 1000):
                client.log_batch(run.info.run_id, metrics=metrics[i:i + 1000])
            client.log_batch(run.info.run_id, tags=[RunTag("mlflow.note.content", f"bench run of {r['variant']}")])
            client.set_terminated(run.info.run_id, "FINISHED" if r["status"] == "ok" else "FAILED")
    except Exception as err:  # noqa: BLE001 (whatever broke, undo this export's runs)
        for run_id in created:
            try:
                client.delete_run(run_id)
            except Exception:  # noqa: BLE001 (the store is failing already; the message says what is left)
                pass
        raise BenchError(f"exporting to the MLflow tracking store {uri} failed ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}); the {len(created)} runs this export "
                         f"had created were deleted") from None
    return uri, name, len(todo), len(records) - len(todo)

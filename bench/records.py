"""Run records: the one builder of every record (``ok``, ``diverged``, ``error``, ``reference``).

A record is plain JSON: the run's specification and identity, its status, the metric history and
final values, timings, what the method learned and what produced it (versions, device, git
revision). :mod:`bench.store` writes and reads them; the harness, the executors and the
calibration rows all make theirs here, so every record has the same shape.
"""
from __future__ import annotations

import hashlib

import torch

from bench import convergence, environment, mmd
from bench.spec import RunSpec, canonical_json

SCHEMA = 2
FINISHED = ("ok", "diverged")          # a run with one of these is never redone by accident
STATUSES = FINISHED + ("error", "reference")


def describe_environment(device: torch.device | None) -> dict:
    """Versions, device and git revision (and KeOps' state) of the process that made a record;
    without a device (a run that failed before it had one), versions and revision only."""
    if device is None:
        return {"git_revision": environment.git_revision(), "versions": environment.versions()}
    return {"versions": environment.versions(), "device": str(device), "device_name": environment.device_name(device),
            "git_revision": environment.git_revision(), "keops": mmd.keops_status()}


def run_record(spec: RunSpec, status: str, *, history: list, steps_done: int, diverged_at: int | None = None,
               timing: dict | None = None, method_settings: dict | None = None, method_learned: dict | None = None,
               sources: dict | None = None, evaluation: dict | None = None, device: torch.device | None = None,
               error: str | None = None, tracked: tuple = (), resolution=None,
               stopped_early: dict | None = None) -> dict:
    """The record of one run of ``spec``: finished (``ok``/``diverged``) or failed (``error``, with
    the message). ``final`` is the last evaluation with the training pace; ``tracked``, the
    dataset's metrics that say whether the run had converged (:mod:`bench.convergence`);
    ``stopped_early``: where a run with a patience stopped before its budget, converged."""
    timing = dict(timing or {})
    final = {**history[-1], "steps_per_second": timing["steps_per_second"]} if history else {}
    record = {"schema": SCHEMA, "run_id": spec.run_id, "variant_id": spec.variant_id, "variant": spec.variant,
              "status": status}
    if stopped_early is not None:
        record["stopped_early"] = stopped_early
    if error is not None:
        record["error"] = error
    record.update({"diverged_at_step": diverged_at, "steps_done": steps_done, "spec": spec.to_dict(),
                   "identity": spec.identity(), "method_settings": method_settings or {}})
    if sources:
        record.update({"method_source": sources["method"], "dataset_source": sources["dataset"]})
    if method_learned is not None:
        record["method_learned"] = method_learned
    record["timing"] = timing
    if evaluation is not None:
        record["evaluation"] = evaluation
    record.update({"final": final, "history": history, "environment": describe_environment(device)})
    if status in FINISHED:
        record["convergence"] = convergence.verdict(history, tracked, status, resolution)
    verdict = spec.preset_verdict()
    if verdict is not None:  # whether these numbers may stand beside the paper's, and why not
        record["preset"] = verdict
    return record


def reference_spec(name: str, dataset: str, profile: str, dataset_options: dict | None = None) -> dict:
    """The spec of a calibration row (a dataset's training set, uniform noise): what it is, keyed
    like a run's, so two datasets' "train set" rows in one folder are two records."""
    return {"method": name, "dataset": dataset, "seed": 0, "profile": profile,
            "dataset_options": dict(dataset_options or {})}


def reference_ids(spec: dict) -> tuple[str, str]:
    """The run id and variant id of a calibration row: ``reference-<name>-<hash>`` of what it is
    (name, dataset, profile, dataset options but the data folder; the seed too for the run id)."""
    what = {"method": spec["method"], "dataset": spec.get("dataset"), "profile": spec.get("profile"),
            "dataset_options": {k: v for k, v in (spec.get("dataset_options") or {}).items() if k != "data_dir"}}
    name = spec["method"].replace(" ", "-")
    variant = hashlib.sha256(canonical_json(what).encode()).hexdigest()[:12]
    run = hashlib.sha256(canonical_json({**what, "seed": spec.get("seed", 0)}).encode()).hexdigest()[:12]
    return f"reference-{name}-{run}", f"reference-{name}-{variant}"


def reference_record(spec: dict, final: dict, eval_seconds: float, device: torch.device) -> dict:
    """The record of a calibration row, evaluated exactly like a method's samples."""
    run_id, variant_id = reference_ids(spec)
    return {"schema": SCHEMA, "status": "reference", "diverged_at_step": None, "steps_done": 0, "run_id": run_id,
            "variant": spec["method"], "variant_id": variant_id, "spec": spec, "method_settings": {},
            "timing": {"eval_seconds": eval_seconds}, "final": final, "history": [],
            "environment": describe_environment(device)}


def stamp_runtime(record: dict, executor: str, jobs: int, threads: int | None, revision: str) -> dict:
    """Where the run executed (the driver knows; the worker that made the record does not), and the
    git revision the driver read before the study wrote anything: a worker's own check would count
    the study's records as modifications when its results folder is tracked (a rerun of a committed
    study) and say ``+dirty`` of code that was clean."""
    return {**record, "environment": {**record.get("environment", {}), "git_revision": revision},
            "runtime": {"executor": executor, "jobs": jobs, "threads": threads, **record.get("runtime", {})}}


def dataset_label(record: dict) -> str:
    """What a table or figure is about: a dataset under one budget profile and one hyperparameter
    policy (``ring8 · quick`` is the shared policy, ``ring8 · quick · recommended``: each method's own)."""
    s = record["spec"]
    policy = s.get("hparams", "shared")
    return f"{s['dataset']} · {s.get('profile', 'quick')}" + (f" · {policy}" if policy != "shared" else "")


def setting(spec: dict, key: str):
    """A run setting ('lr') or dataset option ('ring8.std') of a stored spec."""
    target, dot, option = key.partition(".")
    return (spec.get("dataset_options") or {}).get(option) if dot else spec.get(key)

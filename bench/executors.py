"""Where runs execute: in this process, in N local processes, or as Ray tasks.

An executor receives run specifications (plain data, never networks or datasets) and yields
``(spec, record, samples)`` as runs finish, in any order; the driver writes every record, so
workers on another machine need no shared filesystem. A run that raises, or whose worker dies,
comes back as a record with status ``error``; the other runs go on (Hydra's launcher / Ray's
``ray.wait`` pattern).
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import signal
import socket
import threading
import time
import traceback
import warnings
from collections.abc import Iterable, Iterator

from tqdm import tqdm

from bench import records
from bench.errors import BenchError
from bench.harness import group_key, train_and_evaluate, train_group
from bench.plugins import load_plugins
from bench.spec import RunSpec, from_dict

EXECUTORS = ("auto", "local", "ray")


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def resolve_executor(executor: str, jobs: int) -> str:
    """``auto``: Ray when asked for by name only; one process for --jobs 1, local processes otherwise."""
    if executor not in EXECUTORS:
        raise BenchError(f"unknown executor {executor!r}; choose from: {', '.join(EXECUTORS)}")
    if executor == "ray":
        return "ray"
    return "sequential" if jobs == 1 else "processes"


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HTTP2_EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # length 0, type SETTINGS, no flags, stream 0


def check_ray_address(address: str | None) -> None:
    """Fail fast (seconds, not Ray's minutes of retries) when the cluster cannot be reached."""
    if address in (None, "local"):
        return
    if address == "auto":
        if not os.path.exists("/tmp/ray/ray_current_cluster"):
            raise BenchError("--address auto: no running Ray cluster found on this machine (start one with "
                             "`ray start --head`, or leave --address out for a new local instance)")
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise BenchError(f"--address takes HOST:PORT (or ray://HOST:PORT, auto); got {address!r}")
    try:
        connection = socket.create_connection((host, int(port)), timeout=3)
    except OSError as err:
        raise BenchError(f"cannot reach the Ray cluster at {address} ({err.strerror or err}); "
                         f"is `ray start --head` running there?") from None
    with connection:  # Ray's head speaks gRPC: HTTP/2 answers a client preface with a SETTINGS frame
        try:
            connection.sendall(HTTP2_PREFACE + HTTP2_EMPTY_SETTINGS)
            header = connection.recv(9)
        except OSError:
            header = b""
    if len(header) < 4 or header[3] != 0x4:
        raise BenchError(f"{address} accepts connections but does not answer as a Ray cluster (no gRPC reply "
                         f"within 3 s); give the head's address (`ray start --head` prints it), or leave "
                         f"--address out for a new local instance")


def error_record(spec: RunSpec, message: str) -> dict:
    return records.run_record(spec, "error", history=[], steps_done=0, error=message)


def run_one(spec_data: dict, progress: bool = False) -> tuple[dict, object]:
    """One run from its spec as plain data, in whatever process or machine runs it; never raises
    for a failure of the run itself. The spec's plugins (the command's --plugin files and modules)
    are imported first: a fresh worker process or a Ray task knows only the built-in and
    entry-point methods."""
    spec = from_dict(spec_data)
    try:
        load_plugins(spec.plugins)
        return train_and_evaluate(spec, progress=progress)
    except Exception as err:  # noqa: BLE001 (any failure of one run is that run's record)
        return error_record(spec, f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=8)}"), None


def seed_groups(specs: Iterable[RunSpec], size: int) -> Iterator[list[RunSpec]]:
    """The specs as the tasks they run in: consecutive seeds of one variant (same spec but the seed)
    of a batchable method with a step budget, in groups of at most ``size`` trained as one model;
    every other spec alone (``size`` 1: every spec alone)."""
    group, key = [], None
    for spec in specs:
        spec_key = group_key(spec) if size > 1 else None
        if group and spec_key != key:
            yield group
            group = []
        if spec_key is None:
            yield [spec]
            continue
        group.append(spec)
        key = spec_key
        if len(group) == size:  # yielded at once: the next run's folder is not claimed while this group trains
            yield group
            group = []
    if group:
        yield group


def run_group(spec_data: list[dict], progress: bool = False) -> list[tuple[dict, object]]:
    """One task: a run (:func:`run_one`) or a group of seeds trained as one model; never raises
    for a failure of the runs themselves (each seed of a failed group gets an error record)."""
    if len(spec_data) == 1:
        return [run_one(spec_data[0], progress)]
    specs = [from_dict(d) for d in spec_data]
    try:
        load_plugins(specs[0].plugins)
        return train_group(specs, progress=progress)
    except Exception as err:  # noqa: BLE001
        message = (f"{type(err).__name__} while training seeds {', '.join(str(s.seed) for s in specs)} as one "
                   f"model: {err} (run them without --batch-seeds)\n{traceback.format_exc(limit=8)}")
        return [(error_record(spec, message), None) for spec in specs]


class Sequential:
    """Runs one after another in this process (step progress shown on a terminal)."""
    name = "sequential"

    def __init__(self, progress: bool = False, batch_seeds: int = 1):
        self.progress, self.batch_seeds = progress, batch_seeds

    def map(self, specs: Iterable[RunSpec]) -> Iterator[tuple[RunSpec, dict, object]]:
        for group in seed_groups(specs, self.batch_seeds):
            for spec, result in zip(group, run_group([s.to_dict() for s in group], self.progress)):
                yield (spec, *result)

    def close(self):
        pass


def _start_worker(parent: int, stop) -> None:
    """In each worker process: quiet warnings, and end the process as soon as the study that
    started it is gone (a parent killed with SIGKILL or SIGTERM cannot tell its workers) or asks its
    workers to stop (Ctrl-C: the run in flight is abandoned, not finished and thrown away)."""
    warnings.filterwarnings("ignore")
    # tqdm's default lock is a named semaphore that a worker ended by os._exit never unlinks (the
    # "leaked semaphore" warning after Ctrl-C); a worker's bars are its own, so a thread lock does
    tqdm.set_lock(threading.RLock())

    def watch():
        while os.getppid() == parent and not stop.is_set():
            time.sleep(WATCH_SECONDS)
        os._exit(1)
    threading.Thread(target=watch, name="bench-watch-parent", daemon=True).start()


WATCH_SECONDS = 0.5  # how often a worker looks for its parent


@contextlib.contextmanager
def ctrl_c_ignored_by_new_processes():
    """Processes started inside inherit SIGINT ignored (an ignored signal survives exec): a terminal's
    Ctrl-C, sent to the whole process group, then reaches only the study, which stops its workers,
    and never a worker still importing (which would print a traceback). A Ctrl-C in this window of a
    few milliseconds is lost. Only the main thread may change a handler: elsewhere this does nothing
    (ProcessPoolExecutor starts its workers in submit, called here from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        if previous is not None:  # None: a handler installed outside Python, which cannot be restored from here
            signal.signal(signal.SIGINT, previous)


class Processes:
    """N local worker processes (spawned: a fresh interpreter, no forked torch thread pools)."""
    name = "processes"

    def __init__(self, jobs: int, batch_seeds: int = 1):
        self.jobs, self.batch_seeds = jobs, batch_seeds
        self.context = multiprocessing.get_context("spawn")
        self.stop = self.context.Event()  # set: every worker ends at once

    def _pool(self, workers):
        return cf.ProcessPoolExecutor(workers, mp_context=self.context, initializer=_start_worker,
                                      initargs=(os.getpid(), self.stop))

    def map(self, specs):
        """Runs as they finish; at most 2 × jobs tasks submitted at a time, so a run's spec is taken
        (and its folder made) when a worker is about to be free, not all at the start."""
        groups, broken, futures = seed_groups(specs, self.batch_seeds), [], {}
        with self._pool(self.jobs) as pool:

            def submit_next() -> None:
                for group in groups:
                    try:
                        with ctrl_c_ignored_by_new_processes():  # a submit may start a worker
                            futures[pool.submit(run_group, [s.to_dict() for s in group])] = group
                        return
                    except cf.process.BrokenProcessPool:  # a worker died: the rest is retried alone below
                        broken.extend(group)
            try:
                for _ in range(2 * self.jobs):
                    submit_next()
                while futures:
                    done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
                    for future in done:
                        group = futures.pop(future)
                        submit_next()
                        try:
                            results = future.result()
                        except cf.process.BrokenProcessPool:
                            broken.extend(group)
                            continue
                        for spec, result in zip(group, results):
                            yield (spec, *result)
            except BaseException:  # Ctrl-C or a failed write: no run in flight is worth finishing
                self.stop.set()  # workers end within WATCH_SECONDS (one still starting: once it has started)
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        # A dead worker breaks the whole pool: which run killed it is unknown, so each run it
        # took down is retried alone; one that kills its worker again is recorded as failed.
        for spec in broken:
            with self._pool(1) as pool:
                try:
                    with ctrl_c_ignored_by_new_processes():
                        future = pool.submit(run_one, spec.to_dict())
                    yield (spec, *future.result())
                except cf.process.BrokenProcessPool:
                    yield spec, error_record(spec, "its worker process died (killed, or out of memory)"), None

    def close(self):
        """Workers still running (the study stopped early: Ctrl-C, a failed write) end now."""
        self.stop.set()


class Ray:
    """Each run one Ray task with num_cpus = its torch threads; tasks in flight capped, results
    collected with ray.wait as they finish, records returned through the object store."""
    name = "ray"

    def __init__(self, address: str | None, workers: int, threads: int, batch_seeds: int = 1):
        try:
            import ray
        except ImportError:
            raise BenchError("--executor ray needs Ray: pip install ray (from a checkout of bench: "
                             "pip install -e \".[ray]\")") from None
        self.ray, self.workers, self.threads, self.batch_seeds = ray, workers, threads, batch_seeds
        kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(num_cpus=workers * threads, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise BenchError(f"cannot start or reach Ray at {address or 'a new local instance'}: "
                             f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
        self.task = ray.remote(num_cpus=threads, max_retries=0)(run_group)

    def map(self, specs):
        ray = self.ray
        pending, owner = [], {}
        capacity = max(1, self.workers * 2)

        def collect(ready):
            for ref in ready:
                group = owner.pop(ref)
                try:
                    results = ray.get(ref)
                except (ray.exceptions.RayError, OSError) as err:
                    message = f"Ray task failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                    results = [(error_record(spec, message), None) for spec in group]
                for spec, result in zip(group, results):
                    yield (spec, *result)
        try:
            for group in seed_groups(specs, self.batch_seeds):
                if len(pending) >= capacity:
                    ready, pending = ray.wait(pending, num_returns=1)
                    yield from collect(ready)
                ref = self.task.remote([s.to_dict() for s in group])  # a --plugin file must exist on the worker
                owner[ref] = group
                pending.append(ref)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                yield from collect(ready)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    def close(self):
        self.ray.shutdown()


def make_executor(name: str, jobs: int, threads: int, address: str | None, progress: bool, batch_seeds: int = 1):
    if name == "ray":
        return Ray(address, jobs, threads, batch_seeds)
    if name == "processes":
        return Processes(jobs, batch_seeds)
    return Sequential(progress, batch_seeds)

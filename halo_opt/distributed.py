"""Run independent jobs serially, in local processes or on Ray — resumably.

The one owner of "run these jobs" for the Pareto sweep, the closed-loop study and the design-space
sweep. A *job* is a module-level function called with plain keyword arguments (paths, numbers,
lists, dicts: no model or problem objects cross a process boundary); it computes one or more
*points* and writes each into a :class:`Store` as it finishes (``<store>/<key>.json``, atomic),
skipping points already there. The caller then reads the points back from the store, in its own
order, so the result does not depend on where or in which order the jobs ran.

Engines (:func:`run_jobs`, ``engine``):

* ``None``: serial, in this process (jobs in order);
* ``"processes"``: a local process pool of ``workers`` processes;
* ``"local"``: a Ray instance started here with ``workers`` CPUs (stopped at the end);
  ``"auto"``: the running Ray cluster (``ray start --head`` on this node or ``RAY_ADDRESS``);
  any other string: a Ray address (``HOST:6379``, ``ray://HOST:10001``). An already
  initialised Ray (``ray.init`` by the caller) is used as it is.

Every Ray task takes one CPU and its process is single-threaded (:data:`THREAD_ENV`): a local
instance inherits the variables from the driver's environment while it starts (restored after;
cheaper than a runtime env, whose agent delays each worker's start), a cluster's workers get
them through the job's runtime env. A Ray worker process runs many jobs: jobs that load
something big from their folders keep it per process (the sweep's problem, the study's model
context), keyed by the folders' files and the inputs, so a worker loads it once. The timings of
the last run (Ray's start and shutdown, the jobs' span) are in :data:`LAST_RUN`.

On a cluster every node needs halo-opt installed and the artifact paths (cost folders,
calibration folders, the store) on a filesystem every node sees.

Progress: the driver watches the store; every point that appears gives one line with the
elapsed time since the run started and the count over all workers (a transient bar on a
terminal, plain lines in logs). A rerun over the same store resumes: jobs whose points are all
there are not submitted, partly done jobs skip their finished points. The store records the
run's ``spec``; another spec clears it first (a different sweep is a fresh start).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import UserError

SPEC = "_spec.json"
#: Environment of a Ray worker: jobs are single-threaded (one CPU each; torch threads are set by the job).
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: Timings of the last :func:`run_jobs` (``engine``, ``workers``, ``jobs``; ``start_s``: Ray's start, 0
#: if none; ``run_s``: from the first submitted job to the last finished; ``stop_s``: Ray's shutdown).
LAST_RUN: dict = {}
_LISTENERS: dict[str, Callable[[str], None]] = {}  # store dir -> callback (serial engine: points of this process)


class Store:
    """One JSON file per finished point in ``folder`` (``<key>.json``, written atomically)."""

    def __init__(self, folder: str | Path):
        self.dir = Path(folder)

    def path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith((".", "_")):
            raise ValueError(f"bad point key {key!r}")
        return self.dir / f"{key}.json"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, key: str):
        """The point's record, or None if it is not finished (or its file is torn)."""
        p = self.path(key)
        try:
            return json.loads(p.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, key: str, record) -> None:
        from .artifacts import write_json

        write_json(self.path(key), record)
        cb = _LISTENERS.get(str(self.dir.resolve()))
        if cb is not None:
            cb(key)

    def keys(self) -> set[str]:
        if not self.dir.is_dir():
            return set()
        return {p.stem for p in self.dir.glob("*.json") if not p.name.startswith(("_", "."))}

    def open(self, spec: dict) -> int:
        """Make the store hold points of ``spec``: a store of another spec is cleared. Returns
        the number of points kept."""
        s = self.dir / SPEC
        want = json.loads(json.dumps(spec, default=str))
        if self.dir.is_dir():
            try:
                have = json.loads(s.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                have = None
            if have != want:
                shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        from .artifacts import write_json

        if not s.is_file():
            write_json(s, want)
        return len(self.keys())


@dataclass
class Job:
    """``fn(**args)`` computes the points ``keys`` into the store (resuming inside if some are done)."""

    fn: Callable
    args: dict
    keys: list[str]
    label: str = ""


@dataclass
class Progress:
    description: str
    total: int
    on: bool = True

    def __post_init__(self):
        self.t0, self.seen, self.bar = time.perf_counter(), set(), None

    def start(self, kept: set[str]) -> None:
        self.seen |= kept
        if self.on and sys.stderr.isatty():
            from rich.progress import Progress as Bar

            self.bar = Bar(transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.description, total=self.total, completed=len(self.seen))
        if self.on and kept:
            self._line(f"{len(kept)} point(s) already finished (resumed)")

    def _line(self, msg: str) -> None:
        line = f"[{time.perf_counter() - self.t0:7.1f} s] {self.description} {msg}"
        if self.bar is not None:
            self.bar.console.print(line, highlight=False)
        else:
            print(line, file=sys.stderr, flush=True)

    def point(self, key: str, store: Store) -> None:
        if key in self.seen:
            return
        self.seen.add(key)
        if not self.on:
            return
        rec = store.get(key)
        took = rec.get("wall_s") if isinstance(rec, dict) else None
        self._line(f"{len(self.seen)}/{self.total}: {key}" + (f" ({took:.1f} s)" if isinstance(took, (int, float)) else ""))
        if self.bar is not None:
            self.bar.update(self.task, completed=len(self.seen))

    def poll(self, store: Store, keys: set[str]) -> None:
        for k in sorted((store.keys() & keys) - self.seen):
            self.point(k, store)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def probe(store: str, key: str) -> None:
    """A job recording the process it ran in (``pid``, the :data:`THREAD_ENV` variables, torch's
    threads): what an engine gives its jobs."""
    import torch

    Store(store).put(key, {"pid": os.getpid(), **{k: os.environ.get(k) for k in THREAD_ENV},
                           "torch_threads": torch.get_num_threads(), "wall_s": 0.0})


def check_engine(engine: str | None, workers: int = 1) -> None:
    """Fail fast (one line) if ``workers`` < 1, or ``engine`` names Ray and Ray is not installed."""
    if int(workers) < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    if engine in (None, "processes"):
        return
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UserError(f"--ray {engine} needs Ray; install it with pip install \"halo-opt[distributed]\"") from None


def run_jobs(jobs: list[Job], store: Store, engine: str | None = None, workers: int = 1, progress: bool = True,
             description: str = "jobs") -> None:
    """Run ``jobs`` (see the module doc) until every point of every job is in ``store``.
    Jobs whose points are all finished are skipped."""
    check_engine(engine, workers)
    keys = {k for j in jobs for k in j.keys}
    have = store.keys() & keys
    todo = [j for j in jobs if not set(j.keys) <= have]
    prog = Progress(description, len(keys), progress)
    prog.start(have)
    LAST_RUN.clear()
    LAST_RUN.update(engine=engine or "serial", workers=workers, jobs=len(todo), start_s=0.0, stop_s=0.0)
    t0 = time.perf_counter()
    try:
        if not todo:  # all resumed: nothing to start
            pass
        elif engine is None or (engine == "processes" and workers <= 1):
            _serial(todo, store, prog)
        elif engine == "processes":
            _processes(todo, store, prog, workers)
        else:
            _ray(todo, store, prog, engine, workers)
        prog.poll(store, keys)
    finally:
        prog.stop()
        LAST_RUN.setdefault("run_s", time.perf_counter() - t0)
    missing = keys - store.keys()
    if missing:
        raise RuntimeError(f"jobs finished without writing points {sorted(missing)[:5]}")


def _serial(jobs, store, prog):
    k = str(store.dir.resolve())
    _LISTENERS[k] = lambda key: prog.point(key, store)
    try:
        for j in jobs:
            j.fn(**j.args)
    finally:
        _LISTENERS.pop(k, None)


def _processes(jobs, store, prog, workers):
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    keys = {k for j in jobs for k in j.keys}
    with ProcessPoolExecutor(max_workers=int(workers)) as ex:
        pending = {ex.submit(j.fn, **j.args) for j in jobs}
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for f in done:
                f.result()
            prog.poll(store, keys)


def _ray(jobs, store, prog, engine, workers):
    import ray

    t0 = time.perf_counter()
    started = False
    if not ray.is_initialized():
        if engine == "local":
            # the raylet started here, and so every worker it starts, inherits the driver's environment:
            # cheaper than a runtime env (whose agent sits on each worker's start; +0.9 s to the first task)
            with _environ(THREAD_ENV):
                ray.init(num_cpus=max(1, int(workers)), include_dashboard=False, logging_level="warning")
        else:  # a running cluster: its workers get the variables through the job's runtime env
            ray.init(address=engine, runtime_env={"env_vars": dict(THREAD_ENV)}, logging_level="warning")
        started = True
    t1 = time.perf_counter()
    LAST_RUN["start_s"] = t1 - t0 if started else 0.0
    keys = {k for j in jobs for k in j.keys}
    try:
        remotes = {}
        refs = []
        for j in jobs:
            f = remotes.setdefault(j.fn, ray.remote(num_cpus=1, max_retries=0)(j.fn))
            refs.append(f.remote(**j.args))
        pending = refs
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            for r in done:
                try:
                    ray.get(r)
                except Exception as e:  # a task's UserError comes back wrapped: keep its one line
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, UserError):
                        raise UserError(str(cause)) from None
                    raise
            prog.poll(store, keys)
    finally:
        t2 = time.perf_counter()
        if started:
            if engine == "local":
                _stop_monitor()
            ray.shutdown()
        LAST_RUN.update(run_s=t2 - t1, stop_s=time.perf_counter() - t2)


def _stop_monitor() -> None:
    """Kill the autoscaler monitor of the local Ray instance started here (a fixed-size instance
    has no use for it): on ``ray.shutdown`` it would take the whole 1 s grace period before Ray
    kills it anyway (shutdown 1.4 s -> 0.4 s). Private Ray API: does nothing if it has changed."""
    try:
        from ray._private import ray_constants, worker

        node = worker._global_node
        if node is not None and node.head:
            node._kill_process_type(ray_constants.PROCESS_TYPE_MONITOR, check_alive=False, allow_graceful=False, wait=True)
    except Exception:  # noqa: BLE001 - an optimisation only
        pass


@contextmanager
def _environ(env: dict[str, str]):
    """``os.environ`` updated by ``env`` inside the block, restored after."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

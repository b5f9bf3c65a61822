"""Process groups on one host for the distributed stages (calibration, GPTQ execution).

One process per rank, joined by ``torch.distributed``: NCCL with one GPU per rank when the
device is ``cuda`` (rank ``r`` uses ``cuda:r``), gloo on CPU. Two ways in:

* :func:`run_world` (what ``--world N`` does): this process is rank 0; it spawns ``N-1``
  workers (``multiprocessing`` *spawn*, arguments are plain JSON-able values and an importable
  function, never model objects), waits until every worker has loaded its inputs (a worker's
  one-line :class:`UserError` is re-raised here), then joins the group on a free localhost port;
* :func:`env_shard` (``torchrun --nproc-per-node N -m halo_opt ...``): the group is given by
  torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR/PORT``).

A failing worker takes the others down (the parent kills the rest and reports the first error),
so no rank waits in a collective for a dead peer.
"""

from __future__ import annotations

import importlib
import os
import queue
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

import torch

from .errors import UserError

#: collective timeout: a rank may wait this long for another (e.g. rank 0 writing the index)
TIMEOUT = timedelta(seconds=float(os.environ.get("HALO_OPT_DIST_TIMEOUT_S", 6 * 3600)))


@dataclass(frozen=True)
class Shard:
    """This process's place in the group: ``rank`` of ``world``, its device and backend."""

    rank: int
    world: int
    device: str
    backend: str

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if self.backend == "nccl":
                dist.barrier(device_ids=[torch.device(self.device).index or 0])
            else:
                dist.barrier()

    def describe(self) -> dict:
        return {"world": self.world, "backend": self.backend}


def rank_device(device: str, rank: int, world: int) -> tuple[str, str]:
    """``(device of this rank, backend)``: ``cuda`` -> ``cuda:rank`` with NCCL, else CPU with gloo."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device} requested but CUDA is not available; use --device cpu")
    if world == 1:  # one process: the device as given (cuda:1, ...)
        return device, "none"
    if device.startswith("cuda"):
        n = torch.cuda.device_count()
        if world > n:
            raise UserError(f"--world {world} needs {world} GPUs (one per process) but this host has {n}; "
                            f"use --world {n} or --device cpu")
        return f"cuda:{rank}", "nccl"
    if device != "cpu":
        raise UserError(f"--world {world} runs on cpu or cuda, not {device!r}; use --device cpu or cuda")
    return "cpu", "gloo"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _init(shard: Shard, port: int | None) -> None:
    import torch.distributed as dist

    if shard.backend == "nccl":
        torch.cuda.set_device(torch.device(shard.device))
    init = f"tcp://127.0.0.1:{port}" if port is not None else "env://"
    dist.init_process_group(shard.backend, init_method=init, rank=shard.rank, world_size=shard.world, timeout=TIMEOUT)


def _close() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def env_shard(device: str = "cpu") -> Shard | None:
    """The shard torchrun describes in the environment (joined now), or None outside torchrun / world 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    if rank != local or int(os.environ.get("LOCAL_WORLD_SIZE", world)) != world:
        raise UserError("halo-opt runs on the GPUs of one host; start torchrun with --nnodes 1")
    dev, backend = rank_device(device, local, world)
    shard = Shard(rank, world, dev, backend)
    if not dist.is_initialized():
        _init(shard, None)
    return shard


def _resolve(ref: str) -> Callable:
    mod, _, name = ref.partition(":")
    return getattr(importlib.import_module(mod), name)


def _ref(fn: Callable) -> str:
    ref = f"{fn.__module__}:{fn.__qualname__}"
    if "<" in ref or fn.__module__ == "__main__":
        raise UserError(f"{ref} cannot be started in a worker process; pass a function defined at the top level of a module")
    return ref


def _worker(rank: int, world: int, device: str, port: int, prepare: str, run: str, args: dict, q, threads: int | None) -> None:
    try:
        if threads:
            torch.set_num_threads(threads)
        dev, backend = rank_device(device, rank, world)
        shard = Shard(rank, world, dev, backend)
        state = _resolve(prepare)(shard, args)
        q.put(("ready", rank, ""))
        _init(shard, port)
        try:
            _resolve(run)(shard, state)
        finally:
            _close()
        q.put(("done", rank, ""))
    except UserError as e:
        q.put(("user", rank, str(e)))
    except BaseException:  # noqa: BLE001  (reported to the parent, which raises)
        q.put(("error", rank, traceback.format_exc()))


def run_world(world: int, device: str, prepare: Callable[[Shard, dict], Any], run: Callable[[Shard, Any], Any],
              args: dict, threads: int | None = None, main: Callable[[Shard, Any], Any] | None = None) -> Any:
    """Run ``run(shard, prepare(shard, args))`` on ``world`` ranks of this host; return rank 0's result.

    ``prepare`` and ``run`` must be top-level functions (workers import them); ``args`` plain
    values. This process is rank 0 and runs ``main`` (a closure is fine) instead of ``run`` if
    given. ``threads``: torch CPU threads per worker, default this process's count (CPU kernels'
    reduction order can depend on it: equal counts keep results bitwise those of one process).
    """
    if world < 1:
        raise UserError(f"--world must be >= 1, got {world}")
    rank_device(device, 0, world)  # fail fast on a bad device / too few GPUs
    main = main or run
    if world == 1:
        shard = Shard(0, 1, device, "none")
        return main(shard, prepare(shard, args))
    threads = threads or torch.get_num_threads()
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, device, port, _ref(prepare), _ref(run), args, q, threads), daemon=True)
             for r in range(1, world)]
    for p in procs:
        p.start()
    errors: list[tuple[str, int, str]] = []
    status: dict[int, str] = {}

    def collect(want: str, block_s: float) -> None:
        try:
            while True:
                kind, r, msg = q.get(timeout=block_s)
                status[r] = kind
                if kind in ("user", "error"):
                    errors.append((kind, r, msg))
                block_s = 0.01
        except queue.Empty:
            pass
        for r, p in enumerate(procs, 1):
            if not p.is_alive() and status.get(r) not in (want, "done", "user", "error") and not errors:
                time.sleep(0.2)  # its last message may still be in the pipe
                if status.get(r) not in (want, "done", "user", "error"):
                    errors.append(("error", r, f"worker {r} exited with code {p.exitcode} without a report"))

    def stop_all() -> None:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(5)

    def raise_first() -> None:
        kind, r, msg = errors[0]
        if kind == "user":
            raise UserError(msg)
        raise RuntimeError(f"rank {r} failed:\n{msg}")

    try:
        dev, backend = rank_device(device, 0, world)
        shard = Shard(0, world, dev, backend)
        state = prepare(shard, args)
        while not errors and any(status.get(r) != "ready" for r in range(1, world)):
            collect("ready", 0.5)
        if errors:
            raise_first()
        stop = threading.Event()

        def watch() -> None:  # a dead worker must not leave rank 0 waiting in a collective
            while not stop.is_set() and not errors:
                collect("done", 0.5)
            if errors:
                stop_all()

        w = threading.Thread(target=watch, daemon=True)
        _init(shard, port)
        w.start()
        try:
            result = main(shard, state)
        except UserError:
            raise
        except Exception:
            stop.set()
            w.join()
            t_end = time.perf_counter() + 10  # a peer's failure may be why this rank failed: wait for its report
            while not errors and time.perf_counter() < t_end and any(p.is_alive() for p in procs):
                collect("done", 0.5)
            if errors:
                raise_first()
            raise
        finally:
            try:
                _close()
            finally:
                stop.set()
                w.join()
        while not errors and any(status.get(r) != "done" for r in range(1, world)):
            collect("done", 0.5)
        if errors:
            raise_first()
        return result
    finally:
        stop_all()

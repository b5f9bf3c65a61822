"""Ray's fixed cost on this machine: ``ray.init`` -> first trivial task returned -> shutdown.

Each measurement runs in a fresh process (``--one VARIANT``); the driver runs ``--reps`` rounds
of the variants, interleaved, and prints one JSON line per measurement, then the medians.

Variants (``+`` combines options):

* ``rtenv``: the thread variables as a job-level runtime env (what ``run_jobs`` did before);
* ``driverenv``: set in the driver's environment around ``ray.init`` (the raylet and every
  worker inherit them; what ``run_jobs`` does now for a local instance);
* ``none``: not set (Ray sets ``OMP_NUM_THREADS`` to a task's CPUs itself when unset, not MKL's);
* ``killmon``: the autoscaler monitor killed before ``ray.shutdown`` (``run_jobs`` now);
* ``nolog`` (``log_to_driver=False``), ``nocfg`` (``configure_logging=False``), ``nousage``
  (``RAY_USAGE_STATS_ENABLED=0``), ``nometrics`` (``enable_metrics_collection: false``),
  ``noprestart`` (``prestart_worker_first_driver: false``), ``smallobj`` (128 MiB object store),
  ``nogpu`` (``num_gpus=0``).

    python benchmarks/bench_ray_start.py --reps 5 --workers 1,2 --variants rtenv,driverenv+killmon
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def one(variant: str, workers: int) -> dict:
    t_imp = time.perf_counter()
    import ray

    t0 = time.perf_counter()
    opts = set(variant.split("+"))
    kw: dict = dict(num_cpus=workers, include_dashboard=False, logging_level="warning")
    saved = None
    if "rtenv" in opts:
        kw["runtime_env"] = {"env_vars": ENV}
    if "driverenv" in opts:
        saved = {k: os.environ.get(k) for k in ENV}
        os.environ.update(ENV)
    if "nolog" in opts:
        kw["log_to_driver"] = False
    if "nocfg" in opts:
        kw["configure_logging"] = False
    if "nousage" in opts:
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if "nometrics" in opts:
        kw.setdefault("_system_config", {})["enable_metrics_collection"] = False
    if "noprestart" in opts:
        kw.setdefault("_system_config", {})["prestart_worker_first_driver"] = False
    if "smallobj" in opts:
        kw["object_store_memory"] = 128 * 2**20
    if "nogpu" in opts:
        kw["num_gpus"] = 0
    ray.init(**kw)
    t1 = time.perf_counter()
    for k, v in (saved or {}).items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v

    @ray.remote(num_cpus=1)
    def info(sleep: float = 0.0):
        import os
        import time

        time.sleep(sleep)
        return os.getpid(), os.environ.get("OMP_NUM_THREADS"), os.environ.get("MKL_NUM_THREADS")

    first = ray.get(info.remote())
    t2 = time.perf_counter()
    every = ray.get([info.remote(0.2) for _ in range(workers)])  # one 0.2 s task per CPU at once
    t3 = time.perf_counter()
    if "killmon" in opts:
        from halo_opt.distributed import _stop_monitor

        _stop_monitor()
    ray.shutdown()
    t4 = time.perf_counter()
    return {"variant": variant, "workers": workers, "import_s": t0 - t_imp, "init_s": t1 - t0, "first_task_s": t2 - t1,
            "init_to_first_s": t2 - t0, "all_workers_s": t3 - t2, "shutdown_s": t4 - t3, "env": list(first[1:]),
            "worker_pids": len({w[0] for w in every}), "load1": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--variants", default="rtenv,driverenv+killmon")
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, int(a.workers))), flush=True)
        return
    rows = []
    for _ in range(a.reps):
        for w in a.workers.split(","):
            for v in a.variants.split(","):
                out = subprocess.run([sys.executable, __file__, "--one", v, "--workers", w], capture_output=True, text=True)
                line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
                if not line.startswith("{"):
                    print(out.stderr[-2000:], file=sys.stderr)
                    continue
                print(line, flush=True)
                rows.append(json.loads(line))
    for w in a.workers.split(","):
        for v in a.variants.split(","):
            rs = [r for r in rows if r["variant"] == v and r["workers"] == int(w)]
            if rs:
                med = {k: round(statistics.median(r[k] for r in rs), 2)
                       for k in ("init_s", "first_task_s", "init_to_first_s", "all_workers_s", "shutdown_s")}
                print(json.dumps({"median_of": len(rs), "variant": v, "workers": int(w), **med,
                                  "worker_pids": [r["worker_pids"] for r in rs],
                                  "load1": [round(min(r["load1"] for r in rs), 2), round(max(r["load1"] for r in rs), 2)]}))


if __name__ == "__main__":
    main()

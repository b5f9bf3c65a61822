"""Scale: a LLaMA-shaped random model end to end with bounded memory, and Ray scaling of sweeps.

``e2e``: a LLaMA-2-7B- (or 13B-, or tiny-) shaped ``LlamaForCausalLM`` with random fp16 weights,
built in memory (no checkpoint on disk), then calibrate (``layout="blocks"``: float32 diagonal
blocks of width 128 + diag H + (W H Wᵀ)_rr, float64 sums of one layer group on the GPU) → cost
tables (tile 128, the shipped built-in array profile's codebooks) → plan (lagrange, the
performance scenario at ε = 1 %) → execute: RTN on every layer per plan, and GPTQ per plan on one
block (full H recomputed from the calibration tokens, :func:`recompute_hessians`) side by side
with a plain GPTQ loop (uniform 4-bit, per-row min-max scale) on the same layers and the same
H. Per stage: wall time, peak GPU memory (``max_memory_allocated``), peak host RSS (sampled
every 20 ms) and disk, each printed as it is known. ``--stages calib,costs`` stops after the cost
tables (13B); ``--stages costs`` reuses the finished calibration in ``--out`` (the model is rebuilt
from the same seed; the cost stage checks its SHA-256 against the calibration's) and measures the
cost tables alone.

``sweep``: an energy-goal Pareto sweep (lagrange) of the synthetic ``llama2-7b`` cost folder
(395k tiles), ``--points`` budgets in ``--chunks`` warm-started chains, serially (``--ray serial``)
or on a local Ray instance with ``--workers`` CPUs (one single-threaded worker each).
``study``: the MiniLM closed-loop study (:func:`halo_opt.closed_loop.tune_study`) likewise: by
default 8 goals (performance, energy, balanced and the balanced goal at five latency weights,
written to ``<out>/goals``) x 2 solvers (lagrange, greedy) = 16 points, each a 3-step bisection
(5 probes) on 8 held-out sequences; its cost tables keep their chosen scales (``save_scales``), so RTN
searches none (``--search-scales``: tables without them, every worker searching its own, as before
2026-12-07). One invocation = one engine and worker count: it prints one
JSON record (wall time; Ray's start, the jobs' span and Ray's shutdown; the sum of the points'
own times; cores and load before/after). The data (the sweep's synthetic cost folder, the study's
MiniLM calibration and cost tables) are built once per ``--out``, outside the timed part
(``prep_s``); a run's store of points is cleared first, so every run measures from scratch.
Set ``OMP_NUM_THREADS=1`` for a serial run (Ray workers get it anyway).

    python benchmarks/bench_scale.py e2e --shape 7b --device cuda --out runs/scale7b
    python benchmarks/bench_scale.py e2e --shape 13b --device cuda --stages calib,costs --out runs/scale13b
    OMP_NUM_THREADS=1 python benchmarks/bench_scale.py sweep --points 40 --chunks 40 --workers 8 --out runs/sweep  # scale.md §4.2
    OMP_NUM_THREADS=1 python benchmarks/bench_scale.py study --workers 8 --out runs/study
    OMP_NUM_THREADS=1 python benchmarks/bench_scale.py study --workers 8 --out runs/study --iters 7 --heldout 32 \
        --weights 0.0625,0.125,0.1875,0.25,0.375,0.5,0.75,1.5,2,3,4,6,8   # 32 points: scale.md §4.2
    OMP_NUM_THREADS=1 python benchmarks/bench_scale.py sweep --points 8 --chunks 2 --ray serial --out /tmp/ovh
    python benchmarks/bench_scale.py e2e --shape tiny --out /tmp/t      # CPU smoke of the same code
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import threading
import time
from pathlib import Path

import torch

SHAPES = {  # hidden, intermediate, layers, heads, vocab
    "tiny": (64, 172, 2, 4, 1000),
    "7b": (4096, 11008, 32, 32, 32000),
    "13b": (5120, 13824, 40, 40, 32000),
}
INCLUDE = r"\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def du(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.exists() else 0


class Stage:
    """Wall time, peak GPU memory and peak host RSS of a ``with`` block."""

    rows: list = []

    def __init__(self, name: str, device: str):
        self.name, self.cuda = name, device.startswith("cuda")

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.peak, self.stop = rss(), False
        self.th = threading.Thread(target=self._sample, daemon=True)
        self.th.start()
        self.t0 = time.perf_counter()
        return self

    def _sample(self):
        while not self.stop:
            self.peak = max(self.peak, rss())
            time.sleep(0.02)

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - self.t0
        self.stop = True
        self.th.join()
        row = {"stage": self.name, "wall_s": round(wall, 2), "host_peak_gb": round(self.peak / 2**30, 2),
               "gpu_peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if self.cuda else None}
        Stage.rows.append(row)
        print(json.dumps(row), flush=True)
        return False


def build_model(shape: str, device: str):
    import transformers as tf

    h, inter, n, heads, vocab = SHAPES[shape]
    cfg = tf.LlamaConfig(vocab_size=vocab, hidden_size=h, intermediate_size=inter, num_hidden_layers=n,
                         num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=4096)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(0)
        model = tf.LlamaForCausalLM._from_config(cfg, torch_dtype=dtype)
    return model.eval()


def tokens(n: int, seq_len: int, vocab: int):
    from halo_opt.calibration.text import TokenBatch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (n, seq_len), generator=g)
    tb = TokenBatch(ids, torch.ones_like(ids), {"source": "random", "sequences": n, "seq_len": seq_len, "seed": 0})
    return tb


def plain_gptq(W: torch.Tensor, H: torch.Tensor, bits: int = 4, blocksize: int = 128) -> torch.Tensor:
    """The reference GPTQ loop (Frantar et al., gptq.py): uniform ``bits`` grid, per-row min-max
    scale, lazy batch updates; ``H`` damped. Returns the dequantized weights."""
    W = W.to(torch.float32).clone()
    H = H.to(W.device, torch.float32)
    N, K = W.shape
    qmax = 2 ** (bits - 1) - 1
    s = (W.abs().amax(1) / qmax).clamp_min(1e-12)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros_like(W)
    for i1 in range(0, K, blocksize):
        i2 = min(i1 + blocksize, K)
        W1, Q1, E1, U1 = W[:, i1:i2].clone(), torch.zeros(N, i2 - i1, device=W.device), torch.zeros(N, i2 - i1, device=W.device), Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            w = W1[:, i]
            q = torch.clamp(torch.round(w / s), -qmax - 1, qmax) * s
            Q1[:, i] = q
            err = (w - q) / U1[i, i]
            W1[:, i:] -= err[:, None] * U1[i, i:][None, :]
            E1[:, i] = err
        Q[:, i1:i2] = Q1
        W[:, i2:] -= E1 @ Hinv[i1:i2, i2:]
    return Q


def e2e(a) -> dict:
    from halo_opt.calibration import calibrate, from_module
    from halo_opt.calibration.hessian import block_diagonal_hessian, recompute_hessians
    from halo_opt.costs import build_costs
    from halo_opt.execute.apply import ScaleSearch, TileGrid, add_damping, tile_codes
    from halo_opt.execute.gptq import quantize_gptq
    from halo_opt.execute.inputs import load_costs
    from halo_opt.execute.run import quantize_layers
    from halo_opt.paths import data_dir, formulations_dir
    from halo_opt.planfile import load_plan
    from halo_opt.solve.build import build_problem
    from halo_opt.solve.planner import plan
    from halo_opt.solve.scenario import load_scenario

    out, dev = a.out, a.device
    stages = a.stages.split(",")
    if "calib" in stages:
        shutil.rmtree(out, ignore_errors=True)
    elif (out / "calib" / "meta.json").is_file():   # reuse a finished calibration of this --out (same model: seed 0)
        shutil.rmtree(out / "costs", ignore_errors=True)
        (out / "plan.json").unlink(missing_ok=True)
    else:
        raise SystemExit(f"{out / 'calib'} holds no finished calibration to reuse: include 'calib' in --stages")
    out.mkdir(parents=True, exist_ok=True)
    res = {"shape": a.shape, "device": dev, "gpu": torch.cuda.get_device_name() if dev.startswith("cuda") else None,
           "host": platform.node(), "cores": os.cpu_count(), "torch": torch.__version__, "tokens": a.sequences * a.seq_len}
    with Stage("build model (random fp16, in memory)", dev):
        model = build_model(a.shape, dev)
        fwd = lambda m, b: m(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False).logits  # noqa: E731
        ad = from_module(model, fwd, name=f"llama-{a.shape}-random", include=INCLUDE)
        tb = tokens(a.sequences, a.seq_len, SHAPES[a.shape][4])
        ad.sha256()
    res["layers"] = len(ad.linears)
    res["params_planned"] = sum(l.in_features * l.out_features for l in ad.linears)
    kmax = max(l.in_features for l in ad.linears)
    res["one_layer_full_H_gb"] = 8 * kmax ** 2 / 2**30
    res["all_full_H_gb"] = sum(8 * l.in_features ** 2 for l in ad.linears) / 2**30
    if "calib" in stages:
        with Stage("calibrate (blocks, float32, width 128)", dev):
            calibrate(ad, tb, out / "calib", device=dev, batch_size=a.batch, layout="blocks", block=128, fisher=False,
                      max_hessian_bytes=max(int(a.group_gb * 2**30), 8 * kmax ** 2), progress=False)
    res["disk_calib_gb"] = du(out / "calib") / 2**30
    print(json.dumps({"disk_calib_gb": res["disk_calib_gb"]}), flush=True)
    prof = data_dir() / "profiles" / "int8_signed_array_builtin"
    with Stage("cost tables (tile 128, 19 codebooks)", dev):
        build_costs(out / "calib", prof, out / "costs", "tpu_like", (128, 128), model=ad, device=dev, progress=False)
    res["disk_costs_gb"] = du(out / "costs") / 2**30
    print(json.dumps({"disk_costs_gb": res["disk_costs_gb"]}), flush=True)
    if "plan" in stages:
        with Stage("plan (lagrange, performance, eps 1%)", "cpu"):
            sc = load_scenario(formulations_dir() / "performance.toml").with_overrides(budget=0.01)
            p = build_problem(out / "costs", sc)
            pl = plan(p, "lagrange", costs=out / "costs", scenario=sc.to_dict(), time_limit=60)
            pl.save(out / "plan.json")
        res["plan"] = {"tiles": p.n_tiles, "status": pl.result.status, "wall_s": pl.result.wall_s,
                       "codebooks_used": sorted(set(pl.to_dict()["tile_codebook"]))}
    if "execute" in stages:
        c = load_costs(out / "costs")
        pd_ = load_plan(out / "plan.json").to_dict()
        weights = {l.name: l.weight() for l in ad.linears}
        with Stage("execute RTN per plan, every layer", dev):
            ex = quantize_layers(weights, lambda n: block_diagonal_hessian(out / "calib", n), c, pd_["tile_codebook"],
                                 pd_["codebooks"], "rtn", dev)
        res["rtn_layers"] = len(ex.layers)
        del ex
        block = [l.name for l in ad.linears][:7]
        with Stage("recompute full H of block 0 (7 layers)", dev):
            Hs = recompute_hessians(ad, tb, block, dev, a.batch)
        codes, search = tile_codes(pd_["codebooks"], dev), ScaleSearch.from_meta(c.meta)
        Hd = {n: add_damping(Hs[n].to(dev), c.damp(n)) for n in block}
        with Stage("GPTQ per plan, block 0", dev):
            for n in block:
                W = weights[n].to(dev)
                quantize_gptq(n, W, Hd[n], TileGrid.from_tiles(n, c.layer_tiles(n), tuple(W.shape)), pd_["tile_codebook"],
                              codes, scales=search)
        with Stage("plain GPTQ loop (uniform INT4), block 0", dev):
            for n in block:
                plain_gptq(weights[n].to(dev), Hd[n])
    res["disk_total_gb"] = du(out) / 2**30
    res["stages"] = Stage.rows
    return res


def _env() -> dict:
    try:
        import ray

        ray_version = ray.__version__
    except ImportError:
        ray_version = None
    return {"cores": os.cpu_count(), "host": platform.node(), "python": platform.python_version(), "torch": torch.__version__,
            "ray": ray_version, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}


def _engine(a) -> str:
    return a.ray or ("processes" if a.workers > 1 else "serial")


def _ray_times() -> dict:
    """Ray's start and shutdown and the jobs' span, from the run just finished (0 serially)."""
    from halo_opt import distributed

    LAST_RUN = getattr(distributed, "LAST_RUN", {})  # (none before these timings were kept)
    return {"ray_start_s": LAST_RUN.get("start_s"), "jobs_s": LAST_RUN.get("run_s"), "ray_stop_s": LAST_RUN.get("stop_s"),
            "jobs": LAST_RUN.get("jobs")}


def sweep(a) -> dict:
    """The Pareto sweep timed as :func:`halo_opt.solve.pareto.sweep` runs it: first the default
    budgets (``budgets_s``: a lagrange solve and the error range, in the driver), then the chains
    (``sweep_s``: Ray's start, the chains, Ray's shutdown); ``wall_s`` is both. Not timed
    (``prep_s``): the synthetic cost folder (written once per ``--out``) and the driver's problem."""
    from halo_opt.paths import formulations_dir
    from halo_opt.solve.build import build_problem
    from halo_opt.solve.pareto import default_budgets
    from halo_opt.solve.pareto import sweep as run_sweep
    from halo_opt.solve.scenario import load_scenario
    from halo_opt.solve.synthetic import write_costs

    costs, store = a.out / "costs", a.out / f"points-{a.ray or 'serial'}-{a.workers}"
    shutil.rmtree(store, ignore_errors=True)  # measure from scratch (a kept store would resume)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    if not (costs / "meta.json").is_file():
        write_costs(costs, a.model, n_codebooks=6, n_levels=5, seed=0)
    sc = load_scenario(formulations_dir() / f"{a.goal}.toml")
    p = build_problem(costs, sc)
    prep = time.perf_counter() - t0
    t0 = time.perf_counter()
    values = default_budgets(p, a.points, 60)  # what run_sweep computes first when not given values
    t1 = time.perf_counter()
    df, _ = run_sweep(p, a.solvers.split(","), values=values, time_limit=60, workers=a.workers, costs=costs,
                      scenario=sc.to_dict(), chunks=a.chunks, ray=a.ray, store=store, progress=True)
    t2 = time.perf_counter()
    return {"what": "pareto sweep", "model": a.model, "goal": a.goal, "tiles": p.n_tiles, "points": len(df), "solvers": a.solvers,
            "chunks": a.chunks, "engine": _engine(a), "workers": a.workers, "prep_s": prep, "budgets_s": t1 - t0,
            "sweep_s": t2 - t1, "wall_s": t2 - t0, **_ray_times(), "sum_point_wall_s": float(df["wall_s"].sum()),
            "max_point_wall_s": float(df["wall_s"].max()), "objective_sum": float(df["objective"].sum()),
            "load_before": load0, "load": os.getloadavg(), **_env()}


def study_goals(names: str, weights: str, folder: Path) -> list[str]:
    """The shipped goals ``names``, then the balanced goal with each latency weight of ``weights``
    (energy weight 1), written as scenario files ``balanced_lat<w>.toml`` in ``folder``."""
    from halo_opt.paths import formulations_dir

    goals = [g for g in names.split(",") if g]
    src = (formulations_dir() / "balanced.toml").read_text()
    old = "weights = { latency = 1.0, energy = 1.0 }"
    assert old in src and 'name = "balanced"' in src, "formulations/balanced.toml changed: update study_goals"
    for w in filter(None, weights.split(",")):
        name = f"balanced_lat{w}".replace(".", "p")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.toml").write_text(src.replace('name = "balanced"', f'name = "{name}"')
                                             .replace(old, f"weights = {{ latency = {float(w)!r}, energy = 1.0 }}"))
        goals.append(str(folder / f"{name}.toml"))
    return goals


def study(a) -> dict:
    """The closed-loop study (``wall_s``: Ray's start, the points, Ray's shutdown). Not timed
    (``prep_s``): MiniLM's calibration and cost tables (built once per ``--out``)."""
    from halo_opt.calibration import calibrate, calibration_batch, load_model
    from halo_opt.closed_loop import tune_study
    from halo_opt.costs import build_costs
    from halo_opt.paths import data_dir

    tag = "search" if a.search_scales else "saved"
    calib, costs, store = a.out / "calib", a.out / f"costs-{tag}", a.out / f"points-{a.ray or 'serial'}-{a.workers}-{tag}"
    shutil.rmtree(store, ignore_errors=True)  # measure from scratch (a kept store would resume)
    prof = data_dir() / "profiles" / "int8_signed_array_builtin"
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    if not (costs / "meta.json").is_file():
        ad = load_model("minilm")
        if not (calib / "meta.json").is_file():
            calibrate(ad, calibration_batch(ad.tokenizer, None, 64, 128, 0, max_length=ad.max_length), calib, device=a.device,
                      fisher=False, progress=False)
        build_costs(calib, prof, costs, "tpu_like", (64, 64), model=ad, device=a.device, progress=False,
                    save_scales=not a.search_scales)
    prep = time.perf_counter() - t0
    goals = study_goals(a.goals, a.weights, a.out / "goals")
    t0 = time.perf_counter()
    recs = tune_study(costs, calib, "minilm", goals, a.solvers.split(","), a.target, store,
                      0.0, a.budget_max, a.iters, 20, heldout=a.heldout, seq_len=128, profile=str(prof), ray=a.ray, workers=a.workers)
    wall = time.perf_counter() - t0
    return {"what": "MiniLM closed-loop study", "points": len(recs), "goals": [Path(g).stem for g in goals], "solvers": a.solvers,
            "target": a.target,
            "budget_max": a.budget_max, "iters": a.iters, "heldout": a.heldout, "engine": _engine(a), "workers": a.workers,
            "rtn_scales": "searched per process" if a.search_scales else "the cost stage's (scales.safetensors)",
            "context_s": [r.get("context_s") for r in recs], "prep_s": prep, "wall_s": wall, **_ray_times(), "sum_point_wall_s": sum(r["wall_s"] for r in recs),
            "max_point_wall_s": max(r["wall_s"] for r in recs), "budgets": [r.get("budget") for r in recs],
            "notes": sum("note" in r for r in recs), "load_before": load0, "load": os.getloadavg(), **_env()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["e2e", "sweep", "study"])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--shape", default="tiny", choices=list(SHAPES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--stages", default="calib,costs,plan,execute")
    ap.add_argument("--sequences", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--group-gb", type=float, default=2.0, help="float64 Hessian sums held per calibration pass (>= one layer)")
    ap.add_argument("--model", default="llama2-7b", help="sweep: synthetic cost model")
    ap.add_argument("--goal", default="energy")
    ap.add_argument("--goals", default="performance,energy,balanced", help="study: shipped scenarios")
    ap.add_argument("--weights", default="0.125,0.25,0.5,2,4",
                    help="study: also the balanced goal with these latency weights (energy 1): 8 goals with the defaults")
    ap.add_argument("--solvers", default=None,
                    help="sweep: lagrange; study: lagrange,greedy (deterministic and of even cost: cpsat, milp and relax "
                         "take 3-20x longer on the energy and balanced goals)")
    ap.add_argument("--target", default="cosine>=0.95", help="study: met at a budget inside [0, --budget-max]")
    ap.add_argument("--iters", type=int, default=3, help="study: bisection steps (5 probes with the defaults)")
    ap.add_argument("--heldout", type=int, default=8)
    ap.add_argument("--search-scales", action="store_true",
                    help="study: cost tables without their chosen scales, so RTN searches them in every worker (as before)")
    ap.add_argument("--budget-max", type=float, default=0.05, help="study: the bisection's upper budget")
    ap.add_argument("--points", type=int, default=40, help="sweep: budgets")
    ap.add_argument("--chunks", type=int, default=40, help="sweep: warm-started chains (jobs); a multiple of --workers")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--ray", default="local", help="local | serial | auto | a Ray address")
    a = ap.parse_args()
    if a.ray in ("none", "serial"):
        a.ray = None
    if a.solvers is None:
        a.solvers = "lagrange,greedy" if a.what == "study" else "lagrange"
    res = {"e2e": e2e, "sweep": sweep, "study": study}[a.what](a)
    res["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = json.dumps(res, indent=1, default=str)
    print(text)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text)


if __name__ == "__main__":
    main()

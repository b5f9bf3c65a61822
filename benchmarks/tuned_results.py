"""Speedup and energy saving over the uniform-INT8 nominal-clock baseline at one accuracy target.

For each HALO goal (performance, energy, balanced) and solver (cpsat, lagrange, greedy, halo):
the closed loop (:func:`halo_opt.closed_loop.tune_budget`) finds the largest error budget whose
plan meets the target on the *tuning* split of the held-out text; the table reports that plan's
predicted speedup and energy saving against ``baseline_int8``, its accuracy on the tuning split
and on the disjoint *test* split (never seen by calibration or tuning), and marks the rows that
miss the target on test. ``--error-model`` picks the cost tables' error model (local or fisher). The
(goal, solver) points are :func:`halo_opt.closed_loop.tune_study` jobs: serially, in ``--workers``
local processes, or on Ray (``--ray local|auto|ADDRESS``); every finished point is kept in
``<out>/points-<error model>/`` (one file each) and a rerun resumes. Rows go to
``<out>/rows-<error model>.jsonl``; writes ``<out>/tuned-*.json`` and ``<out>/tuned-*.md`` from all rows.

    python benchmarks/tuned_results.py --model minilm --target "cosine>=0.99" --error-model fisher --out runs/tuned-minilm
    python benchmarks/tuned_results.py --model smollm2-135m --target "ppl<=5%" --out runs/tuned-smollm2 --tile 64
    python benchmarks/tuned_results.py --model minilm --target "cosine>=0.99" --out runs/tuned-minilm --ray local --workers 8
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from halo_opt.calibration.hessian import calibrate
from halo_opt.calibration.models import load_model
from halo_opt.calibration.text import calibration_batch
from halo_opt.closed_loop import tune_study
from halo_opt.costs import build_costs, with_error_model
from halo_opt.execute.evaluate import meets, parse_target
from halo_opt.execute.pipeline import context_from_folders, run_baselines, split_batches
from halo_opt.paths import formulations_dir
from halo_opt.solve import get_solver
from halo_opt.solve.build import build_problem
from halo_opt.solve.problem import evaluate
from halo_opt.solve.scenario import load_scenario

GOALS = ("performance", "energy", "balanced")
SOLVERS = ("cpsat", "lagrange", "greedy", "halo_layer")


def baseline(costs: Path) -> dict:
    p = build_problem(costs, load_scenario(formulations_dir() / "baseline_int8.toml"))
    r = get_solver("cpsat")(p, time_limit=30)
    ev = evaluate(p, r.assignment)
    return {"latency_s": ev.latency, "energy_j": ev.energy}


def read_rows(path: Path) -> list[dict]:
    """Rows finished so far (one JSON object per line; a torn last line from a kill is ignored)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def append_row(path: Path, row: dict) -> None:
    """One line per finished row, written with a single O_APPEND write (safe across processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k != "history"}), flush=True)


def row_order(r: dict) -> tuple[int, int]:
    g = (("baseline_int8",) + GOALS).index(r["goal"])
    return g, (("-",) + SOLVERS).index(r["solver"])


def describe(tgt) -> str:
    from halo_opt.execute.evaluate import describe_target

    return describe_target(tgt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--target", default="cosine>=0.99")
    ap.add_argument("--profile", action="append", default=None,
                    help="MAC profile folder; repeat for several PEs in one problem (default: the INT8 array profile)")
    ap.add_argument("--clock-basis", default="absolute", help="several --profile: absolute | anchored (halo_opt.costs.build_costs)")
    ap.add_argument("--accelerator", default="tpu_like")
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--sequences", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--heldout", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1, help="prefill batch of the latency workload")
    ap.add_argument("--budget-max", type=float, default=0.05)
    ap.add_argument("--iters", type=int, default=7)
    ap.add_argument("--time-limit", type=float, default=20.0)
    ap.add_argument("--solvers", default=",".join(SOLVERS))
    ap.add_argument("--goals", default=",".join(GOALS))
    ap.add_argument("--error-model", default="fisher", help="local | fisher (cost tables OUT/costs-<model>)")
    ap.add_argument("--calib", type=Path, default=None, help="existing calibration folder (else OUT/calib)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ray", default=None, help="run the (goal, solver) points on Ray: local | auto | ADDRESS (absent: serial)")
    ap.add_argument("--workers", type=int, default=1, help="local processes, or the CPUs of --ray local")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per point (the same on every engine: same numbers)")
    a = ap.parse_args()
    a.profile = a.profile or ["data/profiles/int8_signed_array_builtin"]
    t0 = time.perf_counter()
    out = a.out
    calib, both, costs = a.calib or out / "calib", out / "costs", out / f"costs-{a.error_model}"
    ad = load_model(a.model)
    if not (calib / "layers.json").is_file():
        tb = calibration_batch(ad.tokenizer, None, a.sequences, a.seq_len, 0, max_length=ad.max_length)
        calibrate(ad, tb, calib, progress=False)
    if not (both / "meta.json").is_file():
        from halo_opt.accelerators import Workload

        build_costs(calib, a.profile, both, a.accelerator, tile=(a.tile, a.tile), workload=Workload("prefill", a.batch, a.seq_len),
                    model=ad, progress=False, clock_basis=a.clock_basis, save_scales=True)
    if not (costs / "meta.json").is_file():
        with_error_model(both, costs, a.error_model)
    t_prep = time.perf_counter() - t0
    # per-code timing check against one profile's table; with several profiles (codes of different
    # formats) the check uses codebooks.json delays instead
    ctx = context_from_folders(costs, calib, a.model, a.heldout, a.seq_len, 0,
                               profile=a.profile[0] if len(a.profile) == 1 else None, part="tuning")
    test_ctx = ctx.with_heldout(split_batches(ctx, None, "test", a.heldout, a.seq_len, 0))
    tgt = parse_target(a.target)
    base = baseline(costs)
    rows_file = out / f"rows-{a.error_model}.jsonl"
    done = {(r["goal"], r["solver"]) for r in read_rows(rows_file)}
    if ("baseline_int8", "-") not in done:
        tm = run_baselines(test_ctx, ["int8-rtn"])["int8-rtn"]
        append_row(rows_file, {"goal": "baseline_int8", "solver": "-", "budget": 0.0, "speedup": 1.0, "energy_saving": 0.0,
                               **{f"acc_{k}": v for k, v in run_baselines(ctx, ["int8-rtn"])["int8-rtn"].items()},
                               **{f"test_{k}": v for k, v in tm.items()}, "meets_test": meets(tm, tgt)})
    goals, solvers = a.goals.split(","), a.solvers.split(",")
    t_study = time.perf_counter()
    recs = tune_study(costs, calib, a.model, goals, solvers, a.target, out / f"points-{a.error_model}", 0.0, a.budget_max,
                      a.iters, a.time_limit, heldout=a.heldout, seq_len=a.seq_len, profile=a.profile, ray=a.ray,
                      workers=a.workers, threads=a.threads)
    t_study = time.perf_counter() - t_study
    for rec in recs:
        if (rec["goal"], rec["solver"]) in done:
            continue
        if "note" in rec:
            append_row(rows_file, {"goal": rec["goal"], "solver": rec["solver"], "note": rec["note"]})
            continue
        pred = rec["plan"]["predicted"]
        append_row(rows_file, {"goal": rec["goal"], "solver": rec["solver"], "budget": rec["budget"],
                               "status": rec["plan"]["solver"]["status"],
                               "speedup": base["latency_s"] / pred["latency_s"], "energy_saving": 1 - pred["energy_j"] / base["energy_j"],
                               **{f"acc_{k}": v for k, v in rec["metrics"].items()},
                               **{f"test_{k}": v for k, v in rec["test_metrics"].items()}, "meets_test": meets(rec["test_metrics"], tgt),
                               "enforced": rec["enforced"], "probes": len(rec["history"]),
                               "history": [{k: h[k] for k in ("budget", "ok", "metrics", "note")} for h in rec["history"]],
                               "wall_s": rec["wall_s"]})
    rows = sorted({(r['goal'], r['solver']): r for r in read_rows(rows_file)}.values(), key=row_order)  # last per row
    (out / f"tuned-{a.error_model}.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "baseline": base,
                                                "prep_s": t_prep, "study_s": t_study, "rows": rows}, indent=2))
    key = tgt[0]
    accs = [f"acc_{key}", f"test_{key}"]
    lines = [f"Error model {a.error_model}; target {a.target} enforced on the tuning split ({describe(tgt)}); "
             f"{a.heldout} tuning and {a.heldout} test sequences × {a.seq_len} tokens. ✗ = misses the target on test.", "",
             f"| goal | solver | tuned ε | speedup | energy saving | {key} (tuning) | {key} (test) |",
             "|---" * 7 + "|"]
    for r in rows:
        if "note" in r:
            lines.append(f"| {r['goal']} | {r['solver']} | {r['note']} |" + " |" * (3 + len(accs)))
            continue
        lines.append(f"| {r['goal']} | {r['solver']} | {r['budget']:.2e} | {r['speedup']:.3f}× | {100 * r['energy_saving']:.1f}% | "
                     + f"{r.get(accs[0], math.nan):.4f} | {r.get(accs[1], math.nan):.4f}{'' if r.get('meets_test', True) else ' ✗'} |")
    (out / f"tuned-{a.error_model}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"study {t_study:.1f} s ({len(recs)} points, engine {a.ray or ('processes' if a.workers > 1 else 'serial')}, "
          f"{a.workers} workers); total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

"""Speedup and energy saving over the uniform-INT8 nominal-clock baseline at one accuracy target.

For each HALO goal (performance, energy, balanced) and solver (cpsat, lagrange, greedy, halo):
the closed loop (:func:`halo_opt.closed_loop.tune_budget`) finds the largest error budget whose
plan meets the target on held-out text; the table reports that plan's predicted speedup and
energy saving against ``baseline_int8`` and its measured accuracy. Each finished row is appended
to ``<out>/rows.jsonl`` at once, and a rerun skips the rows already there (resume; several
processes may split ``--goals``/``--solvers`` over one ``--out``). Writes ``<out>/tuned.json``
and ``<out>/tuned.md`` from all rows.

    python benchmarks/tuned_results.py --model minilm --target "cosine>=0.99" --out runs/tuned-minilm
    python benchmarks/tuned_results.py --model smollm2-135m --target "ppl<=5%" --out runs/tuned-smollm2 --tile 64
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
from halo_opt.closed_loop import tune_budget
from halo_opt.costs import build_costs
from halo_opt.errors import UserError
from halo_opt.execute.pipeline import context_from_folders, run_baselines
from halo_opt.paths import formulations_dir
from halo_opt.solve import get_solver
from halo_opt.solve.build import build_problem
from halo_opt.solve.problem import evaluate
from halo_opt.solve.scenario import load_scenario

GOALS = ("performance", "energy", "balanced")
SOLVERS = ("cpsat", "lagrange", "greedy", "halo")


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--target", default="cosine>=0.99")
    ap.add_argument("--profile", default="data/profiles/int8_signed_array_builtin")
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
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    t0 = time.perf_counter()
    out = a.out
    calib, costs = out / "calib", out / "costs"
    ad = load_model(a.model)
    if not (calib / "layers.json").is_file():
        tb = calibration_batch(ad.tokenizer, None, a.sequences, a.seq_len, 0, max_length=ad.max_length)
        calibrate(ad, tb, calib, progress=False)
    if not (costs / "meta.json").is_file():
        from halo_opt.accelerators import Workload

        build_costs(calib, a.profile, costs, a.accelerator, tile=(a.tile, a.tile), workload=Workload("prefill", a.batch, a.seq_len),
                    model=ad, progress=False)
    t_prep = time.perf_counter() - t0
    ctx = context_from_folders(costs, calib, a.model, a.heldout, a.seq_len, 0, profile=a.profile)
    base = baseline(costs)
    rows_file = out / "rows.jsonl"
    done = {(r["goal"], r["solver"]) for r in read_rows(rows_file)}
    if ("baseline_int8", "-") not in done:
        append_row(rows_file, {"goal": "baseline_int8", "solver": "-", "budget": 0.0, "speedup": 1.0, "energy_saving": 0.0,
                               **{f"acc_{k}": v for k, v in run_baselines(ctx, ["int8-rtn"])["int8-rtn"].items()}})
    for goal in a.goals.split(","):
        sc = load_scenario(formulations_dir() / f"{goal}.toml")
        for solver in a.solvers.split(","):
            if (goal, solver) in done:
                continue
            t1 = time.perf_counter()
            try:
                res = tune_budget(ctx, costs, sc, solver, a.target, 0.0, a.budget_max, a.iters, a.time_limit)
            except UserError as e:
                append_row(rows_file, {"goal": goal, "solver": solver, "note": str(e)})
                continue
            pred = res.plan["predicted"]
            append_row(rows_file, {"goal": goal, "solver": solver, "budget": res.budget, "status": res.plan["solver"]["status"],
                                   "speedup": base["latency_s"] / pred["latency_s"], "energy_saving": 1 - pred["energy_j"] / base["energy_j"],
                                   **{f"acc_{k}": v for k, v in res.metrics.items()}, "probes": len(res.history),
                                   "history": [{k: h[k] for k in ("budget", "ok", "metrics", "note")} for h in res.history],
                                   "wall_s": time.perf_counter() - t1})
    rows = sorted({(r['goal'], r['solver']): r for r in read_rows(rows_file)}.values(), key=row_order)  # last per row
    (out / "tuned.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "baseline": base,
                                                "prep_s": t_prep, "rows": rows}, indent=2))
    accs = sorted({k for r in rows for k in r if k.startswith("acc_")})
    lines = [f"| goal | solver | tuned ε | speedup | energy saving | {' | '.join(a_[4:] for a_ in accs)} |",
             "|---" * (5 + len(accs)) + "|"]
    for r in rows:
        if "note" in r:
            lines.append(f"| {r['goal']} | {r['solver']} | {r['note']} |" + " |" * (3 + len(accs)))
            continue
        lines.append(f"| {r['goal']} | {r['solver']} | {r['budget']:.2e} | {r['speedup']:.3f}× | {100 * r['energy_saving']:.1f}% | "
                     + " | ".join(f"{r.get(k, math.nan):.4f}" for k in accs) + " |")
    (out / "tuned.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

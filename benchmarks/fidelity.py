"""Fidelity of the error models: predicted total error vs measured end-to-end degradation, per plan.

For one model, one calibration and one cost folder holding both error tables
(``errors_local.parquet``, ``errors_fisher.parquet``; ``halo-opt costs`` writes both when the
calibration has Fisher statistics), many plans are made and each is measured:

* plans: the planner's (goals performance/energy/balanced × budgets × solvers lagrange/greedy/
  cpsat, planned on the local and on the Fisher table), every codebook uniformly, and
  deliberately lopsided mixes (``full`` everywhere but a few layers on a fast codebook, INT4
  everywhere but a few layers on ``full``, a random codebook per layer, a random codebook per
  tile from a random subset);
* quantization: RTN per tile with the scales of the cost stage (the same grid search,
  :func:`halo_opt.quantize.search_scales_blocks`, recomputed here; the tile errors it gives are
  checked against the cost table), weights ``float32(q)·float32(s)`` as the executor runs them;
* measured: causal LM: increase of the mean token NLL (nats/token) over the evaluation text;
  encoder: ``1 − mean cosine`` of the mean-pooled embeddings to the float model's;
* predicted: local ``Σ_g e_{g,c(g)} / N_local`` (relative); Fisher ``Σ_g e^F_{g,c(g)}``, in the
  measured quantity's units.

Rows go to ``<out>/rows.jsonl`` as they finish (a rerun skips the plans already measured);
``<out>/fidelity.json`` and ``<out>/fidelity_<model>.png`` summarise them.

    python benchmarks/fidelity.py --model minilm --out runs/fidelity-minilm
    python benchmarks/fidelity.py --model smollm2-135m --out runs/fidelity-smollm2 --eval-sequences 16 --plans-scale 0.4
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from halo_opt.artifacts import write_json
from halo_opt.calibration.hessian import calibrate
from halo_opt.calibration.models import SUPPORTED, load_model
from halo_opt.calibration.text import calibration_batch
from halo_opt.costs import build_costs, with_error_model
from halo_opt.errors import UserError
from halo_opt.execute.apply import TileGrid, add_damping
from halo_opt.execute.inputs import load_costs, load_hessian
from halo_opt.paths import formulations_dir
from halo_opt.quantize import codes_tensor, quantize_to_codes, scale_grid, search_scales_blocks

FAST = ("fast4", "fast8", "frugal4", "tau4192ps", "e860fj", "int4", "fast16")


def row_errors_blocks(W, H, width, codes, s):
    """Float64 ``Δw_r H_j Δw_rᵀ`` per codebook, row and column block for given scales ``s`` [C, N, nb]."""
    from halo_opt.quantize import _block_errors, _diag_blocks

    N, K = W.shape
    nb = -(-K // width)
    Wp = torch.nn.functional.pad(W, (0, nb * width - K)).view(N, nb, width)
    return _block_errors(Wp, _diag_blocks(H, width, nb), codes, s)


class PlanBench:
    """Quantize-and-measure any per-tile codebook assignment of one cost folder, cheaply."""

    def __init__(self, ad, costs_dir: Path, calib_dir: Path, batches: list[dict]):
        self.ad, self.batches = ad, batches
        self.kind = SUPPORTED.get(ad.kind, "encoder")
        self.c = load_costs(costs_dir)
        meta = self.c.meta
        self.books = list(self.c.codebooks)
        import pandas as pd

        self.tab = {m: pd.read_parquet(costs_dir / f"errors_{m}.parquet").sort_values("tile")[self.books].to_numpy()
                    for m in ("local", "fisher")}
        self.norm = meta["normalisers"]
        factors = torch.tensor(meta["scale_grid"], dtype=torch.float64)
        self.codes = [codes_tensor(self.c.codebooks[b]["codes"]) for b in self.books]
        self.layers = {}
        worst = 0.0
        saved = None
        if (costs_dir / "scales.safetensors").is_file():
            from safetensors.torch import load_file

            saved = load_file(str(costs_dir / "scales.safetensors"))
        for name in dict.fromkeys(self.c.tiles["layer"]):
            W = ad.layer(name).weight().double()
            H = add_damping(load_hessian(calib_dir, name).H, self.c.damp(name))
            grid = TileGrid.from_tiles(name, self.c.layer_tiles(name), tuple(W.shape))
            width = int(meta["tile"][1])
            if saved is not None:          # the cost stage's scales; errors re-evaluated from them (float64)
                s = saved[name]
                e = row_errors_blocks(W, H, width, self.codes, s)
            else:
                s, e = search_scales_blocks(W, H, width, self.codes, factors, bool(meta["fast_search"]))
            # the cost table's local errors are these row errors summed per tile: check it
            tr = int(meta["tile"][0])
            N = W.shape[0]
            ep = torch.nn.functional.pad(e.permute(1, 2, 0), (0, 0, 0, 0, 0, -N % tr))
            et = ep.reshape(-1, tr, ep.shape[1], len(self.books)).sum(1).reshape(-1, len(self.books)).numpy()
            ref = self.tab["local"][grid.tile.ravel()]
            worst = max(worst, float(np.abs(et - ref).max() / max(np.abs(ref).max(), 1e-300)))
            self.layers[name] = (W, s, grid)
        self.check_rel = worst
        self.mods = {l.name: l for l in ad.linears}
        self.ref = self._outputs()

    @torch.no_grad()
    def _outputs(self):
        outs = []
        for b in self.batches:
            y = self.ad._forward(self.ad.model, b)
            if self.kind == "causal":
                ids, m = b["input_ids"], b["attention_mask"].bool()
                lp = torch.log_softmax(y[:, :-1].double(), -1).gather(-1, ids[:, 1:, None])[..., 0]
                keep = m[:, 1:] & m[:, :-1]
                outs.append((-float(lp[keep].sum()), int(keep.sum())))
            else:
                outs.append(y.double())
        if self.kind == "causal":
            return sum(a for a, _ in outs) / sum(n for _, n in outs)
        return torch.cat(outs)

    def weight(self, name: str, cb: np.ndarray) -> torch.Tensor:
        """``float32(q)·float32(s)`` of layer ``name`` with codebook index ``cb[tile]``."""
        W, s, g = self.layers[name]
        N, K = W.shape
        ce = g.col_edges
        idx = cb[g.tile]                                                  # [nrb, ncb]
        rows = np.repeat(np.arange(len(g.row_edges) - 1), np.diff(g.row_edges))
        out = torch.empty(N, K, dtype=torch.float32)
        for j, (c0, c1) in enumerate(zip(ce, ce[1:])):
            per_row = torch.as_tensor(idx[rows, j])
            for c in per_row.unique().tolist():
                r = (per_row == c).nonzero()[:, 0]
                sc = s[c, r, j]
                q, _ = quantize_to_codes(W[r, c0:c1], sc[:, None], self.codes[c])
                out[r, c0:c1] = q.to(torch.float32) * sc.to(torch.float32)[:, None]
        return out

    @torch.no_grad()
    def measure(self, cb: np.ndarray) -> float:
        saved = {}
        try:
            for name in self.layers:
                mod = self.mods[name].module
                saved[name] = mod.weight.data
                w = self.weight(name, cb)
                mod.weight.data = w if isinstance(mod, torch.nn.Linear) else w.T.contiguous()
            out = self._outputs()
        finally:
            for name, w in saved.items():
                self.mods[name].module.weight.data = w
        if self.kind == "causal":
            return out - self.ref
        return 1.0 - float(torch.nn.functional.cosine_similarity(out, self.ref, dim=-1).mean())

    def predict(self, cb: np.ndarray) -> dict:
        g = np.arange(len(cb))
        return {"local": float(self.tab["local"][g, cb].sum() / self.norm["local"]),
                "fisher": float(self.tab["fisher"][g, cb].sum())}


def plans(bench: PlanBench, variants: dict[str, Path], rng: np.random.Generator, scale: float, time_limit: float):
    """``(family, description, codebook index per tile)``, deterministic for the seed."""
    from halo_opt.solve import get_solver
    from halo_opt.solve.build import build_problem
    from halo_opt.solve.plan import plan_dict
    from halo_opt.solve.scenario import load_scenario

    books, c = bench.books, bench.c
    G = len(c.tiles)
    layer_of = c.tiles["layer"].to_numpy()
    names = list(dict.fromkeys(layer_of))
    bi = {b: i for i, b in enumerate(books)}
    n = lambda k: max(1, int(round(k * scale)))  # noqa: E731
    for b in books:
        yield "uniform", b, np.full(G, bi[b])
    fast = [b for b in FAST if b in bi]
    for k in range(n(40)):
        layers = rng.choice(names, size=int(rng.choice([1, 2, 3, 4])), replace=False)
        b = fast[rng.integers(len(fast))]
        cb = np.full(G, bi["full"])
        cb[np.isin(layer_of, layers)] = bi[b]
        yield "full+few-fast", f"{b} on {len(layers)} layers", cb
    for k in range(n(12)):
        layers = rng.choice(names, size=int(rng.choice([1, 3, 6])), replace=False)
        cb = np.full(G, bi["int4"])
        cb[np.isin(layer_of, layers)] = bi["full"]
        yield "int4+few-full", f"full on {len(layers)} layers", cb
    for k in range(n(36)):
        subset = rng.choice(len(books), size=int(rng.integers(2, len(books) + 1)), replace=False)
        per = dict(zip(names, rng.choice(subset, size=len(names))))
        yield "random-per-layer", f"{len(subset)} codebooks", np.array([per[l] for l in layer_of])
    for k in range(n(20)):
        subset = rng.choice(len(books), size=int(rng.integers(2, 6)), replace=False)
        yield "random-per-tile", f"{len(subset)} codebooks", rng.choice(subset, size=G)
    # the planner's plans, on each error model's table, over its achievable budget range
    for model, folder in variants.items():
        t = bench.tab[model]
        lo = t.min(1).sum() / bench.norm[model]
        hi = t[:, bi["int4"]].sum() / bench.norm[model] * 1.5
        budgets = np.geomspace(lo * 1.5, hi, n(6))
        for goal in ("performance", "energy", "balanced"):
            sc0 = load_scenario(formulations_dir() / f"{goal}.toml")
            for si, solver in enumerate(("lagrange", "greedy", "cpsat")):
                shipped = [float(sc0.budget)] if solver == "lagrange" else []      # the scenario file's own ε
                for b in shipped + list(budgets if solver != "cpsat" else budgets[1::3]):
                    sc = sc0.with_overrides(budget=float(b))
                    prob = build_problem(folder, sc)
                    kw = {"time_limit": time_limit} if solver == "cpsat" else {}
                    try:
                        r = get_solver(solver)(prob, **kw)
                    except UserError:
                        continue
                    if not r.has_plan:
                        continue
                    tc = plan_dict(prob, r, sc.to_dict(), folder)["tile_codebook"]
                    fam = "scenario-" + model if shipped and b == shipped[0] else f"plan-{model}"
                    yield fam, f"{goal} {solver} ε={b:.3g}", np.array([bi[x] for x in tc])


def stats(P: np.ndarray, M: np.ndarray) -> dict:
    from scipy.stats import spearmanr

    ok = (P > 0) & (M > 0)
    lp, lm = np.log(P[ok]), np.log(M[ok])
    a, b = np.polyfit(lp, lm, 1)
    r2_log = 1 - ((lm - (a * lp + b)) ** 2).sum() / ((lm - lm.mean()) ** 2).sum()
    k = float((P * M).sum() / (P * P).sum())                                   # M ≈ k P (least squares)
    r2_lin = 1 - ((M - k * P) ** 2).sum() / ((M - M.mean()) ** 2).sum()
    r2_id = 1 - ((M - P) ** 2).sum() / ((M - M.mean()) ** 2).sum()
    ratio = M[ok] / P[ok]
    return {"n": int(len(P)), "spearman": float(spearmanr(P, M).statistic), "r2_loglog": float(r2_log),
            "loglog_slope": float(a), "r2_proportional": float(r2_lin), "k_proportional": k, "r2_identity": float(r2_id),
            "ratio_min": float(ratio.min()), "ratio_max": float(ratio.max()), "spread": float(ratio.max() / ratio.min()),
            "ratio_median": float(np.median(ratio))}


def plot(rows: list[dict], path: Path, title: str, unit: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams = sorted({r["family"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    for ax, model, xl in ((axes[0], "local", "predicted Σe / N (local, relative)"),
                          (axes[1], "fisher", f"predicted (Fisher) [{unit}]")):
        for f in fams:
            P = [r["pred_" + model] for r in rows if r["family"] == f]
            M = [r["measured"] for r in rows if r["family"] == f]
            ax.loglog(P, M, "o", ms=3.5, alpha=0.75, label=f)
        P = np.array([r["pred_" + model] for r in rows])
        M = np.array([r["measured"] for r in rows])
        s = stats(P, M)
        if model == "fisher":
            lo, hi = min(P.min(), M.min()), max(P.max(), M.max())
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="measured = predicted")
        ax.set_xlabel(xl)
        ax.set_ylabel(f"measured [{unit}]")
        ax.set_title(f"{model}: Spearman {s['spearman']:.3f}, spread {s['spread']:.1f}×", fontsize=10)
        ax.grid(True, which="both", lw=0.3, alpha=0.5)
    axes[1].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--profile", default="data/profiles/int8_signed_array_builtin")
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--sequences", type=int, default=64, help="calibration sequences")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--eval-sequences", type=int, default=32, help="evaluation sequences (the text's test part)")
    ap.add_argument("--plans-scale", type=float, default=1.0, help="multiplies the number of plans per family")
    ap.add_argument("--time-limit", type=float, default=5.0, help="CP-SAT time limit per plan, s")
    ap.add_argument("--calib", type=Path, default=None, help="existing calibration folder (else OUT/calib)")
    ap.add_argument("--costs", type=Path, default=None, help="existing cost folder with both error tables (else OUT/costs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard", default="0/1", help="K/N: measure only plans i with i %% N == K (run N processes, then once with 0/1 to summarise)")
    ap.add_argument("--regime", type=float, default=0.1, help="also report plans whose measured degradation is at most this")
    ap.add_argument("--summary-only", action="store_true", help="summarise OUT/rows.jsonl without measuring more plans")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    t0 = time.perf_counter()
    torch.manual_seed(a.seed)
    if a.threads:
        torch.set_num_threads(a.threads)
    k_shard, n_shard = (int(x) for x in a.shard.split("/"))
    a.out.mkdir(parents=True, exist_ok=True)
    calib, costs = a.calib or a.out / "calib", a.costs or a.out / "costs"
    ad = load_model(a.model)
    if not (calib / "meta.json").is_file():
        tb = calibration_batch(ad.tokenizer, None, a.sequences, a.seq_len, 0, max_length=ad.max_length)
        calibrate(ad, tb, calib, progress=False, checkpoint_s=900)
    if not (costs / "meta.json").is_file():
        from halo_opt.accelerators import Workload

        build_costs(calib, a.profile, costs, tile=(a.tile, a.tile), workload=Workload("prefill", 1, a.seq_len), model=ad, progress=False, save_scales=True)
    rows_file = a.out / "rows.jsonl"
    done = [json.loads(l) for l in rows_file.read_text().splitlines() if l.strip()] if rows_file.is_file() else []
    ev = calibration_batch(ad.tokenizer, None, a.eval_sequences, a.seq_len, 1, part="test", max_length=ad.max_length)
    kind, check = SUPPORTED.get(ad.kind, "encoder"), None
    fisher_meta = json.loads((costs / "meta.json").read_text()).get("fisher")
    if not a.summary_only:
        variants = {m: a.out / f"costs-{m}" for m in ("local", "fisher")}
        for m, d in variants.items():
            if not (d / "meta.json").is_file():
                with_error_model(costs, d, m)
        bench = PlanBench(ad, costs, calib, list(ev.batches(8)))
        print(f"setup {time.perf_counter() - t0:.0f} s; tile-error check worst rel diff {bench.check_rel:.2e}", flush=True)
        seen = {(r["family"], r["desc"], r["i"]) for r in done}
        rng = np.random.default_rng(a.seed)
        for i, (fam, desc, cb) in enumerate(plans(bench, variants, rng, a.plans_scale, a.time_limit)):
            if (fam, desc, i) in seen or i % n_shard != k_shard:
                continue
            t1 = time.perf_counter()
            row = {"i": i, "family": fam, "desc": desc, "measured": bench.measure(cb),
                   **{f"pred_{k}": v for k, v in bench.predict(cb).items()}, "wall_s": round(time.perf_counter() - t1, 2)}
            with rows_file.open("a") as f:
                f.write(json.dumps(row) + "\n")
            done.append(row)
            print(json.dumps(row), flush=True)
        kind, fisher_meta, check = bench.kind, bench.c.meta.get("fisher"), bench.check_rel
    if n_shard > 1:
        return
    unit = "nats/token (ΔNLL)" if kind == "causal" else "1 − mean cosine"
    P = {m: np.array([r[f"pred_{m}"] for r in done]) for m in ("local", "fisher")}
    M = np.array([r["measured"] for r in done])
    summary = {"model": ad.name, "kind": kind, "unit": unit, "n_plans": len(done),
               "eval": {"sequences": a.eval_sequences, "seq_len": a.seq_len, "tokens": ev.n_tokens, "text": ev.spec},
               "calibration": str(calib), "costs": str(costs), "tile_check_worst_rel": check,
               "fisher": fisher_meta, "stats": {m: stats(P[m], M) for m in P},
               "useful_regime": f"measured <= {a.regime:g}",
               "stats_useful": {m: stats(P[m][M <= a.regime], M[M <= a.regime]) for m in P},
               "families": {f: {m: stats(P[m][[r["family"] == f for r in done]], M[[r["family"] == f for r in done]])
                                for m in P} for f in sorted({r["family"] for r in done})
                            if sum(r["family"] == f for r in done) >= 4},
               "wall_s": time.perf_counter() - t0}
    write_json(a.out / "fidelity.json", summary)
    plot(done, a.out / f"fidelity_{a.model}.png", f"{ad.name}: {len(done)} plans, predicted vs measured "
         f"({a.eval_sequences} test sequences × {a.seq_len} tokens)", unit)
    lines = ["| error model | plans | Spearman | R² (log-log fit) | R² (measured = k·predicted) | k | measured/predicted min–max | spread |",
             "|---|---|---|---|---|---|---|---|"]
    for label, st in (("all", summary["stats"]), (f"measured ≤ {a.regime:g}", summary["stats_useful"])):
        for m, x in st.items():
            lines.append(f"| {m} ({label}) | {x['n']} | {x['spearman']:.3f} | {x['r2_loglog']:.3f} | {x['r2_proportional']:.3f} | "
                         f"{x['k_proportional']:.3g} | {x['ratio_min']:.3g}–{x['ratio_max']:.3g} | {x['spread']:.1f}× |")
    lines += ["", "| family | plans | Spearman local | Spearman fisher | spread local | spread fisher |", "|---|---|---|---|---|---|"]
    for f, st in summary["families"].items():
        lines.append(f"| {f} | {st['local']['n']} | {st['local']['spearman']:.3f} | {st['fisher']['spearman']:.3f} | "
                     f"{st['local']['spread']:.1f}× | {st['fisher']['spread']:.1f}× |")
    (a.out / "fidelity_table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

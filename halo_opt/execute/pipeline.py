"""Compose the executor's steps: load inputs once (:class:`Context`), quantize per plan,
evaluate on held-out text, validate (predicted vs measured, timing), build the report dict."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import UserError, require
from .apply import ScaleMemo, add_damping, block_diag_error
from .evaluate import Evaluator
from .inputs import CostFolder, check_plan, load_costs, load_hessian
from .run import Execution, dequantized_model, execute_plan, uniform_baseline
from .validate import (baseline_cost, end_to_end, heldout_hessians, measure_output_errors, output_errors, predicted_errors,
                       realized_cost, spearman, timing_check)


@dataclass
class Context:
    """Everything an execution needs, loaded once (the closed loop reuses it per budget)."""

    costs: CostFolder
    model: torch.nn.Module
    layers: dict[str, torch.nn.Module]
    weights: dict[str, torch.Tensor]
    hessian_fn: Callable[[str], torch.Tensor]
    kind: str  # "causal" | "encoder"
    forward: Callable
    heldout: list[dict]
    name: str = "model"
    model_sha256: str | None = None
    profile: object = None  # DataFrame [code, delay_ps, energy_fj] or None
    device: str = "cpu"
    tokenizer: object = None
    max_length: int | None = None
    text_spec: dict = field(default_factory=dict)  # what the held-out batches are (corpus, part, sizes)
    #: full H for GPTQ when ``hessian_fn`` gives only the block-diagonal part (a blocks calibration)
    full_hessian_fn: Callable[[str], torch.Tensor] | None = None
    cache_hessians: bool = True  # False: keep one layer's H at a time (large models)
    pool: object = None  # execute.distributed.QuantPool: layers quantized on several processes
    #: RTN row scales searched by earlier plans on this model (kept while ``cache_hessians``)
    scale_memo: ScaleMemo = field(default_factory=ScaleMemo)
    _H: dict = field(default_factory=dict)
    _heldout_H: dict | None = None
    _eval: Evaluator | None = None

    def with_heldout(self, batches: list[dict]) -> "Context":
        """The same model and costs evaluated on other batches (e.g. the test split); shares the Hessian cache."""
        from dataclasses import replace

        return replace(self, heldout=batches, _eval=None, _heldout_H=None)

    def hessian(self, name: str) -> torch.Tensor:
        if name not in self._H:
            if not self.cache_hessians:
                self._H.clear()
            self._H[name] = self.hessian_fn(name)
        return self._H[name]

    def full_hessian(self, name: str) -> torch.Tensor:
        """The layer's full H (GPTQ): stored, or recomputed by ``full_hessian_fn``."""
        return self.hessian(name) if self.full_hessian_fn is None else self.full_hessian_fn(name)

    def hessians_for(self, method: str) -> Callable[[str], torch.Tensor]:
        return self.full_hessian if method == "gptq" else self.hessian

    def output_errors(self, deltas: dict[str, torch.Tensor]) -> dict[str, tuple[float, int]]:
        """Per layer ``(2/n) Σ_t ‖ΔW x_t‖²`` on the held-out tokens: from the held-out Hessians,
        accumulated by one float forward and kept (while ``cache_hessians``), else by a forward
        with hooks each time."""
        if not self.cache_hessians:
            return measure_output_errors(self.layers, deltas, _run_masks(self, self.model))
        if self._heldout_H is None:
            self._heldout_H = heldout_hessians(self.layers, _run_masks(self, self.model))
        return output_errors(deltas, self._heldout_H)

    @property
    def memo(self) -> ScaleMemo | None:
        return self.scale_memo if self.cache_hessians else None

    @property
    def evaluator(self) -> Evaluator:
        if self._eval is None:
            self._eval = Evaluator(self.kind, self.heldout, self.model, self.forward)
        return self._eval


def context_from_folders(costs_dir: str | Path, calib_dir: str | Path, model_spec: str, n_sequences: int = 32,
                         seq_len: int = 128, seed: int = 0, text: list[str] | None = None, profile: str | None = None,
                         device: str = "cpu", part: str = "heldout") -> Context:
    """Load cost folder, calibration Hessians (lazily), the model adapter and the ``part`` split's token batches."""
    from ..calibration.models import SUPPORTED, load_model
    from ..calibration.text import calibration_batch

    costs = load_costs(costs_dir)
    require(Path(calib_dir).is_dir(), f"calibration folder {calib_dir} not found; run `halo-opt calibrate` or fix --calib")
    ad = load_model(model_spec).to(device)
    kind = SUPPORTED.get(ad.kind, "encoder")
    tb = calibration_batch(ad.tokenizer, text, n_sequences, seq_len, seed, part=part, max_length=ad.max_length)
    fwd = getattr(ad, "_forward")
    hess, full, cache = hessian_fns(calib_dir, ad, device)
    return Context(costs, ad.model, {l.name: l.module for l in ad.linears}, {l.name: l.weight() for l in ad.linears},
                   hess, kind, fwd, list(tb.batches(8, device)), ad.name, ad.sha256(),
                   _load_profile(profile) if profile else None, device, ad.tokenizer, ad.max_length, tb.spec, full, cache)


def hessian_fns(calib_dir: str | Path, adapter, device: str = "cpu"):
    """``(hessian_fn, full_hessian_fn, cache)`` for a calibration folder: a full-H folder gives H
    (cached); a blocks folder gives the block-diagonal H of its blocks (RTN, the block-diagonal
    error) and recomputes a layer's full H for GPTQ from the calibration tokens (one layer held
    at a time)."""
    from ..calibration.hessian import block_diagonal_hessian, calibration_tokens, hessian_layout, load_calibration, recompute_hessians

    meta, layers = load_calibration(calib_dir)
    if not layers or hessian_layout(calib_dir, layers[0]["name"])["layout"] == "full":
        return (lambda n: load_hessian(calib_dir, n).H), None, True
    box = {}

    def full(n):
        if "tokens" not in box:
            box["tokens"] = calibration_tokens(meta, adapter.tokenizer, adapter.max_length)
        return recompute_hessians(adapter, box["tokens"], [n], device, int(meta.get("batch_size", 8)), int(meta.get("abits", 8)),
                                  bool(meta.get("asigned", True)))[n].cpu()

    return (lambda n: block_diagonal_hessian(calib_dir, n)), full, False


def _load_profile(path: str):
    """Per-code static and floating-mode delay and energy from a MAC profile (contract §1)."""
    import pandas as pd

    from ..hardware.profile import MacProfile

    p = MacProfile.load(path)
    return pd.DataFrame({"code": p.codes, "delay_static_ps": p.delay("static"), "delay_float_ps": p.delay("float"),
                         "energy_fj": p.energy})


def code_table(profile, costs: CostFolder):
    """``(table [code, delay_ps, energy_fj], source)``: the delay column whose max over each
    codebook's codes reproduces ``codebooks.json`` (else the static bound, said in ``source``)."""
    if profile is None:
        return None, "codebooks.json (no profile given)"
    cols = [c for c in ("delay_ps", "delay_static_ps", "delay_float_ps") if c in profile.columns]
    d = {c: dict(zip(profile["code"].astype(int), profile[c].astype(float))) for c in cols}
    def fits(c):
        return all(abs(max(d[c].get(int(q), float("inf")) for q in cb["codes"]) - float(cb["delay_ps"])) <= 1e-6 * max(1.0, float(cb["delay_ps"]))
                   for cb in costs.codebooks.values())
    col = next((c for c in cols if fits(c)), "delay_static_ps" if "delay_static_ps" in cols else cols[0])
    src = f"profile {col}" + ("" if fits(col) else " (no profile column reproduces codebooks.json delays)")
    return profile[["code", col, "energy_fj"]].rename(columns={col: "delay_ps"}), src


def split_batches(ctx: Context, text: list[str] | None, part: str, n_sequences: int, seq_len: int, seed: int = 0) -> list[dict]:
    """Token batches of another split (``tuning``/``test``) for the context's model (needs its tokenizer)."""
    from ..calibration.text import calibration_batch

    require(ctx.tokenizer is not None, "this context has no tokenizer; build it with context_from_folders")
    tb = calibration_batch(ctx.tokenizer, text, n_sequences, seq_len, seed, part=part, max_length=ctx.max_length)
    return list(tb.batches(8, ctx.device))


def check_model(ctx: Context, plan: dict) -> None:
    """The plan's model hash must match the model's (when both are known)."""
    want = plan["meta"].get("model_sha256")
    if want and ctx.model_sha256 and want != "synthetic":
        require(want == ctx.model_sha256, f"plan is for another model (model_sha256 {want[:12]} != {ctx.model_sha256[:12]} of {ctx.name}); "
                "pass the model it was planned for, or re-plan")


def quantized(ctx: Context, ex: Execution) -> torch.nn.Module:
    return dequantized_model(ctx.model, ctx.layers, ex)


def run_plan(ctx: Context, plan: dict, method: str = "rtn", blocksize: int = 128, progress: bool = False) -> tuple[Execution, dict]:
    """Quantize per plan and evaluate on the held-out batches: ``(execution, metrics)``."""
    check_model(ctx, plan)
    ex = execute_plan(plan, ctx.costs, ctx.weights, ctx.hessians_for(method), method, ctx.device, blocksize, progress, ctx.pool,
                      ctx.memo)
    return ex, ctx.evaluator(quantized(ctx, ex))


def _run_masks(ctx: Context, model: torch.nn.Module):
    def run(set_mask):
        with torch.no_grad():
            for b in ctx.heldout:
                set_mask(b.get("attention_mask"))
                ctx.forward(model, b)
    return run


def validate_execution(ctx: Context, plan: dict, ex: Execution, metrics: dict, baselines: dict[str, dict] | None = None,
                       meta: dict | None = None) -> dict:
    """Report dict: per-layer predicted vs measured error, Spearman ρ, timing, costs, accuracy table."""
    c = ctx.costs
    level_of = check_plan(plan, c, list(ctx.weights))
    pred = predicted_errors(c, plan["tile_codebook"])
    deltas = {n: ql.dequantize(torch.float64) - ctx.weights[n].double().to(ql.q.device) for n, ql in ex.layers.items()}
    meas = ctx.output_errors(deltas)
    rows = []
    for n, ql in ex.layers.items():
        bd = block_diag_error(ql, ctx.weights[n], add_damping(ctx.hessian(n).to(ql.q.device), ex.damp.get(n, 0.0)))
        rows.append({"layer": n, "predicted": float(pred[n]), "calib_blockdiag": float(bd.sum()),
                     "measured": meas[n][0], "tokens": meas[n][1]})
    hist = ex.histograms()
    table, source = code_table(ctx.profile, c)
    t = timing_check(c, plan["tile_codebook"], level_of, hist, table, plan.get("tile_level"))
    cost = realized_cost(c, plan, t, hist)
    gran = plan.get("granularity", "layer")
    cost["granularity"] = gran
    methods = {f"plan-{ex.method}": {"metrics": metrics, **cost["realized"]}}
    for name, m in (baselines or {}).items():  # float: not run on the integer MAC, no cost
        methods[name] = {"metrics": m, **{k: v for k, v in baseline_cost(c, name.partition("-")[0], gran).items() if k.endswith(("_s", "_j"))}}
    P = np.array([r["predicted"] for r in rows])
    M = np.array([r["measured"] for r in rows])
    return {
        **(meta or {}), "model": ctx.name, "kind": ctx.kind, "method": ex.method, "wall_s": ex.wall_s,
        "heldout": {"n_sequences": int(sum(len(b["input_ids"]) for b in ctx.heldout)) if ctx.heldout and "input_ids" in ctx.heldout[0] else len(ctx.heldout),
                    "n_tokens": int(max((r["tokens"] for r in rows), default=0))},
        "metric_names": list(metrics), "methods": methods,
        "validation": {"spearman": spearman(P, M), "ratio_total": float(P.sum() / M.sum()) if M.sum() > 0 else float("nan"),
                       "predicted_total": float(P.sum()), "measured_total": float(M.sum()),
                       "end_to_end": end_to_end(c, plan["tile_codebook"], ctx.kind, metrics)},
        "layers": rows,
        "timing": {"delay_source": source, "tiles": len(t), "outside_codebook": int((~t["in_codebook"]).sum()), "miss_timing": int((~t["meets_timing"]).sum()),
                   "realized_le_planned": bool((t["delay_realized_ps"] <= t["delay_planned_ps"]).all()),
                   "per_tile": t.to_dict("records") if len(t) <= 5000 else None},
        "cost": cost, "damp": ex.damp,
    }


def run_baselines(ctx: Context, which: list[str], blocksize: int = 128, progress: bool = False) -> dict[str, dict]:
    """Metrics of float and uniform INT8/INT4 (RTN, GPTQ) through the same evaluator; ``which`` e.g. ``["int8-rtn", "int4-gptq"]``."""
    out = {"float": ctx.evaluator(ctx.model)}
    for w in which:
        bits, _, method = w.partition("-")
        if bits not in ("int8", "int4") or method not in ("rtn", "gptq"):
            raise UserError(f"unknown baseline '{w}'; use int8-rtn, int8-gptq, int4-rtn or int4-gptq")
        ex = uniform_baseline(bits, ctx.costs, ctx.weights, ctx.hessians_for(method), method, ctx.device, blocksize, progress, ctx.pool,
                              ctx.memo)
        out[w] = ctx.evaluator(quantized(ctx, ex))
    return out

"""`halo-opt execute` (apply a plan, evaluate, validate, export) and `halo-opt tune` (closed loop)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..planfile import save_plan
from ..errors import UserError
from . import app, emit

TARGET_HELP = ("accuracy target metric>=value or metric<=value, e.g. cosine>=0.99 or ppl<=5%; metrics: cosine_mean (cosine), "
               "cosine_min, top1_agreement (top1) for encoders; ppl_increase (ppl), perplexity for causal LMs")

_BASE = "int8-rtn,int4-rtn,int4-gptq"


def _context(costs: Path, calib: Path, model: str, sequences: int, seq_len: int, seed: int, text, profile, device):
    from ..execute.pipeline import context_from_folders

    return context_from_folders(costs, calib, model, sequences, seq_len, seed, [str(t) for t in text] if text else None,
                                str(profile) if profile else None, device)


def _write(out: Path, ctx, plan: dict, ex, metrics: dict, baselines: str, export: str, blocksize: int, progress: bool,
           meta: dict, extra: dict | None = None) -> dict:
    """Validate, export and write the report folder atomically; return the report dict."""
    from ..artifacts import atomic_path, write_json
    from ..execute.export import export_compressed_tensors, export_safetensors
    from ..execute.pipeline import run_baselines, validate_execution
    from ..execute.report import write_report
    from ..report.execution import render_execution

    if export not in ("none", "ct", "safetensors", "both"):
        raise UserError(f"unknown --export '{export}'; use none, ct, safetensors or both")
    base = run_baselines(ctx, [b for b in baselines.split(",") if b], blocksize, progress) if baselines else {}
    rep = validate_execution(ctx, plan, ex, metrics, base, meta)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        write_report(tmp, rep)
        render_execution(tmp)
        save_plan(tmp / "plan.json", plan)
        for k, v in (extra or {}).items():
            write_json(tmp / k, v)
        if export in ("ct", "both"):
            export_compressed_tensors(tmp / "export-compressed-tensors", ctx.model, ctx.layers, ex, plan, ctx.costs.codebooks)
        if export in ("safetensors", "both"):
            export_safetensors(tmp / "export-safetensors", ex, plan)
    return rep


def _summary(rep: dict, ctx) -> tuple[str, dict]:
    """The result line (accuracy, realised cost with speed and saving vs the INT8 baseline, validation) and its data."""
    from ..execute.validate import baseline_cost
    from ..report.style import versus

    plan = rep["methods"][f"plan-{rep['method']}"]
    base = baseline_cost(ctx.costs, "int8", rep.get("cost", {}).get("granularity", "layer"))
    acc = ", ".join(f"{k} {v:.4f}" for k, v in plan["metrics"].items())
    gran = rep.get("cost", {}).get("granularity", "layer")
    wl = (ctx.costs.meta.get("workload") or {}).get("name") or "?"
    cbs = (ctx.costs.meta.get("compute_bound_share") or {}).get(gran)
    where = f"{gran} granularity, workload {wl}" + (f", compute-bound share {cbs:.2f}" if cbs is not None else "")
    line = (f"{rep['method']}: {acc}; {versus(plan.get('latency_s'), plan.get('energy_j'), base)} ({where}); "
            f"Spearman ρ(predicted, measured layer error) {rep['validation']['spearman']:.3f}; "
            f"timing misses {rep['timing']['miss_timing']}/{rep['timing']['tiles']} tiles")
    data = {"method": rep["method"], "metrics": plan["metrics"], "latency_s": plan.get("latency_s"), "energy_j": plan.get("energy_j"),
            "speedup": base["latency_s"] / plan["latency_s"] if plan.get("latency_s") else None,
            "energy_saving": 1 - plan["energy_j"] / base["energy_j"] if plan.get("energy_j") is not None and base["energy_j"] > 0 else None,
            "baseline": base, "baselines": {k: v for k, v in rep["methods"].items() if not k.startswith("plan-")},
            "workload": ctx.costs.meta.get("workload"), "compute_bound_share": ctx.costs.meta.get("compute_bound_share"),
            "granularity": rep.get("cost", {}).get("granularity", "layer"),
            "spearman": rep["validation"]["spearman"], "timing_misses": rep["timing"]["miss_timing"], "tiles": rep["timing"]["tiles"]}
    return line, data


_opt = dict(
    costs=typer.Option(..., "--costs", help="cost-table folder from `halo-opt costs`"),
    calib=typer.Option(..., "--calib", help="calibration folder from `halo-opt calibrate` (Hessians)"),
    model=typer.Option("minilm", "--model", help="`minilm` (embedded) or a local Hugging Face model folder"),
    method=typer.Option("rtn", "--method", help="rtn | gptq"),
    out=typer.Option(..., "--out", help="report folder to write"),
    baselines=typer.Option(_BASE, "--baselines", help="comma list of int8-rtn,int8-gptq,int4-rtn,int4-gptq ('' for none)"),
    export=typer.Option("safetensors", "--export", help="none | ct (compressed-tensors) | safetensors | both"),
    profile=typer.Option(None, "--profile", help="MAC profile (per-code delay/energy) for the realised timing"),
    sequences=typer.Option(32, "--sequences", help="held-out sequences"),
    seq_len=typer.Option(128, "--seq-len", help="held-out sequence length (tokens)"),
    seed=typer.Option(0, "--seed", help="held-out text seed"),
    text=typer.Option(None, "--text", help="held-out text files (default: held-out stdlib docstrings)"),
    device=typer.Option("cpu", "--device", help="cpu | cuda"),
    blocksize=typer.Option(128, "--blocksize", help="GPTQ lazy-batch block size (columns)"),
    progress=typer.Option(True, "--progress/--no-progress", help="show progress (bars on a terminal, one line per step in logs)"),
    as_json=typer.Option(False, "--json", help="print the result as one JSON object (for scripts)"),
    world=typer.Option(1, "--world", help="processes quantizing the layers (CPU: gloo; --device cuda: one GPU each, NCCL); "
                       "codes and scales are bitwise those of one process"),
)


@app.command()
def execute(
    plan: Path = typer.Option(..., "--plan", help="plan.json from `halo-opt plan`"),
    costs: Path = _opt["costs"], calib: Path = _opt["calib"], model: str = _opt["model"], method: str = _opt["method"],
    out: Path = _opt["out"], baselines: str = _opt["baselines"], export: str = _opt["export"],
    profile: Optional[Path] = _opt["profile"], sequences: int = _opt["sequences"], seq_len: int = _opt["seq_len"],
    seed: int = _opt["seed"], text: Optional[list[Path]] = _opt["text"], device: str = _opt["device"],
    blocksize: int = _opt["blocksize"], progress: bool = _opt["progress"], as_json: bool = _opt["as_json"],
    world: int = _opt["world"],
) -> None:
    """Apply a plan (RTN or GPTQ per tile codebook), evaluate on held-out text, validate, export.

    Example: halo-opt execute --plan runs/plan.json --costs runs/costs --calib runs/calib --model minilm --out runs/exec
    """
    from ..artifacts import provenance, sha256_file
    from ..execute.inputs import check_plan, load_costs, load_plan
    from ..execute.pipeline import run_plan

    from ..execute.distributed import with_pool

    p = load_plan(plan)
    check_plan(p, load_costs(costs))  # fail fast (another cost folder / profile) before loading the model

    def flow(pool, dev):
        ctx = _context(costs, calib, model, sequences, seq_len, seed, text, profile, dev)
        ctx.pool = pool
        ex, metrics = run_plan(ctx, p, method, blocksize, progress)
        meta = {"meta": provenance(plan_sha256=sha256_file(plan), costs_sha256=ctx.costs.sha256, model_sha256=ctx.model_sha256,
                                   method=method, sequences=sequences, seq_len=seq_len, seed=seed),
                "plan": str(plan), "costs": str(costs)}
        return ctx, _write(out, ctx, p, ex, metrics, baselines, export, blocksize, progress, meta)

    ctx, rep = with_pool(world, device, costs, calib, model, flow)
    line, data = _summary(rep, ctx)
    emit(f"{line} -> {out}/report.md", data | {"out": str(out)}, as_json)


@app.command()
def tune(
    target: str = typer.Option(..., "--target", help=TARGET_HELP),
    scenario: Path = typer.Option(..., "--scenario", help="scenario (shipped name or TOML path); its budget is what the loop tunes"),
    costs: Path = _opt["costs"], calib: Path = _opt["calib"], model: str = _opt["model"], method: str = _opt["method"],
    out: Path = _opt["out"],
    solver: str = typer.Option("lagrange", "--solver", help="planner solver (see `halo-opt plan`)"),
    budget_min: float = typer.Option(0.0, "--budget-min", help="smallest relative budget ε tried (must meet the target)"),
    budget_max: float = typer.Option(0.2, "--budget-max", help="largest relative budget ε tried"),
    iters: int = typer.Option(8, "--iters", help="bisection steps"),
    time_limit: float = typer.Option(30.0, "--time-limit", help="solver time limit per budget, s"),
    baselines: str = _opt["baselines"], export: str = _opt["export"], profile: Optional[Path] = _opt["profile"],
    sequences: int = _opt["sequences"], seq_len: int = _opt["seq_len"], seed: int = _opt["seed"],
    text: Optional[list[Path]] = _opt["text"], device: str = _opt["device"], blocksize: int = _opt["blocksize"],
    progress: bool = _opt["progress"], as_json: bool = _opt["as_json"], world: int = _opt["world"],
) -> None:
    """Largest error budget whose plan meets --target on the tuning split (planner ∘ executor, bisection);
    the chosen plan is reported on the disjoint test split (held-out text is halved: tuning | test).

    Example: halo-opt tune --target "cosine>=0.99" --scenario performance --costs runs/costs --calib runs/calib --out runs/tune
    """
    from ..artifacts import provenance
    from ..closed_loop import tune_budget
    from ..execute.evaluate import meets, parse_target
    from ..execute.pipeline import run_plan
    from ..solve import get_solver
    from ..solve.scenario import load_scenario

    parse_target(target), get_solver(solver)  # fail fast on a bad target or solver, before loading the model
    from ..execute.pipeline import context_from_folders, split_batches
    from ..paths import scenario_file

    from ..execute.distributed import with_pool

    sc0 = load_scenario(scenario_file(scenario))
    txt = [str(t) for t in text] if text else None

    def flow(pool, dev):
        ctx = context_from_folders(costs, calib, model, sequences, seq_len, seed, txt, str(profile) if profile else None, dev, part="tuning")
        ctx.pool = pool
        test_ctx = ctx.with_heldout(split_batches(ctx, txt, "test", sequences, seq_len, seed))
        res = tune_budget(ctx, costs, sc0, solver, target, budget_min, budget_max, iters, time_limit, seed, method, blocksize,
                          progress=(lambda m: typer.echo(m, err=True)) if progress else None)
        if not as_json:
            typer.echo(f"enforced on the tuning split: {res.enforced}")
        ex, m = run_plan(test_ctx, res.plan, method, blocksize, progress)  # the chosen plan on the test split
        meta = {"meta": provenance(costs_sha256=ctx.costs.sha256, model_sha256=ctx.model_sha256, method=method, target=target,
                                   solver=solver, scenario=str(scenario)),
                "plan": f"tuned budget {res.budget:.6g} (report on the test split)", "costs": str(costs),
                "tune": {"target": target, "enforced": res.enforced, "budget": res.budget, "history": res.history}}
        rec = {"target": target, "enforced": res.enforced, "budget": res.budget, "tuning_metrics": res.metrics, "test_metrics": m,
               "meets_on_test": meets(m, parse_target(target)), "tuning_text": ctx.text_spec,
               "test_text": {"part": "test", "sequences": sequences, "seq_len": seq_len}, "history": res.history}
        rep = _write(out, test_ctx, res.plan, ex, m, baselines, export, blocksize, progress, meta, {"tune.json": rec})
        return test_ctx, res, rec, rep

    test_ctx, res, rec, rep = with_pool(world, device, costs, calib, model, flow)
    line, data = _summary(rep, test_ctx)
    emit(f"budget ε {res.budget:.3g} meets {target} on the tuning split ({len(res.history)} budgets tried, {solver}); "
         f"on the test split it {'meets' if rec['meets_on_test'] else 'MISSES'} it: {line} -> {out}/report.md",
         data | {"budget_rel": res.budget, "target": target, "enforced": res.enforced, "meets_on_test": rec["meets_on_test"],
                 "tuning_metrics": res.metrics, "solver": solver, "history": res.history, "out": str(out)}, as_json)


@app.command()
def study(
    target: str = typer.Option(..., "--target", help=TARGET_HELP),
    scenarios: str = typer.Option("performance,energy,balanced", "--scenarios", help="comma list of scenarios (shipped names or TOML paths)"),
    solvers: str = typer.Option("lagrange,greedy", "--solvers", help="comma list of planner solvers"),
    costs: Path = _opt["costs"], calib: Path = _opt["calib"], model: str = _opt["model"], method: str = _opt["method"],
    out: Path = typer.Option(..., "--out", help="study folder: points/ (one file per finished point; a rerun resumes) and study.json"),
    budget_min: float = typer.Option(0.0, "--budget-min", help="smallest relative budget ε tried"),
    budget_max: float = typer.Option(0.2, "--budget-max", help="largest relative budget ε tried"),
    iters: int = typer.Option(8, "--iters", help="bisection steps"),
    time_limit: float = typer.Option(30.0, "--time-limit", help="solver time limit per budget, s"),
    profile: Optional[Path] = _opt["profile"], sequences: int = _opt["sequences"], seq_len: int = _opt["seq_len"],
    seed: int = _opt["seed"], text: Optional[list[Path]] = _opt["text"],
    ray: Optional[str] = typer.Option(None, "--ray", help="run the points on Ray: local | auto | ADDRESS (needs halo-opt[distributed])"),
    workers: int = typer.Option(1, "--workers", help="local processes, or the CPUs of --ray local"),
    threads: int = typer.Option(1, "--threads", help="torch threads per point (the same on every engine: the same numbers)"),
    progress: bool = _opt["progress"], as_json: bool = _opt["as_json"],
) -> None:
    """The closed loop over scenarios × solvers (`tune` for each pair), serially or on Ray, resumable.

    Example: halo-opt study --target "cosine>=0.99" --scenarios performance,energy --solvers lagrange,greedy --costs runs/costs --calib runs/calib --out runs/study --ray local --workers 4
    """
    from ..artifacts import write_json
    from ..closed_loop import tune_study

    recs = tune_study(costs, calib, model, [x.strip() for x in scenarios.split(",") if x.strip()],
                      [x.strip() for x in solvers.split(",") if x.strip()], target, out / "points", budget_min, budget_max, iters,
                      time_limit, seed, method, heldout=sequences, seq_len=seq_len, text=[str(t) for t in text] if text else None,
                      profile=str(profile) if profile else None, ray=ray, workers=workers, threads=threads, progress=progress)
    rows = [{k: r.get(k) for k in ("goal", "solver", "budget", "metrics", "test_metrics", "note", "wall_s")} for r in recs]
    write_json(out / "study.json", {"target": target, "points": rows})
    ok = [r for r in rows if r["note"] is None]
    emit(f"{len(ok)}/{len(rows)} (scenario, solver) points tuned to {target} -> {out}/study.json "
         + "; ".join(f"{r['goal']}/{r['solver']}: ε {r['budget']:.3g}" for r in ok), {"points": rows, "out": str(out)}, as_json)


@app.command()
def perplexity(
    model: str = typer.Option("smollm2-135m", "--model", help="causal LM: a pulled model name or a local Hugging Face folder"),
    text: Optional[list[Path]] = typer.Option(None, "--text", help="text files, joined by blank lines into one stream "
                                              "(default: the test part of the stdlib docstrings)"),
    context_len: int = typer.Option(512, "--context-len", help="tokens per non-overlapping window"),
    max_windows: Optional[int] = typer.Option(None, "--max-windows", help="score only the first N windows"),
    plan: Optional[Path] = typer.Option(None, "--plan", help="also score the model quantized per this plan (needs --costs, --calib)"),
    costs: Optional[Path] = typer.Option(None, "--costs", help="cost folder of --plan"),
    calib: Optional[Path] = typer.Option(None, "--calib", help="calibration folder of --plan"),
    method: str = typer.Option("rtn", "--method", help="rtn | gptq"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda"),
) -> None:
    """Perplexity over a contiguous token stream in non-overlapping windows (the GPTQ / llm-compressor WikiText-2 protocol).

    Example: halo-opt perplexity --model path/to/hf-causal-lm --text wiki.test.raw --context-len 2048
    """
    from ..calibration.models import SUPPORTED, load_model
    from ..calibration.text import read_documents, stdlib_documents
    from ..execute.evaluate import stream_ids, stream_perplexity

    ad = load_model(model).to(device)
    if SUPPORTED.get(ad.kind) != "causal":
        raise UserError(f"perplexity needs a causal LM; {ad.name} is a {ad.kind} model (use `halo-opt execute` for encoders)")
    docs = read_documents(text) if text else stdlib_documents("test")
    ids = stream_ids(ad.tokenizer, [d.text for d in docs])
    where = ", ".join(map(str, text)) if text else "stdlib docstrings, test part"
    r = stream_perplexity(ad.model, ids, context_len, ad._forward, max_windows=max_windows)
    typer.echo(f"float: perplexity {r['perplexity']:.4f} on {r['tokens_scored']} tokens ({r['windows']} windows x {context_len}, {where})")
    if plan:
        from ..execute.inputs import load_costs, load_hessian, load_plan
        from ..execute.pipeline import Context, quantized
        from ..execute.run import execute_plan

        if not (costs and calib):
            raise UserError("--plan needs --costs and --calib (the folders it was planned from)")
        c = load_costs(costs)
        ex = execute_plan(load_plan(plan), c, {l.name: l.weight() for l in ad.linears}, lambda n: load_hessian(calib, n).H, method, device)
        ctx = Context(c, ad.model, {l.name: l.module for l in ad.linears}, {}, lambda n: None, "causal", ad._forward, [])
        q = stream_perplexity(quantized(ctx, ex), ids, context_len, ad._forward, max_windows=max_windows)
        typer.echo(f"plan ({method}): perplexity {q['perplexity']:.4f} (+{100 * (q['perplexity'] / r['perplexity'] - 1):.2f} %)")

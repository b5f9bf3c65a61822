"""The demo: the whole pipeline on the embedded default model, composed from the public stages.

characterize (cached) → calibrate → costs → plan (three HALO goals + baselines, several
solvers) → Pareto sweeps → execute every plan → report (:func:`halo_opt.report.render`, which
draws every page and figure from the artifacts). Holds no logic of its own beyond composition;
every stage resumes from its artifact, and a resumed stage keeps the seconds of the run that
computed it (``state/stages.json``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .artifacts import read_json, sha256_file, sha256_json, write_json, write_parquet
from .paths import cache_dir, formulations_dir

GOALS = ("performance", "energy", "balanced")
BASELINES = ("baseline_int8", "baseline_int4")


@dataclass
class DemoConfig:
    """Demo settings (defaults: a few minutes on 2 CPU cores)."""

    out: Path = Path("runs/demo")
    model: str = "minilm"
    sequences: int = 64
    seq_len: int = 128
    heldout: int = 32
    accelerator: str = "tpu_like"
    tile: int | None = 64
    solvers: tuple[str, ...] = ("cpsat", "lagrange", "greedy", "halo_layer")
    pareto_points: int = 8
    #: CP-SAT's deterministic limit per plan (Pareto points get half). 2 s: on the demo's 2,592 tiles
    #: a 10 s limit moved the objectives by <= 1.3e-5 relative and took ~4x longer (benchmarks/README.md)
    time_limit: float = 2.0
    seed: int = 0
    workers: int = 2
    arch: str = "array"
    liberty: Path | None = None


@dataclass
class Stage:
    """``seconds``: of the run that computed the stage; ``rerun_seconds``: of this run (cached or not)."""

    name: str
    seconds: float = 0.0
    cached: bool = False
    rerun_seconds: float = 0.0


@dataclass
class DemoResult:
    out: Path
    rows: list[dict] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    report: Path | None = None


def _profile_dir(cfg: DemoConfig, log: Callable[[str], None]) -> tuple[Path, bool]:
    """Characterize the 8-bit signed MAC once per settings; cached under ``cache_dir()/profiles``."""
    from .hardware.characterize import CharacterizeConfig, characterize, write_characterization
    from .hardware.verilog import MacSpec

    cc = CharacterizeConfig(MacSpec(8, 8, True, 24, cfg.arch), cfg.liberty, seed=cfg.seed, threads=cfg.workers)
    key = sha256_json({"spec": cc.spec.to_dict(), "liberty": sha256_file(cfg.liberty) if cfg.liberty else None,
                       "n_psums": cc.n_psums, "n_energy": cc.n_energy, "seed": cc.seed, "timing": cc.timing,
                       "version": __import__("halo_opt").__version__})[:20]
    folder = cache_dir() / "profiles" / key
    if (folder / "codebooks.json").is_file():
        return folder, True
    log("characterizing the MAC (its netlist ships in data/netlists for the shipped Yosys version; "
        "otherwise the first Yosys start compiles WebAssembly: 30 s to a few minutes)")
    profile, books, _ = characterize(cc)
    write_characterization(folder, profile, books)
    return folder, False


def _calibrate(cfg: DemoConfig, folder: Path, progress: bool) -> bool:
    from .calibration.hessian import calibrate
    from .calibration.models import load_model
    from .calibration.text import calibration_batch

    done = (folder / "meta.json").is_file() and (folder / "layers.json").is_file()
    ad = load_model(cfg.model)
    tb = calibration_batch(ad.tokenizer, None, cfg.sequences, cfg.seq_len, cfg.seed, max_length=ad.max_length)
    calibrate(ad, tb, folder, progress=progress, extra_meta={"demo": True})
    return done


def _costs(cfg: DemoConfig, calib: Path, profile: Path, folder: Path, progress: bool) -> bool:
    from .costfolder import load_costs_json
    from .costs import build_costs
    from .errors import UserError

    if (folder / "meta.json").is_file():
        try:
            m = load_costs_json(folder)[0]
        except UserError:  # another format version: rebuild
            m = {}
        inputs = m.get("inputs", {})
        if inputs.get("calib_sha256") == sha256_file(calib / "meta.json") and inputs.get("codebooks_sha256") == sha256_file(profile / "codebooks.json"):
            return True
    tile = (cfg.tile, cfg.tile) if cfg.tile else None
    build_costs(calib, profile, folder, cfg.accelerator, tile=tile, progress=progress)
    return False


def _plans(cfg: DemoConfig, costs: Path, folder: Path) -> list[dict]:
    """Solve every goal with every solver, and the baselines with cpsat; write plan JSONs."""
    from .solve import get_solver
    from .solve.build import build_problem
    from .solve.planner import plan
    from .solve.scenario import load_scenario

    rows = []
    folder.mkdir(parents=True, exist_ok=True)
    for name in GOALS + BASELINES:
        sc = load_scenario(formulations_dir() / f"{name}.toml")
        p = build_problem(costs, sc)
        solvers = cfg.solvers if name in GOALS else ("cpsat",)
        for solver in solvers:
            pl = plan(p, solver, costs=costs, scenario=sc.to_dict(), time_limit=cfg.time_limit, workers=1,
                      seed=cfg.seed, strict=False)
            r = pl.result
            row = {"scenario": name, "solver": solver, **{k: v for k, v in r.summary().items() if k != "name"}}
            if pl.ok:
                path = folder / f"{name}-{solver}.json"
                pl.save(path)
                row |= {"plan": str(path), **_predicted(p, r)}
            rows.append(row)
        if name == "energy":
            bound = get_solver("lagrange")(build_problem(costs, sc.with_overrides(budget=math.inf)), time_limit=cfg.time_limit)
            rows.append({"scenario": "physical_bound_energy", "solver": "lagrange", **{k: v for k, v in bound.summary().items() if k != "name"},
                         **_predicted(p, bound)})
        if name == "performance":
            bound = get_solver("lagrange")(build_problem(costs, sc.with_overrides(budget=math.inf)), time_limit=cfg.time_limit)
            rows.append({"scenario": "physical_bound", "solver": "lagrange", **{k: v for k, v in bound.summary().items() if k != "name"},
                         **_predicted(p, bound)})
    return rows


def _predicted(p, r) -> dict:
    from .solve.problem import evaluate

    if not r.has_plan:
        return {}
    ev = evaluate(p, r.assignment)
    return {"pred_latency_s": ev.latency, "pred_energy_j": ev.energy, "pred_error_rel": p.relative(ev.error)}


def _pareto(cfg: DemoConfig, costs: Path, out: Path, log: Callable[[str], None], progress: bool = False) -> dict[str, str]:
    from .execute.inputs import load_costs
    from .execute.validate import baseline_cost
    from .solve.build import build_problem
    from .solve.pareto import sweep, write
    from .solve.scenario import load_scenario

    fronts, base = {}, baseline_cost(load_costs(costs), "int8")
    for goal in ("performance", "energy"):
        log(f"  Pareto sweep, goal {goal}: {len(cfg.solvers)} solvers x {cfg.pareto_points} budgets")
        sc = load_scenario(formulations_dir() / f"{goal}.toml")
        p = build_problem(costs, sc)
        df, plans = sweep(p, list(cfg.solvers), cfg.pareto_points, time_limit=cfg.time_limit / 2, workers=cfg.workers, seed=cfg.seed,
                          costs=costs, scenario=sc.to_dict(), progress=progress)
        write(out / f"pareto-{goal}", df, plans, p, meta={"scenario": sc.name, "objective": sc.objective, "costs": str(costs),
                                                          "baseline": base})
        fronts[goal] = str(out / f"pareto-{goal}")
    return fronts


def _execute(cfg: DemoConfig, rows: list[dict], costs: Path, calib: Path, profile: Path, out: Path, progress: bool,
             log: Callable[[str], None]) -> dict:
    """Run every plan (RTN) and the float/INT8/INT4 baselines through one evaluator.

    Returns ``{"baselines": {name: metrics}, "reports": {plan key: folder}, "measured": {plan key: fields}}``.
    """
    from .execute.pipeline import context_from_folders, run_baselines, run_plan, validate_execution
    from .execute.run import execute_plan
    from .execute.report import write_report
    from .planfile import load_plan

    t0 = time.perf_counter()
    ctx = context_from_folders(costs, calib, cfg.model, cfg.heldout, cfg.seq_len, cfg.seed, profile=str(profile))
    log(f"  float, INT8 and INT4 baselines on {cfg.heldout} held-out sequences")
    done = {"baselines": run_baselines(ctx, ["int8-rtn", "int4-rtn"]), "reports": {}, "measured": {}}
    todo = [r for r in rows if "plan" in r]
    evaluated: dict[str, dict] = {}  # plans of equal tile codebooks quantize to the same model: evaluate it once
    for i, row in enumerate(todo):
        plan = load_plan(row["plan"], costs).to_dict()
        same = sha256_json([plan["tile_codebook"], plan["codebooks"]])
        log(f"  plan {i + 1}/{len(todo)}: {row['scenario']}-{row['solver']} ({time.perf_counter() - t0:.0f} s elapsed)"
            + ("; same codebooks as an earlier plan: its accuracy reused" if same in evaluated else ""))
        if same in evaluated:
            ex, metrics = execute_plan(plan, ctx.costs, ctx.weights, ctx.hessian, "rtn", memo=ctx.memo), evaluated[same]
        else:
            ex, metrics = run_plan(ctx, plan, "rtn")
            evaluated[same] = metrics
        rep = validate_execution(ctx, plan, ex, metrics, done["baselines"], {"plan": row["plan"], "costs": str(costs)})
        key = f"{row['scenario']}-{row['solver']}"
        folder = out / key
        folder.mkdir(parents=True, exist_ok=True)
        write_report(folder, rep)
        done["reports"][key] = str(folder)
        done["measured"][key] = {**{f"meas_{k}": v for k, v in metrics.items()}, "spearman": rep["validation"]["spearman"],
                                 "timing_misses": rep["timing"]["miss_timing"],
                                 "realized_latency_s": rep["cost"]["realized"].get("latency_s"),
                                 "realized_energy_j": rep["cost"]["realized"].get("energy_j")}
    return done


def _resumable(path: Path, key: dict, fn: Callable[[], object]) -> tuple[object, bool]:
    """Run ``fn`` unless ``path`` holds its JSON result for the same ``key`` (inputs + settings)."""
    k = sha256_json(key)
    if path.is_file():
        saved = read_json(path)
        if saved.get("key") == k:
            return saved["value"], True
    value = fn()
    write_json(path, {"key": k, "value": value})
    return value, False


def run_demo(cfg: DemoConfig, progress: bool = True, log: Callable[[str], None] = print) -> DemoResult:
    """Run the whole pipeline into ``cfg.out`` (resuming finished stages) and render ``report.md``."""
    import shutil

    from .report import render

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    res = DemoResult(out)
    calib, costs, state = out / "calib", out / "costs", out / "state"
    state.mkdir(exist_ok=True)
    times = read_json(state / "stages.json") if (state / "stages.json").is_file() else {}
    n_stages, t_start = 7, time.perf_counter()

    def stage(name: str, fn: Callable[[], tuple[object, bool]]):
        t0 = time.perf_counter()
        log(f"[{len(res.stages) + 1}/{n_stages}] {name} ({t0 - t_start:.0f} s elapsed)")
        value, cached = fn()
        dt = time.perf_counter() - t0
        if not cached or name not in times:  # a resumed stage keeps the seconds of the run that computed it
            times[name] = dt
            write_json(state / "stages.json", times)
        res.stages.append(Stage(name, times[name], cached, dt))
        return value

    profile = stage("characterize the MAC", lambda: _profile_dir(cfg, log))
    if (out / "profile").exists():
        shutil.rmtree(out / "profile")
    shutil.copytree(profile, out / "profile")  # the run folder is self-contained for `halo-opt report`
    ckey = {"model": cfg.model, "sequences": cfg.sequences, "seq_len": cfg.seq_len, "seed": cfg.seed,
            "version": __import__("halo_opt").__version__}

    def calibrate_stage():  # a finished calibration of the same settings resumes without loading the model
        if (calib / "meta.json").is_file():
            return _resumable(state / "calibrate.json", ckey, lambda: _calibrate(cfg, calib, progress))
        done = _calibrate(cfg, calib, progress)
        write_json(state / "calibrate.json", {"key": sha256_json(ckey), "value": done})
        return None, done

    stage("calibrate Hessians", calibrate_stage)
    stage("cost tables", lambda: (None, _costs(cfg, calib, profile, costs, progress)))
    key = {"costs": sha256_file(costs / "meta.json"), "version": __import__("halo_opt").__version__,
           "config": {k: str(v) for k, v in asdict(cfg).items()}}
    rows = stage("plan: goals x solvers, baselines",
                 lambda: _resumable(state / "plans.json", key, lambda: _plans(cfg, costs, out / "plans")))
    stage("Pareto sweeps", lambda: _resumable(state / "pareto.json", key, lambda: _pareto(cfg, costs, out, log, progress)))
    ex = stage("execute plans on the model", lambda: _resumable(
        state / "execute.json", key | {"plans": rows},
        lambda: _execute(cfg, rows, costs, calib, profile, out / "execute", progress, log)))
    res.rows = [r | ex["measured"].get(f"{r['scenario']}-{r['solver']}", {}) for r in rows]
    write_parquet(out / "summary.parquet", __import__("pandas").DataFrame(res.rows))

    def record():
        write_json(out / "demo.json", {"config": {k: str(v) for k, v in asdict(cfg).items()},
                                       "stages": [asdict(s) for s in res.stages], "baselines": ex["baselines"]})

    t0 = time.perf_counter()
    rkey = sha256_json({"rows": res.rows, "baselines": ex["baselines"], "stages": {k: v for k, v in times.items() if k != "report"}, "version": __import__("halo_opt").__version__})
    done = (out / "report.md").is_file() and (state / "report.json").is_file() and read_json(state / "report.json").get("key") == rkey
    log(f"[{n_stages}/{n_stages}] report: every page and figure from the artifacts ({t0 - t_start:.0f} s elapsed)"
        + (f"; up to date (re-render with `halo-opt report {out}`)" if done else ""))
    if not done:
        record()
        render(out)
        write_json(state / "report.json", {"key": rkey})
    dt = time.perf_counter() - t0
    res.stages.append(Stage("report", times.get("report", dt) if done else dt, done, dt))
    if not done:
        times["report"] = dt
        write_json(state / "stages.json", times)
    record()
    res.report = out / "report.md"
    return res

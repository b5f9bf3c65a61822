"""Python API: one function per CLI stage (the CLI calls the same functions).

>>> from halo_opt import api
>>> prof, books, _ = api.characterize(api.CharacterizeConfig(api.MacSpec(8, 8, True, 24, "array")))
>>> api.write_characterization("runs/mac", prof, books)
>>> api.render("runs/mac")                      # profile.png: the report stage draws every figure
>>> model = api.load_model("minilm")
>>> tokens = api.calibration_batch(model.tokenizer, None, n_sequences=64, seq_len=128, seed=0)
>>> api.calibrate(model, tokens, "runs/calib")
>>> api.build_costs("runs/calib", "runs/mac", "runs/costs", accelerator="tpu_like", tile=(64, 64))
>>> problem = api.build_problem("runs/costs", api.load_scenario("formulations/performance.toml"))
>>> result = api.solve(problem, "cpsat", time_limit=30)
>>> api.write_plan("runs/plan.json", problem, result, {}, "runs/costs")

Several processes of one host (gloo on CPU, NCCL with one GPU each), results bitwise those of one
process: ``api.calibrate_world(api.cli_inputs, {"model": "minilm", "sequences": 64, "seq_len": 128,
"seed": 0}, "runs/calib", world=2)`` (each process builds its own inputs with the given top-level
function), and ``api.with_pool(2, "cpu", costs, calib, model, flow)`` runs ``flow(pool, device)`` with a
quantization pool to set as ``Context.pool`` (what ``halo-opt execute --world 2`` does).
"""

from __future__ import annotations

from .calibration.distributed import calibrate_world, cli_inputs
from .calibration.hessian import calibrate, load_calibration, load_hessian
from .execute.distributed import with_pool
from .calibration.models import from_module, load_model
from .calibration.text import calibration_batch
from .costs import build_costs
from .demo import DemoConfig, run_demo
from .errors import UserError
from .hardware.characterize import CharacterizeConfig, characterize, write_characterization
from .hardware.codebooks import Codebook, build_codebooks, load_codebooks, save_codebooks
from .hardware.dvfs import load_dvfs, load_voltage_law
from .hardware.profile import MacProfile, compare_profiles, delay_from_clock
from .hardware.verilog import MacSpec
from .report import render
from .solve import Problem, Result, evaluate, get_solver, solve
from .solve.build import build_problem
from .solve.pareto import sweep as pareto_sweep
from .solve.plan import read_plan, write_plan
from .solve.planner import Plan, plan
from .planfile import PlanFile, load_plan, save_plan
from .costfolder import load_costs, save_costs
from .solve.scenario import Scenario, load_scenario

__all__ = [
    "CharacterizeConfig", "Codebook", "DemoConfig", "MacProfile", "MacSpec", "Plan", "PlanFile", "Problem", "Result", "Scenario",
    "UserError", "load_costs", "load_plan", "plan", "save_costs", "save_plan",
    "build_codebooks", "build_costs", "build_problem", "calibrate", "calibrate_world", "calibration_batch", "cli_inputs", "characterize", "compare_profiles",
    "delay_from_clock", "evaluate",
    "from_module", "get_solver", "load_calibration", "load_codebooks", "load_dvfs", "load_hessian", "load_model",
    "load_scenario", "load_voltage_law", "pareto_sweep", "read_plan", "render", "run_demo", "save_codebooks", "solve",
    "with_pool", "write_characterization", "write_plan",
]

"""Evaluator, closed loop and report on tiny models (oracles: uniform logits, brute-force retrieval)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from halo_opt.errors import UserError
from halo_opt.execute import synthetic as syn
from halo_opt.execute.evaluate import RANGE, embedding_fidelity, meets, parse_target, perplexity
from halo_opt.execute.inputs import load_costs
from halo_opt.execute.pipeline import Context, run_baselines, run_plan, validate_execution
from halo_opt.execute.report import write_report
from halo_opt.report.execution import render_execution
from halo_opt.execute.tune import tune

from test_exec_core import Tiny, _inputs


def test_perplexity_of_uniform_logits_is_vocab_size():
    V = 11
    model = lambda input_ids, attention_mask=None: torch.zeros(*input_ids.shape, V)
    ids = torch.randint(0, V, (3, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    assert perplexity(model, [{"input_ids": ids, "attention_mask": mask}]) == pytest.approx(V, rel=1e-12)


def test_embedding_fidelity_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(9, 5, generator=g, dtype=torch.float64)
    b = a + 0.7 * torch.randn(9, 5, generator=g, dtype=torch.float64)
    f = embedding_fidelity(a, b)
    cos = [float(a[i] @ b[i] / a[i].norm() / b[i].norm()) for i in range(9)]
    def nn(e):
        return [max((j for j in range(9) if j != i), key=lambda j: float(e[i] @ e[j] / e[i].norm() / e[j].norm())) for i in range(9)]
    assert f["cosine_mean"] == pytest.approx(np.mean(cos)) and f["cosine_min"] == pytest.approx(min(cos))
    assert f["top1_agreement"] == pytest.approx(np.mean([x == y for x, y in zip(nn(a), nn(b))]))
    assert embedding_fidelity(a, a) == {"cosine_mean": pytest.approx(1.0), "cosine_min": pytest.approx(1.0), "top1_agreement": 1.0}


def test_parse_target():
    assert parse_target("cosine>=0.99") == ("cosine_mean", ">=", 0.99)
    assert parse_target("ppl<=5%") == ("ppl_increase", "<=", pytest.approx(0.05))
    assert meets({"cosine_mean": 0.995}, parse_target("cos>=0.99"))
    with pytest.raises(UserError, match="metric>=value"):
        parse_target("cosine=0.9")
    with pytest.raises(UserError, match="not measured"):
        meets({"perplexity": 3.0}, parse_target("cosine>=0.9"))
    with pytest.raises(UserError, match="unknown metric 'cosin'"):
        parse_target("cosin>=0.9")
    with pytest.raises(UserError, match="perplexity_float"):  # not a target: it does not depend on the plan
        parse_target("perplexity_float<=10")


@pytest.mark.parametrize("text, ok", [("cosine>=1", True), ("cosine>=1.0001", False), ("cosine_min<=-1", True),
                                      ("cosine_min<=-1.5", False), ("top1>=1", True), ("top1>=101%", False),
                                      ("ppl<=-100%", True), ("ppl<=-101%", False), ("perplexity<=1", True),
                                      ("perplexity<=0.9", False), ("cosine<=2", True), ("ppl>=1e9", True)])
def test_parse_target_refuses_only_bounds_no_value_meets(text, ok):
    if ok:
        name, op, v = parse_target(text)
        lo, hi = RANGE[name]
        assert (op == ">=" and v <= hi) or (op == "<=" and v >= lo)
    else:
        with pytest.raises(UserError, match="can never be met"):
            parse_target(text)


def _ctx(tmp_path, tile=(8, 6)):
    model = Tiny().eval()
    layers = {"a": model.a, "b": model.b, "c": model.c}
    calib = _inputs(1)
    H = syn.hessians(layers, lambda: [model(**b) for b in calib])
    W = {n: m.weight.detach() for n, m in layers.items()}
    syn.write_costs(tmp_path / "costs", W, {n: h for n, (h, _) in H.items()}, tile, 0.01)
    fwd = lambda m, b: m(**b)
    return Context(load_costs(tmp_path / "costs"), model, layers, W, lambda n: H[n][0], "encoder", fwd, _inputs(5, n=4, T=6),
                   profile=syn.profile_table())


def _toy_planner(costs_dir):
    """Greedy: per tile the coarsest codebook (c3, c9, full) whose running error fits budget·normaliser."""
    costs = load_costs(costs_dir)
    norm = costs.meta["normaliser"]
    def plan_fn(budget):
        left, tc = budget * norm, []
        for g in range(len(costs.tiles)):
            for cb in ("c3", "c9", "full"):
                e = costs.errors.at[g, cb]
                if e <= left or cb == "full":
                    left -= e
                    tc.append(cb)
                    break
        if left < 0:
            raise UserError(f"budget {budget} infeasible")
        return syn.make_plan(costs_dir, tc)
    return plan_fn


def test_tune_finds_largest_budget_meeting_target(tmp_path):
    ctx = _ctx(tmp_path)
    calls = []
    plan_fn = _toy_planner(tmp_path / "costs")
    def planner(b):
        calls.append(b)
        return plan_fn(b)
    measure = lambda plan: run_plan(ctx, plan, "rtn")[1]
    worst = measure(plan_fn(10.0))["cosine_mean"]                                 # every tile on c3
    best = measure(syn.make_plan(tmp_path / "costs", ["full"] * len(ctx.costs.tiles)))["cosine_mean"]
    assert best > worst
    target = ("cosine_mean", ">=", (best + worst) / 2)
    res = tune(planner, measure, target, 0.0, 10.0, iters=12)
    assert meets(res.metrics, target) and res.budget > 0
    hist = res.history
    assert len(calls) == len(set(calls)) == len(hist)             # cached: one plan per budget
    assert all(not h["ok"] for h in hist if h["budget"] > res.budget)
    assert res.budget == max(h["budget"] for h in hist if h["ok"])
    with pytest.raises(UserError, match="no tested budget .* meets the target"):
        tune(planner, measure, ("cosine_mean", ">=", 1.01), 0.0, 10.0)
    with pytest.raises(UserError, match="even budget 5 misses the target"):
        tune(planner, measure, target, 5.0, 10.0)


def test_validate_and_report(tmp_path):
    ctx = _ctx(tmp_path)
    plan = _toy_planner(tmp_path / "costs")(0.3)
    ex, m = run_plan(ctx, plan, "gptq")
    base = run_baselines(ctx, ["int8-rtn", "int4-gptq"])
    assert base["float"]["cosine_mean"] == pytest.approx(1.0)
    assert base["int8-rtn"]["cosine_mean"] > base["int4-gptq"]["cosine_mean"] - 1e-3
    rep = validate_execution(ctx, plan, ex, m, base)
    assert rep["timing"]["miss_timing"] == 0 and rep["timing"]["outside_codebook"] == 0
    assert rep["cost"]["realized"]["latency_s"] <= rep["cost"]["planned"]["latency_s"]
    assert all(r["measured"] > 0 and r["tokens"] == 48 for r in rep["layers"])
    write_report(tmp_path / "rep", rep)
    assert not (tmp_path / "rep" / "report.md").exists()  # the stage writes report.json; the report stage draws
    render_execution(tmp_path / "rep")
    back = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert set(back["methods"]) == {"plan-gptq", "float", "int8-rtn", "int4-gptq"}
    assert (tmp_path / "rep" / "error_per_layer.png").stat().st_size > 1000
    assert "Spearman" in (tmp_path / "rep" / "report.md").read_text()
    with pytest.raises(UserError, match="unknown baseline"):
        run_baselines(ctx, ["int3-rtn"])


def test_profile_delay_column_matching_codebooks(tmp_path):
    """The per-code delay column is the one whose max over each codebook's codes reproduces codebooks.json."""
    import pandas as pd
    from halo_opt.hardware.profile import MacProfile
    from halo_opt.execute.pipeline import _load_profile, code_table

    ctx = _ctx(tmp_path)
    t = syn.profile_table()
    MacProfile(pd.DataFrame({"code": t["code"], "delay_static_ps": t["delay_ps"] + 7.0, "delay_float_ps": t["delay_ps"],
                             "energy_fj": t["energy_fj"]}), {"v0": 0.9}).save(tmp_path / "prof")
    prof = _load_profile(str(tmp_path / "prof"))
    table, src = code_table(prof, ctx.costs)
    assert src == "profile delay_float_ps" and (table["delay_ps"].to_numpy() == t["delay_ps"].to_numpy()).all()
    table, src = code_table(prof.assign(delay_float_ps=prof["delay_float_ps"] + 1), ctx.costs)
    assert src.startswith("profile delay_static_ps (no profile column")

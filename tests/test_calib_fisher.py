"""Loss-aware statistics (calibration/fisher.py) against float64 brute force, and their use in the cost tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from calib_helpers import small_profile
from halo_opt.calibration import TokenBatch, calibrate, from_module
from halo_opt.calibration.fisher import collect_fisher, load_fisher, row_weights
from halo_opt.costs import build_costs
from halo_opt.errors import UserError


class Tiny(nn.Module):
    """Embedding(7, 6) -> fc1 (6->4) -> tanh -> fc2 (4->out), float64."""

    def __init__(self, out: int = 7, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.emb, self.fc1, self.fc2 = nn.Embedding(7, 6), nn.Linear(6, 4), nn.Linear(4, out)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        self.double()

    def forward(self, ids):
        return self.fc2(torch.tanh(self.fc1(self.emb(ids))))


def causal_fwd(m, b):
    return m(b["input_ids"])


def encoder_fwd(m, b):
    h = m(b["input_ids"])
    w = b["attention_mask"].to(h.dtype)[..., None]
    return (h * w).sum(1) / w.sum(1)


def _tokens(S=3, T=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 7, (S, T), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    return TokenBatch(ids, mask, {"seed": 0})


def _nll_ref(logits, ids, mask):
    """Σ_t −log softmax(logits_t)[ids_{t+1}] over positions whose token and target are real (explicit loop)."""
    tot = 0.0
    for t in range(len(ids) - 1):
        if mask[t] and mask[t + 1]:
            tot = tot - torch.log_softmax(logits[t], -1)[ids[t + 1]]
    return tot


def _fd_fisher(model, layer, loss_of_output, tb):
    """F_r = Σ_{s,t} (∂L_s/∂y_{s,t,r})² by central differences on the layer output, one sequence at a time."""
    mod = getattr(model, layer)
    F = torch.zeros(mod.out_features, dtype=torch.float64)
    h = 1e-6
    for s in range(len(tb)):
        ids, mask = tb.input_ids[s:s + 1], tb.attention_mask[s:s + 1]
        for t in range(ids.shape[1]):
            if not mask[0, t]:
                continue
            for r in range(mod.out_features):
                vals = []
                for sign in (1, -1):
                    def bump(m, i, o, t=t, r=r, sign=sign):
                        o = o.clone()
                        o[0, t, r] += sign * h
                        return o
                    hk = mod.register_forward_hook(bump)
                    with torch.no_grad():
                        vals.append(float(loss_of_output(model, ids, mask, s)))
                    hk.remove()
                F[r] += ((vals[0] - vals[1]) / (2 * h)) ** 2
    return F


def test_nll_fisher_matches_finite_differences(tmp_path):
    model, tb = Tiny(), _tokens()
    ad = from_module(model, causal_fwd)
    collect_fisher(ad, tb, tmp_path, loss="nll", batch_size=2)
    md, F = load_fisher(tmp_path)
    assert md["loss"] == "nll" and md["n_units"] == 5 + 3 + 5            # next-token positions with real token and target
    loss = lambda m, ids, mask, s: _nll_ref(m(ids)[0], ids[0], mask[0])    # noqa: E731
    for layer in ("fc1", "fc2"):
        ref = _fd_fisher(model, layer, loss, tb)
        assert torch.allclose(F[layer], ref, rtol=1e-6, atol=1e-9), (layer, F[layer], ref)
    w = row_weights(tmp_path)[1]
    assert torch.allclose(w["fc1"], F["fc1"] / (4 * 13))


def test_embedding_fisher_is_the_cosine_gauss_newton_in_expectation(tmp_path):
    """E[F_r] = Σ_t diag(Jᵀ P J) with P = (I − êêᵀ)/‖e‖² (Hessian of 1 − cos): averaged over many seeded draws."""
    model = Tiny(out=5, seed=2)
    base = _tokens(S=2, T=5, seed=3)
    reps = 600
    tb = TokenBatch(base.input_ids.repeat(reps, 1), base.attention_mask.repeat(reps, 1), {"seed": 0})
    ad = from_module(model, encoder_fwd)
    collect_fisher(ad, tb, tmp_path, loss="embedding", batch_size=200)
    md, F = load_fisher(tmp_path)
    assert md["n_units"] == 2 * reps
    # exact: J by finite differences, then diag(Jᵀ P J) summed over tokens
    for layer in ("fc1", "fc2"):
        mod = getattr(model, layer)
        exact = torch.zeros(mod.out_features, dtype=torch.float64)
        for s in range(2):
            ids, mask = base.input_ids[s:s + 1], base.attention_mask[s:s + 1]
            with torch.no_grad():
                e = encoder_fwd(model, {"input_ids": ids, "attention_mask": mask})[0]
            u = e / e.norm()
            P = (torch.eye(len(e), dtype=torch.float64) - torch.outer(u, u)) / e.norm() ** 2
            for t in range(ids.shape[1]):
                if not mask[0, t]:
                    continue
                for r in range(mod.out_features):
                    def bump(m, i, o, t=t, r=r):
                        o = o.clone()
                        o[0, t, r] += 1e-6
                        return o
                    hk = mod.register_forward_hook(bump)
                    with torch.no_grad():
                        J = (encoder_fwd(model, {"input_ids": ids, "attention_mask": mask})[0] - e) / 1e-6
                    hk.remove()
                    exact[r] += float(J @ P @ J)
        got = F[layer] / reps
        assert torch.allclose(got, exact, rtol=0.15), (layer, got, exact)   # 1200 draws: ~6% sampling error per entry


def test_fisher_resumes_bit_identically(tmp_path):
    model, tb = Tiny(), _tokens(S=6)
    ad = from_module(model, causal_fwd)
    full = collect_fisher(ad, tb, tmp_path / "a", loss="nll", batch_size=2)

    def stop(bi):
        if bi == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        collect_fisher(ad, tb, tmp_path / "b", loss="nll", batch_size=2, checkpoint_every=1, on_batch=stop)
    assert (tmp_path / "b" / "fisher.partial.safetensors").is_file()
    seen = []
    collect_fisher(ad, tb, tmp_path / "b", loss="nll", batch_size=2, on_batch=seen.append)
    assert seen == [1, 2]                                                 # batch 0 came from the checkpoint
    a, b = load_fisher(full.parent)[1], load_fisher(tmp_path / "b")[1]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(UserError, match="no Fisher loss"):
        collect_fisher(ad, tb, tmp_path / "c")


def test_costs_fisher_table_weights_rows_and_records_the_model(tmp_path):
    model = Tiny(out=7)
    ad = from_module(model.float(), causal_fwd)
    tb = _tokens(S=8, T=9)
    calibrate(ad, tb, tmp_path / "calib", batch_size=4, progress=False, fisher_loss="nll")
    meta = json.loads((tmp_path / "calib" / "meta.json").read_text())
    assert meta["fisher"]["loss"] == "nll"
    prof = small_profile(tmp_path / "prof")
    out = build_costs(tmp_path / "calib", prof, tmp_path / "costs", "tpu_like", (2, 4), model=ad, damp=0.0, fast=False,
                      progress=False)
    m = json.loads((out / "meta.json").read_text())
    assert m["error_model"] == "fisher" and m["error_models"] == ["local", "fisher"] and "nats" in m["error_units"]
    loc, fis, sel = (pd.read_parquet(out / f) for f in ("errors_local.parquet", "errors_fisher.parquet", "errors.parquet"))
    assert sel.equals(fis)
    # brute force: per row, the local row error (same optimal scale) times w_r, summed per tile
    from halo_opt.quantize import search_scales
    from halo_opt.calibration.hessian import load_hessian
    tiles = pd.read_parquet(out / "tiles.parquet")
    w = row_weights(tmp_path / "calib")[1]
    books = json.loads((out / "codebooks.json").read_text())["codebooks"]
    for _, t in tiles.iterrows():
        W = ad.layer(t["layer"]).weight().double()[t["row0"]:t["row1"], t["col0"]:t["col1"]]
        H = load_hessian(tmp_path / "calib", t["layer"])["H"][t["col0"]:t["col1"], t["col0"]:t["col1"]]
        for b in books:
            _, e = search_scales(W, H, b["codes"])
            wr = w[t["layer"]][t["row0"]:t["row1"]]
            assert fis.loc[t["tile"], b["name"]] == pytest.approx(float((wr * e).sum()), rel=1e-9, abs=1e-15)
            assert loc.loc[t["tile"], b["name"]] == pytest.approx(float(e.sum()), rel=1e-9, abs=1e-15)
    lay = pd.read_parquet(out / "layers.parquet")
    assert m["normaliser"] == pytest.approx(lay["tr_WHW_fisher"].sum()) and np.allclose(lay["tr_WHW"], lay["tr_WHW_fisher"])
    assert m["normalisers"]["local"] == pytest.approx(lay["tr_WHW_local"].sum())
    # explicit local model: errors.parquet is the local table
    out2 = build_costs(tmp_path / "calib", prof, tmp_path / "costs2", "tpu_like", (2, 4), model=ad, damp=0.0, fast=False,
                       progress=False, error_model="local")
    assert json.loads((out2 / "meta.json").read_text())["error_model"] == "local"
    assert pd.read_parquet(out2 / "errors.parquet").equals(loc)
    with pytest.raises(UserError, match="unknown error model"):
        build_costs(tmp_path / "calib", prof, tmp_path / "c3", model=ad, progress=False, error_model="kl")
    # a calibration without Fisher statistics: auto -> local, fisher -> one-line error
    calibrate(ad, tb, tmp_path / "calib-nf", batch_size=4, progress=False, fisher=False)
    out4 = build_costs(tmp_path / "calib-nf", prof, tmp_path / "c4", "tpu_like", (2, 4), model=ad, progress=False)
    assert json.loads((out4 / "meta.json").read_text())["error_model"] == "local" and not (out4 / "errors_local.parquet").exists()
    with pytest.raises(UserError, match="no Fisher statistics"):
        build_costs(tmp_path / "calib-nf", prof, tmp_path / "c5", model=ad, progress=False, error_model="fisher")


def test_with_error_model_switches_tables_without_recomputing(tmp_path):
    from halo_opt.costs import with_error_model

    ad = from_module(Tiny(out=7).float(), causal_fwd)
    calibrate(ad, _tokens(S=8, T=9), tmp_path / "calib", batch_size=4, progress=False, fisher_loss="nll")
    prof = small_profile(tmp_path / "prof")
    src = build_costs(tmp_path / "calib", prof, tmp_path / "costs", "tpu_like", (2, 4), model=ad, progress=False)
    loc = with_error_model(src, tmp_path / "loc", "local")
    m = json.loads((loc / "meta.json").read_text())
    assert m["error_model"] == "local" and m["normaliser"] == m["normalisers"]["local"] and "tr(" in m["error_units"]
    assert pd.read_parquet(loc / "errors.parquet").equals(pd.read_parquet(src / "errors_local.parquet"))
    lay = pd.read_parquet(loc / "layers.parquet")
    assert np.allclose(lay["tr_WHW"], lay["tr_WHW_local"])
    # a plan made from it records the error model
    from halo_opt.solve import build_problem, get_solver
    from halo_opt.solve.plan import plan_dict
    from halo_opt.solve.scenario import from_dict
    sc = from_dict({"name": "t", "objective": "latency", "budget": 0.5, "granularity": "layer"})
    for folder, want in ((loc, "local"), (src, "fisher")):
        p = build_problem(folder, sc)
        plan = plan_dict(p, get_solver("greedy")(p), sc.to_dict(), folder)
        assert plan["meta"]["error_model"] == want
    with pytest.raises(UserError, match="exists"):
        with_error_model(src, loc, "local")


def test_end_to_end_line_compares_fisher_prediction_with_measured(tmp_path):
    import math

    from halo_opt.execute.inputs import load_costs
    from halo_opt.execute.validate import end_to_end, predicted_errors

    ad = from_module(Tiny(out=7).float(), causal_fwd)
    calibrate(ad, _tokens(S=8, T=9), tmp_path / "calib", batch_size=4, progress=False, fisher_loss="nll")
    src = build_costs(tmp_path / "calib", small_profile(tmp_path / "prof"), tmp_path / "costs", "tpu_like", (2, 4), model=ad,
                      progress=False)
    c = load_costs(src)
    tc = ["c3"] * len(c.tiles)
    pred = float(c.errors["c3"].sum())
    r = end_to_end(c, tc, "causal", {"perplexity": 11.0, "perplexity_float": 10.0})
    assert r["error_model"] == "fisher" and r["predicted"] == pytest.approx(pred)
    assert r["measured"] == pytest.approx(math.log(1.1)) and r["ratio"] == pytest.approx(math.log(1.1) / pred)
    # per-layer validation keeps comparing the local table with measured layer-local errors
    assert predicted_errors(c, tc).sum() == pytest.approx(float(c.errors_local["c3"].sum()))
    e = end_to_end(c, tc, "encoder", {"cosine_mean": 0.99})
    assert e["measured"] == pytest.approx(0.01)

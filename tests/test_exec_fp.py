"""FP codebooks end to end: one cost folder from an INT and a (synthetic) FP profile, RTN/GPTQ per plan."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from calib_helpers import fp_profile, small_profile, two_layer_forward
from halo_opt.accelerators import Workload
from halo_opt.calibration import TokenBatch, calibrate, from_module
from halo_opt.costs import build_costs
from halo_opt.errors import UserError
from halo_opt.execute import synthetic as syn
from halo_opt.execute.apply import add_damping, block_diag_error
from halo_opt.execute.inputs import load_costs
from halo_opt.execute.run import execute_plan
from halo_opt.execute.validate import predicted_errors
from halo_opt.formats import get_format

FP4 = get_format("fp4_e2m1").codes().tolist()
FP4_BOOKS = [("full", FP4), ("pm124", [0, 2, 4, 6, 10, 12, 14]), ("half", [0, 1, 2, 3, 9, 10, 11])]


class Wide(nn.Module):
    """Embedding(50, 8) -> Linear(8, 96) -> ReLU -> Linear(96, 40): a 96-input layer (3 MX blocks)."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.emb, self.fc1, self.fc2 = nn.Embedding(50, 8), nn.Linear(8, 96), nn.Linear(96, 40)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, ids):
        return self.fc2(torch.relu(self.fc1(self.emb(ids))))


def _plan(out, fn):
    from halo_opt.artifacts import find_key

    p = syn.make_plan(out, fn)
    meta = load_costs(out).meta
    p["meta"] |= {k: find_key(meta, k) for k in ("model_sha256", "profile_sha256")}
    return p


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fpexec")
    ad = from_module(Wide(), two_layer_forward)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 50, (8, 12), generator=g)
    calibrate(ad, TokenBatch(ids, torch.ones_like(ids), {"seed": 2}), tmp / "calib", batch_size=4, progress=False)
    pi, pf = small_profile(tmp / "int4"), fp_profile(tmp / "fp4", "fp4_e2m1", FP4_BOOKS)
    out = build_costs(tmp / "calib", [pi, pf], tmp / "costs", "tpu_like", (8, 64), Workload("prefill", 1, 16),
                      model=ad, damp=0.01, progress=False)
    return tmp, ad, out


def test_costs_hold_both_profiles_with_unique_names(mixed):
    tmp, ad, out = mixed
    c = load_costs(out)
    names = list(c.codebooks)
    assert names[:4] == ["full", "c3", "pow2", "c5"] and names[4:] == ["fp4_e2m1:full", "fp4_e2m1:pm124", "fp4_e2m1:half"]
    assert c.codebooks["fp4_e2m1:full"]["format"] == "fp4_e2m1" and c.codebooks["fp4_e2m1:full"]["scale"] == "mx"
    assert "format" not in c.codebooks["full"] and c.codebooks["full"]["profile"] == 0
    meta = c.meta
    assert [p["format"] for p in meta["profiles"]] == ["int8", "fp4_e2m1"] and meta["clock_basis"] == "absolute"
    assert meta["fp_scales"] == {"rule": "mx", "mx_rule": "search", "mx_block": 32}
    # each codebook's compat follows its own absolute delay on the first profile's DVFS table
    for n, b in c.codebooks.items():
        for lv, slack in c.compat[n].items():
            assert slack is None or slack >= 0
    E = c.errors[[n for n in names if n.startswith("fp4")]].to_numpy()
    assert np.isfinite(E).all() and (E >= 0).all()


@pytest.mark.parametrize("method", ["rtn", "gptq"])
def test_mixed_plan_executes_and_rtn_reproduces_the_cost_table(mixed, method):
    tmp, ad, out = mixed
    c = load_costs(out)
    names = list(c.codebooks)
    plan = _plan(out, lambda g: names[g % len(names)])
    W = {l.name: l.weight().detach() for l in ad.linears}
    from halo_opt.execute.inputs import load_hessian

    ex = execute_plan(plan, c, W, lambda n: load_hessian(tmp / "calib", n).H, method)
    pred = predicted_errors(c, plan["tile_codebook"])
    for n, ql in ex.layers.items():
        Hd = add_damping(load_hessian(tmp / "calib", n).H, c.damp(n))
        bd = block_diag_error(ql, W[n], Hd).sum()
        if method == "rtn":
            np.testing.assert_allclose(bd, pred[n], rtol=1e-9)       # the executor reproduces e_gc exactly
        else:
            assert np.isfinite(bd) and bd > 0
        # every tile's codes are codes of its codebook (FP bit patterns for FP tiles), values exact
        for t, hist in ex.histograms().items():
            if c.tiles.loc[t, "layer"] == n:
                assert set(hist) <= set(c.codebooks[plan["tile_codebook"][t]]["codes"])
        fp_tiles = [t for t in c.layer_tiles(n)["tile"] if plan["tile_codebook"][t].startswith("fp4")]
        if fp_tiles and ql.values is not None:
            row = c.tiles.loc[fp_tiles[0]]
            q = ql.q[row.row0:row.row1, row.col0:row.col1].long().numpy()
            assert np.array_equal(get_format("fp4_e2m1").value(q), ql.values[row.row0:row.row1, row.col0:row.col1].double().numpy())
            s = ql.expanded_scales()[row.row0:row.row1, row.col0:row.col1]
            nz = s[s > 0]
            assert torch.equal(torch.log2(nz), torch.log2(nz).round())  # E8M0: powers of two
        assert torch.equal(ql.dequantize(torch.float64), (ql.code_values(torch.float32) * ql.expanded_scales(torch.float32)).double())


def test_gptq_on_one_mx_codebook_beats_rtn_on_the_layer_error(mixed):
    """GPTQ minimises the full tr(ΔW H ΔWᵀ) greedily; with MX scales fixed per 32 columns it should
    not lose to RTN on the calibration error of the wide layer (a property of this seed, checked)."""
    tmp, ad, out = mixed
    c = load_costs(out)
    plan = _plan(out, lambda g: "fp4_e2m1:full")
    W = {l.name: l.weight().detach() for l in ad.linears}
    from halo_opt.execute.inputs import load_hessian

    H = lambda n: load_hessian(tmp / "calib", n).H  # noqa: E731
    full = {}
    for m in ("rtn", "gptq"):
        ql = execute_plan(plan, c, W, H, m).layers["fc2"]
        D = ql.exact() - W["fc2"].double()
        Hd = add_damping(H("fc2"), c.damp("fc2"))
        full[m] = float(((D @ Hd) * D).sum())
    assert full["gptq"] < full["rtn"]


def test_bad_profile_combinations(tmp_path, mixed):
    tmp, ad, _ = mixed
    pi = small_profile(tmp_path / "a")
    with pytest.raises(UserError, match="given twice"):
        build_costs(tmp / "calib", [pi, pi], tmp_path / "o", model=ad, progress=False, tile=(8, 64))
    pv = fp_profile(tmp_path / "fpv", "fp4_e2m1", FP4_BOOKS, v0=0.8)
    with pytest.raises(UserError, match="nominal voltages"):
        build_costs(tmp / "calib", [pi, pv], tmp_path / "o", model=ad, progress=False, tile=(8, 64))
    pf = fp_profile(tmp_path / "fp", "fp4_e2m1", FP4_BOOKS)
    with pytest.raises(UserError, match="multiple of the MX block"):
        build_costs(tmp / "calib", [pi, pf], tmp_path / "o", model=ad, progress=False, tile=(8, 48))
    with pytest.raises(UserError, match="FP scale rule"):
        build_costs(tmp / "calib", [pi, pf], tmp_path / "o", model=ad, progress=False, tile=(8, 64), fp_scale="nv")
    assert not (tmp_path / "o").exists()


def _exec(mixed, fn, method="rtn"):
    from halo_opt.execute.inputs import load_hessian

    tmp, ad, out = mixed
    c = load_costs(out)
    plan = _plan(out, fn)
    W = {l.name: l.weight().detach() for l in ad.linears}
    return c, plan, execute_plan(plan, c, W, lambda n: load_hessian(tmp / "calib", n).H, method)


def _skeleton():
    return Wide(seed=9)   # other weights: everything must come from the export


@pytest.mark.parametrize("book", ["fp4_e2m1:full", "fp4_e2m1:pm124"])
def test_mxfp4_export_reloads_bit_identically(mixed, tmp_path, book):
    from halo_opt.execute.export import export_compressed_tensors, load_compressed_tensors
    from halo_opt.execute.run import dequantized_model

    tmp, ad, out = mixed
    c, plan, ex = _exec(mixed, lambda g: book)
    layers = {l.name: l.module for l in ad.linears}
    exp = export_compressed_tensors(tmp_path / "ct", ad.model, layers, ex, plan, c.codebooks)
    man = json.loads((exp / "export.json").read_text())
    assert man["scheme"] == "MXFP4A16" and man["compression_format"] == "mxfp4-pack-quantized"
    assert man["dequantized_layers"] == ["fc1"]                  # 8 inputs: no whole 32-column group
    cfg = json.loads((exp / "config.json").read_text()) if (exp / "config.json").exists() else None
    m = load_compressed_tensors(exp, _skeleton()) if cfg else None
    if m is None:                                           # a bare nn.Module has no config.json: compare tensors
        from compressed_tensors.compressors.mxfp4.base import MXFP4PackedCompressor
        from compressed_tensors.quantization import preset_name_to_scheme
        from safetensors.torch import load_file

        sd = load_file(str(exp / "model.safetensors"))
        assert torch.equal(sd["fc1.weight"], ex.layers["fc1"].dequantize(torch.float32))
        for n, ql in list(ex.layers.items())[1:]:
            comp = {k.split(".", 1)[1]: v for k, v in sd.items() if k.startswith(n + ".weight_")}
            w = MXFP4PackedCompressor.decompress(comp, preset_name_to_scheme("MXFP4A16", [n]))["weight"]
            assert torch.equal(w.double(), ql.dequantize(torch.float64))
    else:
        ref = dequantized_model(ad.model, layers, ex)
        for n in layers:
            assert torch.equal(getattr(m, n).weight.double(), getattr(ref, n).weight.double())


def test_mixed_int_fp_export_writes_fp_layers_dequantized(mixed, tmp_path):
    from safetensors.torch import load_file

    from halo_opt.execute.export import export_compressed_tensors, export_safetensors, load_safetensors_codes

    tmp, ad, out = mixed
    c = load_costs(out)
    lay = c.tiles["layer"].to_numpy()
    c, plan, ex = _exec(mixed, lambda g: "c5" if lay[g] == "fc1" else ("fp4_e2m1:half" if g % 2 else "pow2"), "gptq")
    layers = {l.name: l.module for l in ad.linears}
    exp = export_compressed_tensors(tmp_path / "ct", ad.model, layers, ex, plan, c.codebooks)
    man = json.loads((exp / "export.json").read_text())
    assert man["dequantized_layers"] == ["fc2"] and "exact" in man["dequantized_reason"]
    sd = load_file(str(exp / "model.safetensors"))
    assert torch.equal(sd["fc2.weight"], ex.layers["fc2"].dequantize(torch.float32)) and "fc1.weight_packed" in sd
    codes = load_safetensors_codes(export_safetensors(tmp_path / "st", ex, plan))
    ql = ex.layers["fc2"]
    assert torch.equal(codes["fc2"]["values"], ql.values) and codes["fc2"]["scale_edges"].tolist() == list(ql.scale_edges)
    assert "values" not in codes["fc1"]


def test_anchored_clock_basis_scales_each_profile_to_its_own_full(mixed, tmp_path):
    tmp, ad, out = mixed
    pi, pf = small_profile(tmp_path / "int4"), fp_profile(tmp_path / "fp4", "fp4_e2m1", FP4_BOOKS)
    o2 = build_costs(tmp / "calib", [pi, pf], tmp_path / "anch", "tpu_like", (8, 64), Workload("prefill", 1, 16),
                     model=ad, damp=0.01, progress=False, clock_basis="anchored")
    a, b = load_costs(out), load_costs(o2)
    fi, ff = a.codebooks["full"]["delay_ps"], a.codebooks["fp4_e2m1:full"]["delay_ps"]
    for n in a.codebooks:
        k = fi / ff if n.startswith("fp4") else 1.0
        assert b.codebooks[n]["delay_ps"] == pytest.approx(a.codebooks[n]["delay_ps"] * k, rel=1e-12)
    assert b.codebooks["fp4_e2m1:full"]["delay_ps"] == pytest.approx(fi) and b.meta["clock_basis"] == "anchored"
    assert b.errors.equals(a.errors)                                   # the basis changes timing only
    assert b.compat["fp4_e2m1:full"] == b.compat["full"]


@pytest.mark.parametrize("fp_scale,layout", [("mx", "full"), ("row", "full"), ("row", "blocks")])
def test_saved_cost_scales_make_rtn_search_nothing_bit_for_bit(tmp_path, monkeypatch, fp_scale, layout):
    """A cost folder built with ``save_scales=True``: RTN takes the cost stage's chosen scales
    instead of searching (no ScaleSearch call) and gives the codes and scales of a searching RTN
    bit for bit, per plan and with a memo kept across plans; INT, FP per-row and MX codebooks."""
    import shutil

    from halo_opt.execute.apply import ScaleMemo, ScaleSearch
    from halo_opt.execute.pipeline import hessian_fns

    ad = from_module(Wide(), two_layer_forward)
    ids = torch.randint(0, 50, (8, 12), generator=torch.Generator().manual_seed(3))
    calibrate(ad, TokenBatch(ids, torch.ones_like(ids), {"seed": 3}), tmp_path / "calib", batch_size=4, progress=False,
              layout=layout, block=64)
    pi, pf = small_profile(tmp_path / "int4"), fp_profile(tmp_path / "fp4", "fp4_e2m1", FP4_BOOKS)
    out = build_costs(tmp_path / "calib", [pi, pf], tmp_path / "costs", "tpu_like", (8, 64), Workload("prefill", 1, 16),
                      model=ad, damp=0.01, progress=False, fp_scale=fp_scale, save_scales=True)
    plain = shutil.copytree(out, tmp_path / "plain")
    (plain / "scales.safetensors").unlink()
    saved, searched = load_costs(out), load_costs(plain)
    assert saved.has_scales and not searched.has_scales and saved.sha256 == searched.sha256
    names = list(saved.codebooks)
    plans = [_plan(out, lambda g, k=k: names[(g * (k + 2) + k) % len(names)]) for k in range(4)]
    W = {l.name: l.weight().detach() for l in ad.linears}
    H = hessian_fns(tmp_path / "calib", ad)[0]
    calls = []
    real = ScaleSearch.__call__
    monkeypatch.setattr(ScaleSearch, "__call__", lambda self, *a: calls.append(1) or real(self, *a))
    memo = ScaleMemo()
    for plan in plans:
        calls.clear()
        b = execute_plan(plan, searched, W, H, "rtn")
        assert calls                                  # the plain folder searches
        calls.clear()
        for a in (execute_plan(plan, saved, W, H, "rtn"), execute_plan(plan, saved, W, H, "rtn", memo=memo)):
            for n in a.layers:
                assert torch.equal(a.layers[n].q, b.layers[n].q) and torch.equal(a.layers[n].scales, b.layers[n].scales)
        assert not calls                              # the saved folder searches nothing
    assert memo._d                                    # the kept memo holds the seeded scales


def test_saved_cost_scales_of_another_shape_is_one_clear_error(tmp_path, mixed):
    import shutil

    from safetensors.numpy import save_file

    tmp, ad, out = mixed
    bad = shutil.copytree(out, tmp_path / "bad")
    save_file({"fc1": np.zeros((2, 96, 1)), "fc2": np.zeros((2, 40, 2))}, str(bad / "scales.safetensors"))
    c = load_costs(bad)
    names = list(c.codebooks)
    W = {l.name: l.weight().detach() for l in ad.linears}
    from halo_opt.execute.inputs import load_hessian

    with pytest.raises(UserError, match="scales of shape .* for layer 'fc1'.*rebuild the costs"):
        execute_plan(_plan(bad, lambda g: names[g % len(names)]), c, W, lambda n: load_hessian(tmp / "calib", n).H, "rtn")

"""Hessian layouts (contract §3): a ``blocks`` calibration keeps only the diagonal blocks cost
tables read (+ diag H and (W H Wᵀ)_rr), gives the same cost tables as a full one (bit for bit in
float64, within float32 rounding otherwise), refuses tile widths that do not divide its blocks,
and GPTQ recomputes the full H bit for bit from the calibration tokens."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from calib_helpers import TEXT, small_profile, tiny_hf

from halo_opt.calibration import calibrate, calibration_batch, load_model
from halo_opt.calibration.hessian import (block_diagonal_hessian, calibration_tokens, diag_blocks, hessian_layout,
                                          load_calibration, load_hessian, load_hessian_blocks, recompute_hessians)
from halo_opt.costs import build_costs
from halo_opt.errors import UserError


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("layout")
    folder = tiny_hf("llama", tmp / "llama")
    (tmp / "t.txt").write_text(TEXT)
    prof = small_profile(tmp / "prof")
    ad = load_model(str(folder))
    tb = calibration_batch(ad.tokenizer, [str(tmp / "t.txt")], 4, 16, 0, max_length=ad.max_length)
    for name, kw in {"full": {"layout": "full"}, "b64": {"layout": "blocks", "block": 16, "block_dtype": "float64"},
                     "b32": {"layout": "blocks", "block": 16}}.items():
        calibrate(ad, tb, tmp / name, batch_size=2, progress=False, fisher=False, **kw)
        build_costs(tmp / name, prof, tmp / f"costs-{name}", "tpu_like", (8, 8), model=ad, progress=False)
    return tmp, ad, tb, prof


def test_blocks_store_what_costs_need_and_give_the_same_tables(runs):
    tmp, ad, _, prof = runs
    name = ad.linears[0].name
    assert hessian_layout(tmp / "full", name) == {"layout": "full"}
    assert hessian_layout(tmp / "b32", name)["layout"] == "blocks"
    H = load_hessian(tmp / "full", name)["H"]
    t = load_hessian(tmp / "b32", name)
    assert "H" not in t and t["H_blocks"].dtype == torch.float32 and t["H_blocks"].shape == (2, 16, 16)  # K = 32
    assert torch.equal(t["H_diag"], torch.diagonal(H))
    for w in (16, 8, 4):  # exact sub-blocks for every width dividing the stored one
        b, _ = load_hessian_blocks(tmp / "b64", name, w)
        assert torch.equal(b, diag_blocks(H, w))
    e = {k: pd.read_parquet(tmp / f"costs-{k}" / "errors.parquet") for k in ("full", "b64", "b32")}
    pd.testing.assert_frame_equal(e["full"], e["b64"])  # float64 blocks: the same errors, bit for bit
    pd.testing.assert_frame_equal(e["full"], e["b32"], rtol=1e-4, check_exact=False)
    lf, lb = (pd.read_parquet(tmp / f"costs-{k}" / "layers.parquet") for k in ("full", "b32"))
    assert (lf["tr_WHW"] - lb["tr_WHW"]).abs().max() <= 1e-12 * lf["tr_WHW"].abs().max()  # from the full H at calibration
    disk = {k: sum(p.stat().st_size for p in (tmp / k / "hessians").iterdir()) for k in ("full", "b32")}
    assert disk["b32"] < disk["full"]
    with pytest.raises(UserError, match="tile columns 12 must divide it"):
        build_costs(tmp / "b32", prof, tmp / "bad", "tpu_like", (8, 12), model=ad, progress=False)
    assert not (tmp / "bad").exists()


def test_full_hessian_is_recomputed_bit_for_bit_and_block_diagonal_matches(runs):
    tmp, ad, tb, _ = runs
    meta, layers = load_calibration(tmp / "b32")
    names = [l["name"] for l in layers]
    again = recompute_hessians(ad, calibration_tokens(meta, ad.tokenizer, ad.max_length), names[3:5], batch_size=2)
    for n in names[3:5]:
        assert torch.equal(again[n], load_hessian(tmp / "full", n)["H"])
    H = load_hessian(tmp / "full", names[0])["H"]
    bd = block_diagonal_hessian(tmp / "b64", names[0])
    assert torch.equal(bd[:16, :16], H[:16, :16]) and (bd[:16, 16:] == 0).all()


def test_gptq_from_a_blocks_calibration_equals_gptq_from_the_full_one(runs):
    from halo_opt.execute.pipeline import context_from_folders, run_plan
    from halo_opt.paths import formulations_dir
    from halo_opt.solve.build import build_problem
    from halo_opt.solve.planner import plan as make_plan
    from halo_opt.solve.scenario import load_scenario

    tmp, ad, _, prof = runs
    texts = [str(tmp / "t.txt")]
    out = {}
    for k in ("full", "b64"):
        ctx = context_from_folders(tmp / f"costs-{k}", tmp / k, str(tmp / "llama"), 2, 16, 0, texts)
        sc = load_scenario(formulations_dir() / "performance.toml").with_overrides(budget=0.05)
        plan = make_plan(build_problem(tmp / f"costs-{k}", sc), "greedy", costs=tmp / f"costs-{k}", scenario=sc.to_dict()).to_dict()
        ex, _ = run_plan(ctx, plan, "gptq")
        assert ctx.cache_hessians == (k == "full")
        out[k] = ex
    assert out["full"].tile_codebook == out["b64"].tile_codebook and len(set(out["full"].tile_codebook)) > 1
    for n, ql in out["full"].layers.items():
        assert torch.equal(ql.q, out["b64"].layers[n].q)

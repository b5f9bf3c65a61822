"""Export round trips: compressed-tensors (its own loader, via transformers and bare) and plain safetensors."""

from __future__ import annotations

import pytest
import torch

from halo_opt.errors import UserError
from halo_opt.execute import synthetic as syn
from halo_opt.execute.export import (export_compressed_tensors, export_safetensors, load_compressed_tensors,
                                     load_safetensors_codes, verify_export)
from halo_opt.execute.inputs import load_costs
from halo_opt.execute.run import dequantized_model, execute_plan, uniform_baseline

from test_exec_core import Tiny, _inputs

import compressed_tensors  # noqa: E402,F401  (in the test extra: the export tests run in CI, no skip)


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)  # transformers' init uses the global RNG; restored below
    state = torch.random.get_rng_state()
    try:
        cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
        return LlamaForCausalLM(cfg).eval()
    finally:
        torch.random.set_rng_state(state)


def _prepare(tmp_path, model, layers, run, tile):
    H = syn.hessians(layers, run)
    W = {n: m.weight.detach() for n, m in layers.items()}
    syn.write_costs(tmp_path / "costs", W, {n: h for n, (h, _) in H.items()}, tile, 0.01)
    return load_costs(tmp_path / "costs"), W, H


def test_llama_compressed_tensors_roundtrip_through_transformers(tmp_path):
    model = _tiny_llama()
    layers = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n}
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 64, (3, 12), generator=g)
    costs, W, H = _prepare(tmp_path, model, layers, lambda: model(ids), (8, 16))
    plan = syn.make_plan(tmp_path / "costs", lambda t: ["full", "c9", "pow2", "c3"][t % 4])
    ex = execute_plan(plan, costs, W, lambda n: H[n][0], "gptq")
    ref = dequantized_model(model, layers, ex)
    path = export_compressed_tensors(tmp_path / "ct", model, layers, ex, plan)
    back = load_compressed_tensors(path, causal=True)
    with torch.no_grad():
        assert torch.equal(ref(ids).logits, back(ids).logits)
        assert not torch.equal(model(ids).logits, back(ids).logits)
    assert verify_export(path)["bits"] == 4


def test_generic_module_int8_roundtrip_uneven_tiles_and_safetensors(tmp_path):
    model = Tiny().eval()
    layers = {"a": model.a, "b": model.b, "c": model.c}
    calib = _inputs(1)
    costs, W, H = _prepare(tmp_path, model, layers, lambda: [model(**b) for b in calib], (8, 6))  # K=20 -> widths 6,6,6,2
    ex = uniform_baseline("int8", costs, W, lambda n: H[n][0], "rtn")
    plan = syn.make_plan(tmp_path / "costs", lambda t: "full")
    ref = dequantized_model(model, layers, ex)
    path = export_compressed_tensors(tmp_path / "ct", model, layers, ex, plan)
    assert verify_export(path)["bits"] == 8
    back = load_compressed_tensors(path, model=Tiny(seed=7).eval())
    x = _inputs(9, n=1)[0]
    with torch.no_grad():
        assert torch.equal(ref(**x), back(**x))
    st = load_safetensors_codes(export_safetensors(tmp_path / "st", ex, plan))
    for n, ql in ex.layers.items():
        assert torch.equal(st[n]["codes"].long(), ql.q.long()) and torch.equal(st[n]["scales"], ql.scales)
        assert tuple(st[n]["col_edges"].tolist()) == ql.grid.col_edges


def test_corrupted_export_is_a_clear_error(tmp_path):
    model = Tiny().eval()
    layers = {"a": model.a, "b": model.b, "c": model.c}
    calib = _inputs(1)
    costs, W, H = _prepare(tmp_path, model, layers, lambda: [model(**b) for b in calib], (8, 8))
    plan = syn.make_plan(tmp_path / "costs", lambda t: "c9")
    ex = execute_plan(plan, costs, W, lambda n: H[n][0])
    path = export_compressed_tensors(tmp_path / "ct", model, layers, ex, plan)
    f = path / "model.safetensors"
    b = bytearray(f.read_bytes())
    b[len(b) // 2] ^= 0xFF
    f.write_bytes(bytes(b))
    with pytest.raises(UserError, match="corrupted"):
        load_compressed_tensors(path, model=Tiny().eval())
    (path / "model.safetensors").unlink()
    with pytest.raises(UserError, match="missing"):
        verify_export(path)
    with pytest.raises(UserError, match="not found"):
        verify_export(tmp_path / "nowhere")


def test_causal_pipeline_perplexity_and_validation(tmp_path):
    from halo_opt.execute.pipeline import Context, run_baselines, run_plan, validate_execution

    model = _tiny_llama()
    layers = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n}
    g = torch.Generator().manual_seed(1)
    calib = torch.randint(0, 64, (4, 16), generator=g)
    costs, W, H = _prepare(tmp_path, model, layers, lambda: model(calib), (16, 16))
    held = [{"input_ids": torch.randint(0, 64, (2, 16), generator=g), "attention_mask": torch.ones(2, 16, dtype=torch.long)} for _ in range(2)]
    fwd = lambda m, b: m(**b).logits
    ctx = Context(costs, model, layers, W, lambda n: H[n][0], "causal", fwd, held)
    plan = syn.make_plan(tmp_path / "costs", lambda t: ["c9", "full"][t % 2])
    ex, m = run_plan(ctx, plan, "rtn")
    base = run_baselines(ctx, ["int8-rtn"])
    assert base["float"]["ppl_increase"] == 0.0
    assert abs(base["int8-rtn"]["ppl_increase"]) < abs(m["ppl_increase"]) + 1e-3
    rep = validate_execution(ctx, plan, ex, m, base)
    assert len(rep["layers"]) == 14 and all(r["tokens"] == 64 for r in rep["layers"])
    assert rep["validation"]["spearman"] > 0.5          # predicted and measured rank the layers alike

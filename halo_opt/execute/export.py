"""Export an executed plan.

1. ``compressed-tensors`` (the format llm-compressor writes and vLLM / transformers load):
   ``model.safetensors`` holds every float parameter unchanged and, for each planned layer,
   ``weight_packed`` (int32-packed codes), ``weight_scale`` [N, K/g] (float32) and ``weight_shape``;
   ``config.json`` carries ``quantization_config`` (``format: pack-quantized``, ``strategy: group``).
   Per-row-and-tile scales are group quantization with group size ``g`` = gcd of the layer's tile
   widths (= tile width when it divides K): each tile scale is repeated over its ``width/g`` groups.
   Codes must fit a signed grid: 4 bits when all lie in [-8, 7], else 8 bits ([-128, 127]).
   Floating-point layers (issue 17): when **every** planned layer is MX FP4 E2M1 (or every one MX
   FP8 E4M3) — any restricted codebook of that format, E8M0 scales per 32 columns — the export is
   compressed-tensors' ``mxfp4-pack-quantized`` (``MXFP4A16`` weights) or ``mxfp8-quantized``
   (``MXFP8A16``), which reload bit-identically. Any other FP layer (FP8 with per-row scales, FP
   codes mixed with INT tiles or with another format in one export) has no single scheme here:
   its weight is written **dequantized** (float32 ``value·scale``, exact) as a plain dense weight,
   and ``export.json`` lists it under ``dequantized_layers``.
2. Plain safetensors ``codes.safetensors``: ``<layer>.codes`` (int8/int16; FP codes are bit
   patterns), ``<layer>.scales`` [N, B] float64, ``<layer>.col_edges`` (int64); FP layers also
   ``<layer>.values`` (float32 value of each code) and ``<layer>.scale_edges`` (scale groups).

Both folders hold ``plan.json`` and ``export.json`` (SHA-256 of every file): a file that does not
match its hash is reported as a corrupted export.
"""

from __future__ import annotations

import math
from functools import reduce
from pathlib import Path

import torch

from ..planfile import save_plan
from ..artifacts import atomic_path, provenance, read_json, sha256_file, write_json
from ..errors import UserError, require
from .apply import QuantLayer
from .run import Execution

MANIFEST = "export.json"


def _bits(ex: Execution, names=None) -> int:
    qs = [ql.q for n, ql in ex.layers.items() if names is None or n in names]
    if not qs:
        return 8
    lo = min(int(q.min()) for q in qs)
    hi = max(int(q.max()) for q in qs)
    if -8 <= lo and hi <= 7:
        return 4
    require(-128 <= lo and hi <= 127, f"codes span [{lo}, {hi}], outside signed int8; export with --format safetensors")
    return 8


def fp_kind(ql: QuantLayer, ex: Execution, specs: dict) -> str | None:
    """``"int"`` (every tile integer), ``"mx:<format>"`` (every tile MX-scaled FP of one format) or
    None (anything else: FP with row scales, or INT and FP tiles mixed)."""
    kinds = set()
    for t in ql.grid.tile.ravel():
        sp = specs.get(ex.tile_codebook[int(t)]) or {}
        fmt = sp.get("format")
        kinds.add("int" if not fmt or not fmt.startswith("fp") else (f"mx:{fmt}" if sp.get("scale") == "mx" else None))
    return kinds.pop() if len(kinds) == 1 else None


MX_SCHEMES = {"mx:fp4_e2m1": ("MXFP4A16", "mxfp4-pack-quantized"), "mx:fp8_e4m3": ("MXFP8A16", "mxfp8-quantized")}


def group_size(ql: QuantLayer) -> int:
    return reduce(math.gcd, [int(w) for w in ql.grid.widths()])


def group_scales(ql: QuantLayer) -> torch.Tensor:
    """Scales per (row, group of ``group_size`` columns), float32 [N, K/g]."""
    reps = (ql.grid.widths() // group_size(ql)).to(ql.scales.device)
    return ql.scales.to(torch.float32).repeat_interleave(reps, dim=1).contiguous()


def _module_names(model: torch.nn.Module, layers: dict[str, torch.nn.Module]) -> dict[str, str]:
    name_of = {id(m): n for n, m in model.named_modules()}
    return {l: name_of[id(m)] for l, m in layers.items()}


def _finish(tmp: Path, plan: dict, kind: str, extra: dict) -> None:
    save_plan(tmp / "plan.json", plan)
    files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    write_json(tmp / MANIFEST, {"meta": provenance(plan_costs_sha256=plan.get("meta", {}).get("costs_sha256")),
                                 "format": kind, "files": files, **extra})


def export_compressed_tensors(out: str | Path, model: torch.nn.Module, layers: dict[str, torch.nn.Module],
                              ex: Execution, plan: dict, codebook_specs: dict | None = None) -> Path:
    """Write a compressed-tensors checkpoint of ``model`` with the planned layers quantized (atomic).
    ``codebook_specs``: the cost folder's codebook entries (``format``/``scale`` of FP codebooks)."""
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
    from compressed_tensors.quantization import QuantizationArgs, QuantizationConfig, QuantizationScheme

    specs = codebook_specs or {}
    kinds = {n: fp_kind(ql, ex, specs) for n, ql in ex.layers.items()}
    if kinds and len(set(kinds.values())) == 1 and next(iter(kinds.values())) in MX_SCHEMES:
        return _export_mx(out, model, layers, ex, plan, *MX_SCHEMES[next(iter(kinds.values()))])
    dense = sorted(n for n, k in kinds.items() if k != "int")
    bits = _bits(ex, [n for n in ex.layers if n not in dense])
    mod_name = _module_names(model, layers)
    odd = [l for l, m in layers.items() if l in ex.layers and not isinstance(m, torch.nn.Linear)]
    require(not odd, f"layer '{odd[0] if odd else ''}' is not an nn.Linear (GPT-2 Conv1D?); compressed-tensors targets Linear "
            "layers only, export with --export safetensors")
    sd = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    groups: dict[int, list[str]] = {}
    for lname, ql in ex.layers.items():
        mn = mod_name[lname]
        if lname in dense:                                               # no scheme for this layer: exact float weight
            sd[mn + ".weight"] = ql.dequantize(torch.float32).cpu().contiguous()
            continue
        g = group_size(ql)
        args = QuantizationArgs(num_bits=bits, type="int", symmetric=True, strategy="group", group_size=g)
        w_hat = ql.dequantize(torch.float32).cpu()
        sd.pop(mn + ".weight")
        comp = PackedQuantizationCompressor.compress({"weight": w_hat, "weight_scale": group_scales(ql).cpu()},
                                                     QuantizationScheme(targets=[mn], weights=args))
        for k, v in comp.items():
            sd[f"{mn}.{k}"] = v.contiguous()
        groups.setdefault(g, []).append(mn)
    qc = QuantizationConfig(config_groups={f"group_{i}": QuantizationScheme(targets=names, weights=QuantizationArgs(
        num_bits=bits, type="int", symmetric=True, strategy="group", group_size=g)) for i, (g, names) in enumerate(sorted(groups.items()))},
        format="pack-quantized", quantization_status="compressed")
    return _write_compressed(out, model, sd, qc, plan, {"bits": bits, "method": ex.method}
                             | ({"dequantized_layers": dense, "dequantized_reason": "FP codes with no single compressed-tensors scheme "
                                 "in this export (FP with per-row scales, or INT and FP tiles mixed): float32 value·scale, exact"} if dense else {}))


def _write_compressed(out, model, sd: dict, qc, plan: dict, info: dict) -> Path:
    """A compressed-tensors folder, atomically: the model's config, ``model.safetensors`` of ``sd``,
    the quantization config ``qc`` and ``export.json`` (:func:`_finish`)."""
    from compressed_tensors.compressors.model_compressors.model_compressor import ModelCompressor
    from safetensors.torch import save_file

    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        if getattr(model, "config", None) is not None and hasattr(model.config, "save_pretrained"):
            model.config.save_pretrained(tmp)
        save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        ModelCompressor(quantization_config=qc).update_config(str(tmp))
        _finish(tmp, plan, "compressed-tensors", info)
    return out


def _export_mx(out, model, layers, ex: Execution, plan: dict, preset: str, fmt: str) -> Path:
    """Every planned layer MX-scaled FP of one format: compressed-tensors MXFP4 / MXFP8 (E8M0 per 32)."""
    from compressed_tensors.compressors.base import BaseCompressor
    from compressed_tensors.quantization import QuantizationConfig, QuantizationScheme, preset_name_to_scheme

    mod_name = _module_names(model, layers)
    sd = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    names, dense = [], []
    comp_cls = BaseCompressor.get_value_from_registry(fmt)
    for lname, ql in ex.layers.items():
        mn = mod_name[lname]
        if ql.q.shape[1] % 32:                                           # MX needs whole 32-column groups
            sd[mn + ".weight"] = ql.dequantize(torch.float32).cpu().contiguous()
            dense.append(lname)
            continue
        require(isinstance(layers[lname], torch.nn.Linear), f"layer '{lname}' is not an nn.Linear; export with --export safetensors")
        require(ql.scale_edges is not None and all(int(w) == 32 for w in ql.scale_widths()[:-1]),
                f"layer '{lname}' has no 32-column MX scale groups; export with --export safetensors")
        sd.pop(mn + ".weight")
        comp = comp_cls.compress({"weight": ql.dequantize(torch.float32).cpu(), "weight_scale": ql.scales.to(torch.float32).cpu()},
                                 preset_name_to_scheme(preset, [mn]))
        for k, v in comp.items():
            sd[f"{mn}.{k}"] = v.contiguous()
        names.append(mn)
    scheme = preset_name_to_scheme(preset, names)
    qc = QuantizationConfig(config_groups={"group_0": QuantizationScheme(targets=names, weights=scheme.weights)},
                            format=fmt, quantization_status="compressed")
    return _write_compressed(out, model, sd, qc, plan, {"scheme": preset, "compression_format": fmt, "method": ex.method}
                             | ({"dequantized_layers": dense, "dequantized_reason": "input width not a multiple of 32 (MX group): "
                                 "float32 value·scale, exact"} if dense else {}))


def export_safetensors(out: str | Path, ex: Execution, plan: dict) -> Path:
    """Write ``codes.safetensors`` (codes, scales, column edges per layer) + plan (atomic)."""
    from safetensors.torch import save_file

    t = {}
    for lname, ql in ex.layers.items():
        small = int(ql.q.min()) >= -128 and int(ql.q.max()) <= 127
        t[f"{lname}.codes"] = ql.q.to(torch.int8 if small else torch.int16).cpu().contiguous()
        t[f"{lname}.scales"] = ql.scales.cpu().contiguous()
        t[f"{lname}.col_edges"] = torch.tensor(ql.grid.col_edges, dtype=torch.int64)
        t[f"{lname}.row_edges"] = torch.tensor(ql.grid.row_edges, dtype=torch.int64)
        if ql.values is not None:
            t[f"{lname}.values"] = ql.values.cpu().contiguous()
        if ql.scale_edges is not None:
            t[f"{lname}.scale_edges"] = torch.tensor(ql.scale_edges, dtype=torch.int64)
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        save_file(t, str(tmp / "codes.safetensors"), metadata={"method": ex.method})
        _finish(tmp, plan, "safetensors", {"method": ex.method})
    return out


def verify_export(path: str | Path) -> dict:
    """Check every file of an export against its manifest hash; return the manifest."""
    path = Path(path)
    man = read_json(path / MANIFEST, "export manifest")
    for name, sha in man.get("files", {}).items():
        f = path / name
        require(f.is_file(), f"export {path} is incomplete: {name} is missing; re-export")
        require(sha256_file(f) == sha, f"export {path} is corrupted: {name} does not match its recorded hash; re-export")
    return man


def load_compressed_tensors(path: str | Path, model: torch.nn.Module | None = None, causal: bool = True) -> torch.nn.Module:
    """Reload a compressed-tensors export with compressed-tensors' own machinery, decompressed.

    With ``model`` (a float skeleton of the same architecture, modified in place): apply the
    quantization config, compress, load the state dict, decompress — the transformers load path.
    Without it: ``AutoModelForCausalLM`` / ``AutoModel.from_pretrained`` (transformers calls
    compressed-tensors).
    """
    from compressed_tensors.compressors.model_compressors.model_compressor import ModelCompressor
    from compressed_tensors.quantization import QuantizationConfig, apply_quantization_config
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    verify_export(path)
    if model is None:
        from transformers import AutoModel, AutoModelForCausalLM

        return (AutoModelForCausalLM if causal else AutoModel).from_pretrained(str(path)).eval()
    cfg = read_json(path / "config.json", "export config")
    require("quantization_config" in cfg, f"export {path}/config.json has no quantization_config; re-export")
    qc = QuantizationConfig.model_validate({k: v for k, v in cfg["quantization_config"].items() if k != "quant_method"})
    try:
        sd = load_file(str(path / "model.safetensors"))
    except (SafetensorError, OSError) as e:
        raise UserError(f"export {path}/model.safetensors is unreadable ({type(e).__name__}); re-export") from None
    apply_quantization_config(model, qc, show_progress=False)
    mc = ModelCompressor(quantization_config=qc)
    mc.compress_model(model)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    require(not missing and not unexpected, f"export {path} does not fit this model (missing {missing[:2]}, unexpected {unexpected[:2]}); use the model it was exported from")
    mc.decompress_model(model)
    return model.eval()


def load_safetensors_codes(path: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """Reload ``codes.safetensors``: ``{layer: {codes, scales, col_edges, row_edges}}``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    verify_export(path)
    try:
        t = load_file(str(path / "codes.safetensors"))
    except (SafetensorError, OSError) as e:
        raise UserError(f"export {path}/codes.safetensors is unreadable ({type(e).__name__}); re-export") from None
    out: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in t.items():
        layer, field = k.rsplit(".", 1)
        out.setdefault(layer, {})[field] = v
    return out

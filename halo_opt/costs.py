"""Cost tables (docs/contracts.md §4): per tile × codebook error, per layer × level latency.

Tiles. ``W`` [N_out, K_in] of every planned layer is cut into tiles aligned to the array:
``tile = (rows, cols)`` = output rows × input columns (edge tiles may be smaller). Tile ids run
over layers in execution order, then row blocks, then column blocks.

Error. For tile ``g`` (rows ``R_g``, columns ``K_g``) and codebook ``c``

    e_gc = Σ_{r∈R_g} Δw_r H_{K_g K_g} Δw_rᵀ,   Δw_r = s_r·Q_c(w_r/s_r) − w_r  (on columns K_g)

with ``s_r`` per output row and tile chosen on a grid to minimise the same quantity
(:mod:`halo_opt.quantize`), and ``H`` the layer's calibration Hessian damped by
``λ = damp · mean(diag H)`` (:func:`~halo_opt.calibration.hessian.damped`; ``damp = 0`` keeps
H exact). Summed over the tiles of one column block, ``e`` equals ``(2/n)‖ΔW_{:,K_g} X_{K_g}‖²``
exactly (undamped); summed over a whole layer it is the block-diagonal part of
``tr(ΔW H ΔWᵀ)`` (cross terms between column blocks are left out, rows never interact).
``normaliser = Σ_l tr(W_l H_l W_lᵀ)`` (same units) makes budgets relative.

Error models (``error_model``, recorded in ``meta.json``). ``local``: the formula above, a
layer-local proxy (units of ``tr(ΔW H ΔWᵀ)``). ``fisher``: each row's error weighted by the
loss sensitivity of its output channel, ``e_gc = Σ_r w_r Δw_r H Δw_rᵀ`` with
``w_r = F_r / (4 n_units)`` from the calibration's ``fisher.safetensors``
(:mod:`halo_opt.calibration.fisher`); its units are those of the end-to-end degradation (mean
token NLL increase in nats, or 1 − mean cosine), and its normaliser ``Σ_l Σ_r w_r (W H Wᵀ)_rr``.
The weights are positive per row, so each row's error-optimal scale is the same under both.
``auto`` (default) = ``fisher`` when the calibration holds Fisher statistics, else ``local``.
When Fisher statistics exist both tables are written (``errors_local.parquet``,
``errors_fisher.parquet``) and ``errors.parquet`` is a copy of the chosen one.

Latency per layer × DVFS level from the accelerator's roofline, and — on a systolic array when the
tile is the array's fold — per tile × level (``tile_latency.parquet``, one fold each, for fold
granularity: :meth:`~halo_opt.accelerators.SystolicArray.fold_latency`). ``meta.json`` records the
clock anchor and the compute-bound share at the nominal level (of the latency, per layer and per
fold), which every reported speedup names beside its workload. ``levels.json`` holds each
level's leakage power (``MAC leakage × n_MACs × leak_scale(V)``) and, per codebook, the timing
slack at each level (``null`` where it misses timing).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .accelerators import Accelerator, LayerShape, Workload, load_accelerator
from .artifacts import provenance, read_json, read_parquet, read_toml, sha256_file
from .costfolder import load_costs, save_costs
from .calibration.hessian import DampingWarning, damped_blocks, load_calibration, load_hessian_blocks, load_row_terms
from .calibration.models import ModelAdapter, load_model
from .errors import UserError
from .quantize import scale_grid, search_scales_blocks


def tile_grid(out_features: int, in_features: int, tile: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Tiles ``(row0, row1, col0, col1)`` of a [N_out, K_in] weight, row blocks outer."""
    tr, tc = tile
    return [(r, min(r + tr, out_features), c, min(c + tc, in_features))
            for r in range(0, out_features, tr) for c in range(0, in_features, tc)]


ERROR_MODELS = ("auto", "local", "fisher")
ERROR_UNITS = {"local": "tr(ΔW H ΔWᵀ) units (layer-local proxy)",
               "nll": "predicted increase of mean token NLL, nats/token (= log(ppl_q/ppl_float))",
               "embedding": "predicted 1 − mean cosine to the float model's embeddings"}


def layer_tile_errors(W: torch.Tensor, H: torch.Tensor, tile: tuple[int, int], codebooks: Sequence,
                      factors: torch.Tensor | None = None, fast: bool = True,
                      row_weights: dict[str, torch.Tensor | None] | None = None):
    """Errors ``e`` [G, C] (tiles in :func:`tile_grid` order × codebooks) and scales [C, N_out, n_col_blocks].

    ``W`` [N, K] and ``H`` [K, K] or its diagonal blocks [n_col_blocks, C, C] (already damped as wanted); float64 results. All column blocks and
    codebooks go through one :func:`~halo_opt.quantize.search_scales_blocks` call; a tile's error is
    the sum of its rows' errors (rows padded to whole row blocks with zeros, so the sum is deterministic).
    With ``row_weights`` ``{model: w [N] or None}`` the first result is a dict ``{model: e}`` whose
    rows' errors are multiplied by ``w`` before the sum (None: unweighted).
    """
    N, K = W.shape
    tr, tc = tile
    nrb, ncb = -(-N // tr), -(-K // tc)
    s, e = search_scales_blocks(W, H, tc, [getattr(cb, "codes", cb) for cb in codebooks], factors, fast)

    def tiles(w):
        ew = e if w is None else e * w.to(e.device, e.dtype)[None, :, None]
        ew = torch.nn.functional.pad(ew.permute(1, 2, 0), (0, 0, 0, 0, 0, nrb * tr - N))   # [nrb·tr, ncb, C]
        return _host(ew.reshape(nrb, tr, ncb, len(codebooks)).sum(1).reshape(nrb * ncb, len(codebooks)))

    if row_weights is None:
        return tiles(None), _host(s)
    return {k: tiles(w) for k, w in row_weights.items()}, _host(s)


def _host(t: torch.Tensor) -> torch.Tensor:
    # to the host through (cached) pinned buffers: 1 ms instead of 44 ms for 54 MB of scales on an H100
    return t if not t.is_cuda else torch.empty(t.shape, dtype=t.dtype, pin_memory=True).copy_(t)


def _profile_meta(profile_dir: Path) -> tuple[dict, str]:
    if not profile_dir.is_dir():
        raise UserError(f"MAC profile folder {profile_dir} not found; run `halo-opt characterize --out {profile_dir}` first")
    pj = profile_dir / "profile.json"
    if not pj.is_file():
        raise UserError(f"{profile_dir} has no profile.json; run `halo-opt characterize --out {profile_dir}` first")
    raw = read_json(pj, "profile metadata")
    return raw.get("meta", {}), str(raw.get("sha256") or sha256_file(pj))


def _pick_law(acc: Accelerator, v0: float | None, name: str | None):
    from .hardware.dvfs import load_voltage_law

    if name:
        return load_voltage_law(name)
    law = load_voltage_law(acc.voltage_law)
    if v0 is None or abs(law.v0 - v0) < 1e-9:
        return law
    from .paths import data_dir

    laws = read_toml(data_dir() / "voltage_laws.toml", "voltage-law table")
    match = [n for n, p in laws.items() if abs(float(p.get("v0", -1)) - v0) < 1e-9]
    if not match:
        raise UserError(f"no voltage law in data/voltage_laws.toml has v0 = {v0} V (the MAC profile's); add one or pass --voltage-law")
    return load_voltage_law(match[0])


def build_costs(calib_dir: str | Path, profile_dir: str | Path, out: str | Path, accelerator: str | Path = "tpu_like",
                tile: tuple[int, int] | None = None, workload: Workload = Workload(), codebooks_path: str | Path | None = None,
                model: ModelAdapter | None = None, damp: float = 0.01, voltage_law: str | None = None, n_grid: int = 15,
                fast: bool = True, device: str = "cpu", progress: bool = True, error_model: str = "auto",
                save_scales: bool = False) -> Path:
    """Write the cost-table folder ``out`` (contract §4) from a calibration and a MAC profile;
    ``error_model`` in :data:`ERROR_MODELS` (module docstring); ``save_scales`` also writes every
    layer's chosen scales ``[C, N_out, n_col_blocks]`` (float64) to ``scales.safetensors``."""
    from .hardware.codebooks import load_codebooks
    from .hardware.dvfs import load_dvfs

    t0 = time.perf_counter()
    calib_dir, profile_dir, out = Path(calib_dir), Path(profile_dir), Path(out)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device} requested but CUDA is not available; use --device cpu")
    cmeta, layers = load_calibration(calib_dir)
    if error_model not in ERROR_MODELS:
        raise UserError(f"unknown error model {error_model!r}; use one of {', '.join(ERROR_MODELS)}")
    from .calibration.fisher import FISHER_FILE, row_weights

    has_fisher = (calib_dir / FISHER_FILE).is_file()
    if error_model == "auto":
        error_model = "fisher" if has_fisher else "local"
    fmeta, fw = row_weights(calib_dir) if (has_fisher or error_model == "fisher") else ({}, {})
    models = ["local"] + (["fisher"] if fw else [])
    pmeta, profile_sha = _profile_meta(profile_dir)
    cb_path = Path(codebooks_path) if codebooks_path else profile_dir / "codebooks.json"
    if not cb_path.is_file():
        raise UserError(f"codebooks file {cb_path} not found; run `halo-opt characterize --out PROFILE` first (it writes codebooks.json) or pass --codebooks")
    books = load_codebooks(cb_path)
    full = next((b for b in books if b.name == "full"), None)
    if full is None:
        raise UserError(f"{cb_path} has no 'full' codebook (the whole code grid); regenerate it with `halo-opt characterize`")
    acc = load_accelerator(accelerator)
    tile = tuple(int(t) for t in (tile or acc.tile))
    if len(tile) != 2 or min(tile) < 1:
        raise UserError(f"tile must be two positive sizes (output rows, input columns), got {tile}")
    v0 = float(pmeta["v0"]) if "v0" in pmeta else None
    law = _pick_law(acc, v0, voltage_law)
    table = load_dvfs(acc.dvfs, full.delay_ps, law, acc.anchor_hz)
    v0 = law.v0 if v0 is None else v0

    names = [l["name"] for l in layers]
    if model is None:
        src = cmeta.get("model_source")
        if not src:
            raise UserError(f"calibration {calib_dir} was made from an in-memory model; pass the same model to build_costs(model=...)")
        model = load_model(src, layers=names)
    if model.sha256() != cmeta.get("model_sha256"):
        raise UserError(f"model weights differ from those calibrated in {calib_dir} (SHA-256 mismatch); recalibrate this model")

    factors = scale_grid(n_grid)
    M = workload.tokens
    rows_l, rows_t, notes = [], [], []
    errs: dict[str, list] = {m: [] for m in models}
    scales: dict[str, torch.Tensor] = {}
    tile0 = 0
    from .progress import track

    it = track(layers, "cost tables (layers)", progress, label=lambda lay: lay["name"])
    for order, lay in enumerate(it):
        name = lay["name"]
        W = model.layer(name).weight().to(device=device, dtype=torch.float64)
        blocks, diag = load_hessian_blocks(calib_dir, name, tile[1], device)  # H's diagonal tile blocks: all costs need
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DampingWarning)
            d = damped_blocks(blocks, diag, damp, name)
        notes += [str(w.message) for w in caught if issubclass(w.category, DampingWarning)]
        whw = load_row_terms(calib_dir, name, W, d.damp)                # (W H Wᵀ)_rr per row (full H: the normaliser)
        if fw and (name not in fw or fw[name].shape != (W.shape[0],)):
            raise UserError(f"Fisher statistics in {calib_dir} do not match layer {name}; recalibrate")
        wts = {"local": None} | ({"fisher": fw[name].to(device)} if fw else {})
        e, sc = layer_tile_errors(W, d.H, tile, books, factors, fast, row_weights=wts)
        if save_scales:
            scales[name] = sc.cpu().contiguous()
        for m in models:
            errs[m].append(e[m].numpy())
        trs = {m: float(whw.sum() if wts[m] is None else (whw * wts[m]).sum()) for m in models}
        shape = LayerShape(name, W.shape[1], W.shape[0], M)
        grid = tile_grid(W.shape[0], W.shape[1], tile)
        for k, (r0, r1, c0, c1) in enumerate(grid):
            rows_t.append({"tile": tile0 + k, "layer": name, "row0": r0, "row1": r1, "col0": c0, "col1": c1,
                           "macs": (r1 - r0) * (c1 - c0) * M})
        tile0 += len(grid)
        rows_l.append({"layer": name, "order": order, "out_features": shape.out_features, "in_features": shape.in_features,
                       "tokens": M, "macs": shape.macs, "cycles": acc.cycles(shape),
                       "bytes": acc.bytes(shape), "damp": d.damp, "tr_WHW": trs[error_model]}
                      | {f"tr_WHW_{m}": trs[m] for m in models})
    tables = {}
    for m in models:
        E = np.concatenate(errs[m])
        tables[m] = pd.DataFrame({"tile": np.arange(len(E))} | {b.name: E[:, i] for i, b in enumerate(books)})
    errors = tables[error_model]
    lat = []
    for r in rows_l:
        shape = LayerShape(r["layer"], r["in_features"], r["out_features"], M)
        for lv in table.levels:
            sec, cb = acc.latency(shape, lv)
            lat.append({"layer": r["layer"], "level": lv.name, "seconds": sec, "compute_bound": cb})
    from .accelerators import SystolicArray
    from .costfolder import nominal_level

    nom = nominal_level([{"name": lv.name, "voltage_v": lv.voltage_v, "freq_hz": lv.freq_hz} for lv in table.levels],
                        {"full": {lv.name: (0.0 if table.meets(full.delay_ps, lv) else None) for lv in table.levels}}, v0)
    tile_lat = None
    if isinstance(acc, SystolicArray) and tuple(tile) == acc.fold_tile():
        by_layer = {r["layer"]: LayerShape(r["layer"], r["in_features"], r["out_features"], M) for r in rows_l}
        tl = []
        for t in rows_t:
            for lv in table.levels:
                sec, cb = acc.fold_latency(by_layer[t["layer"]], t["row1"] - t["row0"], t["col1"] - t["col0"], lv)
                tl.append({"tile": t["tile"], "level": lv.name, "seconds": sec, "compute_bound": cb})
        tile_lat = pd.DataFrame(tl)

    def share(df):
        d = df[df["level"] == nom]
        return float(d.loc[d["compute_bound"], "seconds"].sum() / max(d["seconds"].sum(), 1e-300))

    leak_w = float(pmeta.get("leakage_w", 0.0))
    levels = {"levels": [{"name": lv.name, "voltage_v": lv.voltage_v, "freq_hz": lv.freq_hz,
                          "leak_power_w": leak_w * acc.n_macs * law.leak_scale(lv.voltage_v)} for lv in table.levels],
              "compat": {b.name: {lv.name: (s if (s := table.slack_ps(b.delay_ps, lv)) >= 0 else None) for lv in table.levels}
                         for b in books}}
    normaliser = float(sum(r["tr_WHW"] for r in rows_l))
    units = ERROR_UNITS["local" if error_model == "local" else fmeta.get("loss", "local")]
    meta = provenance(model_sha256=cmeta.get("model_sha256"), calib_sha256=sha256_file(calib_dir / "meta.json"),
                      profile_sha256=profile_sha, codebooks_sha256=sha256_file(cb_path),
                      accelerator=acc.name, accelerator_sha256=acc.config_sha256,
                      workload={"phase": workload.phase, "batch": workload.batch, "seq_len": workload.seq_len}) | {
        "model": cmeta.get("model"), "model_sha256": cmeta.get("model_sha256"), "accelerator": acc.name,
        "accelerator_kind": type(acc).__name__, "n_macs": acc.n_macs, "bandwidth_Bps": acc.bandwidth_Bps,
        "workload": {"phase": workload.phase, "batch": workload.batch, "seq_len": workload.seq_len, "tokens": M,
                     "name": workload.name},
        "clock": {"anchor": table.anchor, "f0_hz": table.f0_hz, "delay_factor": table.delay_factor,
                  "nominal_freq_hz": acc.nominal_freq_hz or None},
        "compute_bound_share": {"layer": share(pd.DataFrame(lat)), "fold": share(tile_lat) if tile_lat is not None else None,
                                "level": nom},
        "fold_tile": list(acc.fold_tile()) if isinstance(acc, SystolicArray) else None,
        "tile": list(tile), "tile_axes": ["out_features", "in_features"], "normaliser": normaliser, "v0": v0,
        "error_model": error_model, "error_units": units, "error_models": models,
        "normalisers": {m: float(sum(r[f"tr_WHW_{m}"] for r in rows_l)) for m in models},
        "fisher": {"loss": fmeta.get("loss"), "n_units": fmeta.get("n_units")} if fw else None,
        "switch": {"time_s": table.switch_time_s, "energy_j": table.switch_energy_j},
        "dvfs": table.name, "margin": table.margin, "voltage_law": law.name, "full_delay_ps": full.delay_ps,
        "damp_rel": damp, "damping_notes": notes, "scale_grid": factors.tolist(), "fast_search": fast,
        "n_tiles": len(errors), "n_layers": len(rows_l), "wall_s": round(time.perf_counter() - t0, 3)}
    extra_files = {}
    if save_scales:
        from safetensors.torch import save as save_tensors

        extra_files["scales.safetensors"] = save_tensors(scales)
    save_costs(out, meta, pd.DataFrame(rows_l), pd.DataFrame(rows_t), errors, pd.DataFrame(lat),
               [{"name": b.name, "codes": list(b.codes), "delay_ps": b.delay_ps, "energy_fj": b.energy_fj, "family": b.family}
                for b in books], levels["levels"], levels["compat"], codebooks_meta={"source": str(cb_path)},
               extra_tables=({f"errors_{m}": tables[m] for m in models} if len(models) > 1 else {})
               | ({"tile_latency": tile_lat} if tile_lat is not None else {}) or None, extra_files=extra_files)
    for n in notes:
        warnings.warn(DampingWarning(n), stacklevel=2)
    return out


def with_error_model(src: str | Path, dst: str | Path, model: str) -> Path:
    """A copy of cost folder ``src`` (built with both error tables) whose ``errors.parquet``,
    ``tr_WHW`` and normaliser are error model ``model``'s: switching models without recomputing.
    Read and written through the folder's owner (:mod:`halo_opt.costfolder`)."""
    src, dst = Path(src), Path(dst)
    c = load_costs(src)
    meta = c.meta
    have = meta.get("error_models", ["local"])
    if model not in have:
        raise UserError(f"cost folder {src} has no {model!r} error table (it has {have}); "
                        "rebuild it from a calibration with Fisher statistics")
    if dst.exists():
        raise UserError(f"{dst} exists; remove it or pick another folder")
    tables = {f"errors_{m}": read_parquet(src / f"errors_{m}.parquet", f"{m} error table")
              for m in have if (src / f"errors_{m}.parquet").is_file()}
    if c.tile_latency is not None:
        tables["tile_latency"] = c.tile_latency
    errors = tables.get(f"errors_{model}", c.errors)
    layers = c.layers.assign(tr_WHW=c.layers[f"tr_WHW_{model}"]) if f"tr_WHW_{model}" in c.layers else c.layers
    units = meta.get("error_units") if model == meta.get("error_model") else (
        ERROR_UNITS["local"] if model == "local" else ERROR_UNITS[(meta.get("fisher") or {}).get("loss", "local")])
    files = {n: (src / n).read_bytes() for n in ("scales.safetensors",) if (src / n).is_file()}
    return save_costs(dst, meta | {"error_model": model, "error_units": units,
                                   "normaliser": meta.get("normalisers", {}).get(model, meta["normaliser"])},
                      layers, c.tiles, errors, c.latency, c.codebooks, c.levels, c.compat,
                      codebooks_meta={"source": str(src / "codebooks.json")}, extra_tables=tables or None, extra_files=files)

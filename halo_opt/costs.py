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

FP codebooks (issue 17): a codebook of a floating-point format (``format`` from the profile's
``codebooks.json`` meta) rounds to the nearest value; with the ``mx`` scale rule its ``s`` is one
E8M0 power of two per row and 32 input columns (:func:`halo_opt.quantize.mx_block_scales`) and
``e_gc`` the same quadratic form over the tile. Several profiles (``--profile`` repeated) put
all their codebooks into one table (:func:`_profile_books`, :func:`build_costs`).

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
from .costfolder import SCALES_FILE, load_costs, save_costs
from .calibration.hessian import DampingWarning, damped_blocks, load_calibration, load_hessian_blocks, load_row_terms
from .calibration.models import ModelAdapter, load_model
from .errors import UserError
from .quantize import grid_of, mx_tile_errors, scale_grid, search_scales_blocks


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
                      row_weights: dict[str, torch.Tensor | None] | None = None, mx_rule: str = "search",
                      block_scales: dict | None = None):
    """Errors ``e`` [G, C] (tiles in :func:`tile_grid` order × codebooks) and scales [C, N_out, n_col_blocks].

    Codebooks with the ``"mx"`` scale rule (:class:`~halo_opt.quantize.Grid`; FP codebooks with
    E8M0 block scales) get their errors from :func:`~halo_opt.quantize.mx_tile_errors` (``mx_rule``)
    and NaN in the per-row-and-tile scales; their block scales [N, ⌈K/32⌉] go into
    ``block_scales[c]`` when a dict is given.

        ``W`` [N, K] and ``H`` [K, K] or its diagonal blocks [n_col_blocks, C, C] (already damped as wanted); float64 results. All column blocks and
    codebooks go through one :func:`~halo_opt.quantize.search_scales_blocks` call; a tile's error is
    the sum of its rows' errors (rows padded to whole row blocks with zeros, so the sum is deterministic).
    With ``row_weights`` ``{model: w [N] or None}`` the first result is a dict ``{model: e}`` whose
    rows' errors are multiplied by ``w`` before the sum (None: unweighted).
    """
    N, K = W.shape
    tr, tc = tile
    nrb, ncb = -(-N // tr), -(-K // tc)
    grids = [grid_of(cb) for cb in codebooks]
    row = [i for i, g in enumerate(grids) if g.scale == "row"]
    if len(row) == len(grids):                                           # integer fast path, as before
        s, e = search_scales_blocks(W, H, tc, grids, factors, fast)
    else:
        s = torch.full((len(grids), N, ncb), float("nan"), dtype=torch.float64, device=W.device)
        e = torch.empty_like(s)
        if row:
            s[row], e[row] = search_scales_blocks(W, H, tc, [grids[i] for i in row], factors, fast)
        for i, g in enumerate(grids):
            if g.scale == "mx":
                sb, e[i] = mx_tile_errors(W, H, tc, g, mx_rule)
                if block_scales is not None:
                    block_scales[i] = sb

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


FP_SCALES = ("mx", "row")


CLOCK_BASES = ("absolute", "anchored")


def _profile_books(profile_dirs: list[Path], codebooks_paths: list, fp_scale: str,
                   clock_basis: str = "absolute") -> tuple[list[dict], list[dict]]:
    """Codebook entries of every profile (cost-folder dicts, with ``format``/``scale`` for FP ones) and
    per-profile records. Names stay as they are for the first profile (its ``full`` is the baseline);
    those of a later profile get the prefix ``<tag>:``, the tag being the profile's weight format
    (its folder name when the format is the first profile's or another's)."""
    from .formats import get_format
    from .hardware.codebooks import load_codebooks

    if fp_scale not in FP_SCALES:
        raise UserError(f"unknown FP scale rule {fp_scale!r}; use one of {', '.join(FP_SCALES)}")
    if codebooks_paths and len(codebooks_paths) != len(profile_dirs):
        raise UserError(f"give one --codebooks per --profile ({len(profile_dirs)} profiles, {len(codebooks_paths)} codebooks files), or none")
    seen = [p.resolve() for p in profile_dirs]
    if len(set(seen)) != len(seen):
        raise UserError("a profile folder is given twice (--profile); give each profile once")
    recs, books = [], []
    for i, pdir in enumerate(profile_dirs):
        pmeta, sha = _profile_meta(pdir)
        cb_path = Path(codebooks_paths[i]) if codebooks_paths and codebooks_paths[i] else pdir / "codebooks.json"
        if not cb_path.is_file():
            raise UserError(f"codebooks file {cb_path} not found; run `halo-opt characterize --out {pdir}` first (it writes codebooks.json) or pass --codebooks")
        raw = read_json(cb_path, "codebooks file")
        cb_meta = (raw.get("meta") or {}) if isinstance(raw, dict) else {}
        fmt = cb_meta.get("format") or pmeta.get("format") or f"{'int' if pmeta.get('signed', True) else 'uint'}{int(pmeta.get('wbits', 8))}"
        f = get_format(fmt)
        recs.append({"dir": str(pdir), "sha256": sha, "codebooks": str(cb_path), "codebooks_sha256": sha256_file(cb_path),
                     "format": f.name, "meta": pmeta})
        for b in load_codebooks(cb_path):
            bf = get_format(getattr(b, "format", None) or f.name)
            if bf.is_float and not bf.is_code(b.codes).all():
                raise UserError(f"codebook {b.name!r} in {cb_path} holds codes that are not finite {bf.name} codes")
            e = {"name": b.name, "codes": list(b.codes), "delay_ps": b.delay_ps, "energy_fj": b.energy_fj, "family": b.family}
            if bf.is_float:
                e |= {"format": bf.name, "scale": fp_scale}
            books.append((i, e))
    fmts = [r["format"] for r in recs]
    for i, r in enumerate(recs):
        r["tag"] = "" if i == 0 else (r["format"] if fmts.count(r["format"]) == 1 else Path(r["dir"]).name)
    out = [e | ({"name": f"{recs[i]['tag']}:{e['name']}"} if i else {}) | ({"profile": i} if len(recs) > 1 else {})
           for i, e in books]
    names = [e["name"] for e in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"codebook name {dup[0]!r} occurs twice; give the profiles distinct folder names or rename it in its codebooks.json")
    v0s = {float(r["meta"].get("v0", 1.0)) for r in recs}
    if len(v0s) > 1:
        raise UserError(f"profiles were characterised at different nominal voltages {sorted(v0s)} V; "
                        "characterise them at one v0 so their delays and energies share a basis")
    if clock_basis not in CLOCK_BASES:
        raise UserError(f"unknown clock basis {clock_basis!r}; use one of {', '.join(CLOCK_BASES)}")
    fulls = {}
    for e in out:
        if e["name"].rsplit(":", 1)[-1] == "full":
            fulls.setdefault(e.get("profile", 0), e["delay_ps"])
    if clock_basis == "anchored" and len(recs) > 1:                     # each profile at its own full-grid clock
        miss = [recs[i]["dir"] for i in range(len(recs)) if i not in fulls]
        if miss:
            raise UserError(f"profile {miss[0]} has no 'full' codebook to anchor its delays at; regenerate its codebooks")
        for e in out:
            i = e.get("profile", 0)
            e["delay_ps"] = e["delay_ps"] * fulls[0] / fulls[i]
            e["delay_ps_own"] = e["delay_ps"] * fulls[i] / fulls[0]
    for i, r in enumerate(recs):
        r["full_delay_ps"] = fulls.get(i)
    libs = {(str(r["meta"].get("library")), str(r["meta"].get("delay_model"))) for r in recs}
    if len(libs) > 1 and clock_basis == "absolute":
        raise UserError(f"profiles come from different delay libraries/models {sorted(libs)}: their absolute "
                        "delays (ps) are not on one clock basis; characterise them with the same library")
    return out, recs


def build_costs(calib_dir: str | Path, profile_dir: str | Path | Sequence[str | Path], out: str | Path, accelerator: str | Path = "tpu_like",
                tile: tuple[int, int] | None = None, workload: Workload = Workload(),
                codebooks_path: str | Path | Sequence[str | Path] | None = None,
                model: ModelAdapter | None = None, damp: float = 0.01, voltage_law: str | None = None, n_grid: int = 15,
                fast: bool = True, device: str = "cpu", progress: bool = True, error_model: str = "auto",
                save_scales: bool = False, fp_scale: str = "mx", mx_rule: str = "search",
                clock_basis: str = "absolute") -> Path:
    """Write the cost-table folder ``out`` (contract §4) from a calibration and one or more MAC profiles;
    ``error_model`` in :data:`ERROR_MODELS` (module docstring); ``save_scales`` also writes every
    layer's chosen scales ``[C, N_out, n_col_blocks]`` (float64) to ``scales.safetensors``
    (NaN for ``mx`` codebooks, whose E8M0 block scales go to ``<layer>.mx`` [C_mx, N_out, ⌈K/32⌉]).

    Several profiles (e.g. an INT8 and an FP8 MAC) put all their codebooks into one problem
    (:func:`_profile_books` names them); the DVFS table is anchored at the first profile's ``full``
    delay. ``clock_basis``: ``absolute`` (default) — each codebook keeps its profile's absolute delay
    in ps (the profiles must share one delay library and v0), so a codebook of another profile
    meets a level iff its own absolute delay does (a PE slower than the first one's full grid
    misses the nominal level); ``anchored`` — each profile's delays are scaled by
    ``d_full(first) / d_full(own)``, i.e. every PE runs its own full grid at the nominal clock and
    its codebooks' *relative* speed-ups compete (``delay_ps_own`` keeps the unscaled value).
    Energies stay as characterised. Leakage is the first profile's. FP codebooks are quantised with
    ``fp_scale``: ``mx`` (E8M0 scale per row and 32 input columns, chosen by ``mx_rule``:
    ``search`` or ``ocp``, :func:`halo_opt.quantize.mx_block_scales`) or ``row`` (one scale per row
    and tile, the integer path's grid search)."""
    from .hardware.dvfs import load_dvfs

    t0 = time.perf_counter()
    profile_dirs = [Path(p) for p in ([profile_dir] if isinstance(profile_dir, (str, Path)) else profile_dir)]
    cb_paths = [] if codebooks_path is None else ([codebooks_path] if isinstance(codebooks_path, (str, Path)) else list(codebooks_path))
    calib_dir, profile_dir, out = Path(calib_dir), profile_dirs[0], Path(out)
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
    if mx_rule not in ("search", "ocp"):
        raise UserError(f"unknown MX scale rule {mx_rule!r}; use 'search' or 'ocp'")
    books, precs = _profile_books(profile_dirs, cb_paths, fp_scale, clock_basis)
    pmeta = precs[0]["meta"]
    cb_path = Path(precs[0]["codebooks"])
    if len(precs) == 1:
        profile_sha, cb_sha = precs[0]["sha256"], precs[0]["codebooks_sha256"]
    else:
        from .artifacts import sha256_json

        profile_sha = sha256_json([r["sha256"] for r in precs])
        cb_sha = sha256_json([r["codebooks_sha256"] for r in precs])
    grids = [grid_of(b) for b in books]
    full = next((b for b in books if b["name"] == "full"), None)
    if full is None:
        raise UserError(f"{cb_path} has no 'full' codebook (the whole code grid); regenerate it with `halo-opt characterize`")
    acc = load_accelerator(accelerator)
    tile = tuple(int(t) for t in (tile or acc.tile))
    if len(tile) != 2 or min(tile) < 1:
        raise UserError(f"tile must be two positive sizes (output rows, input columns), got {tile}")
    v0 = float(pmeta["v0"]) if "v0" in pmeta else None
    law = _pick_law(acc, v0, voltage_law)
    table = load_dvfs(acc.dvfs, full["delay_ps"], law, acc.anchor_hz)
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
        bsc: dict = {}
        e, sc = layer_tile_errors(W, d.H, tile, grids, factors, fast, row_weights=wts, mx_rule=mx_rule, block_scales=bsc)
        if save_scales:
            scales[name] = sc.cpu().contiguous()
            if bsc:
                scales[f"{name}.mx"] = torch.stack([bsc[i].cpu() for i in sorted(bsc)]).contiguous()
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
        tables[m] = pd.DataFrame({"tile": np.arange(len(E))} | {b["name"]: E[:, i] for i, b in enumerate(books)})
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
                        {"full": {lv.name: (0.0 if table.meets(full["delay_ps"], lv) else None) for lv in table.levels}}, v0)
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
              "compat": {b["name"]: {lv.name: (s if (s := table.slack_ps(b["delay_ps"], lv)) >= 0 else None) for lv in table.levels}
                         for b in books}}
    normaliser = float(sum(r["tr_WHW"] for r in rows_l))
    units = ERROR_UNITS["local" if error_model == "local" else fmeta.get("loss", "local")]
    meta = provenance(model_sha256=cmeta.get("model_sha256"), calib_sha256=sha256_file(calib_dir / "meta.json"),
                      profile_sha256=profile_sha, codebooks_sha256=cb_sha,
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
        "dvfs": table.name, "margin": table.margin, "voltage_law": law.name, "full_delay_ps": full["delay_ps"],
        "damp_rel": damp, "damping_notes": notes, "scale_grid": factors.tolist(), "fast_search": fast,
        "n_tiles": len(errors), "n_layers": len(rows_l), "wall_s": round(time.perf_counter() - t0, 3)}
    if any(not g.is_int for g in grids):
        meta["fp_scales"] = {"rule": fp_scale, "mx_rule": mx_rule, "mx_block": 32}
    if len(precs) > 1:
        meta["profiles"] = [{k: r[k] for k in ("dir", "sha256", "codebooks", "codebooks_sha256", "format", "tag", "full_delay_ps")}
                            for r in precs]
        meta["clock_basis"] = clock_basis
        meta["clock_basis_note"] = ("absolute ps of each profile (one delay library and v0); DVFS anchored at the first profile's full delay"
                                    if clock_basis == "absolute" else
                                    "each profile's delays scaled by full(first)/full(own): every PE at its own full-grid clock")
    extra_files = {}
    if save_scales:
        from safetensors.torch import save as save_tensors

        extra_files[SCALES_FILE] = save_tensors(scales)
    save_costs(out, meta, pd.DataFrame(rows_l), pd.DataFrame(rows_t), errors, pd.DataFrame(lat),
               books, levels["levels"], levels["compat"],
               codebooks_meta={"source": str(cb_path)} | ({"sources": [r["codebooks"] for r in precs]} if len(precs) > 1 else {}),
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
    files = {n: (src / n).read_bytes() for n in (SCALES_FILE,) if (src / n).is_file()}
    return save_costs(dst, meta | {"error_model": model, "error_units": units,
                                   "normaliser": meta.get("normalisers", {}).get(model, meta["normaliser"])},
                      layers, c.tiles, errors, c.latency, c.codebooks, c.levels, c.compat,
                      codebooks_meta={"source": str(src / "codebooks.json")}, extra_tables=tables or None, extra_files=files)

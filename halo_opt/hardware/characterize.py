"""Characterize a MAC: netlist -> per-code static/floating delay and energy -> MacProfile + codebooks.

Composes the hardware stages: synthesis (or a user netlist) with its exhaustive functional
check, the delay model (built-in logical effort, or Liberty NLDM), static case-analysis and
sensitised floating-mode timing over all activations x sampled partial sums, and toggle
energy over a random (or histogram-drawn) activation stream with ``w`` held. A pipelined or
carry-save design (:class:`~halo_opt.hardware.verilog.MacSpec`) is characterized stage by
stage through :func:`timing_view`, and its per-code cycle is the max over its per-MAC stages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import atomic_path, provenance, sha256_file, write_json
from ..errors import UserError
from .check import act_codes, exact_products, functional_check, psum_ports, sample_psums, weight_codes
from .codebooks import Codebook, build_codebooks, save_codebooks
from .delay import BuiltinDelay, LibertyDelay
from .dvfs import load_voltage_law, voltage_law_for
from .energy import EnergyBreakdown, draw_activations, mac_energy_breakdown, net_caps_ff
from .liberty import liberty_paths, read_liberty
from .liberty_power import read_liberty_power
from .netlist import Netlist
from .profile import MacProfile
from .timing import floating_delays, static_timing
from .verilog import MacSpec
from .yosys import read_user_netlist, synthesize_mac


@dataclass
class CharacterizeConfig:
    """What to characterize and how.

    ``n_psums``: sampled partial sums for floating-mode timing (all activations are used);
    ``n_energy``: length of the activation stream for toggle energy; ``act_hist``: optional
    activation histogram (counts over the activation grid) for that stream; ``timing``: which
    delay column codebooks use (``static`` = safe bound, ``float`` = sensitised).
    """

    spec: MacSpec = field(default_factory=MacSpec)
    liberty: Path | list[Path] | None = None  # one Liberty file or several (merged)
    netlist: Path | None = None
    n_psums: int = 64
    n_energy: int = 4096
    act_hist: np.ndarray | None = None
    timing: str = "static"
    seed: int = 0
    threads: int = 1
    wire_ff_per_fanout: float = 0.0
    voltage_law: str | None = None

    def law_name(self, library: str) -> str:
        if self.voltage_law:
            return self.voltage_law
        return "sky130" if "sky130" in library.lower() else "generic"


def load_netlist(cfg: CharacterizeConfig, stage: str = "mac") -> Netlist:
    """Synthesized (cached) or user-given netlist of ``stage``, exhaustively checked (:mod:`.check`)."""
    if cfg.netlist is None:
        return synthesize_mac(cfg.spec, cfg.liberty, stage=stage)
    if cfg.spec.stages != ("mac",):
        raise UserError(f"--netlist takes one combinational y = p + a*w MAC; design {cfg.spec.name} has stages "
                        f"{', '.join(cfg.spec.stages)}: drop --netlist or use --pipeline combinational --accumulate cpa")
    net = read_user_netlist(cfg.netlist, cfg.liberty)
    net.meta["spec"] = cfg.spec.to_dict()
    for port, width in cfg.spec.port_widths.items():
        have = len((net.inputs | net.outputs).get(port, []))
        if have != width:
            raise UserError(f"netlist port {port!r} has {have} bits but the spec says {width}; pass matching --wbits/--abits/--acc")
    functional_check(net, cfg.spec)
    return net


def timing_view(net: Netlist, spec: MacSpec, stage: str) -> Netlist:
    """``net`` with the port roles the timing and energy code expects (inputs ``a``, ``w``,
    ``p``, output ``y``; same gates and nets): a redundant pair (``ps``, ``pc``) or (``ys``,
    ``yc``) becomes one port, low half first; ``m`` of the ``acc`` stage and ``s`` of
    ``resolve`` play ``a``, ``c`` plays ``p``; a port the stage lacks (``p`` of ``mul``, ``w``
    of the weight-independent stages) is one fresh unconnected input net."""
    ins = dict(net.inputs)
    n = net.n_nets
    role = {"mac": ("a", "w"), "mul": ("a", "w"), "acc": ("m", None), "resolve": ("s", None)}[stage]
    view_in: dict[str, list[int]] = {"a": ins[role[0]], "w": ins[role[1]] if role[1] else [n]}
    n += role[1] is None
    if stage == "mul":
        view_in["p"], n = [n], n + 1
    elif stage == "resolve":
        view_in["p"] = ins["c"]
    else:
        view_in["p"] = ins["p"] if "p" in ins else ins["ps"] + ins["pc"]
    outs = net.outputs
    y = outs.get("y") or outs.get("m") or outs["ys"] + outs["yc"]
    meta = {**net.meta, "stage": stage, "view_of": net.module}
    return Netlist(net.module, n, view_in, {"y": list(y)}, net.gates, net.cells, net.net_names, meta)


def product_sample(spec: MacSpec, n: int, seed: int) -> np.ndarray:
    """``n`` distinct values the product register can hold (``a*w`` over all codes; FP: the
    aligned products): 0, the extremes, ±1 where reachable, then uniform draws (``seed``) from
    the rest."""
    prods = np.unique(exact_products(spec, act_codes(spec)[:, None], weight_codes(spec)[None, :]))
    special = [v for v in dict.fromkeys([0, int(prods.max()), int(prods.min()), -1, 1]) if v in set(prods.tolist())]
    rest = np.setdiff1d(prods, special)
    pick = np.random.default_rng(seed).choice(rest, size=min(max(0, n - len(special)), rest.size), replace=False)
    return np.concatenate([np.array(special, np.int64), np.sort(pick)])[:n]


def _psum_values(spec: MacSpec, n: int, seed: int) -> np.ndarray:
    """Sampled accumulator states as the view's ``p`` (csa: ``ps + pc·2^acc``)."""
    ps = psum_ports(spec, n, seed)
    return ps["p"] if "p" in ps else ps["ps"] | (ps["pc"] << spec.acc)


def _stage_energy(view: Netlist, lib, power, cfg: CharacterizeConfig, v0: float, codes, a_seq, p_seq, slew_ps) -> EnergyBreakdown:
    """Per-code switching, internal and leakage energy of one stage view over the streams (the
    one call into energy.py); ``slew_ps`` from the stage's static timing of the same codes."""
    caps = net_caps_ff(view, lib, wire_ff_per_fanout=cfg.wire_ff_per_fanout)
    return mac_energy_breakdown(view, codes, a_seq, p_seq, caps_ff=caps, v0=v0, power=power, slew_ps=slew_ps)


def _concat(parts: list[EnergyBreakdown]) -> EnergyBreakdown:
    """One breakdown over the codes of several (same voltage)."""
    cat = lambda f: np.concatenate([getattr(x, f) for x in parts])  # noqa: E731
    return EnergyBreakdown(cat("codes"), parts[0].voltage, parts[0].voltage_source, cat("switch_fj"), cat("internal_fj"), cat("leakage_nw"))


def characterize(cfg: CharacterizeConfig, progress: bool = False) -> tuple[MacProfile, list[Codebook], Netlist]:
    """Per-code profile, the standard codebooks, and the (checked) netlist of the first stage
    (the whole MAC when combinational, the multiplier stage when registered).

    Every stage of ``cfg.spec`` is synthesized, checked and timed on its own (a register
    boundary is a stage's ports; register clk->q and setup are not included). Per code, the
    profile's delay is the clock-limiting one: the combinational MAC's delay, or for a
    registered design ``max(mul(q), acc)`` where ``mul(q)`` is the weight-dependent multiplier
    stage (also in columns ``stage_static_ps`` / ``stage_float_ps``) and ``acc`` the
    weight-independent floor of the accumulate stage. ``resolve`` (carry-save only) runs once
    per column, is not in the per-MAC delay and is reported in ``meta['stages']``. Energy per
    MAC sums the per-MAC stages (the accumulate stage sees the product stream ``a·q``).
    """
    if cfg.n_psums < 1 or cfg.n_energy < 2:
        raise UserError("need --psums >= 1 and --energy-vectors >= 2")
    t0 = time.perf_counter()
    spec = cfg.spec
    nets = {st: load_netlist(cfg, st) for st in spec.stages}
    lib = read_liberty(cfg.liberty) if cfg.liberty is not None else None
    first = nets[spec.stages[0]]
    library = first.meta.get("library") or ("+".join(p.name for p in liberty_paths(cfg.liberty)) if cfg.liberty else "yosys-builtin")
    power = read_liberty_power(cfg.liberty) if cfg.liberty is not None else None
    law = load_voltage_law(cfg.law_name(str(library)))
    if power is not None and power.voltage and abs(power.voltage - law.v0) > 1e-9:
        if cfg.voltage_law:
            raise UserError(f"voltage law {law.name} has v0 = {law.v0:g} V but the Liberty library's supply is {power.voltage:g} V; pass a law with that v0")
        law = voltage_law_for(power.voltage, law.name)
    model = LibertyDelay(lib, wire_ff_per_fanout=cfg.wire_ff_per_fanout) if lib is not None else BuiltinDelay()
    codes = weight_codes(spec)
    t_synth = time.perf_counter() - t0

    acts = act_codes(spec)
    psums = _psum_values(spec, cfg.n_psums, cfg.seed)
    views = {st: timing_view(net, spec, st) for st, net in nets.items()}
    stage_vals = {"mac": (codes, acts, psums), "mul": (codes, acts, np.zeros(1, np.int64)),
                  "acc": (np.zeros(1, np.int64), product_sample(spec, 1 << spec.abits, cfg.seed), psums),
                  "resolve": (np.zeros(1, np.int64), sample_psums(spec.acc, spec.signed, 1 << spec.abits, cfg.seed + 1),
                              sample_psums(spec.acc, spec.signed, cfg.n_psums, cfg.seed))}
    timing: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    slews: dict[str, np.ndarray] = {}
    for st, view in views.items():
        c, a, p = stage_vals[st]
        stt = static_timing(view, model, c)
        fl = floating_delays(view, model, c, a, p, static=stt, threads=cfg.threads, progress=progress and c.size > 1)
        timing[st], slews[st] = (stt.delay_ps, fl), stt.slew_ps
    t_timing = time.perf_counter() - t0 - t_synth

    rng = np.random.default_rng(cfg.seed)
    if spec.is_float:  # uniform over the finite activation codes (bit patterns), or the histogram over them
        h = None if cfg.act_hist is None else np.asarray(cfg.act_hist, dtype=np.float64).ravel()
        if h is not None and (h.size != acts.size or (h < 0).any() or not h.sum() > 0):
            raise UserError(f"activation histogram must have {acts.size} non-negative counts (one per finite {spec.aformat} code) with a positive sum; got {h.size} values")
        a_seq = acts[rng.choice(acts.size, size=cfg.n_energy, p=None if h is None else h / h.sum())]
    else:
        a_seq = draw_activations(cfg.n_energy, spec.abits, spec.signed, rng, cfg.act_hist)
    if spec.accumulate == "cpa":
        p_lo = -(1 << (spec.acc - 1)) if spec.signed else 0
        p_seq = rng.integers(p_lo, p_lo + (1 << spec.acc), size=cfg.n_energy)
    else:
        p_seq = rng.integers(0, 1 << (2 * spec.acc), size=cfg.n_energy)
    energy: dict[str, EnergyBreakdown] = {}
    for st, view in views.items():
        def run(c, a, p):
            return _stage_energy(view, lib, power, cfg, law.v0, c, a, p, slews[st])
        if st == "mac":
            energy[st] = run(codes, a_seq, p_seq)
        elif st == "mul":
            energy[st] = run(codes, a_seq, np.zeros_like(a_seq))
        elif st == "acc":  # the product register streams a·q: one run per code
            energy[st] = _concat([run([0], exact_products(spec, a_seq, int(q)), p_seq) for q in codes])
        else:
            s_seq, c_seq = (rng.integers(0, 1 << spec.acc, size=cfg.n_energy) for _ in range(2))
            energy[st] = run([0], s_seq, c_seq)
    t_energy = time.perf_counter() - t0 - t_synth - t_timing

    import pandas as pd

    per_mac = [st for st in spec.stages if st != "resolve"]
    dep = per_mac[0]  # the weight-dependent stage
    static = np.max([np.broadcast_to(timing[st][0], codes.shape) for st in per_mac], axis=0)
    floating = np.max([np.broadcast_to(timing[st][1], codes.shape) for st in per_mac], axis=0)

    def per_code(field: str) -> np.ndarray:
        return np.sum([np.broadcast_to(getattr(energy[st], field), codes.shape) for st in per_mac], axis=0)

    cols = {"code": codes, "delay_static_ps": static, "delay_float_ps": floating, "energy_fj": per_code("total_fj"),
            "energy_switch_fj": per_code("switch_fj"), "energy_internal_fj": per_code("internal_fj"), "leakage_nw": per_code("leakage_nw")}
    if spec.pipeline == "registered":
        cols |= {"stage_static_ps": timing[dep][0], "stage_float_ps": timing[dep][1]}
    stages = {st: {"gates": len(nets[st].gates), "weight_dependent": st in ("mac", "mul"),
                   "per": "column" if st == "resolve" else "mac",
                   "static_ps": float(timing[st][0].max()), "float_ps": float(timing[st][1].max()),
                   "energy_fj": float(np.mean(energy[st].total_fj)), "leakage_w": float(np.mean(energy[st].leakage_nw)) * 1e-9,
                   "netlist_sha256": nets[st].meta.get("netlist_sha256")} for st in spec.stages}
    eb = energy[per_mac[0]]
    fp = {"format": spec.wformat, "activation_format": spec.aformat,
          "datapath": (f"exact FP product aligned into a {spec.mbits}-bit two's complement fixed-point product "
                       f"(LSB 2^{spec.fp_layout()['lsb']}), {spec.acc}-bit accumulator wrapping mod 2^{spec.acc}; no rounding; "
                       "subnormals native; NaN/Inf codes excluded")} if spec.is_float else {}
    meta: dict[str, Any] = {
        **spec.to_dict(), **fp, "design": spec.name, "library": str(library), "v0": eb.voltage, "voltage_source": eb.voltage_source,
        "voltage_law": law.name, "leakage_w": float(cols["leakage_nw"].mean()) * 1e-9,
        "energy_model": "switching + Liberty internal power" if power is not None else "switching (built-in caps)",
        "delay_model": model.name, "gates": sum(stages[st]["gates"] for st in per_mac), "stages": stages,
        "registers": "excluded: stage delays run from stage inputs to stage outputs; no clk->q, setup or register energy",
        "netlist_sha256": first.meta.get("netlist_sha256"), "netlist_source": first.meta.get("source"),
        "liberty_sha256": [sha256_file(p) for p in liberty_paths(cfg.liberty)] if cfg.liberty else None,
        "n_activations": int(acts.size), "n_psums": int(psums.size), "n_energy_vectors": cfg.n_energy,
        "activation_stream": "histogram" if cfg.act_hist is not None else "uniform", "seed": cfg.seed,
        "timing_for_codebooks": cfg.timing,
        "seconds": {"netlist": round(t_synth, 3), "timing": round(t_timing, 3), "energy": round(t_energy, 3)},
    }
    profile = MacProfile(pd.DataFrame(cols), meta)
    return profile, build_codebooks(profile, cfg.timing), first


def write_characterization(out: str | Path, profile: MacProfile, codebooks: list[Codebook]) -> Path:
    """Write profile (CSV/Parquet/JSON), ``codebooks.json`` and ``meta.json`` into ``out`` atomically
    (its figure, ``profile.png``, is drawn by ``halo_opt.report.profile_plot.render_profile``)."""
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        profile.save(tmp)
        fmt = {"format": profile.format.name} if profile.format.is_float else {}  # absent = integer codes, as before
        save_codebooks(tmp / "codebooks.json", codebooks, provenance(profile_sha256=profile.sha256(), timing=profile.meta.get("timing_for_codebooks")) | fmt)
        keys = ("wbits", "abits", "signed", "acc", "arch", "pipeline", "accumulate", "library") + (("format", "activation_format") if fmt else ())
        write_json(tmp / "meta.json", provenance(profile_sha256=profile.sha256(), **{k: profile.meta.get(k) for k in keys}))
    return out

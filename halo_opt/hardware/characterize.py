"""Characterize a MAC: netlist -> per-code static/floating delay and energy -> MacProfile + codebooks.

Composes the hardware stages: synthesis (or a user netlist) with its exhaustive functional
check, the delay model (built-in logical effort, or Liberty NLDM), static case-analysis and
sensitised floating-mode timing over all activations x sampled partial sums, and toggle
energy over a random (or histogram-drawn) activation stream with ``w`` held.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import atomic_path, provenance, sha256_file, write_json
from ..errors import UserError
from .check import code_range, functional_check, sample_psums
from .codebooks import Codebook, build_codebooks, save_codebooks
from .delay import BuiltinDelay, LibertyDelay
from .dvfs import load_voltage_law, voltage_law_for
from .energy import draw_activations, mac_energy_breakdown, net_caps_ff
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


def load_netlist(cfg: CharacterizeConfig) -> Netlist:
    """Synthesized (cached) or user-given netlist, exhaustively checked against ``y = p + a*w``."""
    if cfg.netlist is None:
        return synthesize_mac(cfg.spec, cfg.liberty)
    net = read_user_netlist(cfg.netlist, cfg.liberty)
    net.meta["spec"] = cfg.spec.to_dict()
    for port, width in cfg.spec.port_widths.items():
        have = len((net.inputs | net.outputs).get(port, []))
        if have != width:
            raise UserError(f"netlist port {port!r} has {have} bits but the spec says {width}; pass matching --wbits/--abits/--acc")
    functional_check(net, cfg.spec)
    return net


def characterize(cfg: CharacterizeConfig, progress: bool = False) -> tuple[MacProfile, list[Codebook], Netlist]:
    """Per-code profile, the standard codebooks, and the (checked) netlist they came from."""
    if cfg.n_psums < 1 or cfg.n_energy < 2:
        raise UserError("need --psums >= 1 and --energy-vectors >= 2")
    t0 = time.perf_counter()
    net = load_netlist(cfg)
    lib = read_liberty(cfg.liberty) if cfg.liberty is not None else None
    library = net.meta.get("library") or ("+".join(p.name for p in liberty_paths(cfg.liberty)) if cfg.liberty else "yosys-builtin")
    power = read_liberty_power(cfg.liberty) if cfg.liberty is not None else None
    law = load_voltage_law(cfg.law_name(str(library)))
    if power is not None and power.voltage and abs(power.voltage - law.v0) > 1e-9:
        if cfg.voltage_law:
            raise UserError(f"voltage law {law.name} has v0 = {law.v0:g} V but the Liberty library's supply is {power.voltage:g} V; pass a law with that v0")
        law = voltage_law_for(power.voltage, law.name)
    model = LibertyDelay(lib, wire_ff_per_fanout=cfg.wire_ff_per_fanout) if lib is not None else BuiltinDelay()
    spec = cfg.spec
    codes = code_range(spec.wbits, spec.signed)
    t_synth = time.perf_counter() - t0

    st = static_timing(net, model, codes)
    acts = code_range(spec.abits, spec.signed)
    psums = sample_psums(spec.acc, spec.signed, cfg.n_psums, cfg.seed)
    floating = floating_delays(net, model, codes, acts, psums, static=st, threads=cfg.threads, progress=progress)
    t_timing = time.perf_counter() - t0 - t_synth

    rng = np.random.default_rng(cfg.seed)
    a_seq = draw_activations(cfg.n_energy, spec.abits, spec.signed, rng, cfg.act_hist)
    p_lo = -(1 << (spec.acc - 1)) if spec.signed else 0
    p_seq = rng.integers(p_lo, p_lo + (1 << spec.acc), size=cfg.n_energy)
    caps = net_caps_ff(net, lib, wire_ff_per_fanout=cfg.wire_ff_per_fanout)
    eb = mac_energy_breakdown(net, codes, a_seq, p_seq, caps_ff=caps, v0=law.v0, power=power, slew_ps=st.slew_ps)
    t_energy = time.perf_counter() - t0 - t_synth - t_timing

    import pandas as pd

    table = pd.DataFrame({"code": codes, "delay_static_ps": st.delay_ps,
                          "delay_float_ps": floating, "energy_fj": eb.total_fj,
                          "energy_switch_fj": eb.switch_fj, "energy_internal_fj": eb.internal_fj, "leakage_nw": eb.leakage_nw})
    meta: dict[str, Any] = {
        **spec.to_dict(), "library": str(library), "v0": eb.voltage, "voltage_source": eb.voltage_source,
        "voltage_law": law.name, "leakage_w": float(eb.leakage_nw.mean()) * 1e-9,
        "energy_model": "switching + Liberty internal power" if power is not None else "switching (built-in caps)", "delay_model": model.name, "gates": len(net.gates),
        "netlist_sha256": net.meta.get("netlist_sha256"), "netlist_source": net.meta.get("source"),
        "liberty_sha256": ([sha256_file(p) for p in liberty_paths(cfg.liberty)] if isinstance(cfg.liberty, (list, tuple)) else sha256_file(cfg.liberty)) if cfg.liberty else None,
        "n_activations": int(acts.size), "n_psums": int(psums.size), "n_energy_vectors": cfg.n_energy,
        "activation_stream": "histogram" if cfg.act_hist is not None else "uniform", "seed": cfg.seed,
        "timing_for_codebooks": cfg.timing,
        "seconds": {"netlist": round(t_synth, 3), "timing": round(t_timing, 3), "energy": round(t_energy, 3)},
    }
    profile = MacProfile(table, meta)
    return profile, build_codebooks(profile, cfg.timing), net


def write_characterization(out: str | Path, profile: MacProfile, codebooks: list[Codebook]) -> Path:
    """Write profile (CSV/Parquet/JSON), ``codebooks.json`` and ``meta.json`` into ``out`` atomically
    (its figure, ``profile.png``, is drawn by ``halo_opt.report.profile_plot.render_profile``)."""
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        profile.save(tmp)
        save_codebooks(tmp / "codebooks.json", codebooks, provenance(profile_sha256=profile.sha256(), timing=profile.meta.get("timing_for_codebooks")))
        write_json(tmp / "meta.json", provenance(profile_sha256=profile.sha256(), **{k: profile.meta[k] for k in ("wbits", "abits", "signed", "acc", "arch", "library")}))
    return out

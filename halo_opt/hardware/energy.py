"""Per-weight-code energy of a MAC netlist: net switching, Liberty internal power, leakage.

With the weight ``w = q`` held, the MAC sees a stream of vectors ``(a_t, p_t)``, t = 0..N-1,
simulated with zero delay (:mod:`.simulate`): every net takes one final value per vector.
Net ``n`` toggles ``T_n = #{t >= 1 : v_n(t) != v_n(t-1)}`` times (bit-parallel: XOR of each
packed word with itself shifted by one vector, ``popcount``); glitches inside a vector are not
counted. This is what a zero-delay event-driven simulator's VCD shows as one value per time
step (``tests/test_energy_icarus.py`` checks the counts against Icarus Verilog exactly).

**Switching** (per MAC, fJ): ``E_sw(q) = ½ · V² · Σ_n C_n · T_n / (N - 1)`` with ``C_n`` in fF:
with a Liberty library, the sum of the fanout pins' ``capacitance`` plus ``wire_ff_per_fanout``
per fanout pin plus ``output_load_ff`` per primary-output bit; with the built-in model,
``unit_cap_ff`` times the logical-effort load of the net (Σ g of the fanout pins + output load,
:class:`~halo_opt.hardware.delay.BuiltinDelay`). Primary-input nets ``a``, ``p`` count (their
toggles charge the MAC's input pins). ``V``: the Liberty library's supply
(:attr:`~halo_opt.hardware.liberty_power.LibraryPower.voltage`: ``voltage_map`` of the power
rail, else ``nom_voltage``); the voltage law's ``v0`` for built-in gates or a library without one.

**Internal** (Liberty ``internal_power``, fJ per MAC): each output toggle of a gate at vector
``t`` is caused by the gate inputs that toggled at ``t`` (``k`` of them); each causing input
``i`` contributes ``1/k`` of its arc energy ``E_i(edge_out, S_i(edge_in), C_out)``: the
``rise_power``/``fall_power`` table of the ``internal_power`` group of the output pin with
``related_pin`` = ``i`` (output groups without ``related_pin`` where the pin has none) whose
``when`` holds on the cell's pin values at ``t`` (first in library order; the unconditional
group where none holds, 0 where there is none), interpolated like the
NLDM tables (:func:`~halo_opt.hardware.delay.interp2`) at the input slew ``S_i`` of that input
edge and the output net's load ``C_out`` above. Each toggle of an input pin adds its input-pin
group's energy (``when`` selected the same way) at its slew. **Slew approximation:** ``S`` is the
static case-analysis slew of the net for the code and edge (:class:`~.timing.StaticTiming`
``slew_ps``, the worst slew over live arcs, 0 ps at primary inputs), not the slew of the
particular transition. Libraries that fold ``±½CV²`` into their output tables (sky130: rise
``+``, fall ``-``) are summed as given, so over a stream the fold cancels to within one edge.

**Leakage** (nW, per code): the mean over the N vector states of Σ over gates of the cell's
``leakage_power`` whose ``when`` holds on its pin values (inputs and output; the held weight
bits included), the cell's default where none holds. It is a power, not part of ``energy_fj``;
at a clock period ``T`` (ns) it adds ``leakage_nw · T`` fJ per MAC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import UserError
from .delay import BuiltinDelay, interp2
from .liberty import Liberty
from .liberty_power import LibraryPower
from .simulate import ALL_ONES
from .netlist import CONST1, Netlist
from .timing import weight_bits

#: Built-in unit capacitance (fF): input capacitance of the sky130_fd_sc_hd__inv_1 A pin (tt Liberty).
UNIT_CAP_FF = 2.3


def net_caps_ff(
    netlist: Netlist,
    liberty: Liberty | None = None,
    *,
    unit_cap_ff: float = UNIT_CAP_FF,
    wire_ff_per_fanout: float = 0.0,
    output_load_ff: float | None = None,
) -> np.ndarray:
    """``[n_nets]`` load capacitance (fF) of each net (module docstring).

    ``output_load_ff`` per primary-output bit defaults to 0 with Liberty and to one unit
    inverter input (``unit_cap_ff``) with built-in gates.
    """
    if liberty is None:
        units = BuiltinDelay(output_load=0.0).load_units(netlist)
        fo = np.zeros(netlist.n_nets)
        for g in netlist.gates:
            for n in g.inputs:
                fo[n] += 1
        caps = unit_cap_ff * units + wire_ff_per_fanout * fo
        out_ff = unit_cap_ff if output_load_ff is None else output_load_ff
    else:
        caps = np.zeros(netlist.n_nets)
        for g in netlist.gates:
            lc = liberty.cell(g.cell)
            for pin, n in zip(netlist.cells[g.cell].inputs, g.inputs):
                caps[n] += lc.pins[pin].cap_ff + wire_ff_per_fanout
        out_ff = 0.0 if output_load_ff is None else output_load_ff
    for n in netlist.output_nets:
        caps[n] += out_ff
    caps[: CONST1 + 1] = 0.0
    return caps


def leakage_w(netlist: Netlist, liberty: Liberty | None) -> float:
    """Leakage power (W) of the whole netlist: Σ ``cell_leakage_power``; 0.0 without Liberty."""
    if liberty is None:
        return 0.0
    return float(sum(liberty.cell(g.cell).leakage_w for g in netlist.gates))


def draw_activations(n: int, abits: int, signed: bool, rng: np.random.Generator, hist=None) -> np.ndarray:
    """``n`` activation values: uniform over the ``abits`` grid, or drawn from ``hist``.

    ``hist[i]`` (counts, >= 0) is the weight of value ``lo + i`` with ``lo = -2^(abits-1)``
    when signed, else 0 (the calibration ``act_hist`` grid order).
    """
    lo = -(1 << (abits - 1)) if signed else 0
    if hist is None:
        return rng.integers(lo, lo + (1 << abits), size=n)
    h = np.asarray(hist, dtype=np.float64).ravel()
    if h.size != 1 << abits or (h < 0).any() or not h.sum() > 0:
        raise UserError(f"activation histogram must have {1 << abits} non-negative counts with a positive sum; got {h.size} values")
    return lo + rng.choice(h.size, size=n, p=h / h.sum())


def _vector_chunks(netlist: Netlist, codes: np.ndarray, a_seq, p_seq, chunk_codes: int):
    """Yield ``(s, x, d, state)`` per chunk of codes ``s : s+K``: ``x[n_nets, K, W]`` packed net
    values, ``d`` toggle words (bit t set iff the net changed from vector t-1 to t, t >= 1),
    ``state[W]`` the valid-vector mask (t < N)."""
    from .simulate import net_words, pack_bits

    a = np.asarray(a_seq, dtype=np.int64).ravel()
    p = np.asarray(p_seq, dtype=np.int64).ravel()
    if a.size != p.size or a.size < 2:
        raise UserError(f"energy needs equally long activation and partial-sum sequences of >= 2 vectors; got {a.size} and {p.size}")
    N = a.size
    na, npb = len(netlist.inputs["a"]), len(netlist.inputs["p"])
    try:
        aw = pack_bits(a & ((1 << na) - 1), na)
        pw = pack_bits(p & ((1 << npb) - 1), npb)
    except ValueError as e:
        raise UserError(f"activation/partial-sum values do not fit the MAC ports: {e}") from None
    W = aw.shape[1]

    def mask(lo: int) -> np.ndarray:
        m = np.zeros(W * 64, dtype=np.uint8)
        m[lo:N] = 1
        return np.packbits(m, bitorder="little").view("<u8").astype(np.uint64)

    valid, state = mask(1), mask(0)
    wb = weight_bits(netlist, codes)
    for s in range(0, codes.size, chunk_codes):
        K = min(chunk_codes, codes.size - s)
        ww = np.where(wb[:, s : s + K, None] != 0, ALL_ONES, np.uint64(0)).repeat(W, axis=2).reshape(-1, K * W)
        x = net_words(netlist, {"a": np.tile(aw, K), "w": ww, "p": np.tile(pw, K)}).reshape(netlist.n_nets, K, W)
        prev = x << np.uint64(1)
        prev[:, :, 1:] |= x[:, :, :-1] >> np.uint64(63)
        yield s, x, (x ^ prev) & valid, state


def toggle_counts(netlist: Netlist, codes, a_seq, p_seq, chunk_codes: int = 16) -> np.ndarray:
    """``[n_nets, n_codes]`` toggles of each net over the vector sequence, per code."""
    codes = np.asarray(codes, dtype=np.int64).ravel()
    out = np.zeros((netlist.n_nets, codes.size), np.int64)
    for s, _, d, _ in _vector_chunks(netlist, codes, a_seq, p_seq, chunk_codes):
        out[:, s : s + d.shape[1]] = np.bitwise_count(d).sum(axis=2, dtype=np.int64)
    return out


def mac_energy(netlist: Netlist, caps_ff: np.ndarray, codes, a_seq, p_seq, v0: float) -> np.ndarray:
    """``[n_codes]`` switching energy per MAC (fJ at ``v0`` volts), caps in fF (module docstring)."""
    caps = _check_caps(netlist, caps_ff)
    _check_voltage(v0)
    T = toggle_counts(netlist, codes, a_seq, p_seq)
    n = np.asarray(a_seq).size
    return 0.5 * v0 ** 2 * (caps @ T) / (n - 1)


def _check_caps(netlist: Netlist, caps_ff) -> np.ndarray:
    caps = np.asarray(caps_ff, dtype=np.float64)
    if caps.shape != (netlist.n_nets,):
        raise UserError(f"caps_ff has shape {caps.shape}; expected one capacitance per net ({netlist.n_nets},)")
    return caps


def _check_voltage(v: float) -> None:
    if not v > 0:
        raise UserError(f"nominal voltage v0 must be positive, got {v}")


@dataclass
class EnergyBreakdown:
    """Per-code energy (fJ per MAC) and leakage (nW) at ``voltage`` volts (module docstring)."""

    codes: np.ndarray
    voltage: float
    voltage_source: str  # "voltage_map(...)", "nom_voltage", "operating_conditions" or "voltage-law"
    switch_fj: np.ndarray
    internal_fj: np.ndarray
    leakage_nw: np.ndarray

    @property
    def total_fj(self) -> np.ndarray:
        return self.switch_fj + self.internal_fj


_CONST = (re.compile(r"\b1\b"), re.compile(r"\b0\b"))


@lru_cache(maxsize=None)
def _when_code(expr: str):
    return compile(_CONST[1].sub("ZEROS", _CONST[0].sub("ONES", expr)), "<when>", "eval")


def _holds(expr: str | None, env: dict) -> np.ndarray | None:
    """Bit-parallel truth of a ``when`` expression on packed pin values (None: always)."""
    return None if expr is None else eval(_when_code(expr), {"__builtins__": {}}, env)


def _pick(groups, events: np.ndarray, env: dict):
    """Split ``events`` over alternative groups by their ``when``: yields ``(group, mask)``."""
    rest = events
    for g in groups:
        h = _holds(g.when, env)
        m = rest if h is None else rest & h
        yield g, m
        if h is None:
            return
        rest = rest & ~h


def _popcount(m: np.ndarray) -> np.ndarray:
    return np.bitwise_count(m).sum(axis=-1, dtype=np.int64)


def _table_energy(tables, slew: np.ndarray, load: float) -> np.ndarray:
    return sum((interp2(t, slew, load) for t in tables), np.zeros_like(slew))


def mac_energy_breakdown(
    netlist: Netlist,
    codes,
    a_seq,
    p_seq,
    *,
    caps_ff: np.ndarray,
    v0: float,
    power: LibraryPower | None = None,
    slew_ps: np.ndarray | None = None,
    chunk_codes: int = 64,
) -> EnergyBreakdown:
    """Switching, internal and leakage per code (module docstring).

    ``power``: the Liberty power data of the netlist's cells (None: built-in gates, switching
    only at ``v0``); ``slew_ps[n_nets, 2, n_codes]`` (edge 0 fall, 1 rise): per-code net slews
    for the internal-power tables (``StaticTiming.slew_ps`` of the same codes; default 0 ps).
    ``v0`` is used when the library states no voltage.
    """
    codes = np.asarray(codes, dtype=np.int64).ravel()
    caps = _check_caps(netlist, caps_ff)
    volt, src = (power.voltage, power.voltage_source) if power is not None and power.voltage else (v0, "voltage-law")
    _check_voltage(volt)
    C = codes.size
    if slew_ps is None:
        slew_ps = np.zeros((netlist.n_nets, 2, C))
    elif np.shape(slew_ps) != (netlist.n_nets, 2, C):
        raise UserError(f"slew_ps has shape {np.shape(slew_ps)}; expected (n_nets, 2, n_codes) = ({netlist.n_nets}, 2, {C})")
    N = np.asarray(a_seq).size
    T = np.zeros((netlist.n_nets, C), np.int64)
    leak = np.zeros(C)
    # event counts per (tables, slew net, input edge, load): evaluated once over all codes at the end
    events: dict[tuple, np.ndarray] = {}
    tables: dict[int, tuple] = {}

    def add(tabs: tuple, n: int, e_in: int, load: float, s: int, cnt: np.ndarray) -> None:
        key = (id(tabs), n, e_in, load)
        tables[id(tabs)] = tabs
        events.setdefault(key, np.zeros(C))[s : s + cnt.size] += cnt

    cp = {c: power.cell(c) for c in {g.cell for g in netlist.gates}} if power is not None else {}
    for s, x, d, state in _vector_chunks(netlist, codes, a_seq, p_seq, chunk_codes):
        K = x.shape[1]
        T[:, s : s + K] = _popcount(d)
        if power is None:
            continue
        ones = np.broadcast_to(ALL_ONES, x.shape[1:])
        zeros = np.zeros(x.shape[1:], np.uint64)
        for g in netlist.gates:
            cell, pw = netlist.cells[g.cell], cp[g.cell]
            env = {pin: x[n] for pin, n in zip(cell.inputs, g.inputs)}
            env.update({cell.output: x[g.output], "ONES": ones, "ZEROS": zeros})
            for grp, m in _pick([*(_W(w, v) for w, v in pw.leakage), _W(None, pw.default_leakage_w)], state & ones, env):
                leak[s : s + K] += grp.value * _popcount(m)
            dy = d[g.output]
            # toggled-input count per vector: eq[k] = exactly k inputs toggled
            eq = [ones.copy()] + [zeros.copy() for _ in g.inputs]
            for n in g.inputs:
                dn = d[n]
                for k in range(len(eq) - 1, 0, -1):
                    eq[k] = (eq[k] & ~dn) | (eq[k - 1] & dn)
                eq[0] = eq[0] & ~dn
            load = float(caps[g.output])
            for pin, n in zip(cell.inputs, g.inputs):
                dn = d[n]
                if not dn.any():
                    continue
                arcs = pw.arc_groups(cell.output, pin) or pw.arc_groups(cell.output, None)
                for e_in, edge_in in ((0, dn & ~x[n]), (1, dn & x[n])):
                    for grp, m in _pick(pw.arc_groups(pin, None), edge_in, env):  # input-pin energy
                        add(grp.rise if e_in else grp.fall, n, e_in, 0.0, s, _popcount(m))
                    for e_out, edge_out in ((0, edge_in & dy & ~x[g.output]), (1, edge_in & dy & x[g.output])):
                        if not edge_out.any():
                            continue
                        for grp, m in _pick(arcs, edge_out, env):
                            share = sum(_popcount(m & eq[k]) / k for k in range(1, len(eq)))
                            add(grp.rise if e_out else grp.fall, n, e_in, load, s, share)
    internal = np.zeros(C)
    for (tid, n, e_in, load), cnt in events.items():
        if cnt.any():
            internal += _table_energy(tables[tid], slew_ps[n, e_in], load) * cnt
    switch = 0.5 * volt ** 2 * (caps @ T) / (N - 1)
    return EnergyBreakdown(codes, float(volt), src, switch, internal / (N - 1), leak / N * 1e9)


@dataclass(frozen=True)
class _W:
    """A leakage state: ``when`` (None = default) and its power (W)."""

    when: str | None
    value: float

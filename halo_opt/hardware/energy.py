"""Per-weight-code switching energy of a MAC netlist, and leakage power.

With the weight ``w = q`` held, the MAC sees a stream of vectors ``(a_t, p_t)``, t = 0..N-1.
Net ``n`` toggles ``T_n = #{t >= 1 : v_n(t) != v_n(t-1)}`` times (bit-parallel: XOR of each
packed word with itself shifted by one vector, ``popcount``). Each toggle charges or
discharges the net's load ``C_n`` (half a ``C·V²`` cycle), so the dynamic energy per MAC is

    E(q) = ½ · V0² · Σ_n C_n · T_n / (N - 1)        [fF · V² = fJ]

``C_n`` (fF): with a Liberty library, the sum of the fanout pins' ``capacitance`` plus
``wire_ff_per_fanout`` per fanout pin plus ``output_load_ff`` per primary-output bit; with
the built-in model, ``unit_cap_ff`` times the logical-effort load of the net (Σ g of the
fanout pins + output load, :class:`~halo_opt.hardware.delay.BuiltinDelay`), so a NAND2 input
counts 4/3 of an inverter input. Primary-input nets ``a``, ``p`` count (their toggles charge
the MAC's input pins); internal cell energy (short-circuit, internal nodes) is not modelled.
Leakage power (W) is Σ ``cell_leakage_power`` over the gates (Liberty), 0 for built-in gates.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from .delay import BuiltinDelay
from .liberty import Liberty
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


def toggle_counts(netlist: Netlist, codes, a_seq, p_seq, chunk_codes: int = 16) -> np.ndarray:
    """``[n_nets, n_codes]`` toggles of each net over the vector sequence, per code."""
    from .simulate import pack_bits, net_words

    codes = np.asarray(codes, dtype=np.int64).ravel()
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
    valid = np.zeros(W * 64, dtype=np.uint8)  # toggle at vector j compares j with j-1
    valid[1:N] = 1
    valid = np.packbits(valid, bitorder="little").view("<u8").astype(np.uint64)
    wb = weight_bits(netlist, codes)
    ones = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
    out = np.zeros((netlist.n_nets, codes.size), np.int64)
    for s in range(0, codes.size, chunk_codes):
        K = min(chunk_codes, codes.size - s)
        ww = np.where(wb[:, s : s + K, None] != 0, ones, np.uint64(0)).repeat(W, axis=2).reshape(-1, K * W)
        x = net_words(netlist, {"a": np.tile(aw, K), "w": ww, "p": np.tile(pw, K)}).reshape(netlist.n_nets, K, W)
        prev = x << np.uint64(1)
        prev[:, :, 1:] |= x[:, :, :-1] >> np.uint64(63)
        out[:, s : s + K] = np.bitwise_count((x ^ prev) & valid).sum(axis=2, dtype=np.int64)
    return out


def mac_energy(netlist: Netlist, caps_ff: np.ndarray, codes, a_seq, p_seq, v0: float) -> np.ndarray:
    """``[n_codes]`` dynamic energy per MAC (fJ at ``v0`` volts), caps in fF (module docstring)."""
    caps = np.asarray(caps_ff, dtype=np.float64)
    if caps.shape != (netlist.n_nets,):
        raise UserError(f"caps_ff has shape {caps.shape}; expected one capacitance per net ({netlist.n_nets},)")
    if not v0 > 0:
        raise UserError(f"nominal voltage v0 must be positive, got {v0}")
    T = toggle_counts(netlist, codes, a_seq, p_seq)
    n = np.asarray(a_seq).size
    return 0.5 * v0 ** 2 * (caps @ T) / (n - 1)

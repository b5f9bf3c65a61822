"""Per-weight-code delay of a MAC netlist: static case analysis and sensitised floating mode.

For a code ``q`` the weight port ``w`` is constant (two's complement bits of ``q``).

**Static (case analysis)** — what OpenSTA reports with ``set_case_analysis`` on the ``w`` pins.
Three-valued constant propagation (0, 1, X) marks every net that is constant for ``q``. An arc
``i -> out`` of a gate is live iff ``out`` is X and the gate's function, with its constant
inputs substituted, still depends on input ``i``; its sense (which input edge can cause which
output edge) is that of the reduced function, intersected with the Liberty ``timing_sense``.
A Liberty ``timing`` group whose ``when`` condition is 0 under the constants is disabled, and
so is an unconditional group of a pin pair one of whose conditional groups is 1 (OpenSTA's
``Sim::isCondDisabled``); a group whose condition is unknown (X) stays enabled.
Arrival ``A[n, e]`` (ps, e = fall/rise edge) and slew ``S[n, e]`` propagate as

    A[out, e] = max over live arcs of enabled groups (i, e_i -> e) of  A[i, e_i] + d_i(e, S[i, e_i])
    S[out, e] = max of the output slew over every arc (i, e_i -> e) of an enabled group of a live input

from ``A = 0, S = input_slew`` at the ``a`` and ``p`` bits; the delay is ``max A`` over output
bits. These are OpenSTA's rules: the arrival follows only the edge pairs the reduced function
allows, the worst-slew merge takes every arc of an enabled group (an XNOR with one input at 1
passes rise -> rise only, but its negative-unate group's slew still counts).

Constants, senses and ``when`` values come from one of two logics. The default
``logic="kleene"`` evaluates the Liberty function structurally in Kleene 3-valued logic, as
OpenSTA does when built without CUDD (Debian's ``opensta`` 2.0.17, the reference the tests
run): on all 256 codes of the 8x8 array and Booth MACs mapped to sky130 hd, SG13G2 and ASAP7
it equals OpenSTA to < 1e-6 relative (``benchmarks/characterize.md``). ``logic="exact"``
(non-default) uses truth tables, which is what OpenSTA computes with CUDD BDDs (not checked
here: no such build was available); it finds more constants and fewer arcs (e.g.
``!A1&!B1 | !A2&!B1`` with A2 = 0 no longer depends on A1), so it reads up to 8.2 % below
Debian's OpenSTA (sky130 Booth, code 0). All codes are processed at once (arrays over codes):
one pass over the gates.

**Floating mode (sensitised).** For one input vector ``(a, p)`` every net settles at a time ``t``:
primary inputs at 0, constant nets never switch. A gate's output is settled once a set ``S``
of its inputs that by their final values alone determines the output has settled:

    t_out = min over determining sets S of  max_{i in S} ( t_i + d_i(v_i -> v_out) )

which is the controlling-value rule (AND with a 0 input: earliest 0 input + its arc delay;
no controlling input: latest input + arc delay; XOR: always the latest). ``d_i`` is the static
arc delay for the final edges (the input's final value ``v_i``, the output's ``v_out``). Times
are int16 in units of :func:`time_unit_fs` (~0.2-0.3 ps for 8-bit MACs) with every arc delay
floored to the unit, so ``t`` never exceeds the static arrival (a property the tests check) and
under-reads it by at most (logic depth x unit). Gates constant for the code are skipped. The
floating delay of a code is the max of ``t`` over output bits and over all vectors, where the
vectors are the Cartesian product ``a_values x p_values``.
"""

from __future__ import annotations

import ast
import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import UserError
from .delay import DelayModel
from .netlist import CONST0, CONST1, Netlist

X = 2  # unknown (switching) in three-valued constant propagation
NEG = -np.inf
_SENSE_MASK = {"positive_unate": 1, "negative_unate": 2, "non_unate": 3}


# ------------------------------------------------------------------------------ cell kernels


@dataclass(frozen=True)
class CellKernel:
    """Constant-propagation tables of one cell function over its ``k`` inputs.

    Indexed by ``key = Σ c_i·3^i`` (``c_i`` in {0, 1, X}): ``out[key]`` in {0, 1, X};
    ``sense[key, i]`` bit 0: some rise of input i can raise the output, bit 1: can lower it.
    """

    k: int
    tt: np.ndarray  # [2^k] bool, truth table, pattern bit i = input i
    out: np.ndarray  # [3^k] int8
    sense: np.ndarray  # [3^k, k] int8


@lru_cache(maxsize=None)
def cell_kernel(function: str, pins: tuple[str, ...], logic: str = "exact") -> CellKernel:
    """Tables of one cell function; ``logic`` is ``"exact"`` (over the truth table, like
    OpenSTA's BDD-based ``Sim``) or ``"kleene"`` (:func:`_kleene_sense`)."""
    if logic not in LOGICS:
        raise UserError(f"unknown case-analysis logic {logic!r}; use one of {', '.join(LOGICS)}")
    k = len(pins)
    pats = np.arange(1 << k)
    env = {p: ((pats >> i) & 1).astype(bool) for i, p in enumerate(pins)}
    tt = np.broadcast_to(np.asarray(eval(function, {"__builtins__": {}}, env), dtype=bool), pats.shape).copy()
    tree = ast.parse(function, mode="eval").body if logic == "kleene" else None
    keys = list(itertools.product((0, 1, X), repeat=k))  # key digit i = c_i, little-endian
    out = np.zeros(3 ** k, np.int8)
    sense = np.zeros((3 ** k, k), np.int8)
    for c in keys:
        key = sum(ci * 3 ** i for i, ci in enumerate(c))
        if tree is not None:
            vals = dict(zip(pins, c))
            out[key] = _kleene_sense(tree, None, vals)[1]
            if out[key] == X:
                for i in range(k):
                    if c[i] == X:
                        sense[key, i] = _kleene_sense(tree, pins[i], vals)[0]
            continue
        ok = np.ones(len(pats), bool)
        for i, ci in enumerate(c):
            if ci != X:
                ok &= ((pats >> i) & 1) == ci
        vals = tt[ok]
        out[key] = X if vals.min() != vals.max() else int(vals[0])
        if out[key] != X:
            continue
        for i in range(k):
            if c[i] != X:
                continue
            lo = ok & (((pats >> i) & 1) == 0)  # pattern with input i = 0, its partner has it = 1
            f0, f1 = tt[pats[lo]], tt[pats[lo] | (1 << i)]
            sense[key, i] = (1 if (~f0 & f1).any() else 0) | (2 if (f0 & ~f1).any() else 0)
    return CellKernel(k, tt, out, sense)


LOGICS = ("exact", "kleene")
_POS, _NEG, _NON, _NONE = 1, 2, 3, 0  # sense codes (bit 0: can rise with input, bit 1: can fall)
_AND_OR = {(a, b): (a | b) if a and b else (a or b) for a in range(4) for b in range(4)}


def _kleene_sense(node: ast.expr, pin: str | None, vals: dict[str, int]) -> tuple[int, int]:
    """(sense of ``pin``, value) of an expression under 3-valued constants, structurally.

    The rules of OpenSTA's ``Sim::functionSense`` / ``evalExpr`` when built without CUDD
    (e.g. Debian's opensta 2.0.17): Kleene logic for values; a controlling constant of an
    AND/OR kills the other side's sense; otherwise AND/OR merge senses (pos+neg = non-unate,
    none is neutral), XOR with a constant side passes / inverts the other side, XOR of two
    switching sides is non-unate. Coarser than ``exact``: ``!A1&!B1 | !A2&!B1`` with A2 = 0
    keeps a (negative) arc from A1 although the output no longer depends on it.
    """
    if isinstance(node, ast.Name):
        return (_POS if node.id == pin else _NONE), vals[node.id]
    if isinstance(node, ast.Constant):
        return _NONE, int(node.value)
    if isinstance(node, ast.UnaryOp):
        s, v = _kleene_sense(node.operand, pin, vals)
        if v != X:
            return _NONE, 1 - v
        return {_POS: _NEG, _NEG: _POS}.get(s, s), X
    s1, v1 = _kleene_sense(node.left, pin, vals)
    s2, v2 = _kleene_sense(node.right, pin, vals)
    if isinstance(node.op, (ast.BitAnd, ast.BitOr)):
        dom = 0 if isinstance(node.op, ast.BitAnd) else 1  # controlling value
        if v1 == dom or v2 == dom:
            return _NONE, dom
        if v1 == 1 - dom:
            return s2, v2
        if v2 == 1 - dom:
            return s1, v1
        return _AND_OR[s1, s2], X
    # XOR
    if v1 != X and v2 != X:
        return _NONE, v1 ^ v2
    if v1 != X:
        return ({_POS: _NEG, _NEG: _POS}.get(s2, s2) if v1 else s2), (X if v2 == X else v2 ^ v1)
    if v2 != X:
        return ({_POS: _NEG, _NEG: _POS}.get(s1, s1) if v2 else s1), X
    return (_NONE if s1 == s2 == _NONE else _NON), X


@lru_cache(maxsize=None)
def floating_rule(function: str, pins: tuple[str, ...], key: int) -> tuple[tuple[int, ...], tuple]:
    """Free inputs of the cell reduced by constants ``key`` and its minimal determining sets.

    Returns ``(free, sets)``: ``free`` = cell input positions still switching; ``sets`` =
    tuple of ``(members, mask)``, ``members`` = positions into ``free`` (increasing) and
    ``mask[m]`` true iff the members' final values ``m`` (bit j = value of ``members[j]``)
    alone fix the output and no proper subset does. The full set (always determining) is
    implicit and not listed.
    """
    kern = cell_kernel(function, pins)
    c = [(key // 3 ** i) % 3 for i in range(kern.k)]
    free = tuple(i for i in range(kern.k) if c[i] == X)
    m = len(free)
    base = sum(1 << i for i in range(kern.k) if c[i] == 1)
    full = np.array([kern.tt[base | sum(((p >> j) & 1) << free[j] for j in range(m))] for p in range(1 << m)])
    pats = np.arange(1 << m)
    sets = []
    det: dict[tuple[int, ...], np.ndarray] = {}  # per set, per full pattern: determining & minimal
    for r in range(1, m):
        for S in itertools.combinations(range(m), r):
            smask = sum(1 << j for j in S)
            d = np.array([np.unique(full[(pats & smask) == (p & smask)]).size == 1 for p in pats])
            for T, dt in det.items():
                if set(T) < set(S):
                    d &= ~dt
            det[S] = d
            if d.any():
                own = np.array([d[sum(((mm >> jj) & 1) << j for jj, j in enumerate(S))] for mm in range(1 << r)])
                sets.append((S, own))
    return free, tuple(sets)


# ------------------------------------------------------------------------------ codes


def weight_bits(netlist: Netlist, codes) -> np.ndarray:
    """``[n_w, n_codes]`` 0/1 bits of the weight codes (two's complement when signed; the bit
    patterns themselves for a floating-point weight format)."""
    if "w" not in netlist.inputs:
        raise UserError(f"netlist {netlist.module} has no weight port 'w'; name the held operand w")
    nb = len(netlist.inputs["w"])
    codes = np.asarray(codes, dtype=np.int64).ravel()
    spec = netlist.meta.get("spec", {})
    signed = netlist.meta.get("signed", spec.get("signed"))
    if spec.get("wformat"):  # floating-point weights: the codes are unsigned bit patterns
        signed = False
    lo = -(1 << (nb - 1)) if signed in (True, None) else 0
    hi = (1 << nb) if signed in (False, None) else 1 << (nb - 1)
    if codes.size and (codes.min() < lo or codes.max() >= hi):
        raise UserError(f"weight codes must lie in [{lo}, {hi - 1}] for a {nb}-bit {'signed ' if signed else ''}weight; got {codes.min()}..{codes.max()}")
    return ((codes[None, :] >> np.arange(nb)[:, None]) & 1).astype(np.int8)


# ------------------------------------------------------------------------------ static


@dataclass
class StaticTiming:
    """Result of the static pass for a batch of codes.

    ``delay_ps[c]``; ``const[n, c]`` in {0, 1, X}; ``keys[g, c]`` constant key of gate g;
    ``arc_ps[g]``: ``[k, 2, 2, n_codes]`` delay of arc (input i, input edge, output edge)
    (edge 0 = fall, 1 = rise), NaN where the arc is not live; ``arrival_ps[n, e, c]`` and
    ``slew_ps[n, e, c]`` per net and edge.
    """

    codes: np.ndarray
    delay_ps: np.ndarray
    const: np.ndarray
    keys: np.ndarray
    arc_ps: list[np.ndarray]
    arrival_ps: np.ndarray
    slew_ps: np.ndarray


def static_timing(netlist: Netlist, model: DelayModel, codes, logic: str = "kleene") -> StaticTiming:
    """Static case-analysis timing of every code at once (see module docstring).

    ``logic``: how constants, arc senses and ``when`` conditions are derived from the cell
    functions: ``"kleene"`` (default; structural 3-valued rules = Debian's OpenSTA 2.0.17, which
    it matches on every code checked) or ``"exact"`` (truth tables = OpenSTA built with CUDD; a
    subset of kleene's arcs, so not above it up to NLDM tables that are not monotone in slew).
    ``const``/``keys`` of the result are always the exact ones (they drive the floating mode).
    """
    if logic not in LOGICS:
        raise UserError(f"unknown case-analysis logic {logic!r}; use one of {', '.join(LOGICS)}")
    codes = np.asarray(codes, dtype=np.int64).ravel()
    C = codes.size
    wb = weight_bits(netlist, codes)
    arcs = model.gate_arcs(netlist)
    const = np.full((netlist.n_nets, C), X, np.int8)
    const[CONST0], const[CONST1] = 0, 1
    arr = np.full((netlist.n_nets, 2, C), NEG)
    slew = np.zeros((netlist.n_nets, 2, C))
    for port, nets in netlist.inputs.items():
        for b, n in enumerate(nets):
            if n <= CONST1:
                continue
            if port == "w":
                const[n] = wb[b]
            else:
                arr[n], slew[n] = 0.0, model.input_slew_ps
    sconst = const.copy() if logic != "exact" else const  # constants that drive the arrival pass
    keys = np.zeros((len(netlist.gates), C), np.int32)
    arc_ps: list[np.ndarray] = []
    for gi, g in enumerate(netlist.gates):
        cell = netlist.cells[g.cell]
        kern = cell_kernel(cell.function, cell.inputs)
        pw = 3 ** np.arange(kern.k, dtype=np.int32)
        key = (const[list(g.inputs)].astype(np.int32) * pw[:, None]).sum(axis=0, dtype=np.int32)
        keys[gi] = key
        const[g.output] = kern.out[key]
        if logic != "exact":
            kern = cell_kernel(cell.function, cell.inputs, logic)
            key = (sconst[list(g.inputs)].astype(np.int32) * pw[:, None]).sum(axis=0, dtype=np.int32)
            sconst[g.output] = kern.out[key]
        oc = sconst[g.output]
        D = np.full((kern.k, 2, 2, C), np.nan)
        arc_ps.append(D)
        live = oc == X
        if not live.any():
            continue
        sense = np.where(live[:, None], kern.sense[key], 0)
        a_out, s_out = arr[g.output], slew[g.output]
        for i, n in enumerate(g.inputs):
            pin_arcs = arcs[gi][i]
            enabled = _arcs_enabled(pin_arcs, cell.inputs, key, logic)
            for arc, en in zip(pin_arcs, enabled):
                # OpenSTA merges the output slew over every arc of an enabled timing group of a
                # live input (sense != none), the arrival only over the edge pairs the
                # case-analysis sense allows
                s_slew = np.where((sense[:, i] != 0) & en, _SENSE_MASK[arc.sense], 0)
                if not s_slew.any():
                    continue
                s = sense[:, i] & s_slew
                for e_out in (0, 1):
                    for e_in in (0, 1):
                        pair = 1 if e_in == e_out else 2
                        ok = (s & pair) != 0
                        ok_slew = (s_slew & pair) != 0
                        if not ok_slew.any():
                            continue
                        d, sl = arc(bool(e_out), slew[n, e_in])
                        np.maximum(s_out[e_out], np.where(ok_slew, sl, 0.0), out=s_out[e_out])
                        if ok.any():
                            D[i, e_in, e_out] = np.fmax(D[i, e_in, e_out], np.where(ok, d, np.nan))
                            np.maximum(a_out[e_out], np.where(ok, arr[n, e_in] + d, NEG), out=a_out[e_out])
    out_nets = np.array(netlist.output_nets, dtype=np.int64)
    delay = arr[out_nets].max(axis=(0, 1)) if out_nets.size else np.zeros(C)
    return StaticTiming(codes, np.where(np.isfinite(delay), delay, 0.0), const, keys, arc_ps, arr, slew)


def _arcs_enabled(pin_arcs, pins: tuple[str, ...], key: np.ndarray, logic: str) -> list[np.ndarray | bool]:
    """Per arc of one input pin, ``[n_codes]`` bool: not disabled by its ``when`` condition.

    OpenSTA's rule (``Sim::isCondDisabled``): an arc whose ``when`` evaluates to 0 under the
    constants ``key`` is disabled; an unconditional arc is disabled where a conditional arc of
    the same pin pair evaluates to 1; anything else (condition unknown) stays enabled. Values
    come from the same ``logic`` as the case analysis.
    """
    vals = [cell_kernel(a.when, pins, logic).out[key] if getattr(a, "when", None) else None for a in pin_arcs]
    conds = [v for v in vals if v is not None]
    one = np.logical_or.reduce([v == 1 for v in conds]) if conds else False
    return [(v != 0) if v is not None else ~one if conds else True for v in vals]


def static_delays(netlist: Netlist, model: DelayModel, codes, logic: str = "kleene") -> np.ndarray:
    """``[n_codes]`` static case-analysis delay (ps) of each weight code (``logic``: see
    :func:`static_timing`)."""
    return static_timing(netlist, model, codes, logic).delay_ps


# ------------------------------------------------------------------------------ floating

FS = 1000  # fs per ps


def _code_values(netlist: Netlist, bits: np.ndarray, a_words, p_words, V: int) -> np.ndarray:
    """Net values ``[n_nets, V]`` (uint8 0/1) for one code over the packed (a, p) vectors."""
    from .simulate import net_words

    nw = a_words.shape[1]
    w_words = np.where(bits[:, None] != 0, np.uint64(0xFFFF_FFFF_FFFF_FFFF), np.uint64(0)).repeat(nw, axis=1)
    words = net_words(netlist, {"a": a_words, "w": w_words, "p": p_words})
    return np.unpackbits(words.view(np.uint8), axis=1, count=V, bitorder="little")


def _arc_units(st: StaticTiming, unit_fs: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per gate: arc delays floored to whole ``unit_fs``, ``f[k, 4, C]`` int16 (index
    ``2·v_in + v_out``; dead edge pairs hold the arc's largest live value, 0 if none) and
    ``kind[k, C]``: 0 all four equal, 1 positive / 2 negative unate (the delay then depends on
    ``v_out`` only: in a minimal determining set a unate input's final value is the one that
    agrees with the output), 3 non-unate (look up by ``v_in`` and ``v_out``)."""
    out = []
    for D in st.arc_ps:
        k, C = D.shape[0], D.shape[-1]
        d = D.reshape(k, 4, C)
        nan = np.isnan(d)
        with np.errstate(invalid="ignore"):
            fill = np.nan_to_num(np.max(np.where(nan, -np.inf, d), axis=1), neginf=0.0)
        f = np.floor(np.where(nan, fill[:, None, :], d) * FS / unit_fs).astype(np.int16)
        kind = np.full((k, C), 3, np.int8)
        kind[nan[:, 1] & nan[:, 2]] = 1
        kind[nan[:, 0] & nan[:, 3]] = 2
        kind[(f == f[:, :1]).all(axis=1)] = 0
        out.append((f, kind))
    return out


def _floating_one(netlist: Netlist, st: StaticTiming, arcs, c: int, vals: np.ndarray) -> int:
    """Floating-mode delay (time units) of code index ``c`` given net values ``vals``
    ``[n_nets, V]`` (0/1 uint8); times are int16 in the units of ``arcs``."""
    V = vals.shape[1]
    t = np.zeros((netlist.n_nets, V), np.int16)  # primary inputs settle at 0
    b = vals.view(bool)
    BIG = np.int16(32767)
    for gi, g in enumerate(netlist.gates):
        if st.const[g.output, c] != X:
            continue
        cell = netlist.cells[g.cell]
        free, sets = floating_rule(cell.function, cell.inputs, int(st.keys[gi, c]))
        f, kind = arcs[gi]
        to = t[g.output]
        e = []
        for i in free:
            n = g.inputs[i]
            dst = to if len(free) == 1 else None
            kd = kind[i, c]
            if kd == 0:
                e.append(np.add(t[n], f[i, 0, c], out=dst))
            elif kd == 3:
                idx = np.bitwise_or(vals[n] << np.uint8(1), vals[g.output])
                e.append(np.add(t[n], f[i, :, c].take(idx, mode="wrap"), out=dst))
            else:
                rise, fall = (f[i, 3, c], f[i, 0, c]) if kd == 1 else (f[i, 1, c], f[i, 2, c])
                e.append(np.add(t[n], rise if rise == fall else np.where(b[g.output], rise, fall), out=dst))
        if len(free) == 1:
            continue
        np.maximum(e[0], e[1], out=to)
        for x in e[2:]:
            np.maximum(to, x, out=to)
        for members, mask in sets:
            if len(members) == 1:
                j = members[0]
                cond = b[g.inputs[free[j]]]
                if mask[0] and mask[1]:
                    np.minimum(to, e[j], out=to)
                else:
                    np.minimum(to, e[j], out=to, where=cond if mask[1] else ~cond)
            else:
                pat = vals[g.inputs[free[members[0]]]].copy()
                for jj, j in enumerate(members[1:], 1):
                    pat |= vals[g.inputs[free[j]]] << np.uint8(jj)
                m = np.maximum.reduce([e[j] for j in members])
                np.minimum(to, np.where(mask[pat], m, BIG), out=to)
    outs = [n for n in netlist.output_nets if st.const[n, c] == X]
    return int(t[outs].max()) if outs else 0


def floating_delays(
    netlist: Netlist,
    model: DelayModel,
    codes,
    a_values,
    p_values,
    *,
    static: StaticTiming | None = None,
    threads: int = 1,
    progress: bool = False,
) -> np.ndarray:
    """``[n_codes]`` sensitised floating-mode delay (ps): max over ``a_values x p_values``.

    ``static``: a :func:`static_timing` result for the same ``codes`` (computed if omitted).
    Codes run on ``threads`` threads (numpy releases the GIL).
    """
    from .simulate import pack_bits

    codes = np.asarray(codes, dtype=np.int64).ravel()
    st = static if static is not None else static_timing(netlist, model, codes)
    if not np.array_equal(st.codes, codes):
        raise UserError("static timing was computed for other codes; pass static_timing(netlist, model, codes)")
    a = np.asarray(a_values, dtype=np.int64).ravel()
    p = np.asarray(p_values, dtype=np.int64).ravel()
    if a.size == 0 or p.size == 0:
        raise UserError("floating-mode timing needs at least one activation and one partial-sum value")
    for port in ("a", "p"):
        if port not in netlist.inputs:
            raise UserError(f"netlist {netlist.module} has no input port {port!r}; the MAC needs ports a, w, p")
    av, pv = np.repeat(a, p.size), np.tile(p, a.size)
    V = av.size
    try:
        a_words = pack_bits(_wrap(av, len(netlist.inputs["a"])), len(netlist.inputs["a"]))
        p_words = pack_bits(_wrap(pv, len(netlist.inputs["p"])), len(netlist.inputs["p"]))
    except ValueError as e:
        raise UserError(f"activation/partial-sum values do not fit the MAC ports: {e}") from None
    wb = weight_bits(netlist, codes)
    unit_fs = time_unit_fs(st)
    arcs = _arc_units(st, unit_fs)

    def one(c: int) -> int:
        return _floating_one(netlist, st, arcs, c, _code_values(netlist, wb[:, c], a_words, p_words, V))

    out = np.zeros(codes.size, np.int64)
    with _progress(progress, codes.size, "floating-mode timing") as tick:
        with ThreadPoolExecutor(max(1, threads)) as ex:
            for c, r in enumerate(ex.map(one, range(codes.size))):
                out[c] = r
                tick()
    return out * unit_fs / FS


def time_unit_fs(st: StaticTiming) -> int:
    """Resolution (fs) of the int16 floating-mode times: the largest static arrival plus the
    largest arc delay (a bound on every intermediate sum) must fit in 30000 units; never finer
    than 1 fs (8-bit MACs: ~0.2 ps built-in, ~0.3 ps sky130)."""
    finite = st.arrival_ps[np.isfinite(st.arrival_ps)]
    top = float(finite.max()) if finite.size else 0.0
    arcs = [np.nanmax(D) for D in st.arc_ps if np.isfinite(D).any()]
    top += max(arcs, default=0.0)
    return max(1, int(np.ceil(top * FS / 30000)))


def _wrap(v: np.ndarray, nbits: int) -> np.ndarray:
    """Values modulo 2^nbits (two's complement wrap of negative inputs)."""
    return v & ((1 << nbits) - 1)


class _progress:
    """Optional rich progress bar; ``with _progress(on, n, text) as tick: tick()``."""

    def __init__(self, on: bool, total: int, text: str):
        self.on, self.total, self.text = on, total, text

    def __enter__(self):
        if not self.on:
            return lambda: None
        from rich.progress import Progress

        self.p = Progress(transient=True)
        self.p.__enter__()
        task = self.p.add_task(self.text, total=self.total)
        return lambda: self.p.advance(task)

    def __exit__(self, *exc):
        if self.on:
            self.p.__exit__(*exc)
        return False

"""Per-code timing against brute-force oracles: explicit path enumeration (static) and a
per-vector scalar settle-time reference (floating mode), on random and hand-built netlists
and small synthesized MACs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from halo_opt.errors import UserError
from halo_opt.hardware.delay import ArcDelay, BuiltinDelay
from halo_opt.hardware.netlist import YOSYS_CELLS, Gate, Netlist
from halo_opt.hardware.timing import FS, floating_delays, static_delays, static_timing, time_unit_fs

CELLS = sorted(c for c in YOSYS_CELLS)


def _ev(cell, vals):
    c = YOSYS_CELLS[cell]
    return eval(c.function, {}, dict(zip(c.inputs, vals))) & 1


@dataclass
class RiseFall:
    """Test delay model: gate g has rise delay r[g], fall delay f[g] (ps), independent of slew."""

    r: list[float]
    f: list[float]
    name: str = "test-risefall"
    input_slew_ps: float = 0.0

    def gate_arcs(self, netlist):
        def arc(r, f):
            return ArcDelay("non_unate", lambda rise, s: (np.zeros_like(np.asarray(s, float)) + (r if rise else f), np.zeros_like(np.asarray(s, float))))

        return [[[arc(self.r[gi], self.f[gi])] for _ in g.inputs] for gi, g in enumerate(netlist.gates)]


def random_netlist(draw, n_gates: int) -> Netlist:
    inputs = {"a": [2, 3], "w": [4, 5], "p": [6, 7]}
    nets = list(range(2, 8))
    gates = []
    nxt = 8
    for i in range(n_gates):
        cell = draw(st.sampled_from(CELLS))
        k = len(YOSYS_CELLS[cell].inputs)
        ins = tuple(draw(st.sampled_from(nets + [0, 1] * (i % 5 == 4))) for _ in range(k))
        gates.append(Gate(f"g{i}", cell, ins, nxt))
        nets.append(nxt)
        nxt += 1
    outs = [nxt - 1, nxt - 2, draw(st.sampled_from(nets))]
    return Netlist("rnd", nxt, inputs, {"y": outs}, gates, dict(YOSYS_CELLS), meta={"signed": False})


# ---------------------------------------------------------------------------------- oracles


def ref_constants(nl: Netlist, code: int) -> dict[int, int]:
    """Scalar three-valued propagation: net -> 0/1 for nets constant under weight ``code``."""
    val = {0: 0, 1: 1}
    for b, n in enumerate(nl.inputs["w"]):
        val[n] = (code >> b) & 1
    for g in nl.gates:
        k = len(g.inputs)
        outs = {_ev(g.cell, [val.get(n, x) if n in val else x for n, x in zip(g.inputs, xs)])
                for xs in itertools.product((0, 1), repeat=k)
                if all(val.get(n, x) == x for n, x in zip(g.inputs, xs))}
        if len(outs) == 1:
            val[g.output] = outs.pop()
    return val


def ref_sense(nl: Netlist, g: Gate, i: int, val: dict) -> tuple[bool, bool]:
    """Can a rise of input i raise / lower the output, given the constants?"""
    up = down = False
    for xs in itertools.product((0, 1), repeat=len(g.inputs)):
        if any(n in val and val[n] != x for n, x in zip(g.inputs, xs)) or xs[i] == 1:
            continue
        hi = list(xs)
        hi[i] = 1
        f0, f1 = _ev(g.cell, xs), _ev(g.cell, hi)
        up |= f1 > f0
        down |= f1 < f0
    return up, down


def ref_static(nl: Netlist, model: RiseFall, code: int) -> float:
    """Longest path by explicit enumeration of (path, edge) from a/p inputs to outputs."""
    val = ref_constants(nl, code)
    senses = {}
    driver = {g.output: (gi, g) for gi, g in enumerate(nl.gates)}
    sources = set(nl.inputs["a"]) | set(nl.inputs["p"])
    best = -np.inf

    def walk(net: int, edge: int, acc: float):  # backwards from an output with its edge
        nonlocal best
        if net in sources:
            best = max(best, acc)
            return
        if net not in driver or net in val:
            return
        gi, g = driver[net]
        d = model.r[gi] if edge else model.f[gi]
        for i, n in enumerate(g.inputs):
            if n in val:
                continue
            if (gi, i) not in senses:
                senses[gi, i] = ref_sense(nl, g, i, val)
            up, down = senses[gi, i]
            for e_in in (0, 1):
                same = (e_in == edge)
                if (same and up) or (not same and down):
                    walk(n, e_in, acc + d)

    for n in nl.output_nets:
        for e in (0, 1):
            walk(n, e, 0.0)
    return 0.0 if best == -np.inf else best


def ref_floating(nl: Netlist, model: RiseFall, code: int, a: int, p: int, unit_fs: int, val: dict | None = None) -> int:
    """Settle times of one vector by definition: min over determining input sets S of
    max_{i in S}(t_i + d), with d the gate's floored rise/fall delay for its final value."""
    val = ref_constants(nl, code) if val is None else val
    v = {0: 0, 1: 1}
    t: dict[int, int] = {}
    for port, x in (("a", a), ("w", code), ("p", p)):
        for b, n in enumerate(nl.inputs[port]):
            v[n] = (x >> b) & 1
            if port != "w":
                t[n] = 0
    for gi, g in enumerate(nl.gates):
        vals = [v[n] for n in g.inputs]
        v[g.output] = _ev(g.cell, vals)
        if g.output in val:
            continue
        free = [i for i, n in enumerate(g.inputs) if n not in val]
        d = int(np.floor((model.r[gi] if v[g.output] else model.f[gi]) * FS / unit_fs))
        best = None
        for r in range(1, len(free) + 1):
            for S in itertools.combinations(free, r):
                rest = [i for i in free if i not in S]
                outs = set()
                for xs in itertools.product((0, 1), repeat=len(rest)):
                    vv = list(vals)
                    for i, x in zip(rest, xs):
                        vv[i] = x
                    outs.add(_ev(g.cell, vv))
                if len(outs) == 1:
                    m = max(t[g.inputs[i]] + d for i in S)
                    best = m if best is None else min(best, m)
        t[g.output] = best
    outs = [t[n] for n in nl.output_nets if n not in val]
    return max(outs) if outs else 0


# ---------------------------------------------------------------------------------- properties


@st.composite
def cases(draw):
    n = draw(st.integers(1, 10))
    nl = random_netlist(draw, n)
    r = [draw(st.integers(1, 50)) * 1.25 for _ in range(n)]
    f = [draw(st.integers(1, 50)) * 1.25 for _ in range(n)]
    return nl, RiseFall(r, f)


@settings(max_examples=80, deadline=None)
@given(cases())
def test_static_and_floating_match_oracles_on_random_netlists(case):
    nl, model = case
    codes = np.arange(4)
    a_vals, p_vals = np.arange(4), np.arange(4)
    stt = static_timing(nl, model, codes, logic="exact")  # the oracle is exact (truth tables)
    ref = [ref_static(nl, model, int(c)) for c in codes]
    np.testing.assert_allclose(stt.delay_ps, ref)
    # the default (kleene, OpenSTA's structural rules) keeps a superset of the exact arcs
    assert (static_delays(nl, model, codes) >= stt.delay_ps - 1e-9).all()
    fl = floating_delays(nl, model, codes, a_vals, p_vals, static=stt, threads=1)
    unit = time_unit_fs(stt)
    for ci, c in enumerate(codes):
        val = ref_constants(nl, int(c))
        want = max(ref_floating(nl, model, int(c), int(a), int(p), unit, val) for a in a_vals for p in p_vals)
        assert fl[ci] == pytest.approx(want * unit / FS)
    assert (fl <= stt.delay_ps + 1e-9).all()


def _hand(gates, n_nets, a, w, p, y):
    return Netlist("hand", n_nets, {"a": a, "w": w, "p": p}, {"y": y},
                   [Gate(f"g{i}", c, ins, o) for i, (c, ins, o) in enumerate(gates)], dict(YOSYS_CELLS), meta={"signed": False})


def test_hand_mux_select_by_weight_and_controlling_and():
    # nets: a0=2 a1=3 w0=4 p0=5; slow = BUF(BUF(BUF(a1))) = 8; y0 = MUX(A=a0, B=slow, S=w0) = 9
    # y1 = AND(a0, slow) = 10
    gates = [("$_BUF_", (3,), 6), ("$_BUF_", (6,), 7), ("$_BUF_", (7,), 8),
             ("$_MUX_", (2, 8, 4), 9), ("$_AND_", (2, 8), 10)]
    nl = _hand(gates, 11, [2, 3], [4], [5], [9, 10])
    m = RiseFall([10, 10, 10, 7, 3], [10, 10, 10, 7, 3])
    stt = static_timing(nl, m, [0, 1])
    assert stt.delay_ps.tolist() == [33.0, 37.0]  # w=0: mux arc from slow path is dead
    # floating: with a0 = 0 the AND settles at 3 ps; the w=0 MUX passes a0 at 7 ps
    only_a0_zero = floating_delays(nl, m, [0, 1], [0, 2], [0], static=stt, threads=1)  # a = 0b00, 0b10
    assert only_a0_zero.tolist() == [7.0, 37.0]
    np.testing.assert_allclose(floating_delays(nl, m, [0, 1], [0, 1, 2, 3], [0], static=stt, threads=1), [33.0, 37.0])


def test_hand_xor_with_constant_is_unate_and_rise_fall_aware():
    # y = XOR(NOT(a0), w0): w0=1 turns the XOR into an inverter: rise of NOT -> fall of y
    gates = [("$_NOT_", (2,), 5), ("$_XOR_", (5, 3), 6)]
    nl = _hand(gates, 7, [2], [3], [4], [6])
    m = RiseFall([100, 5], [1, 50])
    stt = static_timing(nl, m, [0, 1])
    # w=0: y follows NOT: y rise needs NOT rise (100 + 5), y fall needs NOT fall (1 + 50)
    # w=1: y = ~NOT: y fall <- NOT rise (100 + 50); y rise <- NOT fall (1 + 5)
    assert stt.delay_ps.tolist() == [105.0, 150.0]


def test_constant_output_and_all_dead_code_is_zero():
    gates = [("$_AND_", (2, 3), 5)]  # y = a0 & w0
    nl = _hand(gates, 6, [2], [3], [4], [5])
    m = RiseFall([10], [10])
    assert static_delays(nl, m, [0, 1]).tolist() == [0.0, 10.0]
    assert floating_delays(nl, m, [0, 1], [0, 1], [0], threads=1).tolist() == [0.0, 10.0]


def test_code_range_errors():
    nl = _hand([("$_AND_", (2, 3), 5)], 6, [2], [3], [4], [5])
    with pytest.raises(UserError, match="weight codes"):
        static_delays(nl, BuiltinDelay(), [2])
    nl.meta["signed"] = True
    with pytest.raises(UserError, match="weight codes"):
        static_delays(nl, BuiltinDelay(), [1])
    assert static_delays(nl, BuiltinDelay(), [-1, 0]).shape == (2,)


# ---------------------------------------------------------------------------------- real MACs


@pytest.fixture(scope="module", params=[(2, 2, True, 4, "array"), (3, 3, False, 6, "array"), (3, 3, True, 7, "booth")])
def small_mac(request):
    from halo_opt.hardware.verilog import MacSpec
    from halo_opt.hardware.yosys import synthesize_mac

    return synthesize_mac(MacSpec(*request.param))


def test_small_mac_static_and_floating_vs_oracles(small_mac):
    nl = small_mac
    wb, ab, pb = (len(nl.inputs[k]) for k in "wap")
    signed = nl.meta["spec"]["signed"]
    codes = np.arange(-(1 << (wb - 1)), 1 << (wb - 1)) if signed else np.arange(1 << wb)
    rng = np.random.default_rng(1)
    m = RiseFall(list(rng.integers(5, 40, len(nl.gates)) * 1.0), list(rng.integers(5, 40, len(nl.gates)) * 1.0))
    stt = static_timing(nl, m, codes, logic="exact")
    mask = (1 << wb) - 1
    np.testing.assert_allclose(stt.delay_ps, [ref_static(nl, m, int(c) & mask) for c in codes])
    a_vals = np.arange(1 << ab)
    p_vals = rng.integers(0, 1 << pb, 3)
    fl = floating_delays(nl, m, codes, a_vals, p_vals, static=stt, threads=2)
    unit = time_unit_fs(stt)
    vals = {int(c): ref_constants(nl, int(c) & mask) for c in codes}
    want = [max(ref_floating(nl, m, int(c) & mask, int(a), int(p), unit, vals[int(c)]) for a in a_vals for p in p_vals) for c in codes]
    np.testing.assert_allclose(fl, np.array(want) * unit / FS)
    assert (fl <= stt.delay_ps).all()
    # the built-in model: floating <= static, and weight 0 is faster than the worst code
    b = BuiltinDelay()
    sb = static_timing(nl, b, codes)
    fb = floating_delays(nl, b, codes, a_vals, p_vals, static=sb)
    assert (fb <= sb.delay_ps).all() and sb.delay_ps[codes == 0][0] < sb.delay_ps.max()


def test_kleene_logic_is_structural_and_coarser():
    from halo_opt.hardware.timing import X, cell_kernel

    a21oi = ("((~(A1) & ~(B1)) | (~(A2) & ~(B1)))", ("A1", "A2", "B1"))
    key = 2 * 1 + 0 * 3 + 2 * 9  # A1 = X, A2 = 0, B1 = X
    ex, kl = cell_kernel(*a21oi), cell_kernel(*a21oi, "kleene")
    assert ex.out[key] == kl.out[key] == X
    assert ex.sense[key].tolist() == [0, 0, 2]  # output = ~B1: A1 no longer matters
    assert kl.sense[key].tolist() == [2, 0, 2]  # OpenSTA without CUDD keeps the A1 arc
    xor = ("((A & ~(B)) | (~(A) & B))", ("A", "B"))
    assert cell_kernel(*xor, "kleene").sense[2 + 3].tolist() == [2, 0]  # B = 1: inverter in A
    assert cell_kernel(*xor).sense[2 + 3].tolist() == [2, 0]
    mux = ("((A0 & ~(S)) | (A1 & S))", ("A0", "A1", "S"))
    key = 1 + 1 * 3 + 2 * 9  # A0 = A1 = 1, S = X
    assert cell_kernel(*mux).out[key] == 1 and cell_kernel(*mux, "kleene").out[key] == X
    assert cell_kernel(*mux, "kleene").sense[key].tolist() == [0, 0, 3]
    # on every 3-valued input pattern of every Yosys cell, kleene keeps a superset of exact's arcs
    for c in YOSYS_CELLS.values():
        e, k = cell_kernel(c.function, c.inputs), cell_kernel(c.function, c.inputs, "kleene")
        live = k.out == X
        assert ((e.out == k.out) | live).all()
        assert ((e.sense & ~k.sense)[live] == 0).all()


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 5).flatmap(lambda k: st.tuples(
    st.just(k), st.integers(0, 2 ** (2 ** k) - 1), st.lists(st.sampled_from([0, 1, 2]), min_size=k, max_size=k),
    st.lists(st.integers(0, 100), min_size=k, max_size=k))))
def test_floating_rule_equals_min_over_all_determining_sets(case):
    """The listed minimal sets reproduce min_S max_{i in S} t_i over *all* determining sets S."""
    from halo_opt.hardware.timing import floating_rule

    k, table, consts, times = case
    pins = tuple(f"I{i}" for i in range(k))
    minterms = [m for m in range(2**k) if (table >> m) & 1]
    fn = " | ".join("(" + " & ".join(p if (m >> i) & 1 else f"~{p}" for i, p in enumerate(pins)) + ")" for m in minterms) or "0"
    key = sum(c * 3**i for i, c in enumerate(consts))
    free, sets = floating_rule(fn, pins, key)
    assert free == tuple(i for i in range(k) if consts[i] == 2)

    def f(bits):
        m = sum(b << i for i, b in enumerate(bits))
        return (table >> m) & 1

    for x in itertools.product((0, 1), repeat=len(free)):
        full = list(consts)
        for j, i in enumerate(free):
            full[i] = x[j]
        brute = None
        for r in range(1, len(free) + 1):
            for S in itertools.combinations(range(len(free)), r):
                rest = [j for j in range(len(free)) if j not in S]
                vals = set()
                for y in itertools.product((0, 1), repeat=len(rest)):
                    b = list(full)
                    for j, yy in zip(rest, y):
                        b[free[j]] = yy
                    vals.add(f(b))
                if len(vals) == 1:
                    m = max(times[free[j]] for j in S)
                    brute = m if brute is None else min(brute, m)
        if not free:
            continue
        got = max(times[i] for i in free)  # the full set always determines
        for members, mask in sets:
            own = sum(x[j] << jj for jj, j in enumerate(members))
            if mask[own]:
                got = min(got, max(times[free[j]] for j in members))
        assert got == brute, (fn, consts, x)

"""Bit-parallel simulator, bit-plane packing and constant propagation, against scalar oracles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halo_opt.hardware.check import add_planes, code_range
from halo_opt.hardware.netlist import YOSYS_CELLS, Cell, Gate, Netlist
from halo_opt.hardware.simulate import constant_propagate, net_words, pack_bits, simulate, unpack_bits
from halo_opt.hardware.verilog import MacSpec
from halo_opt.hardware.yosys import synthesize_mac

FAST = settings(max_examples=60, deadline=None)


@FAST
@given(st.integers(1, 48).flatmap(lambda nb: st.tuples(
    st.just(nb), st.lists(st.integers(-(1 << (nb - 1)), (1 << (nb - 1)) - 1), max_size=200))))
def test_pack_unpack_round_trip(case):
    nbits, vals = case
    words = pack_bits(vals, nbits)
    assert words.shape == (nbits, (len(vals) + 63) // 64) and words.dtype == np.uint64
    assert unpack_bits(words, len(vals), signed=True).tolist() == vals
    assert unpack_bits(words, len(vals)).tolist() == [v % (1 << nbits) for v in vals]
    for i, v in enumerate(vals[:70]):  # layout: bit k of vector i = bit i%64 of word [k, i//64]
        assert [(int(words[k, i // 64]) >> (i % 64)) & 1 for k in range(nbits)] == [(v >> k) & 1 for k in range(nbits)]


def test_pack_rejects_out_of_range():
    with pytest.raises(ValueError):
        pack_bits([8], 3)
    with pytest.raises(ValueError):
        pack_bits([-5], 3)


@FAST
@given(st.integers(1, 40).flatmap(lambda nb: st.lists(st.tuples(st.integers(0, (1 << nb) - 1), st.integers(0, (1 << nb) - 1)),
                                                       min_size=1, max_size=130).map(lambda xs: (nb, xs))))
def test_add_planes_is_modular_addition(case):
    nb, pairs = case
    x, y = np.array(pairs).T
    s = unpack_bits(add_planes(pack_bits(x, nb), pack_bits(y, nb)), len(pairs))
    assert s.tolist() == [(a + b) % (1 << nb) for a, b in pairs]


def scalar_eval(net: Netlist, vec: dict[str, int]) -> list[int]:
    """Oracle: one vector, one gate at a time, Python ints."""
    v = {0: 0, 1: 1}
    for port, nets in net.inputs.items():
        for k, n in enumerate(nets):
            v.setdefault(n, (vec[port] >> k) & 1)
    for g in net.gates:
        cell = net.cells[g.cell]
        v[g.output] = eval(cell.function, {}, {p: v[n] for p, n in zip(cell.inputs, g.inputs)}) & 1
    return [v.get(n, 0) for n in range(net.n_nets)]


@st.composite
def random_netlists(draw):
    names = sorted(YOSYS_CELLS)
    inputs = {"a": [2, 3], "w": [4, 5], "p": [6, 7, 8]}
    n = 9
    gates = []
    for i in range(draw(st.integers(0, 40))):
        cell = YOSYS_CELLS[draw(st.sampled_from(names))]
        ins = tuple(draw(st.integers(0, n - 1)) for _ in cell.inputs)
        gates.append(Gate(f"g{i}", cell.name, ins, n))
        n += 1
    outputs = {"y": [draw(st.integers(0, n - 1)) for _ in range(4)]}
    return Netlist("rand", n, inputs, outputs, gates, dict(YOSYS_CELLS))


@FAST
@given(random_netlists(), st.integers(0, 2**32 - 1))
def test_net_words_matches_scalar_oracle(net, seed):
    net.validate()
    rng = np.random.default_rng(seed)
    m = 70  # crosses a word boundary
    vecs = {"a": rng.integers(0, 4, m), "w": rng.integers(0, 4, m), "p": rng.integers(0, 8, m)}
    V = net_words(net, {p: pack_bits(v, len(net.inputs[p])) for p, v in vecs.items()})
    got = np.array([unpack_bits(V[i : i + 1], m) for i in range(net.n_nets)]).T
    for i in range(m):
        assert got[i].tolist() == scalar_eval(net, {p: int(v[i]) for p, v in vecs.items()})


@FAST
@given(random_netlists(), st.dictionaries(st.integers(2, 8), st.integers(0, 1)), st.booleans(), st.integers(0, 2**32 - 1))
def test_constant_propagation_on_random_netlists(net, fixed, prune, seed):
    cp = constant_propagate(net, fixed, prune=prune)
    cp.validate()
    assert len(cp.gates) <= len(net.gates)
    rng = np.random.default_rng(seed)
    vecs = {"a": rng.integers(0, 4, 100), "w": rng.integers(0, 4, 100), "p": rng.integers(0, 8, 100)}
    forced = {p: v.copy() for p, v in vecs.items()}
    for port, nets in net.inputs.items():  # apply the fixed bits to the full netlist's inputs
        for k, n in enumerate(nets):
            if n in fixed:
                forced[port] = (forced[port] & ~(1 << k)) | (fixed[n] << k)
    assert np.array_equal(simulate(net, forced)["y"], simulate(cp, vecs)["y"])


def test_liberty_style_functions_with_constants():
    """Cell functions may use 0/1 and deep nesting; the compiler ties them to nets 0/1."""
    cells = {"AOI211": Cell("AOI211", ("A1", "A2", "B1", "C1"), "Y", "~(((A1 & A2) | B1) | C1)"),
             "WEIRD": Cell("WEIRD", ("A", "B"), "Z", "((A ^ 1) & ~(B | 0)) | (A & (B ^ (A & ~B)))")}
    gates = [Gate("u0", "AOI211", (2, 3, 4, 5), 9), Gate("u1", "WEIRD", (9, 6), 10)]
    net = Netlist("lib", 11, {"a": [2, 3], "w": [4, 5], "p": [6, 7, 8]}, {"y": [9, 10]}, gates, cells)
    a, w, p = np.meshgrid(np.arange(4), np.arange(4), np.arange(8), indexing="ij")
    y = simulate(net, {"a": a, "w": w, "p": p})["y"]
    for i, (ai, wi, pi) in enumerate(zip(a.ravel(), w.ravel(), p.ravel())):
        exp = scalar_eval(net, {"a": int(ai), "w": int(wi), "p": int(pi)})
        assert y[i] == exp[9] | (exp[10] << 1)
    with pytest.raises(ValueError, match="only pins"):
        simulate(Netlist("bad", 10, net.inputs, {"y": [9]}, [Gate("u", "BAD", (2,), 9)],
                         {"BAD": Cell("BAD", ("A",), "Y", "A + 1")}), {"a": 0, "w": 0, "p": 0})


@pytest.fixture(scope="module")
def mac4():
    spec = MacSpec(wbits=4, abits=4, signed=True, acc=12, arch="array")
    return spec, synthesize_mac(spec)


def test_simulate_mac_equals_integer_reference(mac4):
    spec, net = mac4
    rng = np.random.default_rng(1)
    a, w = rng.integers(-8, 8, 3000), rng.integers(-8, 8, 3000)
    p = rng.integers(-(1 << 11), 1 << 11, 3000)
    y = simulate(net, {"a": a, "w": w, "p": p}, signed=True, chunk_vectors=1000)["y"]
    ref = (p + a * w + (1 << 11)) % (1 << 12) - (1 << 11)
    assert np.array_equal(y, ref)


@pytest.mark.parametrize("prune", [False, True])
def test_constant_propagation_is_equivalent(mac4, prune):
    spec, net = mac4
    rng = np.random.default_rng(2)
    m = 4096
    a, p = rng.integers(-8, 8, m), rng.integers(-(1 << 11), 1 << 11, m)
    for code in code_range(spec.wbits, spec.signed):
        fixed = {n: (int(code) >> k) & 1 for k, n in enumerate(net.inputs["w"])}
        cp = constant_propagate(net, fixed, prune=prune)
        cp.validate()
        assert len(cp.gates) < len(net.gates)
        words = {"a": pack_bits(a, 4), "p": pack_bits(p, 12)}
        V0 = net_words(net, {**words, "w": pack_bits(np.full(m, code), 4)})
        V1 = net_words(cp, {**words, "w": pack_bits(np.zeros(m, dtype=int), 4)})  # w words ignored: tied
        assert np.array_equal(V0[net.outputs["y"]], V1[cp.outputs["y"]])
        for g in cp.gates:  # every kept gate computes exactly what it did in the full netlist
            assert np.array_equal(V0[g.output], V1[g.output])
        for n, v in cp.meta["constant_nets"].items():  # every folded net really is constant
            assert np.all(V0[n] == (np.uint64(2**64 - 1) if v else 0))
        if code == 0:  # y = p: the whole multiplier folds away
            assert cp.outputs["y"] == net.inputs["p"] or len(cp.gates) < len(net.gates) // 3


def test_constant_propagation_rejects_internal_nets(mac4):
    _, net = mac4
    with pytest.raises(ValueError, match="primary inputs"):
        constant_propagate(net, {net.gates[0].output: 1})

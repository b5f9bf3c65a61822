"""Functional check: is a netlist the MAC ``y = (p + a*w) mod 2^acc`` of a :class:`MacSpec`?

Every activation code ``a`` times every weight code ``w`` (exhaustive), each with
``n_psums`` partial sums ``p`` (always 0, all-ones, the max and min, 1 and the MSB alone,
the rest drawn uniformly with ``seed``), simulated bit-parallel and compared with the
integer reference. Signed specs use two's complement for all four ports.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from .netlist import Netlist
from .simulate import ALL_ONES, net_words, pack_bits, unpack_bits
from .verilog import MacSpec

CHUNK_VECTORS = 1 << 16


def code_range(bits: int, signed: bool) -> np.ndarray:
    """All codes of a ``bits``-wide port, ascending (two's complement values when signed)."""
    lo = -(1 << (bits - 1)) if signed else 0
    return np.arange(lo, lo + (1 << bits), dtype=np.int64)


def sample_psums(acc: int, signed: bool, n: int, seed: int) -> np.ndarray:
    """``n`` distinct partial sums: corner cases first, then uniform samples (``seed``)."""
    lo, hi = (-(1 << (acc - 1)), (1 << (acc - 1)) - 1) if signed else (0, (1 << acc) - 1)
    all_ones = -1 if signed else hi
    msb = lo if signed else 1 << (acc - 1)
    special = list(dict.fromkeys([0, all_ones, hi, lo, 1, msb]))
    out = special[:n]
    rng = np.random.default_rng(seed)
    seen = set(out)
    while len(out) < min(n, hi - lo + 1):
        for v in rng.integers(lo, hi, size=n, endpoint=True).tolist():
            if v not in seen and len(out) < n:
                seen.add(v)
                out.append(v)
    return np.array(out, dtype=np.int64)


def functional_check(netlist: Netlist, spec: MacSpec, n_psums: int = 64, seed: int = 0) -> int:
    """Raise :class:`UserError` naming the first failing ``(a, w, p)`` unless the netlist
    computes ``y = p + a*w mod 2^acc`` on every tested vector; return the number of vectors.

    Vectors: all ``2^abits · 2^wbits`` pairs (tiled to at least one 64-bit word) × ``n_psums``
    partial sums. The reference works on bit planes: the product planes ``a*w mod 2^acc`` are
    packed once, and each constant ``p`` is added by a word-parallel ripple-carry adder
    (:func:`add_planes`, itself checked against integer arithmetic in the tests).
    """
    for port, width in spec.port_widths.items():
        have = netlist.inputs.get(port, netlist.outputs.get(port))
        if have is None or len(have) != width:
            got = "missing" if have is None else f"{len(have)} bits"
            raise UserError(f"netlist port {port} is {got}, but the MAC spec ({spec.name}) needs {width} bits; pass the matching --wbits/--abits/--acc")
    A, W = (g.ravel() for g in np.meshgrid(code_range(spec.abits, spec.signed), code_range(spec.wbits, spec.signed), indexing="ij"))
    reps = max(1, 64 // A.size)  # both powers of two: the tiled grid fills whole words
    A, W = np.tile(A, reps), np.tile(W, reps)
    mask = (1 << spec.acc) - 1
    planes = {"a": pack_bits(A, spec.abits), "w": pack_bits(W, spec.wbits)}
    prod = pack_bits((A * W) & mask, spec.acc)
    bw = prod.shape[1]  # words per partial sum
    psums = sample_psums(spec.acc, spec.signed, n_psums, seed)
    y_nets = netlist.outputs["y"]
    per = max(1, CHUNK_VECTORS // A.size)
    for s in range(0, psums.size, per):
        P = psums[s : s + per]
        k = P.size
        bits = ((P[None, :] & mask) >> np.arange(spec.acc)[:, None]) & 1  # [acc, k]
        p_words = np.repeat(bits.astype(np.uint64) * ALL_ONES, bw, axis=1)  # constant planes
        words = {"a": np.tile(planes["a"], k), "w": np.tile(planes["w"], k), "p": p_words}
        Y = net_words(netlist, words)[y_nets]
        E = add_planes(np.tile(prod, k), p_words)
        bad = np.flatnonzero(np.bitwise_or.reduce(Y ^ E, axis=0))
        if bad.size:
            j = int(bad[0])
            i = j * 64 + int(np.flatnonzero(unpack_bits(np.bitwise_or.reduce(Y[:, j : j + 1] ^ E[:, j : j + 1], axis=0)[None], 64))[0])
            got, exp = (int(unpack_bits(X[:, j : j + 1], 64, spec.signed)[i % 64]) for X in (Y, E))
            v = i % A.size
            raise UserError(f"netlist fails y = p + a*w at a={A[v]} w={W[v]} p={P[i // A.size]}: expected {exp}, got {got}; the netlist is not a MAC of this spec ({spec.name})")
    return A.size // reps * psums.size


def add_planes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(x + y) mod 2^nbits`` on bit planes ``[nbits, n_words]`` (ripple carry, 64 sums per word op)."""
    out = np.empty_like(x)
    carry = np.zeros(x.shape[1], dtype=np.uint64)
    for k in range(x.shape[0]):
        t = x[k] ^ y[k]
        out[k] = t ^ carry
        carry = (x[k] & y[k]) | (carry & t)
    return out

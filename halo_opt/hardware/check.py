"""Functional check: does a netlist compute its stage of a :class:`MacSpec`?

Every stage is an addition identity modulo ``2^width`` between its input ports and the sum
of its output ports (:meth:`MacSpec.stage_ports`):

=============  =================================  =====================================
stage          checked identity                   vectors
=============  =================================  =====================================
``mac`` (cpa)  ``y ≡ p + a*w``                    all a x all w x ``n_psums`` p
``mac`` (csa)  ``ys + yc ≡ ps + pc + a*w``        all a x all w x ``n_psums`` (ps, pc)
``mul``        ``m = a*w`` (exact)                all a x all w (FP: the aligned product)
``acc`` (cpa)  ``y ≡ p + m``                      all m codes x ``n_psums`` p
``acc`` (csa)  ``ys + yc ≡ ps + pc + m``          all m codes x ``n_psums`` (ps, pc)
``resolve``    ``y ≡ s + c``                      4096 sampled s x ``n_psums`` c
=============  =================================  =====================================

Floating-point designs (``spec.wformat``) are checked the same way against a bit-exact
reference that knows nothing of the netlist's structure: ``a*w`` is
``value(a)·value(w)·2^-L`` (:func:`exact_products`, values from :mod:`halo_opt.formats`,
exact in float64 and asserted integral), over all finite activation codes x all finite weight
codes (NaN/Inf patterns excluded); ``acc`` then takes every reachable product plus
``ACC_SAMPLES`` uniformly drawn ``mbits``-bit values (the full ``m`` range is 2^37 for FP8).

Partial sums are always 0, all-ones, the max and min, 1 and the MSB alone, the rest drawn
uniformly with ``seed`` (:func:`sample_psums`); a (ps, pc) pair is one sample of ``2·acc``
bits split in halves. Signed specs use two's complement for all ports. The carry-save check
is on the sum ``ys + yc`` (the redundant pair itself is not unique). Simulation is
bit-parallel and the reference works on bit planes (:func:`add_planes`).
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from .netlist import Netlist
from .simulate import ALL_ONES, net_words, pack_bits, unpack_bits
from .verilog import MacSpec

CHUNK_VECTORS = 1 << 16
RESOLVE_SAMPLES = 4096
ACC_SAMPLES = 4096  # extra sampled products for an FP design's acc stage


def code_range(bits: int, signed: bool) -> np.ndarray:
    """All codes of a ``bits``-wide port, ascending (two's complement values when signed)."""
    lo = -(1 << (bits - 1)) if signed else 0
    return np.arange(lo, lo + (1 << bits), dtype=np.int64)


def weight_codes(spec: MacSpec) -> np.ndarray:
    """All weight codes the MAC is characterized and checked over (int: values; FP: finite bit patterns)."""
    return spec.wfmt.codes() if spec.is_float else code_range(spec.wbits, spec.signed)


def act_codes(spec: MacSpec) -> np.ndarray:
    """All activation codes (int: values; FP: finite bit patterns)."""
    return spec.afmt.codes() if spec.is_float else code_range(spec.abits, spec.signed)


def exact_products(spec: MacSpec, a, w) -> np.ndarray:
    """The integer the product ``m`` holds for activation codes ``a`` and weight codes ``w``
    (broadcast): ``a*w`` for integers; for FP ``value(a)·value(w)·2^-L`` with ``L`` the product
    LSB exponent (:meth:`MacSpec.fp_layout`), exact (asserted) since every finite product is
    a whole number of ``2^L``."""
    a, w = np.asarray(a, dtype=np.int64), np.asarray(w, dtype=np.int64)
    if not spec.is_float:
        return a * w
    x = np.ldexp(spec.afmt.value(a) * spec.wfmt.value(w), -spec.fp_layout()["lsb"])
    q = np.rint(x)
    if not (q == x).all() or np.abs(q).max(initial=0) >= 2.0 ** (spec.mbits - 1):
        raise AssertionError("FP product not a whole number of 2^L or wider than m")  # format geometry bug
    return q.astype(np.int64)


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


def psum_ports(spec: MacSpec, n: int, seed: int) -> dict[str, np.ndarray]:
    """Sampled accumulator states: ``{"p": ...}`` (cpa) or ``{"ps": ..., "pc": ...}`` (csa,
    the two halves of :func:`sample_psums` over ``2·acc`` unsigned bits)."""
    if spec.accumulate == "cpa":
        return {"p": sample_psums(spec.acc, spec.signed, n, seed)}
    v = sample_psums(2 * spec.acc, False, n, seed)
    return {"ps": v & ((1 << spec.acc) - 1), "pc": v >> spec.acc}


def stage_vectors(spec: MacSpec, stage: str, n_psums: int = 64, seed: int = 0
                  ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """``(grid, addend, sampled)`` for :func:`check_sum`: the exhaustive (or sampled) grid of
    the operand ports, the integer addend it implies, and the sampled accumulator ports."""
    sampled = psum_ports(spec, n_psums, seed)
    if stage in ("mac", "mul"):
        A, W = (g.ravel() for g in np.meshgrid(act_codes(spec), weight_codes(spec), indexing="ij"))
        return {"a": A, "w": W}, exact_products(spec, A, W), (sampled if stage == "mac" else {})
    if stage == "acc":
        if spec.is_float:
            reach = np.unique(exact_products(spec, act_codes(spec)[:, None], weight_codes(spec)[None, :]))
            M = np.union1d(reach, sample_psums(spec.mbits, True, ACC_SAMPLES, seed + 2))
        else:
            M = code_range(spec.mbits, spec.signed)
        return {"m": M}, M, sampled
    if stage == "resolve":
        S = sample_psums(spec.acc, spec.signed, RESOLVE_SAMPLES, seed + 1)
        return {"s": S}, S, {"c": sample_psums(spec.acc, spec.signed, n_psums, seed)}
    raise UserError(f"unknown stage {stage!r}; use one of mac, mul, acc, resolve")


def functional_check(netlist: Netlist, spec: MacSpec, n_psums: int = 64, seed: int = 0, stage: str = "mac") -> int:
    """Raise :class:`UserError` naming the first failing vector unless the netlist computes
    ``stage`` of ``spec`` (module docstring) on every tested vector; return the number of vectors."""
    ins, outs = spec.stage_ports(stage)
    for port, width in (ins | outs).items():
        have = netlist.inputs.get(port, netlist.outputs.get(port))
        if have is None or len(have) != width:
            got = "missing" if have is None else f"{len(have)} bits"
            raise UserError(f"netlist port {port} is {got}, but the MAC spec ({spec.name}, stage {stage}) needs {width} bits; pass the matching --wbits/--abits/--acc")
    grid, addend, sampled = stage_vectors(spec, stage, n_psums, seed)
    what = {"mac": "y = p + a*w" if spec.accumulate == "cpa" else "ys + yc = ps + pc + a*w", "mul": "m = a*w",
            "acc": "y = p + m" if spec.accumulate == "cpa" else "ys + yc = ps + pc + m", "resolve": "y = s + c"}[stage]
    return check_sum(netlist, grid, addend, sampled, list(outs), what, f"stage {stage} of this MAC spec ({spec.name})", spec.signed)


def check_sum(netlist: Netlist, grid: dict[str, np.ndarray], addend: np.ndarray, sampled: dict[str, np.ndarray],
              out_ports: list[str], what: str, design: str = "this MAC", signed: bool = False) -> int:
    """Check ``Σ out_ports ≡ addend + Σ sampled ports (mod 2^width)`` over every grid vector
    (``grid[port][i]``, ``addend[i]``) times every sample row (``sampled[port][j]``); ``width``
    is that of the output ports (all equal). A failure names the vector and the two sums
    (two's complement when ``signed``). Return the number of vectors checked."""
    widths = {p: len(netlist.inputs[p]) for p in list(grid) + list(sampled)}
    width = len(netlist.outputs[out_ports[0]])
    mask = (1 << width) - 1
    G = addend.size
    reps = -(-64 // G) if G < 64 else 1
    pad = (-(G * reps)) % 64  # whole words: repeat the first vectors
    idx = np.resize(np.arange(G), G * reps + pad)
    planes = {p: pack_bits(v[idx] & ((1 << widths[p]) - 1), widths[p]) for p, v in grid.items()}
    ref = pack_bits(addend[idx] & mask, width)
    bw = ref.shape[1]
    rows = next(iter(sampled.values())).size if sampled else 1
    per = max(1, CHUNK_VECTORS // idx.size)
    for s in range(0, rows, per):
        k = min(per, rows - s)
        words = {p: np.tile(w, k) for p, w in planes.items()}
        E = np.tile(ref, k)
        for p, v in sampled.items():
            bits = ((v[s : s + k, None].T & ((1 << widths[p]) - 1)) >> np.arange(widths[p])[:, None]) & 1  # [bits, k]
            words[p] = np.repeat(bits.astype(np.uint64) * ALL_ONES, bw, axis=1)  # constant planes
            E = add_planes(E, _fit(words[p], width))
        V = net_words(netlist, words)
        Y = V[netlist.outputs[out_ports[0]]]
        for p in out_ports[1:]:
            Y = add_planes(Y, V[netlist.outputs[p]])
        bad = np.flatnonzero(np.bitwise_or.reduce(Y ^ E, axis=0))
        if bad.size:
            j = int(bad[0])
            diff = unpack_bits(np.bitwise_or.reduce(Y[:, j : j + 1] ^ E[:, j : j + 1], axis=0)[None], 64)
            i = j * 64 + int(np.flatnonzero(diff)[0])
            got, exp = (int(unpack_bits(X[:, j : j + 1], 64, signed)[i % 64]) for X in (Y, E))
            v = int(idx[i % idx.size])
            at = " ".join([f"{p}={grid[p][v]}" for p in grid] + [f"{p}={sampled[p][s + i // idx.size]}" for p in sampled])
            raise UserError(f"netlist fails {what} at {at}: expected {exp}, got {got} (mod 2^{width}); the netlist is not {design}")
    return G * rows


def _fit(planes: np.ndarray, width: int) -> np.ndarray:
    """Bit planes truncated or zero-padded to ``width`` rows."""
    if planes.shape[0] >= width:
        return planes[:width]
    return np.concatenate([planes, np.zeros((width - planes.shape[0], planes.shape[1]), np.uint64)])


def add_planes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(x + y) mod 2^nbits`` on bit planes ``[nbits, n_words]`` (ripple carry, 64 sums per word op)."""
    out = np.empty_like(x)
    carry = np.zeros(x.shape[1], dtype=np.uint64)
    for k in range(x.shape[0]):
        t = x[k] ^ y[k]
        out[k] = t ^ carry
        carry = (x[k] & y[k]) | (carry & t)
    return out

"""Bit-parallel logic simulation of a :class:`Netlist`, and constant propagation.

Bit planes: ``n`` input vectors of an ``nbits`` port are stored as ``[nbits, ceil(n/64)]``
``uint64`` words; bit ``k`` of vector ``i`` is bit ``i % 64`` of word ``[k, i // 64]``.
Every gate then evaluates 64 vectors per word operation.

:func:`net_words` returns the value of **every** net for every vector (``[n_nets, n_words]``)
— what toggle counting and sensitisation need. Each netlist is compiled once into a Python
function with one in-place numpy ufunc call per operator (``np.bitwise_and(R[3], R[5],
out=R[12])``), cached per netlist object (keyed by its gates and cell functions).
Cost: about ``n_ops · (1 µs + n_words · 1 ns)``; chunk long vector sets (:func:`simulate`
does) to keep ``n_nets · n_words · 8`` bytes in cache.
"""

from __future__ import annotations

import ast
import weakref
from dataclasses import replace
from functools import lru_cache
from typing import Callable

import numpy as np

from .netlist import CONST0, CONST1, Cell, Gate, Netlist

WORD_BITS = 64
ALL_ONES = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
_UFUNC = {ast.BitAnd: "bitwise_and", ast.BitOr: "bitwise_or", ast.BitXor: "bitwise_xor"}


def n_words(n_vectors: int) -> int:
    return (n_vectors + WORD_BITS - 1) // WORD_BITS


def pack_bits(values, nbits: int) -> np.ndarray:
    """Integers (two's complement if negative) -> bit planes ``[nbits, ceil(n/64)]`` uint64.

    ``values`` must lie in ``[-2^(nbits-1), 2^nbits)``; padding vectors are 0.
    """
    v = np.asarray(values, dtype=np.int64).ravel()
    if not 1 <= nbits <= 63:
        raise ValueError(f"nbits {nbits} outside 1..63")
    if v.size and (v.min() < -(1 << (nbits - 1)) or v.max() >= 1 << nbits):
        raise ValueError(f"values outside [-2^{nbits - 1}, 2^{nbits}) for {nbits} bits")
    u = np.zeros(n_words(v.size) * WORD_BITS, dtype="<i8")
    u[: v.size] = v
    nbytes = (nbits + 7) // 8  # [n, 8] bytes -> [n, 8*nbytes] bits (LSB first) -> planes
    bits = np.unpackbits(u.view(np.uint8).reshape(-1, 8)[:, :nbytes], axis=1, bitorder="little")
    planes = np.ascontiguousarray(np.packbits(bits[:, :nbits].T, axis=1, bitorder="little"))
    return planes.view("<u8").astype(np.uint64, copy=False)


def unpack_bits(words: np.ndarray, n: int, signed: bool = False) -> np.ndarray:
    """Bit planes ``[nbits, n_words]`` -> ``n`` integers (int64; two's complement if ``signed``)."""
    w = np.ascontiguousarray(words, dtype="<u8")
    nbits = w.shape[0]
    if not 1 <= nbits <= 63 or n > w.shape[1] * WORD_BITS:
        raise ValueError(f"cannot unpack {n} vectors of {nbits} bits from {w.shape[1]} words")
    bits = np.unpackbits(w.view(np.uint8).reshape(nbits, -1), axis=1, count=n, bitorder="little")
    full = np.zeros((n, 64), dtype=np.uint8)
    full[:, :nbits] = bits.T
    vals = np.packbits(full, axis=1, bitorder="little").view("<i8").ravel().astype(np.int64, copy=False)
    if signed:
        vals -= (vals >> (nbits - 1) & 1) << nbits
    return vals


# ---------------------------------------------------------------------------------------
# compilation


def _parse_function(cell: Cell) -> ast.expr:
    """Parse and check ``cell.function``: pins, ``0``/``1``, ``& | ^ ~`` and parentheses only."""
    try:
        tree = ast.parse(cell.function, mode="eval").body
    except SyntaxError:
        raise ValueError(f"cell {cell.name}: function {cell.function!r} is not a Python expression") from None
    for node in ast.walk(tree):
        ok = (
            isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Load, ast.Invert) + tuple(_UFUNC))
            or (isinstance(node, ast.Name) and node.id in cell.inputs)
            or (isinstance(node, ast.Constant) and node.value in (0, 1) and not isinstance(node.value, bool))
        )
        if isinstance(node, ast.BinOp) and type(node.op) not in _UFUNC:
            ok = False
        if isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.Invert):
            ok = False
        if not ok:
            raise ValueError(f"cell {cell.name}: function {cell.function!r} uses {ast.dump(node)[:40]}; only pins, 0/1, & | ^ ~ are allowed")
    return tree


def _emit(node: ast.expr, pins: dict[str, str], dst: str, free: list[str], code: list[str]) -> None:
    """Append statements computing ``node`` into buffer ``dst``; ``free`` = spare temporaries."""
    def leaf(n: ast.expr) -> str | None:
        if isinstance(n, ast.Name):
            return pins[n.id]
        if isinstance(n, ast.Constant):
            return f"R[{CONST1 if n.value else CONST0}]"
        return None

    if leaf(node) is not None:
        code.append(f"np.copyto({dst}, {leaf(node)})")
    elif isinstance(node, ast.UnaryOp):
        src = leaf(node.operand)
        if src is None:
            _emit(node.operand, pins, dst, free, code)
            src = dst
        code.append(f"np.invert({src}, out={dst})")
    else:
        left, right = leaf(node.left), leaf(node.right)
        if right is None and left is not None:  # evaluate the complex side into dst
            node = ast.BinOp(node.right, node.op, node.left)
            left, right = right, left
        if left is None:
            _emit(node.left, pins, dst, free, code)
            left = dst
        if right is None:
            tmp = free[0]
            _emit(node.right, pins, tmp, free[1:], code)
            right = tmp
        code.append(f"np.{_UFUNC[type(node.op)]}({left}, {right}, out={dst})")


def _depth(node: ast.expr) -> int:
    return 1 + max((_depth(c) for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr)), default=0)


_COMPILED: dict[int, tuple[weakref.ref, tuple, Callable]] = {}


def compile_netlist(netlist: Netlist) -> Callable[[list, list], None]:
    """Python function ``f(R, T)`` evaluating all gates in order on row views ``R[net]``
    (``T``: temporaries of the same shape). Cached per netlist object while it lives and
    its gates/cells are unchanged."""
    key = (tuple(netlist.gates), tuple(sorted((c.name, c.inputs, c.function) for c in netlist.cells.values())))
    entry = _COMPILED.get(id(netlist))
    if entry is not None and entry[0]() is netlist and entry[1] == key:
        return entry[2]
    trees = {name: _parse_function(c) for name, c in netlist.cells.items()}
    n_tmp = max((_depth(t) for t in trees.values()), default=1)
    code = ["def _eval(R, T):"]
    for g in netlist.gates:
        cell = netlist.cells[g.cell]
        pins = {p: f"R[{n}]" for p, n in zip(cell.inputs, g.inputs)}
        body: list[str] = []
        _emit(trees[g.cell], pins, f"R[{g.output}]", [f"T[{i}]" for i in range(n_tmp)], body)
        code += ["    " + s for s in body]
    code.append("    return None")
    namespace = {"np": np}
    exec(compile("\n".join(code), f"<netlist {netlist.module}>", "exec"), namespace)
    fn = namespace["_eval"]
    fn.n_tmp = n_tmp
    i = id(netlist)  # not stored on the object, so netlists stay picklable
    _COMPILED[i] = (weakref.ref(netlist, lambda _: _COMPILED.pop(i, None)), key, fn)
    return fn


# ---------------------------------------------------------------------------------------
# simulation


def net_words(netlist: Netlist, port_words: dict[str, np.ndarray]) -> np.ndarray:
    """Value of every net: ``[n_nets, n_words]`` uint64 bit planes.

    ``port_words[port]``: ``[len(netlist.inputs[port]), n_words]`` uint64 (see :func:`pack_bits`),
    one entry per input port. Row 0 is all zeros, row 1 all ones; nets with no driver
    stay 0; input bits tied to a constant net (after :func:`constant_propagate`) ignore
    the supplied words.
    """
    fn = compile_netlist(netlist)
    missing = set(netlist.inputs) - set(port_words)
    if missing:
        raise ValueError(f"no words for input port(s) {sorted(missing)}")
    nw = {np.shape(w)[1] for w in port_words.values()}
    if len(nw) != 1:
        raise ValueError(f"ports have different word counts {sorted(nw)}")
    nw = nw.pop()
    V = np.zeros((netlist.n_nets, nw), dtype=np.uint64)
    V[CONST1] = ALL_ONES
    for port, nets in netlist.inputs.items():
        w = np.asarray(port_words[port], dtype=np.uint64)
        if w.shape[0] != len(nets):
            raise ValueError(f"port {port}: {w.shape[0]} bit planes for {len(nets)} bits")
        idx = np.asarray(nets)
        keep = idx > CONST1
        V[idx[keep]] = w[keep]
    fn(list(V), [np.empty(nw, dtype=np.uint64) for _ in range(fn.n_tmp)])
    return V


def simulate(
    netlist: Netlist, inputs: dict[str, np.ndarray], signed: bool = False, chunk_vectors: int = 1 << 16
) -> dict[str, np.ndarray]:
    """Integer vectors in, integer vectors out: ``{port: int64[n]}`` for every output port.

    Inputs broadcast to a common length ``n``; values may be negative (two's complement).
    Outputs are unsigned, or two's complement when ``signed``. Runs in chunks of
    ``chunk_vectors`` to bound memory.
    """
    ports = list(netlist.inputs)
    if set(inputs) != set(ports):
        raise ValueError(f"inputs {sorted(inputs)} do not match the netlist's input ports {sorted(ports)}")
    arrays = np.broadcast_arrays(*(np.asarray(inputs[p], dtype=np.int64).ravel() for p in ports))
    n = arrays[0].size
    out: dict[str, list[np.ndarray]] = {p: [] for p in netlist.outputs}
    for s in range(0, n, chunk_vectors):
        m = min(chunk_vectors, n - s)
        words = {p: pack_bits(a[s : s + m], len(netlist.inputs[p])) for p, a in zip(ports, arrays)}
        V = net_words(netlist, words)
        for p, nets in netlist.outputs.items():
            out[p].append(unpack_bits(V[nets], m, signed=signed))
    return {p: np.concatenate(v) if v else np.zeros(0, dtype=np.int64) for p, v in out.items()}


# ---------------------------------------------------------------------------------------
# constant propagation


def _truth(cell: Cell, known: list[int | None]) -> tuple[int, int]:
    """Evaluate ``cell`` with some inputs fixed: truth table over the ``k`` free inputs as a
    ``2^k``-bit integer, and its all-ones mask."""
    free = [i for i, v in enumerate(known) if v is None]
    rows = 1 << len(free)
    mask = (1 << rows) - 1
    env = {}
    for i, pin in enumerate(cell.inputs):
        if known[i] is None:
            j = free.index(i)  # column pattern of free input j: bit r = (r >> j) & 1
            env[pin] = sum(1 << r for r in range(rows) if (r >> j) & 1)
        else:
            env[pin] = mask if known[i] else 0
    return eval(_code(cell.function), {"__builtins__": {}}, env) & mask, mask


@lru_cache(maxsize=None)
def _code(function: str):
    return compile(function, "<cell function>", "eval")


def constant_propagate(netlist: Netlist, fixed: dict[int, int], prune: bool = False) -> Netlist:
    """Fix primary-input nets to 0/1 and fold constants (case analysis).

    A gate whose output becomes constant is removed and its readers are tied to net 0/1;
    every other gate is kept **unchanged in type** (its constant inputs tied to net 0/1), since
    a gate with a side input at its non-controlling value still delays and toggles. Net ids
    are unchanged (nets of removed gates stay undriven); ``meta["constant_nets"]`` maps every
    net that became constant to its value, and port bits that became constant point at net 0/1.
    ``prune``: also drop gates outside the fan-in cone of the outputs.
    """
    primary = set(netlist.input_nets)
    bad = [n for n in fixed if n not in primary or fixed[n] not in (0, 1)]
    if bad:
        raise ValueError(f"fixed nets must be primary inputs with values 0/1; bad: {bad[:5]}")
    val: dict[int, int] = {CONST0: 0, CONST1: 1, **{int(n): int(v) for n, v in fixed.items()}}

    def net(n: int) -> int:
        return (CONST1 if val[n] else CONST0) if n in val else n

    gates: list[Gate] = []
    for g in netlist.gates:
        known = [val.get(n) for n in g.inputs]
        if any(k is not None for k in known):
            t, mask = _truth(netlist.cells[g.cell], known)
            if t in (0, mask):
                val[g.output] = int(t == mask)
                continue
            g = replace(g, inputs=tuple(net(n) for n in g.inputs))
        gates.append(g)
    inputs = {p: [net(n) for n in nets] for p, nets in netlist.inputs.items()}
    outputs = {p: [net(n) for n in nets] for p, nets in netlist.outputs.items()}
    if prune:
        live = set(n for nets in outputs.values() for n in nets)
        kept = []
        for g in reversed(gates):
            if g.output in live:
                kept.append(g)
                live.update(g.inputs)
        gates = kept[::-1]
    used = {g.cell for g in gates}
    meta = {**netlist.meta, "constant_nets": {n: v for n, v in val.items() if n > CONST1}}
    return Netlist(netlist.module, netlist.n_nets, inputs, outputs, gates,
                   {k: c for k, c in netlist.cells.items() if k in used}, dict(netlist.net_names), meta)

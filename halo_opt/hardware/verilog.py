"""MAC unit specification (the PE design) and the Verilog of its combinational stages.

The MAC computes ``y = (p + a*w) mod 2^acc`` with the weight ``w`` held in the unit
(weight-stationary), the activation ``a`` and the partial sum ``p`` streaming in. When
``signed`` all of ``a``, ``w``, ``p``, ``y`` are two's complement; otherwise unsigned.
The product ``m = a*w`` is exact in ``wbits+abits`` bits and is sign- (or zero-) extended to
``acc`` bits before the addition.

Design axes of :class:`MacSpec` (each stage is one combinational module named ``mac``; a
register boundary is a stage's primary inputs/outputs, so registers' clk->q and setup times
are *not* in any stage delay):

* ``pipeline``: ``combinational`` — one stage ``mac`` (a, w, p -> y); ``registered`` — the
  product is registered: stage ``mul`` (a, w -> m) and stage ``acc`` (p, m -> y).
* ``accumulate``: ``cpa`` — ``y = p + m`` through a carry-propagate adder; ``csa`` — the
  accumulator is a redundant pair (``ps``, ``pc``) and each MAC adds ``m`` with one row of
  3:2 compressors: ``ys = ps ^ pc ^ m``, ``yc = maj(ps, pc, m) << 1``, so
  ``ys + yc ≡ ps + pc + m (mod 2^acc)``. The pair is resolved once per column by stage
  ``resolve`` (s, c -> y = s + c), outside the per-MAC path.
* ``arch`` (multiplier): ``array`` (Yosys default ``$mul`` mapping), ``booth`` (Yosys
  ``synth -booth``, radix-4), ``wallace`` / ``dadda``: structural partial products
  (AND array; modified Baugh-Wooley when signed) reduced by a Wallace or Dadda tree of
  full/half-adder module instances, then one final carry-propagate ``+`` that Yosys maps.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import UserError

BITS_RANGE = (2, 8)
ACC_MAX = 48
CSA_ACC_MAX = 31  # the (ps, pc) pair is sampled and packed as one int64 of 2*acc bits
ARCHS = ("array", "booth", "wallace", "dadda")
TREE_ARCHS = ("wallace", "dadda")
PIPELINES = ("combinational", "registered")
ACCUMULATES = ("cpa", "csa")


@dataclass(frozen=True)
class MacSpec:
    """One PE design: weight/activation bits (2..8, independent), signedness, accumulator
    width (``wbits+abits .. 48``; carry-save ``.. 31``), multiplier ``arch`` (``array``,
    ``booth``, ``wallace``, ``dadda``), ``pipeline`` (``combinational``, ``registered``) and
    ``accumulate`` (``cpa``, ``csa``); see the module docstring."""

    wbits: int = 8
    abits: int = 8
    signed: bool = True
    acc: int = 24
    arch: str = "array"
    pipeline: str = "combinational"
    accumulate: str = "cpa"

    def __post_init__(self) -> None:
        lo, hi = BITS_RANGE
        for name in ("wbits", "abits", "acc"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise UserError(f"--{name} {v!r} is not an integer; pass a whole number of bits")
        for name in ("wbits", "abits"):
            v = getattr(self, name)
            if not lo <= v <= hi:
                raise UserError(f"--{name} {v} is out of range {lo}..{hi}")
        amin = self.wbits + self.abits
        amax = CSA_ACC_MAX if self.accumulate == "csa" else ACC_MAX
        if not amin <= self.acc <= amax:
            why = " for a carry-save accumulator" if self.accumulate == "csa" else ""
            raise UserError(f"--acc {self.acc} is out of range {amin}..{amax}{why} (at least wbits+abits, at most {amax})")
        for name, allowed in (("arch", ARCHS), ("pipeline", PIPELINES), ("accumulate", ACCUMULATES)):
            if getattr(self, name) not in allowed:
                raise UserError(f"--{name} {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        if not isinstance(self.signed, bool):
            raise UserError(f"signed must be true or false, not {self.signed!r}")

    @property
    def name(self) -> str:
        """Short identifier, e.g. ``mac_s8x8_acc24_array`` (s = signed, u = unsigned; w x a),
        suffixed ``_reg`` when registered and ``_csa`` when carry-save."""
        suffix = ("_reg" if self.pipeline == "registered" else "") + ("_csa" if self.accumulate == "csa" else "")
        return f"mac_{'s' if self.signed else 'u'}{self.wbits}x{self.abits}_acc{self.acc}_{self.arch}{suffix}"

    @property
    def mbits(self) -> int:
        """Width of the exact product ``m = a*w``."""
        return self.wbits + self.abits

    @property
    def stages(self) -> tuple[str, ...]:
        """Per-MAC stages in pipeline order, then ``resolve`` (once per column) when carry-save."""
        per_mac = ("mac",) if self.pipeline == "combinational" else ("mul", "acc")
        return per_mac + (("resolve",) if self.accumulate == "csa" else ())

    def stage_ports(self, stage: str) -> tuple[dict[str, int], dict[str, int]]:
        """(inputs, outputs) of ``stage``: port name -> width in bits."""
        a, w, m, acc = self.abits, self.wbits, self.mbits, self.acc
        psum = {"p": acc} if self.accumulate == "cpa" else {"ps": acc, "pc": acc}
        ysum = {"y": acc} if self.accumulate == "cpa" else {"ys": acc, "yc": acc}
        ports = {"mac": ({"a": a, "w": w, **psum}, ysum), "mul": ({"a": a, "w": w}, {"m": m}),
                 "acc": ({"m": m, **psum}, ysum), "resolve": ({"s": acc, "c": acc}, {"y": acc})}
        if stage not in self.stages:
            raise UserError(f"design {self.name} has no stage {stage!r}; its stages are {', '.join(self.stages)}")
        return ports[stage]

    @property
    def port_widths(self) -> dict[str, int]:
        """Ports of the combinational ``mac`` stage (the only stage of the default design)."""
        ins, outs = self.stage_ports("mac") if "mac" in self.stages else ({}, {})
        return ins | outs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MacSpec":
        allowed = set(cls.__dataclass_fields__)
        unknown = set(d) - allowed
        if unknown:
            raise UserError(f"unknown MAC spec field(s) {sorted(unknown)}; allowed: {', '.join(cls.__dataclass_fields__)}")
        return cls(**d)


def mac_verilog(spec: MacSpec, stage: str = "mac") -> str:
    """Verilog of one stage of ``spec`` as module ``mac`` (ports: :meth:`MacSpec.stage_ports`),
    plus the tree multiplier's modules for ``wallace``/``dadda``.

    ``m`` is declared ``wbits+abits`` wide and signed when ``spec.signed``, so Verilog
    sign-extends it to ``acc`` bits in ``p + m``.
    """
    ins, outs = spec.stage_ports(stage)
    s = "signed " if spec.signed else ""
    decl = [f"    input  wire {s}[{n - 1}:0] {p}" for p, n in ins.items()]
    decl += [f"    output wire {s}[{n - 1}:0] {p}" for p, n in outs.items()]
    mw, acc = spec.mbits, spec.acc
    body, extra = [], ""
    if stage in ("mac", "mul"):
        if spec.arch in TREE_ARCHS:
            extra = tree_multiplier_verilog(spec.abits, spec.wbits, spec.signed, spec.arch)
            prod = ["    mul_tree u_mul (.a(a), .w(w), .m(mv));"]
        else:
            prod = ["    assign mv = a * w;"]
        body += [f"    wire {s}[{mw - 1}:0] mv;", *prod]
        if stage == "mul":
            body.append("    assign m = mv;")
    else:
        body.append(f"    wire {s}[{mw - 1}:0] mv = m;") if stage == "acc" else None
    if stage in ("mac", "acc"):
        if spec.accumulate == "cpa":
            body.append("    assign y = p + mv;")
        else:
            body += [f"    wire [{acc - 1}:0] mx = mv;  // sign/zero-extended product",
                     "    assign ys = ps ^ pc ^ mx;",
                     f"    wire [{acc - 1}:0] maj = (ps & pc) | (ps & mx) | (pc & mx);",
                     f"    assign yc = {{maj[{acc - 2}:0], 1'b0}};"]
    if stage == "resolve":
        body.append("    assign y = s + c;")
    kind = "signed" if spec.signed else "unsigned"
    if stage in ("mac", "mul"):
        head = (f"// halo-opt {spec.name}, stage {stage}: w {spec.wbits} bits, a {spec.abits} bits, {kind}, "
                f"{spec.arch} multiplier, {spec.accumulate} accumulate, {spec.pipeline}\n")
    else:  # no multiplier in it: the same text (and synthesis cache entry) for every arch
        head = f"// halo-opt stage {stage}: {kind} {spec.mbits}-bit product, {spec.acc}-bit {spec.accumulate} accumulator\n"
    return head + "module mac (\n" + ",\n".join(decl) + "\n);\n" + "\n".join(body) + "\nendmodule\n" + extra


# ------------------------------------------------------------------------------ tree multipliers

_ADDERS = """module fa (input wire x, input wire y, input wire z, output wire s, output wire c);
    assign s = x ^ y ^ z;
    assign c = (x & y) | (z & (x ^ y));
endmodule
module fa1 (input wire x, input wire y, output wire s, output wire c);  // full adder, third input 1
    assign s = ~(x ^ y);
    assign c = x | y;
endmodule
module ha (input wire x, input wire y, output wire s, output wire c);
    assign s = x ^ y;
    assign c = x & y;
endmodule
"""
ONE = "1'b1"


def dadda_heights(h: int) -> list[int]:
    """Dadda's target heights below ``h``, largest first: d1 = 2, d_{j+1} = floor(1.5 d_j)."""
    d = [2]
    while (d[-1] * 3) // 2 < h:
        d.append((d[-1] * 3) // 2)
    return d[::-1]


def tree_multiplier_verilog(abits: int, wbits: int, signed: bool, kind: str) -> str:
    """Module ``mul_tree`` (a, w -> m = a*w, ``abits+wbits`` bits) with its ``fa``/``fa1``/``ha``
    modules: partial products ``a[j] & w[i]`` in column ``i+j`` (signed: modified Baugh-Wooley —
    the products with exactly one sign bit inverted, and constant ones in columns
    ``wbits-1``, ``abits-1`` and ``abits+wbits-1`` mod 2^(abits+wbits)), reduced to two rows by a
    Wallace (``kind='wallace'``: every column in groups of three per stage, a half adder on a
    remaining pair) or Dadda tree (``'dadda'``: reduce each column just to the next height in
    2, 3, 4, 6, 9, ...), then ``m = row0 + row1``. A full adder with a constant-1 input is a
    ``fa1``; a half adder with one is an inverter plus a wire.
    """
    if kind not in TREE_ARCHS:
        raise UserError(f"tree multiplier kind {kind!r} is not one of {', '.join(TREE_ARCHS)}")
    n, mb = abits, wbits
    W = n + mb
    cols: list[list[str]] = [[] for _ in range(W)]
    lines: list[str] = []
    for i in range(mb):
        for j in range(n):
            inv = signed and ((i == mb - 1) != (j == n - 1))
            lines.append(f"    wire pp{i}_{j} = {'~' if inv else ''}(a[{j}] & w[{i}]);")
            cols[i + j].append(f"pp{i}_{j}")
    if signed:
        k = ((1 << (mb - 1)) + (1 << (n - 1)) + (1 << (W - 1))) % (1 << W)
        for c in range(W):
            if k >> c & 1:
                cols[c].insert(0, ONE)
    count = {"fa": 0, "ha": 0}

    def fresh() -> tuple[str, str]:
        i = count["fa"] + count["ha"]
        lines.append(f"    wire s{i}, c{i};")
        return f"s{i}", f"c{i}"

    def full(x: list[str]) -> tuple[str, str]:
        s, c = fresh()
        ins = [b for b in x if b != ONE]
        if len(ins) == 3:
            lines.append(f"    fa u{count['fa'] + count['ha']} (.x({ins[0]}), .y({ins[1]}), .z({ins[2]}), .s({s}), .c({c}));")
        elif len(ins) == 2:
            lines.append(f"    fa1 u{count['fa'] + count['ha']} (.x({ins[0]}), .y({ins[1]}), .s({s}), .c({c}));")
        else:
            raise AssertionError("two constants in one full adder")  # at most one constant per column
        count["fa"] += 1
        return s, c

    def half(x: list[str]) -> tuple[str, str]:
        s, c = fresh()
        ins = [b for b in x if b != ONE]
        if len(ins) == 2:
            lines.append(f"    ha u{count['fa'] + count['ha']} (.x({ins[0]}), .y({ins[1]}), .s({s}), .c({c}));")
        else:
            lines.append(f"    assign {s} = ~{ins[0]};")
            lines.append(f"    assign {c} = {ins[0]};")
        count["ha"] += 1
        return s, c

    stages = 0
    targets = dadda_heights(max(map(len, cols))) if kind == "dadda" else []
    while max(map(len, cols)) > 2:
        new: list[list[str]] = [[] for _ in range(W)]
        d = targets[stages] if kind == "dadda" else None
        for c in range(W):
            bits, i = cols[c], 0
            if kind == "wallace":
                while len(bits) - i >= 3:
                    sm, cy = full(bits[i:i + 3])
                    new[c].append(sm)
                    new[c + 1].append(cy) if c + 1 < W else None
                    i += 3
                if len(bits) - i == 2:
                    sm, cy = half(bits[i:i + 2])
                    new[c].append(sm)
                    new[c + 1].append(cy) if c + 1 < W else None
                    i += 2
            else:
                h = len(bits) + len(new[c])  # carries from column c-1 already landed in new[c]
                while h > d:
                    take = 2 if h == d + 1 else 3
                    sm, cy = (half if take == 2 else full)(bits[i:i + take])
                    new[c].append(sm)
                    new[c + 1].append(cy) if c + 1 < W else None
                    i += take
                    h -= take - 1
            new[c] = bits[i:] + new[c]
        cols = new
        stages += 1
    row = [[(col[r] if r < len(col) else "1'b0") for col in cols] for r in (0, 1)]
    cat = ["{" + ", ".join(reversed(r)) + "}" for r in row]
    head = (f"// {kind} tree: {count['fa']} full adders, {count['ha']} half adders, {stages} reduction stages\n"
            f"module mul_tree (input wire [{n - 1}:0] a, input wire [{mb - 1}:0] w, output wire [{W - 1}:0] m);\n")
    return head + "\n".join(lines) + f"\n    assign m = {cat[0]} + {cat[1]};\nendmodule\n" + _ADDERS


_SIGNED_DECL = re.compile(r"\b(input|output|inout|wire|reg)(\s+)signed\b\s*")


def strip_signed(verilog_text: str) -> str:
    """Remove ``signed`` from port/wire declarations of a structural netlist written by Yosys.

    A gate-level netlist's connectivity does not depend on signedness, and OpenSTA's
    Verilog reader rejects ``input signed [7:0] a;``.
    """
    return _SIGNED_DECL.sub(lambda m: m.group(1) + " ", verilog_text)

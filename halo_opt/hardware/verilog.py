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

Floating-point weights (``wformat`` = ``fp8_e4m3``, ``fp8_e5m2`` or ``fp4_e2m1``,
:mod:`halo_opt.formats`) multiply floating-point activations (``aformat``, default
``fp8_e4m3``: FP8 x FP8 as in FP8 tensor cores, and FP4 weights x FP8 activations as in
W4A8 FP4 MMAs). ``a`` and ``w`` are then bit patterns (sign, exponent, mantissa) and the
product is aligned *exactly* into a two's complement fixed-point accumulator, as tensor cores
accumulate products of narrow FP inputs (:meth:`MacSpec.fp_layout`):

* significand ``sig = {e != 0, mantissa}`` (hidden bit 1 for normals, 0 for subnormals, so a
  subnormal needs no normalisation) and shift ``sh = max(e, 1) − 1`` per operand;
* the significand product ``sig_a · sig_w`` (unsigned, ``(Ma+1)+(Mw+1)`` bits) goes through the
  multiplier ``arch`` (the only multiplier in the PE), then ``<< (sh_a + sh_w)`` through a
  barrel shifter: the exponents set the alignment;
* the sign ``s_a ^ s_w`` negates the aligned magnitude (two's complement); ``±0`` give 0;
* ``m`` (``mbits`` = magnitude width + 1) is exact in units of ``2^L``,
  ``L = (1−bias_a−Ma) + (1−bias_w−Mw)`` (E4M3 x E4M3: ``2^-18``), so there is no rounding
  and no truncation: ``y = (p + a·w·2^-L) mod 2^acc``; the accumulator wraps on overflow like
  the integer MAC's (``acc`` >= ``mbits``; the default leaves 8 bits of headroom);
* NaN (E4M3 ``S.1111.111``, E5M2 exponent all ones) and Inf patterns are outside the contract:
  they are never driven in the checks and the timing/energy vectors, and the netlist treats
  them as the numbers their fields spell.

The accumulate stage, the ``registered`` split (stage ``mul`` now ends after the alignment and
the sign: ``m`` is the aligned signed product) and carry-save accumulation are the integer
design's, over ``m``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import UserError
from ..formats import NumberFormat, get_format, int_format

BITS_RANGE = (2, 8)
ACC_MAX = 48
FP_ACC_MAX = 62  # FP products are wider (E5M2 x E4M3: 51 bits); bit-parallel simulation packs <= 63 bits
CSA_ACC_MAX = 31  # the (ps, pc) pair is sampled and packed as one int64 of 2*acc bits
ARCHS = ("array", "booth", "wallace", "dadda")
TREE_ARCHS = ("wallace", "dadda")
PIPELINES = ("combinational", "registered")
ACCUMULATES = ("cpa", "csa")


@dataclass(frozen=True)
class MacSpec:
    """One PE design: weight/activation bits (2..8, independent), signedness, accumulator
    width (``wbits+abits .. 48``; FP: the aligned product's width ``.. 62``; carry-save ``.. 31``), multiplier ``arch`` (``array``,
    ``booth``, ``wallace``, ``dadda``), ``pipeline`` (``combinational``, ``registered``) and
    ``accumulate`` (``cpa``, ``csa``); see the module docstring."""

    wbits: int = 8
    abits: int = 8
    signed: bool = True
    acc: int = 24
    arch: str = "array"
    pipeline: str = "combinational"
    accumulate: str = "cpa"
    wformat: str | None = None  # None or an integer name: integer weights of wbits/signed
    aformat: str | None = None  # FP weights: the activation format (default fp8_e4m3)

    def __post_init__(self) -> None:
        self._formats()
        lo, hi = BITS_RANGE
        for name in ("wbits", "abits", "acc"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise UserError(f"--{name} {v!r} is not an integer; pass a whole number of bits")
        for name in ("wbits", "abits"):
            v = getattr(self, name)
            if not lo <= v <= hi:
                raise UserError(f"--{name} {v} is out of range {lo}..{hi}")
        amin = self.mbits
        amax = CSA_ACC_MAX if self.accumulate == "csa" else FP_ACC_MAX if self.is_float else ACC_MAX
        if not amin <= self.acc <= amax:
            why = " for a carry-save accumulator" if self.accumulate == "csa" else ""
            least = "the aligned product's width" if self.is_float else "wbits+abits"
            raise UserError(f"--acc {self.acc} is out of range {amin}..{amax}{why} (at least {least}, at most {amax})")
        for name, allowed in (("arch", ARCHS), ("pipeline", PIPELINES), ("accumulate", ACCUMULATES)):
            if getattr(self, name) not in allowed:
                raise UserError(f"--{name} {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        if not isinstance(self.signed, bool):
            raise UserError(f"signed must be true or false, not {self.signed!r}")

    def _formats(self) -> None:
        """Normalise the formats: an integer ``wformat`` must match wbits/signed and is stored as
        None (so integer specs, names and profiles are unchanged); FP weights need FP activations
        (default ``fp8_e4m3``) of matching bit widths and ``signed``."""
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen dataclass)
        if self.wformat is not None:
            f = get_format(self.wformat)
            if not f.is_float:
                if (f.bits, f.signed) != (self.wbits, self.signed):
                    raise UserError(f"--wformat {f.name} disagrees with --wbits {self.wbits} {'--signed' if self.signed else '--unsigned'}; drop one")
                set_("wformat", None)
            else:
                set_("wformat", f.name)
        if self.wformat is None:
            if self.aformat is not None and get_format(self.aformat).is_float:
                raise UserError(f"--aformat {self.aformat} needs floating-point weights: pass --wformat fp8_e4m3, fp8_e5m2 or fp4_e2m1")
            if self.aformat is not None:
                f = get_format(self.aformat)
                if (f.bits, f.signed) != (self.abits, self.signed):
                    raise UserError(f"--aformat {f.name} disagrees with --abits {self.abits} {'--signed' if self.signed else '--unsigned'}; drop one")
            set_("aformat", None)
            return
        a = get_format(self.aformat or "fp8_e4m3")
        if not a.is_float:
            raise UserError(f"--aformat {a.name}: floating-point weights take floating-point activations (fp8_e4m3, fp8_e5m2, fp4_e2m1)")
        set_("aformat", a.name)
        w = get_format(self.wformat)
        for opt, f, bits in (("wbits", w, self.wbits), ("abits", a, self.abits)):
            if bits != f.bits:
                raise UserError(f"--{opt} {bits} disagrees with {f.name}, which has {f.bits} bits; pass --{opt} {f.bits} or drop it")
        if self.signed is not True:
            raise UserError("floating-point operands carry a sign bit; drop --unsigned")

    @property
    def is_float(self) -> bool:
        """Floating-point weights (and activations)."""
        return self.wformat is not None

    @property
    def wfmt(self) -> NumberFormat:
        """The weight format (integer formats of wbits/signed when ``wformat`` is None)."""
        return get_format(self.wformat) if self.is_float else int_format(self.wbits, self.signed)

    @property
    def afmt(self) -> NumberFormat:
        return get_format(self.aformat) if self.is_float else int_format(self.abits, self.signed)

    def fp_layout(self) -> dict[str, Any]:
        """Field geometry of the FP datapath: per operand (``a``, ``w``) ``e``/``m`` bits,
        ``sig`` (significand bits), ``shmax`` (largest ``max(e,1)−1`` of a finite code),
        ``shbits``; then ``prod`` (significand product bits), ``sh`` (largest total shift),
        ``mag`` (aligned magnitude bits) and ``lsb`` (the exponent L of the product's LSB)."""
        out: dict[str, Any] = {}
        for k, f in (("a", self.afmt), ("w", self.wfmt)):
            emax = max(int(c) >> f.mbits & ((1 << f.ebits) - 1) for c in f.codes())
            out[k] = {"e": f.ebits, "m": f.mbits, "bias": f.bias, "sig": f.mbits + 1, "shmax": max(emax, 1) - 1,
                      "shbits": max(1, (max(emax, 1) - 1).bit_length())}
        a, w = out["a"], out["w"]
        out |= {"prod": a["sig"] + w["sig"], "sh": a["shmax"] + w["shmax"], "lsb": (1 - a["bias"] - a["m"]) + (1 - w["bias"] - w["m"])}
        out["mag"] = out["prod"] + out["sh"]
        return out

    @property
    def name(self) -> str:
        """Short identifier, e.g. ``mac_s8x8_acc24_array`` (s = signed, u = unsigned; w x a),
        suffixed ``_reg`` when registered and ``_csa`` when carry-save; FP designs name their
        formats: ``mac_fp8e4m3xfp8e4m3_acc45_array``."""
        suffix = ("_reg" if self.pipeline == "registered" else "") + ("_csa" if self.accumulate == "csa" else "")
        if self.is_float:
            return f"mac_{self.wformat.replace('_', '')}x{self.aformat.replace('_', '')}_acc{self.acc}_{self.arch}{suffix}"
        return f"mac_{'s' if self.signed else 'u'}{self.wbits}x{self.abits}_acc{self.acc}_{self.arch}{suffix}"

    @property
    def mbits(self) -> int:
        """Width of the exact product ``m = a*w`` (FP: the aligned magnitude plus a sign bit)."""
        return self.fp_layout()["mag"] + 1 if self.is_float else self.wbits + self.abits

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
        """Fields; the formats only for FP designs (integer specs read as before formats existed)."""
        d = asdict(self)
        return d if self.is_float else {k: v for k, v in d.items() if k not in ("wformat", "aformat")}

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
    sp = lambda p: "" if spec.is_float and p in ("a", "w") else s  # noqa: E731  (FP: a, w are bit patterns)
    decl = [f"    input  wire {sp(p)}[{n - 1}:0] {p}" for p, n in ins.items()]
    decl += [f"    output wire {sp(p)}[{n - 1}:0] {p}" for p, n in outs.items()]
    mw, acc = spec.mbits, spec.acc
    body, extra = [], ""
    if stage in ("mac", "mul") and spec.is_float:
        lines, extra = fp_product_verilog(spec)
        body += lines
        if stage == "mul":
            body.append("    assign m = mv;")
    elif stage in ("mac", "mul"):
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
    if stage in ("mac", "mul") and spec.is_float:
        head = (f"// halo-opt {spec.name}, stage {stage}: w {spec.wformat}, a {spec.aformat}, exact product aligned into a "
                f"{spec.mbits}-bit fixed-point product (LSB 2^{spec.fp_layout()['lsb']}), {spec.arch} significand multiplier, "
                f"{spec.accumulate} accumulate, {spec.pipeline}\n")
    elif stage in ("mac", "mul"):
        head = (f"// halo-opt {spec.name}, stage {stage}: w {spec.wbits} bits, a {spec.abits} bits, {kind}, "
                f"{spec.arch} multiplier, {spec.accumulate} accumulate, {spec.pipeline}\n")
    else:  # no multiplier in it: the same text (and synthesis cache entry) for every arch
        head = f"// halo-opt stage {stage}: {kind} {spec.mbits}-bit product, {spec.acc}-bit {spec.accumulate} accumulator\n"
    return head + "module mac (\n" + ",\n".join(decl) + "\n);\n" + "\n".join(body) + "\nendmodule\n" + extra


def fp_product_verilog(spec: MacSpec) -> tuple[list[str], str]:
    """Body lines computing ``mv`` (signed, ``spec.mbits`` bits: the exact FP product a·w in
    units of ``2^L``, module docstring) from the bit patterns ``a`` and ``w``, and the extra
    modules (the tree multiplier of the significands for ``wallace``/``dadda``)."""
    g = spec.fp_layout()
    lines: list[str] = []
    for k in ("a", "w"):
        f = g[k]
        e, m, bits, sb = f["e"], f["m"], 1 + f["e"] + f["m"], f["shbits"]
        lines += [f"    wire s{k} = {k}[{bits - 1}];",
                  f"    wire [{e - 1}:0] e{k} = {k}[{bits - 2}:{m}];",
                  f"    wire n{k} = |e{k};  // normal: hidden bit 1; subnormal: 0 and exponent 1",
                  f"    wire [{m}:0] sig{k} = {{n{k}, {k}[{m - 1}:0]}};",
                  f"    wire [{sb - 1}:0] sh{k} = n{k} ? e{k} - 1'b1 : {sb}'d0;  // max(e, 1) - 1"]
    pb, mag, shb = g["prod"], g["mag"], max(1, g["sh"].bit_length())
    extra = ""
    if spec.arch in TREE_ARCHS:
        extra = tree_multiplier_verilog(g["a"]["sig"], g["w"]["sig"], False, spec.arch)
        lines += [f"    wire [{pb - 1}:0] sig;", "    mul_tree u_mul (.a(siga), .w(sigw), .m(sig));"]
    else:
        lines += [f"    wire [{pb - 1}:0] sig = siga * sigw;  // significand product ({spec.arch})"]
    lines += [f"    wire [{shb - 1}:0] sh = sha + shw;  // alignment = sum of the exponents",
              f"    wire [{mag - 1}:0] sigx = sig;",
              f"    wire [{mag - 1}:0] mag = sigx << sh;",
              f"    wire {'signed ' if spec.signed else ''}[{mag}:0] mv = (sa ^ sw) ? -{{1'b0, mag}} : {{1'b0, mag}};"]
    return lines, extra


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


ACC_HEADROOM = 8  # default FP accumulator: the aligned product plus this many bits


def mac_spec(wbits: int | None = None, abits: int | None = None, signed: bool = True, acc: int | None = None,
             arch: str = "array", pipeline: str = "combinational", accumulate: str = "cpa",
             wformat: str | None = None, aformat: str | None = None) -> MacSpec:
    """A :class:`MacSpec` with the command line's defaults: integer weights 8 x 8 bits with a
    24-bit accumulator; FP weights take their widths from the formats (activations
    ``fp8_e4m3`` unless given) and an accumulator of the aligned product's width plus
    ``ACC_HEADROOM`` bits (at most 62; 31 carry-save)."""
    wf = get_format(wformat) if wformat is not None else None
    if wf is None or not wf.is_float:
        if wf is not None:
            wbits = wf.bits if wbits is None else wbits
            signed = wf.signed if wbits == wf.bits else signed
        return MacSpec(8 if wbits is None else wbits, 8 if abits is None else abits, signed, 24 if acc is None else acc,
                       arch, pipeline, accumulate, wformat, aformat)
    af = get_format(aformat or "fp8_e4m3")
    wbits, abits = wf.bits if wbits is None else wbits, af.bits if abits is None else abits
    if acc is None:
        probe = MacSpec(wbits, abits, signed, FP_ACC_MAX, "array", "combinational", "cpa", wf.name, af.name)
        acc = min(CSA_ACC_MAX if accumulate == "csa" else FP_ACC_MAX, probe.mbits + ACC_HEADROOM)
    return MacSpec(wbits, abits, signed, acc, arch, pipeline, accumulate, wf.name, af.name)

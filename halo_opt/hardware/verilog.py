"""MAC unit specification and its behavioural Verilog.

The MAC computes ``y = (p + a*w) mod 2^acc`` with the weight ``w`` held in the unit
(weight-stationary), the activation ``a`` and the partial sum ``p`` streaming in. When
``signed`` all of ``a``, ``w``, ``p``, ``y`` are two's complement; otherwise unsigned.
The product ``a*w`` is exact in ``wbits+abits`` bits and is sign- (or zero-) extended to
``acc`` bits before the addition.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import UserError

BITS_RANGE = (2, 8)
ACC_MAX = 48
ARCHS = ("array", "booth")


@dataclass(frozen=True)
class MacSpec:
    """MAC parameters: weight/activation bits (2..8), signedness, accumulator width
    (``wbits+abits .. 48``) and multiplier architecture (``array``: Yosys default,
    ``booth``: ``synth -booth``)."""

    wbits: int = 8
    abits: int = 8
    signed: bool = True
    acc: int = 24
    arch: str = "array"

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
        if not amin <= self.acc <= ACC_MAX:
            raise UserError(f"--acc {self.acc} is out of range {amin}..{ACC_MAX} (at least wbits+abits, at most {ACC_MAX})")
        if self.arch not in ARCHS:
            raise UserError(f"--arch {self.arch!r} is not one of {', '.join(ARCHS)}")
        if not isinstance(self.signed, bool):
            raise UserError(f"signed must be true or false, not {self.signed!r}")

    @property
    def name(self) -> str:
        """Short identifier, e.g. ``mac_s8x8_acc24_array`` (s = signed, u = unsigned; w x a)."""
        return f"mac_{'s' if self.signed else 'u'}{self.wbits}x{self.abits}_acc{self.acc}_{self.arch}"

    @property
    def port_widths(self) -> dict[str, int]:
        return {"a": self.abits, "w": self.wbits, "p": self.acc, "y": self.acc}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MacSpec":
        unknown = set(d) - {"wbits", "abits", "signed", "acc", "arch"}
        if unknown:
            raise UserError(f"unknown MAC spec field(s) {sorted(unknown)}; allowed: wbits, abits, signed, acc, arch")
        return cls(**d)


def mac_verilog(spec: MacSpec) -> str:
    """Behavioural Verilog of module ``mac``: ports ``a``, ``w``, ``p`` (inputs), ``y`` (output).

    ``m = a*w`` is declared ``wbits+abits`` wide (exact for both signednesses); in the
    signed case Verilog sign-extends ``m`` to ``acc`` bits in ``p + m``.
    """
    s = "signed " if spec.signed else ""
    mw = spec.wbits + spec.abits
    kind = "signed" if spec.signed else "unsigned"
    return (
        f"// halo-opt MAC: y = p + a*w mod 2^{spec.acc} ({kind}, w {spec.wbits} bits, a {spec.abits} bits, {spec.arch})\n"
        "module mac (\n"
        f"    input  wire {s}[{spec.abits - 1}:0] a,\n"
        f"    input  wire {s}[{spec.wbits - 1}:0] w,\n"
        f"    input  wire {s}[{spec.acc - 1}:0] p,\n"
        f"    output wire {s}[{spec.acc - 1}:0] y\n"
        ");\n"
        f"    wire {s}[{mw - 1}:0] m = a * w;\n"
        "    assign y = p + m;\n"
        "endmodule\n"
    )


_SIGNED_DECL = re.compile(r"\b(input|output|inout|wire|reg)(\s+)signed\b\s*")


def strip_signed(verilog_text: str) -> str:
    """Remove ``signed`` from port/wire declarations of a structural netlist written by Yosys.

    A gate-level netlist's connectivity does not depend on signedness, and OpenSTA's
    Verilog reader rejects ``input signed [7:0] a;``.
    """
    return _SIGNED_DECL.sub(lambda m: m.group(1) + " ", verilog_text)

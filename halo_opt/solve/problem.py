"""The planning problem as numbers, its one evaluator, and its file format.

Tiles with identical cost rows are stored once as a *group* with an integer ``count``;
every solver works on groups. Assignment of group ``g``: ``counts[g, c]`` tiles on
codebook ``c`` (``Σ_c counts[g,c] = count[g]``), and one level ``level[l]`` per domain.

For domain ``l`` at level ``v`` (scale ``σ_v = (V_v/V0)²``):

    error    = Σ_{g,c} counts[g,c]·err[g,c]                                  (budget units)
    latency  = Σ_l lat[l, v_l] + n_switch·switch_time_s                       (s)
    energy   = Σ_{g,c} counts[g,c]·energy_dyn[g,c]·σ_{v(g)}
               + Σ_l leak_w[v_l]·lat[l, v_l] + n_switch·switch_energy_j          (J)
    objective = w_latency·latency + w_energy·energy

``n_switch`` = number of ``l ≥ 1`` with ``v_l ≠ v_{l-1}``. Tile codebook ``c`` may run at
level ``v`` only if ``compat[c, v]``.

Fold granularity (``tile_lat`` given, [G, V] s per ONE tile of the group at level v): every tile
(one fold of a weight-stationary array) takes its own level; domains are layers in execution
order and ``lat`` must be 0. The assignment is ``fold_counts[g, c, v]``; with ``U_l`` the levels
layer ``l`` uses, the folds of a layer run as one contiguous run per level in an order the
planner picks, so ``n_switch = min over run orders of the level changes in the whole sequence``
(:func:`fold_order`: ``|U_l| − 1`` inside each layer, plus one at a layer boundary where the
level the previous layer ends on differs from the one this layer begins with; layers without
tiles run nothing and are skipped)::

    latency = Σ fold_counts[g,c,v]·tile_lat[g,v] + n_switch·switch_time_s
    energy  = Σ fold_counts[g,c,v]·(energy_dyn[g,c]·σ_v + leak_w[v]·tile_lat[g,v]) + n_switch·switch_energy_j
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import UserError

FORMAT_VERSION = 1
#: THE tolerance of every "≤ cap" check (error budget, per-layer budgets, energy and latency
#: caps): a plan is feasible iff ``value ≤ cap·(1 + RTOL)``. Solvers use the same rule: their
#: plans pass it, "infeasible" means no plan passes it, and bounds hold over every plan that does.
RTOL = 1e-9


def cap_tol(cap):
    """The largest value :func:`evaluate` accepts under ``cap`` (scalar or array)."""
    return cap * (1 + RTOL)


@dataclass
class Problem:
    count: np.ndarray  # [G] int64, tiles in the group (≥ 1)
    group_domain: np.ndarray  # [G] int64, DVFS domain of the group
    err: np.ndarray  # [G, C] float64, error of ONE tile of the group on codebook c
    energy_dyn: np.ndarray  # [G, C] float64, J per tile per workload pass at v0
    lat: np.ndarray  # [L, V] float64, s per domain at level v
    voltage: np.ndarray  # [V] float64, V
    leak_w: np.ndarray  # [V] float64, W
    compat: np.ndarray  # [C, V] bool, codebook c meets timing at level v
    v0: float = 1.0
    budget: float = math.inf  # absolute error budget (same units as err)
    normaliser: float = 1.0  # Σ_l tr(W_l H_l W_lᵀ): relative error = error / normaliser
    energy_cap: float = math.inf  # J
    latency_cap: float = math.inf  # s
    max_levels: int | None = None  # K
    max_switches: int | None = None
    switch_time_s: float = 0.0
    switch_energy_j: float = 0.0
    w_latency: float = 1.0  # objective weight, 1/s
    w_energy: float = 0.0  # objective weight, 1/J
    group_layer: np.ndarray | None = None  # [G] int64 layer index (per-layer budgets, plan output)
    layer_budget: np.ndarray | None = None  # [NL] float64 absolute per-layer budgets (inf = none)
    tile_group: np.ndarray | None = None  # [T] int64 group of each original tile (None: identity)
    freq_hz: np.ndarray | None = None  # [V] Hz, informational
    tile_lat: np.ndarray | None = None  # [G, V] s per ONE tile at level v: fold granularity (None: layer domains)
    codebook_names: list[str] = field(default_factory=list)
    level_names: list[str] = field(default_factory=list)
    domain_names: list[str] = field(default_factory=list)
    layer_names: list[str] = field(default_factory=list)
    domain_layers: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.count = np.asarray(self.count, dtype=np.int64)
        self.group_domain = np.asarray(self.group_domain, dtype=np.int64)
        self.err = np.asarray(self.err, dtype=np.float64)
        self.energy_dyn = np.asarray(self.energy_dyn, dtype=np.float64)
        self.lat = np.asarray(self.lat, dtype=np.float64)
        self.voltage = np.asarray(self.voltage, dtype=np.float64)
        self.leak_w = np.asarray(self.leak_w, dtype=np.float64)
        self.compat = np.asarray(self.compat, dtype=bool)
        G, C = self.err.shape if self.err.ndim == 2 else (len(self.count), 0)
        L, V = self.lat.shape if self.lat.ndim == 2 else (0, 0)
        if self.group_layer is None:
            self.group_layer = np.zeros(G, dtype=np.int64)
        self.group_layer = np.asarray(self.group_layer, dtype=np.int64)
        if self.layer_budget is not None:
            self.layer_budget = np.asarray(self.layer_budget, dtype=np.float64)
        if self.tile_group is not None:
            self.tile_group = np.asarray(self.tile_group, dtype=np.int64)
        if self.freq_hz is not None:
            self.freq_hz = np.asarray(self.freq_hz, dtype=np.float64)
        if self.tile_lat is not None:
            self.tile_lat = np.asarray(self.tile_lat, dtype=np.float64)
        self.codebook_names = list(self.codebook_names) or [f"c{i}" for i in range(C)]
        self.level_names = list(self.level_names) or [f"v{i}" for i in range(V)]
        self.domain_names = list(self.domain_names) or [f"d{i}" for i in range(L)]
        nl = int(self.group_layer.max()) + 1 if G else 1
        self.layer_names = list(self.layer_names) or [f"layer{i}" for i in range(nl)]
        self.domain_layers = [list(x) for x in self.domain_layers] or [[n] for n in self.domain_names]
        self.validate()

    # shape helpers
    G = property(lambda self: self.err.shape[0])
    C = property(lambda self: self.err.shape[1])
    L = property(lambda self: self.lat.shape[0])
    V = property(lambda self: self.lat.shape[1])
    n_tiles = property(lambda self: int(self.count.sum()))
    sigma = property(lambda self: (self.voltage / self.v0) ** 2)  # [V] dynamic-energy scale
    fold = property(lambda self: self.tile_lat is not None)  # fold granularity: a level per tile

    def validate(self) -> None:
        """Shapes, signs and finiteness; raises UserError naming the bad field."""
        G, C = self.err.shape
        L, V = self.lat.shape
        checks = [
            (self.err.ndim == 2 and self.energy_dyn.shape == (G, C), f"energy_dyn must be [G, C] = [{G}, {C}]"),
            (self.count.shape == (G,) and (self.count >= 1).all(), "count must be [G] positive integers"),
            (self.group_domain.shape == (G,) and (G == 0 or (self.group_domain.min() >= 0 and self.group_domain.max() < L)), "group_domain must index lat's rows"),
            (self.group_layer.shape == (G,) and (self.group_layer >= 0).all(), "group_layer must be [G] non-negative"),
            (self.voltage.shape == (V,) and self.leak_w.shape == (V,), f"voltage and leak_w must be [V] = [{V}]"),
            (self.compat.shape == (C, V), f"compat must be [C, V] = [{C}, {V}]"),
            (np.isfinite(self.err).all() and (self.err >= 0).all(), "err must be finite and >= 0"),
            (np.isfinite(self.energy_dyn).all() and (self.energy_dyn >= 0).all(), "energy_dyn must be finite and >= 0"),
            (np.isfinite(self.lat).all() and (self.lat >= 0).all(), "lat must be finite and >= 0"),
            ((self.leak_w >= 0).all() and (self.voltage > 0).all() and self.v0 > 0, "voltages must be > 0 and leak_w >= 0"),
            (self.budget >= 0 and self.energy_cap >= 0 and self.latency_cap >= 0, "budget and caps must be >= 0"),
            (self.max_levels is None or self.max_levels >= 1, "max_levels (K) must be >= 1"),
            (self.max_switches is None or self.max_switches >= 0, "max_switches must be >= 0"),
            (self.w_latency >= 0 and self.w_energy >= 0, "objective weights must be >= 0"),
            (self.switch_time_s >= 0 and self.switch_energy_j >= 0, "switch time/energy must be >= 0"),
            (len(self.codebook_names) == C and len(self.level_names) == V and len(self.domain_names) == L, "name lists must match C, V, L"),
            (self.tile_group is None or (len(self.tile_group) and self.tile_group.min() >= 0 and self.tile_group.max() < G and np.array_equal(np.bincount(self.tile_group, minlength=G), self.count)), "tile_group must map tiles to groups consistently with count"),
            (self.layer_budget is None or len(self.layer_budget) >= int(self.group_layer.max(initial=0)) + 1, "layer_budget must cover every layer"),
            (self.tile_lat is None or (self.tile_lat.shape == (G, V) and np.isfinite(self.tile_lat).all() and (self.tile_lat >= 0).all()),
             f"tile_lat must be [G, V] = [{G}, {V}], finite and >= 0"),
            (self.tile_lat is None or not self.lat.any(), "a fold problem (tile_lat given) must have lat = 0: its latency is per tile"),
        ]
        for ok, msg in checks:
            if not ok:
                raise UserError(f"invalid problem: {msg}")

    def absolute(self, eps: float) -> float:
        """Relative error budget ε → absolute (``ε · normaliser``): the one conversion."""
        return float(eps) * self.normaliser

    def relative(self, error: float) -> float:
        """Absolute error → relative (``error / normaliser``)."""
        return float(error) / self.normaliser

    def with_budget(self, eps: float) -> "Problem":
        """A copy with relative budget ε."""
        return self.replace(budget=self.absolute(eps))

    def replace(self, **changes) -> "Problem":
        """A copy with some fields changed (arrays shared, not copied)."""
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        kw.update(changes)
        return Problem(**kw)

    # ---- files ----
    def save(self, path: str | Path) -> Path:
        """Folder with ``problem.json`` (scalars, names) + ``arrays.safetensors`` (numpy arrays)."""
        from safetensors.numpy import save

        from ..artifacts import atomic_path

        path = Path(path)
        arrays, scalars = {}, {"format_version": FORMAT_VERSION}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                arrays[f.name] = np.ascontiguousarray(v.astype(np.uint8) if v.dtype == bool else v)
            elif isinstance(v, float) and math.isinf(v):
                scalars[f.name] = None
            else:
                scalars[f.name] = v
        with atomic_path(path) as tmp:
            tmp.mkdir()
            (tmp / "problem.json").write_text(json.dumps(scalars, indent=1))
            (tmp / "arrays.safetensors").write_bytes(save(arrays))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Problem":
        from safetensors.numpy import load

        from ..artifacts import read_json

        path = Path(path)
        meta = read_json(path / "problem.json", "problem file")
        if meta.pop("format_version", None) != FORMAT_VERSION:
            raise UserError(f"problem {path} has an unknown format_version; expected {FORMAT_VERSION}")
        arr_file = path / "arrays.safetensors"
        if not arr_file.is_file():
            raise UserError(f"problem arrays {arr_file} not found; save the problem with Problem.save")
        arrays = load(arr_file.read_bytes())
        known = {f.name for f in fields(cls)}
        unknown = (set(meta) | set(arrays)) - known
        if unknown:
            raise UserError(f"problem {path} has unknown fields {sorted(unknown)}; valid: {sorted(known)}")
        for k in ("budget", "energy_cap", "latency_cap"):
            if meta.get(k) is None:
                meta[k] = math.inf
        return cls(**meta, **arrays)


@dataclass
class Assignment:
    """``counts[g, c]``: tiles of group g on codebook c; ``level[l]``: level index of domain l.
    Fold problems: ``fold_counts[g, c, v]`` is the plan (``counts`` is its sum over levels and
    ``level[l]`` the level layer ``l`` begins with in the best run order; 0 for an empty layer);
    build it with :meth:`from_fold`."""

    counts: np.ndarray  # [G, C] int64
    level: np.ndarray  # [L] int64
    fold_counts: np.ndarray | None = None  # [G, C, V] int64 (fold granularity)

    def __post_init__(self) -> None:
        self.counts = np.asarray(self.counts, dtype=np.int64)
        self.level = np.asarray(self.level, dtype=np.int64)
        if self.fold_counts is not None:
            self.fold_counts = np.asarray(self.fold_counts, dtype=np.int64)

    @classmethod
    def from_fold(cls, problem: "Problem", fold_counts: np.ndarray) -> "Assignment":
        fc = np.asarray(fold_counts, dtype=np.int64)
        _, runs = fold_order(layer_levels_used(problem, fc))
        return cls(fc.sum(2), np.array([r[0] if r else 0 for r in runs], np.int64), fc)

    def runs(self, problem: "Problem") -> list[list[int]]:
        """Per domain, the levels it runs in order (fold: the best run order; layer: its one level)."""
        if self.fold_counts is None:
            return [[int(v)] for v in self.level]
        return fold_order(layer_levels_used(problem, self.fold_counts))[1]

    def tile_level(self, problem: "Problem") -> np.ndarray:
        """[T] level index per original tile (fold: tiles of a group fill (codebook, level) pairs in index order)."""
        if self.fold_counts is None:
            tg = problem.tile_group if problem.tile_group is not None else np.arange(problem.G)
            return self.level[problem.group_domain[tg]]
        return self._tile_option(problem) % problem.V

    def _tile_option(self, problem: "Problem") -> np.ndarray:
        tg = problem.tile_group if problem.tile_group is not None else np.arange(problem.G)
        order = np.argsort(tg, kind="stable")
        O = problem.C * problem.V
        opt = np.repeat(np.tile(np.arange(O), problem.G), self.fold_counts.reshape(problem.G, O).ravel())
        out = np.empty(len(tg), dtype=np.int64)
        out[order] = opt
        return out

    @classmethod
    def from_choice(cls, problem: Problem, choice: np.ndarray, level: np.ndarray) -> "Assignment":
        """All tiles of group g on codebook ``choice[g]``."""
        counts = np.zeros((problem.G, problem.C), dtype=np.int64)
        counts[np.arange(problem.G), np.asarray(choice)] = problem.count
        return cls(counts, level)

    def tile_codebook(self, problem: Problem) -> np.ndarray:
        """[T] codebook index per original tile (tiles of a group fill codebooks in index order)."""
        if self.fold_counts is not None:
            return self._tile_option(problem) // problem.V
        tg = problem.tile_group if problem.tile_group is not None else np.arange(problem.G)
        order = np.argsort(tg, kind="stable")  # tiles grouped by group, original order inside
        per_group_cb = np.repeat(np.tile(np.arange(problem.C), problem.G), self.counts.ravel())
        out = np.empty(len(tg), dtype=np.int64)
        out[order] = per_group_cb
        return out


class Evaluation(NamedTuple):
    latency: float  # s
    energy: float  # J
    error: float  # budget units
    feasible: bool
    violations: list[str]
    objective: float
    switches: int
    levels_used: int


def layer_levels_used(problem: Problem, fold_counts: np.ndarray) -> np.ndarray:
    """[L, V] bool: level v runs some tile of domain (layer) l."""
    used = np.zeros((problem.L, problem.V), bool)
    np.logical_or.at(used, problem.group_domain, fold_counts.sum(1) > 0)
    return used


def fold_order(used: np.ndarray) -> tuple[int, list[list[int]]]:
    """Fewest level changes when layer ``l`` runs the levels ``used[l]`` (one contiguous run per
    level, in any order) and layers run in order; layers using no level are skipped. Exact DP
    over the level a layer ends on: a layer with ``k`` levels costs ``k − 1`` inside, it begins
    with ``b`` and ends with ``e ≠ b`` (``b = e`` when ``k = 1``), and the boundary costs one
    where ``b`` differs from the previous layer's end. Returns (switches, runs per layer)."""
    used = np.asarray(used, bool)
    L, V = used.shape
    f = None  # [V] fewest switches so far, by the level the last non-empty layer ends on
    back: list = []
    for l in range(L):
        U = np.flatnonzero(used[l]).tolist()
        if not U:
            back.append(None)
            continue
        k = len(U)
        new = np.full(V, np.inf)
        bp: dict = {}
        pm = int(np.argmin(f)) if f is not None else -1
        for e in U:
            for b in ([e] if k == 1 else [u for u in U if u != e]):
                if f is None:
                    c, p = 0.0, -1
                elif f[b] <= f[pm] + 1:
                    c, p = f[b], b
                else:
                    c, p = f[pm] + 1, pm
                if c + k - 1 < new[e]:
                    new[e], bp[e] = c + k - 1, (b, p)
        f = new
        back.append(bp)
    runs: list[list[int]] = [[] for _ in range(L)]
    if f is None:
        return 0, runs
    e = int(np.argmin(f))
    total = int(f[e])
    for l in range(L - 1, -1, -1):
        if back[l] is None:
            continue
        b, p = back[l][e]
        U = np.flatnonzero(used[l]).tolist()
        runs[l] = [b] + [u for u in U if u not in (b, e)] + ([e] if e != b else [])
        e = p
    return total, runs


def evaluate(problem: Problem, a: Assignment) -> Evaluation:
    """Latency, energy, error and feasibility of an assignment: THE evaluator of every solver."""
    p = problem
    viol: list[str] = []
    level = a.level
    if level.shape != (p.L,):
        raise ValueError(f"assignment level shape {level.shape} != {(p.L,)}")
    if (level < 0).any() or (level >= p.V).any():
        raise ValueError("level index out of range")
    if p.fold:
        fc = a.fold_counts
        if fc is None or fc.shape != (p.G, p.C, p.V):
            raise ValueError(f"a fold problem needs fold_counts of shape {(p.G, p.C, p.V)}")
        counts = fc.sum(2)
        if (fc < 0).any() or not np.array_equal(counts, a.counts):
            viol.append("fold_counts are negative or disagree with counts")
        if (fc > 0)[:, ~p.compat].any():
            viol.append(f"{int(fc[:, ~p.compat].sum())} tiles use a codebook that misses timing at their level")
        used = layer_levels_used(p, fc)
        nsw = fold_order(used)[0]
        per_gv = fc.sum(1)  # [G, V]
        t_lv = float((per_gv * p.tile_lat).sum())
        latency = t_lv + nsw * p.switch_time_s
        energy = float((fc * p.energy_dyn[:, :, None]).sum((0, 1)) @ p.sigma
                       + (per_gv * p.tile_lat * p.leak_w[None, :]).sum() + nsw * p.switch_energy_j)
        n_used = int(used.any(0).sum())
    else:
        counts = a.counts
        if counts.shape != (p.G, p.C):
            raise ValueError(f"assignment counts shape {counts.shape} != {(p.G, p.C)}")
        lv_g = level[p.group_domain]  # [G]
        bad = (counts > 0) & ~p.compat[:, lv_g].T  # [G, C]
        if bad.any():
            viol.append(f"{int(counts[bad].sum())} tiles use a codebook that misses timing at their level")
        lat_l = p.lat[np.arange(p.L), level]
        nsw = int((level[1:] != level[:-1]).sum())
        latency = float(lat_l.sum() + nsw * p.switch_time_s)
        energy = float(((counts * p.energy_dyn).sum(1) * p.sigma[lv_g]).sum()
                       + (p.leak_w[level] * lat_l).sum() + nsw * p.switch_energy_j)
        n_used = int(len(np.unique(level)))
    if (counts < 0).any() or not np.array_equal(counts.sum(1), p.count):
        viol.append("tile counts do not add up to each group's count")
    err = float((counts * p.err).sum())
    used = n_used

    def over(x, cap):
        return x > cap_tol(cap)

    if over(err, p.budget):
        viol.append(f"error {err:.6g} > budget {p.budget:.6g}")
    if p.layer_budget is not None:
        le = np.bincount(p.group_layer, weights=(counts * p.err).sum(1), minlength=len(p.layer_budget))
        for i in np.flatnonzero(le > cap_tol(p.layer_budget)):
            viol.append(f"layer {p.layer_names[i] if i < len(p.layer_names) else i} error {le[i]:.6g} > its budget {p.layer_budget[i]:.6g}")
    if over(energy, p.energy_cap):
        viol.append(f"energy {energy:.6g} J > cap {p.energy_cap:.6g} J")
    if over(latency, p.latency_cap):
        viol.append(f"latency {latency:.6g} s > cap {p.latency_cap:.6g} s")
    if p.max_levels is not None and used > p.max_levels:
        viol.append(f"{used} levels used > K = {p.max_levels}")
    if p.max_switches is not None and nsw > p.max_switches:
        viol.append(f"{nsw} switches > max {p.max_switches}")
    obj = p.w_latency * latency + p.w_energy * energy
    return Evaluation(latency, energy, err, not viol, viol, float(obj), nsw, used)


def aggregate(tile_domain, tile_layer, err, energy_dyn) -> tuple[np.ndarray, ...]:
    """Merge tiles with identical (domain, layer, err row, energy row) into counted groups.

    Exact: tiles of a group are interchangeable in every constraint and the objective, so the
    MIP over integer counts per (group, codebook) has the same optimum as the per-tile MIP.
    Returns ``(tile_group [T], count [G], group_domain [G], group_layer [G], err [G,C], energy [G,C])``
    with groups in order of first appearance.
    """
    T = len(tile_domain)
    key = np.column_stack([np.asarray(tile_domain, np.float64), np.asarray(tile_layer, np.float64),
                           np.asarray(err, np.float64), np.asarray(energy_dyn, np.float64)])
    key = np.ascontiguousarray(key)
    void = key.view(np.dtype((np.void, key.dtype.itemsize * key.shape[1]))).ravel()
    _, first, inv = np.unique(void, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))  # order of first appearance
    tile_group = rank[inv.ravel()]
    firsts = np.sort(first)
    count = np.bincount(tile_group, minlength=len(firsts))
    assert count.sum() == T
    return (tile_group, count, np.asarray(tile_domain, np.int64)[firsts], np.asarray(tile_layer, np.int64)[firsts],
            np.asarray(err, np.float64)[firsts], np.asarray(energy_dyn, np.float64)[firsts])


def refuse_layer_budgets(p: Problem, solver: str) -> None:
    """UserError for solvers whose decomposition has no per-layer budget rows."""
    if p.layer_budget is not None:
        raise UserError(f"the {solver} solver does not support per-layer budgets; use --solver cpsat or milp")


def refuse_fold(p: Problem, solver: str, instead: str = "cpsat, milp, lagrange, greedy or halo_fold") -> None:
    """UserError for solvers without a fold-granularity variant."""
    if p.fold:
        raise UserError(f"the {solver} solver does not support granularity = \"fold\"; use --solver {instead}")

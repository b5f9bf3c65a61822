"""Execute the two user-facing notebooks with small injected parameters (nbclient, kernel
``python3`` pinned to this interpreter) and check their key outputs against the planner's
own guarantees: no error cells, figures drawn, CP-SAT = brute force, bounds ≤ optima,
no heuristic beats a proven optimum."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import ipykernel  # noqa: F401  (the test extra carries nbformat, nbclient and ipykernel: no skip)
import nbclient
import nbformat

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
TOL = 1e-6

SMALL = {
    "pareto_frontiers.ipynb": """
COSTS = {costs!r}
POINTS = 3
TIME_LIMIT = 5.0
WORKERS = 1
KS = [1, None]
""",
    "exact_vs_greedy.ipynb": """
SIZES = [128]
SEEDS = [0]
KS = [1, None]
TIME_LIMIT = 5.0
CPSAT_WORKERS = 1
BRUTE_INSTANCES = 6
""",
}

PROBES = {
    "pareto_frontiers.ipynb": """
import json as _json
print("PROBE " + _json.dumps({
    "rows": pts[["objective_name", "K", "solver", "budget", "status", "objective", "latency_s", "energy_j", "error_rel"]]
        .astype({"budget": float}).to_dict("records"),
    "baseline": baseline, "bound": {f"{o}|{k_label(K)}": v for (o, K), v in bound.items()},
    "tab_rows": len(tab), "source": source}))
""",
    "exact_vs_greedy.ipynb": """
import json as _json
print("PROBE " + _json.dumps({
    "brute": checks[["brute", "cpsat", "match", "plan_ok"]].to_dict("records"),
    "res": res[["solver", "tiles", "status", "cpsat_status", "gap", "gap_to_bound"]].to_dict("records"),
    "gap_table_rows": len(gap_table)}))
""",
}


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory, monkeypatch_module):
    """A ``python3`` kernelspec that runs THIS interpreter (so the kernel imports this halo_opt),
    placed first on JUPYTER_PATH."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (halo-opt tests)", "language": "python"}))
    monkeypatch_module.setenv("JUPYTER_PATH", str(root))
    monkeypatch_module.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return root


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def execute(name: str, **fmt) -> tuple[dict, list]:
    """Run notebook ``name`` with SMALL parameters (formatted with ``fmt``) appended to its
    parameters cell and a probe cell at the end; return (probe JSON, executed cells)."""
    nb = nbformat.read(NB_DIR / name, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    params[0].source += "\n# injected by tests/test_notebooks.py" + SMALL[name].format(**fmt)
    nb.cells.append(nbformat.v4.new_code_cell(PROBES[name]))
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NB_DIR)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    line = next(x for x in text.splitlines() if x.startswith("PROBE "))
    return json.loads(line[len("PROBE "):]), nb.cells


def n_images(cells) -> int:
    return sum("image/png" in o.get("data", {}) for c in cells if c.cell_type == "code" for o in c.outputs)


def test_pareto_notebook(kernel_env, tmp_path):
    from halo_opt.solve.synthetic import write_costs

    # a cost-table folder given through the COSTS parameter (the path `halo-opt demo` users take)
    costs = write_costs(tmp_path / "costs", "tiny", tile=128, n_codebooks=4, n_levels=3, seed=1)
    probe, cells = execute("pareto_frontiers.ipynb", costs=str(costs))
    assert n_images(cells) >= 2
    assert probe["source"] == str(costs)
    rows, base, bound = probe["rows"], probe["baseline"], probe["bound"]
    ks = ["K=1", "K=all"]
    assert {(r["objective_name"], r["K"], r["solver"]) for r in rows} == \
        {(o, k, s) for o in ("latency", "energy") for k in ks for s in ("cpsat", "lagrange", "greedy", "halo")}
    assert len(rows) == 2 * 2 * 4 * 3 and probe["tab_rows"] == 2 * 2 * 4
    for o in ("latency", "energy"):
        # physical bound ≤ baseline, and allowing all levels can only lower it
        assert bound[f"{o}|K=all"] <= bound[f"{o}|K=1"] * (1 + TOL) <= base[o] * (1 + TOL) ** 2
        for k in ks:
            cp = sorted((r for r in rows if (r["objective_name"], r["K"], r["solver"]) == (o, k, "cpsat")), key=lambda r: r["budget"])
            assert all(r["status"] == "optimal" for r in cp), cp
            obj = [r["objective"] for r in cp]
            # an optimal front is non-increasing in the budget, between the bound and the baseline
            assert all(b <= a * (1 + TOL) for a, b in zip(obj, obj[1:])), obj
            assert bound[f"{o}|{k}"] * (1 - TOL) <= obj[-1] and obj[0] <= base[o] * (1 + TOL)
            for r in rows:
                if (r["objective_name"], r["K"]) == (o, k) and r["status"] in ("optimal", "feasible"):
                    opt = next(c["objective"] for c in cp if c["budget"] == r["budget"])
                    assert r["objective"] >= opt * (1 - TOL), (r, opt)  # nobody beats the proven optimum
                    assert r["error_rel"] <= r["budget"] * (1 + TOL)
                    assert r["objective"] == pytest.approx(r["latency_s"] if o == "latency" else r["energy_j"], rel=1e-9)


def test_exact_vs_greedy_notebook(kernel_env):
    probe, cells = execute("exact_vs_greedy.ipynb")
    assert n_images(cells) >= 1
    brute = probe["brute"]
    assert len(brute) == 6 and all(b["match"] and b["plan_ok"] for b in brute)
    assert any(b["brute"] == "optimal" for b in brute)
    res = probe["res"]
    assert probe["gap_table_rows"] > 0
    cp = [r for r in res if r["solver"] == "cpsat"]
    assert len(cp) == 2 * 2 * 2 and all(r["status"] == "optimal" and r["gap_to_bound"] <= 1e-6 for r in cp), cp
    heur = [r for r in res if r["solver"] != "cpsat"]
    assert {r["solver"] for r in heur} == {"greedy", "halo", "lagrange", "relax"} and len(heur) == 4 * len(cp)
    for r in heur:
        if r["status"] in ("optimal", "feasible"):
            assert r["gap"] >= -TOL and r["gap_to_bound"] >= r["gap"] / (1 + r["gap"]) - TOL, r
        else:
            assert r["gap"] == float("inf"), r

"""The demo end to end on a one-block BERT (random weights, MiniLM's tokenizer), its report, a
cached rerun (stage times kept), `halo-opt report` re-rendering it, and one baseline pricing."""

from __future__ import annotations

import math
import re

import pytest
import torch

from halo_opt.cli import main
from halo_opt.demo import DemoConfig, run_demo


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from transformers import AutoTokenizer, BertConfig, BertModel

    from halo_opt.calibration.models import minilm_path

    d = tmp_path_factory.mktemp("bert")
    tok = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)
        BertModel(cfg).eval().save_pretrained(str(d))
    finally:
        torch.random.set_rng_state(state)
    tok.save_pretrained(str(d))
    return d


@pytest.fixture(scope="module")
def demo_run(tiny_bert, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    cfg = DemoConfig(out=out, model=str(tiny_bert), sequences=4, seq_len=32, heldout=4, tile=16,
                     solvers=("cpsat", "greedy"), pareto_points=3, time_limit=5, workers=1)
    logs = []
    first = run_demo(cfg, progress=False, log=logs.append)
    return cfg, first, logs


def test_demo_report_states_findings_and_every_figure_exists(demo_run):
    cfg, res, logs = demo_run
    text = res.report.read_text()
    assert text.startswith("# halo-opt demo report")
    assert text.index("## What this shows") < text.index("## Plans")
    shows = text[text.index("## What this shows"): text.index("## Plans")]
    for word in ("**Budget.**", "**Performance goal**", "**Energy goal**", "**Balanced goal**", "**Where the time goes**", "µs", "µJ"):
        assert word in shows, word
    figs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(figs) >= 5
    for fig in figs:
        assert (cfg.out / fig).stat().st_size > 5000, fig
    for page in re.findall(r"\]\((execute/[^)]+/report\.md)\)", text):
        assert (cfg.out / page).is_file()
    assert [s.name for s in res.stages][-1] == "report" and not any(s.cached for s in res.stages[1:])
    assert any("plan 1/" in m for m in logs)  # the execute stage says what it works on


def test_one_baseline_pricing(demo_run):
    """The demo's baseline plans (planner's evaluator) and `execute.validate.baseline_cost` agree."""
    from halo_opt.execute.inputs import load_costs
    from halo_opt.execute.validate import baseline_cost

    cfg, res, _ = demo_run
    costs = load_costs(cfg.out / "costs")
    for scen, bits in (("baseline_int8", "int8"), ("baseline_int4", "int4")):
        row = next(r for r in res.rows if r["scenario"] == scen)
        b = baseline_cost(costs, bits)
        assert row["pred_latency_s"] == pytest.approx(b["latency_s"], rel=1e-9)
        assert row["pred_energy_j"] == pytest.approx(b["energy_j"], rel=1e-9)
    assert baseline_cost(costs, "int4")["energy_j"] < baseline_cost(costs, "int8")["energy_j"]
    assert math.isnan(baseline_cost(costs, "float")["latency_s"])


def test_cached_rerun_keeps_stage_times_and_report_rerenders(demo_run, capsys):
    cfg, first, _ = demo_run
    before = first.report.read_text()
    again = run_demo(cfg, progress=False, log=lambda m: None)
    assert all(s.cached for s in again.stages)  # the report too: its artifacts did not change
    assert [s.seconds for s in again.stages] == pytest.approx([s.seconds for s in first.stages])
    assert again.report.read_text() == before  # the first run's stage times, not the rerun's
    (cfg.out / "report.md").unlink()
    (cfg.out / "figures" / "profile.png").unlink()
    main(["report", str(cfg.out)])
    assert "rendered" in capsys.readouterr().out
    assert (cfg.out / "report.md").is_file() and (cfg.out / "figures" / "profile.png").is_file()


def test_report_of_a_moved_run_keeps_budgets_plan_maps_and_error_model(demo_run, tmp_path, monkeypatch):
    """A run made with a relative ``--out`` and re-rendered from elsewhere (or moved): the plan and
    cost paths it recorded no longer resolve, and the report finds them under the run folder."""
    import shutil

    import pandas as pd

    cfg, _, _ = demo_run
    moved = tmp_path / "moved"
    shutil.copytree(cfg.out, moved)
    summary = pd.read_parquet(moved / "summary.parquet")
    summary["plan"] = summary["plan"].map(lambda p: f"runs/demo/plans/{p.rsplit('/', 1)[-1]}" if isinstance(p, str) else p)
    summary.to_parquet(moved / "summary.parquet")
    for f in (moved / "figures").glob("plan-map-*.png"):
        f.unlink()
    monkeypatch.chdir(tmp_path)
    main(["report", str(moved)])
    text = (moved / "report.md").read_text()
    assert re.search(r"performance ε = [0-9.e-]+, energy ε = ", text)
    model = __import__("json").loads((moved / "costs" / "meta.json").read_text())["error_model"]
    assert f"{model} error model: ε = " in text
    assert {p.name for p in (moved / "figures").glob("plan-map-*.png")} == {f"plan-map-{g}.png" for g in ("performance", "energy", "balanced")}

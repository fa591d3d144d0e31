"""Specification of `circuits.stat_checks` (Fig. 4c vs 5d, App. F, App. R) on a hand-set model
whose only position-dependent score is an EP gradient toward the right."""

from __future__ import annotations

import pytest
import torch

from circuits.stat_checks import bias_checks, gradient_terms
from conftest import clip_for, ee_ep_model


@pytest.fixture(params=[1.0, -1.0], ids=["rightward", "leftward"])
def ep_gradient_model(request, make_tiny_cfg):
    """Score of key m = 50 [object] + slope * m through EP and EE only (every other term zero)."""
    slope = request.param
    model, probe = ee_ep_model(make_tiny_cfg(), lambda labels: torch.full_like(labels, 50.0), slope)
    return model, probe, slope


def test_the_ep_slope_has_the_sign_of_the_argmax_bias(ep_gradient_model):
    model, probe, slope = ep_gradient_model
    rows = bias_checks(model, probe)
    assert all(r["ep_slope"] == pytest.approx(slope) for r in rows)
    assert all(r["ep_sign_matches_bias"] for r in rows)
    assert all(r["argmax_difference"] == pytest.approx(1.0) for r in rows)  # always the same side


def test_every_input_is_relational_when_labels_score_alike(ep_gradient_model):
    model, probe, _ = ep_gradient_model
    assert all(r["relational"] == pytest.approx(1.0) and r["gap"] == pytest.approx(0.0) for r in bias_checks(model, probe))


def test_the_terms_with_a_gradient_are_found(ep_gradient_model):
    model, probe, _ = ep_gradient_model
    out = gradient_terms(model, probe)
    assert out["with_gradient"] == ["EP"]
    assert out["key_position_terms"] == ["EP", "PP", "BP"]
    assert not out["exactly_key_position"]


def test_the_layernorm_terms_carrying_the_gradient_are_found(make_tiny_cfg):
    """App. R on a pre-LN encoder built so that σ(x) is the same for every (token, position):
    unit token and position embeddings with zero mean on disjoint coordinates. The [CLS] query
    reads Ê (coordinate 0) and β (coordinate 8), the key reads P̂ (coordinate 4, cos θ_m falling
    with m), so the score is Ê_CLS·P̂_m + β·P̂_m: exactly ÊP̂ and βP̂ fall along the row, every
    other of the 16 terms is flat, and the two share the row's spread between them."""
    model, world = clip_for(make_tiny_cfg().with_overrides({"model.vision.normalization": "pre"}))
    vis, d = model.vision, model.vision.cfg.d_model
    unit = lambda i: torch.eye(d)[i] - torch.eye(d)[i + 1]  # noqa: E731  zero-mean, orthogonal for even i
    with torch.no_grad():
        for p in vis.parameters():
            p.zero_()
        vis.blocks[0].ln1.w.fill_(1.0)
        vis.blocks[0].ln1.b.copy_(0.5 * unit(8))
        phi = torch.linspace(0.3, 1.2, vis.embed.W_E.shape[0])
        vis.embed.W_E.copy_(torch.cos(phi)[:, None] * unit(0) + torch.sin(phi)[:, None] * unit(2))
        vis.embed.W_E[world.vocab.cls] = unit(0)
        theta = torch.linspace(0.1, 1.4, vis.n_ctx)
        vis.pos_embed.W_pos.copy_(torch.cos(theta)[:, None] * unit(4) + torch.sin(theta)[:, None] * unit(6))
        attn = vis.blocks[0].attn
        attn.W_Q[:, 0, 0] = attn.W_Q[:, 8, 0] = attn.W_K[:, 4, 0] = 1.0
    out = gradient_terms(model, world.probe("unseen_pair"))
    assert out["with_gradient"] == ["EP", "NP"]
    assert out["key_position_terms"] == ["EP", "PP", "NP", "BP"] and not out["exactly_key_position"]
    for t in ("EP", "NP"):
        assert out["terms"][t]["monotonicity"] == pytest.approx([-1.0, -1.0])
    shares = [a + b for a, b in zip(out["terms"]["EP"]["share"], out["terms"]["NP"]["share"])]
    assert shares == pytest.approx([1.0, 1.0], abs=1e-5)

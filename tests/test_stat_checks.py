"""Specification of `circuits.stat_checks` (Fig. 4c vs 5d, App. F, App. R) on a hand-set model
whose only position-dependent score is an EP gradient toward the right."""

from __future__ import annotations

import pytest
import torch

from circuits.stat_checks import bias_checks, gradient_terms
from conftest import clip_for


@pytest.fixture(params=[1.0, -1.0], ids=["rightward", "leftward"])
def ep_gradient_model(request, make_tiny_cfg):
    """Score of key m = 50 [object] + slope * m through EP and EE only (every other term zero)."""
    slope = request.param
    model, world = clip_for(make_tiny_cfg())
    vis = model.vision
    with torch.no_grad():
        attn = vis.blocks[0].attn
        for p in (attn.W_Q, attn.W_K, attn.b_Q, attn.b_K):
            p.zero_()
        vis.embed.W_E[:, :3] = 0.0
        vis.pos_embed.W_pos[:, :3] = 0.0
        vis.embed.W_E[world.vocab.cls, 0] = 1.0  # the query reads dimension 0 of [CLS]
        vis.embed.W_E[1 : world.cfg.n_labels + 1, 2] = 50.0  # objects: dimension 2
        vis.pos_embed.W_pos[:, 1] = slope * torch.arange(vis.n_ctx, dtype=torch.float)  # positions: dimension 1
        scale = attn.cfg.d_head ** 0.5
        attn.W_Q[:, 0, 0] = scale
        attn.W_K[:, 1, 0] = 1.0
        attn.W_K[:, 2, 0] = 1.0
    return model, world.probe("unseen_pair"), slope


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

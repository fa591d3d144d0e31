"""Specification of `circuits.rope` (App. J.3, Fig. 19)."""

from __future__ import annotations

import math

import pytest
import torch

from circuits.errors import CircuitsError
from circuits.rope import bias_gradient, effective_rank, key_pca, majority_sign_fraction, query_vector, rope_analysis
from conftest import clip_for
from conftest import rotation


@pytest.mark.parametrize("rank", [1, 3, 6])
def test_effective_rank_of_a_planted_rank_r_matrix_is_r(rank):
    gen = torch.Generator().manual_seed(rank)
    u, _ = torch.linalg.qr(torch.randn(128, 32, generator=gen))
    v, _ = torch.linalg.qr(torch.randn(32, 32, generator=gen))
    w = u[:, :rank] @ v[:rank]
    assert [int(effective_rank(w, t)) for t in (0.9, 0.95, 0.99)] == [rank] * 3


def test_effective_rank_counts_squared_singular_values():
    w = torch.diag(torch.tensor([0.5, 0.3, 0.15, 0.05]).sqrt())  # energy 0.5, 0.8, 0.95, 1.0
    assert [int(effective_rank(w, t)) for t in (0.5, 0.9, 0.95, 0.99)] == [1, 3, 3, 4]


def test_key_pca_of_keys_on_one_direction():
    v = torch.tensor([0.0, 0.6, 0.8])
    keys = torch.tensor([1.0, 2.0, 4.0])[:, None, None] * v  # [label, head=1, d_head=3], c_X > 0
    ratio, v1 = key_pca(keys)
    assert ratio[0, 0] == pytest.approx(1.0)
    assert torch.allclose(v1[0], v)  # sign: positive projections


def test_bias_gradient_via_the_models_rotary_equals_a_direct_2d_computation(rotary_2d):
    enc, _, _ = rotary_2d
    attn = enc.blocks[0].attn
    u = query_vector(enc, 4, 0)
    b = attn.b_K[0].detach()
    g = bias_gradient(enc, u, [1, 2, 3, 4])
    direct = {d: [float(u[0] @ (rotation(i) - rotation(i + d)) @ b) / math.sqrt(2) for i in range(1, 5 - d)]
              for d in (1, 2, 3)}
    for d, values in direct.items():
        assert g[d][0][0] == pytest.approx(sum(values) / len(values), abs=1e-5)
        assert g[d][1][0] == pytest.approx(torch.tensor(values).std(correction=0).item(), abs=1e-5)


def test_majority_sign_fraction():
    assert majority_sign_fraction(torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0]])) == pytest.approx([1.0, 2 / 3])


def test_rope_analysis_runs_on_a_rotary_model_and_is_bounded(make_tiny_cfg):
    model, world = clip_for(make_tiny_cfg().with_overrides({"model.vision.positional": "rotary"}))
    out = rope_analysis(model, world.probe("unseen_pair"))
    assert all(0 <= f <= 1 for f in out.consistency + out.consistency_no_bias + out.consistency_pc1)
    assert sorted(out.bias_gradient) == list(range(1, world.cfg.width))
    assert all(len(row) == world.cfg.width for row in out.a_profile)


def test_rope_analysis_of_a_learned_position_model_says_what_applies_instead(make_tiny_cfg):
    model, world = clip_for(make_tiny_cfg())
    with pytest.raises(CircuitsError, match="not 'rotary'.*lenscli bias"):
        rope_analysis(model, world.probe("unseen_pair"))

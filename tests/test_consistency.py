"""Specification of `circuits.consistency` (App. J, Eqs. 8, 13, 23)."""

from __future__ import annotations

import math

import pytest
import torch

from circuits.consistency import consistency_fraction, swap_deltas
from circuits.stats import head_bias
from conftest import clip_for, rotation


def test_for_learned_positions_the_consistency_fraction_is_the_relational_fraction(make_tiny_cfg):
    cfg = make_tiny_cfg().with_overrides({"model.vision.init_pos_std": 0.3, "model.vision.n_heads": 4})
    model, world = clip_for(cfg)
    probe = world.probe("unseen_pair")
    fraction = consistency_fraction(model, probe)
    relational = head_bias(model, probe).relational
    assert fraction == pytest.approx(relational, abs=1e-6)  # one input of 30 would differ by 0.033
    assert any(0 < f < 1 for f in fraction)  # the comparison is not between two trivial fractions


def direct_score(enc, token: int, position: int, key_bias: bool = True) -> float:
    """s = (R_0 u) . R_m (W_K^T e + b_K) / sqrt(2), with R_m a hand-built 2x2 rotation."""
    attn, e = enc.blocks[0].attn, enc.W_E.detach()
    u = e[4] @ attn.W_Q[0].detach() + attn.b_Q[0].detach()
    k = e[token] @ attn.W_K[0].detach() + (attn.b_K[0].detach() if key_bias else 0)
    return float(u @ (rotation(position) @ k)) / math.sqrt(2)


@pytest.mark.parametrize("key_bias", [True, False])
def test_rotary_consistency_through_the_models_rotary_equals_a_direct_2d_computation(rotary_2d, key_bias):
    enc, probe, items = rotary_2d
    delta, swapped = swap_deltas(enc, probe, key_bias=key_bias)
    s = lambda t, m: direct_score(enc, t, m, key_bias)  # noqa: E731
    expected = torch.tensor([[s(a, i) - s(b, j), s(b, i) - s(a, j)] for a, b, i, j in items])
    assert torch.allclose(torch.stack([delta[:, 0], swapped[:, 0]], -1), expected, atol=1e-5)
    fraction = float(((expected[:, 0] * expected[:, 1]) > 0).float().mean())
    assert consistency_fraction(enc, probe, key_bias=key_bias) == pytest.approx([fraction])


def test_keys_on_one_direction_follow_the_mechanism_2_identity(rotary_2d):
    """Eq. 29-30: with b_K = 0 and k_X = c_X v, Δ·Δ' = c_A c_B (a_i² + a_j²) − (c_A² + c_B²) a_i a_j."""
    enc, probe, items = rotary_2d
    v = torch.tensor([[0.6, 0.8]])
    delta, swapped = swap_deltas(enc, probe, key_bias=False, key_direction=v)
    attn, e = enc.blocks[0].attn, enc.W_E.detach()
    u = e[4] @ attn.W_Q[0].detach() + attn.b_Q[0].detach()
    c = {t: float(e[t] @ attn.W_K[0].detach() @ v[0]) for t in (1, 2, 3)}
    a = {m: float(u @ rotation(m) @ v[0]) / math.sqrt(2) for m in range(1, 5)}
    expected = torch.tensor([c[x] * c[y] * (a[i] ** 2 + a[j] ** 2) - (c[x] ** 2 + c[y] ** 2) * a[i] * a[j]
                             for x, y, i, j in items])
    assert torch.allclose((delta * swapped)[:, 0], expected, atol=1e-5)

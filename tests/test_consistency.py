"""Specification of `circuits.consistency` (App. J, Eqs. 8, 13, 23)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from circuits.config import EncoderConfig
from circuits.consistency import consistency_fraction, swap_deltas
from circuits.models.encoder import HookedVisionEncoder
from circuits.stats import head_bias
from circuits.tasks import Probe
from tests.conftest import clip_for


def test_for_learned_positions_the_consistency_fraction_is_the_relational_fraction(make_tiny_cfg):
    cfg = make_tiny_cfg().with_overrides({"model.vision.init_pos_std": 0.3, "model.vision.n_heads": 4})
    model, world = clip_for(cfg)
    probe = world.probe("unseen_pair")
    fraction = consistency_fraction(model, probe)
    relational = head_bias(model, probe).relational
    assert fraction == pytest.approx(relational, abs=1e-6)  # one input of 30 would differ by 0.033
    assert any(0 < f < 1 for f in fraction)  # the comparison is not between two trivial fractions


def rotation(angle: float) -> torch.Tensor:  # column-vector convention
    return torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


@pytest.fixture
def rotary_2d():
    """A 1-head rotary encoder with d_model = d_head = 2 (one frequency: angle m at position m),
    vocabulary 0 background, 1-3 labels, 4 [CLS], and weights set by hand."""
    cfg = EncoderConfig(n_heads=1, d_model=2, d_head=2, positional="rotary", mask="bidirectional")
    enc = HookedVisionEncoder(cfg, d_vocab=5, n_ctx=5).eval()
    with torch.no_grad():
        enc.embed.W_E.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.2], [0.3, 1.0], [-0.7, 0.5], [0.4, -0.9]]))
        attn = enc.blocks[0].attn
        attn.W_Q.copy_(torch.tensor([[[1.0, 0.5], [-0.2, 1.0]]]))
        attn.W_K.copy_(torch.tensor([[[0.8, -0.3], [0.6, 1.1]]]))
        attn.b_Q.copy_(torch.tensor([[0.1, -0.4]]))
        attn.b_K.copy_(torch.tensor([[0.9, 0.25]]))
    items = [(a, b, i, j) for a, b in itertools.permutations([1, 2, 3], 2) for i, j in itertools.combinations(range(1, 5), 2)]
    tokens = torch.zeros(len(items), 5, dtype=torch.long)
    tokens[:, 0] = 4
    for n, (a, b, i, j) in enumerate(items):
        tokens[n, i], tokens[n, j] = a, b
    probe = Probe(tokens, torch.tensor([it[2] for it in items]), torch.tensor([it[3] for it in items]),
                  torch.tensor([-1, 0, 1, 2, 3]))
    return enc, probe, items


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

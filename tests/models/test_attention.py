"""Specification of multi-head attention: scores, masking, pattern, value mixing and output are
the textbook computations on the cached hooks; the decomposed score terms sum to the scores."""

from __future__ import annotations

import math

import pytest
import torch

from circuits.config import EncoderConfig
from circuits.models import HookedTextEncoder, HookedVisionEncoder
from circuits.models.positional import Rotary

SIDES = ("vision", "text")


def tokens_for(world, side: str, n: int = 6) -> torch.Tensor:
    if side == "vision":
        parts = [world["train_single"].images[:n], world["unseen_pair"].images[:n], world["train_pair"].images[:n]]
        return torch.cat(parts)
    return world.captions[torch.linspace(0, world.n_captions - 1, n).long()]


@pytest.fixture
def cached(rand_model, rand_world, request):
    side = request.param
    enc = rand_model.encoders[side]
    tokens = tokens_for(rand_world, side)
    _, cache = enc.run_with_cache(tokens)
    return enc, cache


@pytest.mark.parametrize("cached", SIDES, indirect=True)
def test_attention_scores_are_scaled_query_key_products(cached):
    enc, cache = cached
    for layer in range(enc.cfg.n_layers):
        a = f"blocks.{layer}.attn."
        if enc.cfg.positional == "rotary":
            q, k = cache[a + "hook_rot_q"], cache[a + "hook_rot_k"]
        else:
            q, k = cache[a + "hook_q"], cache[a + "hook_k"]
        want = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(enc.cfg.d_head)
        scores = cache[a + "hook_attn_scores"]
        finite = torch.isfinite(scores)
        torch.testing.assert_close(scores[finite], want[finite], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cached", SIDES, indirect=True)
def test_scores_are_minus_infinity_exactly_at_masked_positions(cached):
    enc, cache = cached
    n = enc.n_ctx
    masked = torch.triu(torch.ones(n, n, dtype=torch.bool), 1) if enc.cfg.mask == "causal" else torch.zeros(n, n, dtype=torch.bool)
    for layer in range(enc.cfg.n_layers):
        scores = cache["attn_scores", layer]
        assert (scores[..., masked] == float("-inf")).all()
        assert torch.isfinite(scores[..., ~masked]).all()


@pytest.mark.parametrize("cached", SIDES, indirect=True)
def test_pattern_is_the_softmax_of_the_scores_and_rows_sum_to_one(cached):
    enc, cache = cached
    for layer in range(enc.cfg.n_layers):
        pattern = cache["pattern", layer]
        torch.testing.assert_close(pattern, torch.softmax(cache["attn_scores", layer], dim=-1))
        torch.testing.assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)))
        assert (pattern >= 0).all()


@pytest.mark.parametrize("cached", SIDES, indirect=True)
def test_z_result_and_attention_output_follow_the_textbook_formulas(cached):
    enc, cache = cached
    for layer, block in enumerate(enc.blocks):
        attn, a = block.attn, f"blocks.{layer}.attn."
        z = torch.einsum("bhqk,bkhd->bqhd", cache[a + "hook_pattern"], cache[a + "hook_v"])
        torch.testing.assert_close(cache[a + "hook_z"], z, rtol=1e-5, atol=1e-6)
        result = torch.einsum("bqhd,hdm->bqhm", z, attn.W_O)
        torch.testing.assert_close(cache[a + "hook_result"], result, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(cache[f"blocks.{layer}.hook_attn_out"], result.sum(2) + attn.b_O, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cached", SIDES, indirect=True)
def test_queries_keys_values_are_affine_in_the_normalised_stream(cached):
    enc, cache = cached
    for layer, block in enumerate(enc.blocks):
        attn, a = block.attn, f"blocks.{layer}.attn."
        x = cache[f"blocks.{layer}.hook_resid_pre"]
        if enc.cfg.normalization == "pre":
            x = cache[f"blocks.{layer}.ln1.hook_normalized"]
        for name, W, b in (("q", attn.W_Q, attn.b_Q), ("k", attn.W_K, attn.b_K), ("v", attn.W_V, attn.b_V)):
            want = torch.einsum("bpm,hmd->bphd", x, W) + b
            torch.testing.assert_close(cache[a + f"hook_{name}"], want, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("cached", SIDES, indirect=True)
def test_residual_stream_adds_up(cached):
    enc, cache = cached
    embed = cache["hook_embed"] + (cache["hook_pos_embed"] if enc.cfg.positional == "learned" else 0)
    torch.testing.assert_close(cache["blocks.0.hook_resid_pre"], embed)
    for layer in range(enc.cfg.n_layers):
        p = f"blocks.{layer}."
        mid = cache[p + "hook_resid_pre"] + cache[p + "hook_attn_out"]
        if enc.cfg.attn_only:
            torch.testing.assert_close(cache[p + "hook_resid_post"], mid)
        else:
            torch.testing.assert_close(cache[p + "hook_resid_mid"], mid)
            torch.testing.assert_close(cache[p + "hook_resid_post"], mid + cache[p + "hook_mlp_out"])
        if layer + 1 < enc.cfg.n_layers:
            assert torch.equal(cache[f"blocks.{layer + 1}.hook_resid_pre"], cache[p + "hook_resid_post"])


@pytest.mark.parametrize("side", SIDES)
def test_decomposed_terms_are_every_query_source_times_every_key_source(rand_model, side):
    """(That they add up to the scores and values: tests/test_decompose.py.)"""
    enc = rand_model.encoders[side]
    for layer in range(enc.cfg.n_layers):
        terms = enc.term_names(layer)
        sources = enc.value_sources(layer)
        assert terms == [s + t for s in sources for t in sources]
        assert sources[0] == "E"
        assert ("P" in sources) == (enc.cfg.positional == "learned")
        assert ("H" in sources) == (layer > 0)
        assert ("N" in sources) == (enc.cfg.normalization == "pre")
        assert ("B" in sources) == enc.cfg.qkv_bias


def test_zeroing_a_score_term_removes_exactly_that_term():
    enc = HookedVisionEncoder(EncoderConfig(d_model=16, d_head=4, n_heads=2), d_vocab=6, n_ctx=5)
    tokens = torch.tensor([[5, 0, 3, 0, 1], [5, 2, 0, 4, 0]])
    _, cache = enc.run_with_cache(tokens, decompose=True)
    name = "blocks.0.attn.hook_score_EP"
    with enc.hooks(fwd_hooks=[(name, lambda x, hook: torch.zeros_like(x))]):
        _, ablated = enc.run_with_cache(tokens, decompose=True)
    torch.testing.assert_close(
        ablated["blocks.0.attn.hook_attn_scores"], cache["blocks.0.attn.hook_attn_scores"] - cache[name]
    )


def test_rotary_rotates_pairs_by_position_and_preserves_norms():
    rot = Rotary(d_head=4, n_ctx=6, base=10000.0)
    x = torch.randn(2, 6, 3, 4, generator=torch.Generator().manual_seed(0))
    pos = torch.arange(6)
    y = rot(x, pos)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(y[:, 0], x[:, 0])  # position 0 is not rotated
    # dimension i pairs with i + d_head/2 and the first pair turns by exactly `position` radians
    angle = pos.float()
    c, s = angle.cos()[None, :, None], angle.sin()[None, :, None]
    torch.testing.assert_close(y[..., 0], x[..., 0] * c - x[..., 2] * s)
    torch.testing.assert_close(y[..., 2], x[..., 2] * c + x[..., 0] * s)
    # relative: q_i . k_j depends only on i - j
    q, k = torch.randn(4), torch.randn(4)
    qs, ks = rot(q.expand(1, 6, 1, 4), pos), rot(k.expand(1, 6, 1, 4), pos)
    dots = torch.einsum("d,jd->j", qs[0, 3, 0], ks[0, :, 0])
    dots_shift = torch.einsum("d,jd->j", qs[0, 4, 0], ks[0, :, 0])
    torch.testing.assert_close(dots[:5], dots_shift[1:], rtol=1e-5, atol=1e-5)


def test_factored_qk_and_ov_circuits_match_the_weights():
    enc = HookedTextEncoder(EncoderConfig(d_model=12, d_head=3, n_heads=2, mask="causal"), d_vocab=9, n_ctx=4)
    attn = enc.blocks[0].attn
    torch.testing.assert_close(attn.QK.AB, attn.W_Q @ attn.W_K.transpose(-2, -1))
    torch.testing.assert_close(attn.OV.AB, attn.W_V @ attn.W_O)
    assert attn.QK.AB.shape == (2, 12, 12)

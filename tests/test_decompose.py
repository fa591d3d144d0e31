"""The decomposed forward: named score terms and value sources that add up to the model's own."""

from __future__ import annotations

import random

import pytest
import torch

from circuits import RunConfig
from conftest import clip_for
from circuits.decompose import combine, decompose, parse_terms, pooled_row_terms
from circuits.errors import CircuitsError


def random_config(seed: int) -> RunConfig:
    """A small random architecture and world: 1-3 layers, 1-5 heads, odd d_model, D != 10."""
    rng = random.Random(seed)
    enc = {
        "n_layers": rng.randint(1, 3),
        "n_heads": rng.randint(1, 5),
        "d_model": rng.choice([15, 17, 21, 24]),
        "d_head": rng.choice([4, 6, 8]),
        "d_mlp": rng.choice([16, 33]),
        "attn_only": rng.random() < 0.5,
        "normalization": rng.choice(["none", "pre"]),
        "positional": rng.choice(["learned", "rotary", "none"]),
        "qkv_bias": rng.random() < 0.8,
    }
    overrides = {f"model.vision.{k}": v for k, v in enc.items()}
    overrides |= {f"model.text.{k}": v for k, v in enc.items() if k != "positional"}
    overrides |= {"world.width": rng.choice([5, 7, 12]), "world.height": rng.choice([1, 1, 2]), "world.n_labels": 8,
                  "world.n_pair_labels": 6, "world.n_pair_positions": 3, "world.n_single_positions": 2,
                  "train.seed": seed, "model.vision.init_embed_std": rng.choice([0.1, 1.0])}
    return RunConfig().with_overrides(overrides)


CONFIGS = [random_config(s) for s in range(12)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"cfg{i}" for i in range(len(CONFIGS))])
@pytest.mark.parametrize("encoder", ["vision", "text"])
def test_terms_sum_to_attention_scores_and_sources_to_values(cfg: RunConfig, encoder: str) -> None:
    """In every layer: sum of hook_score_* (masked) == hook_attn_scores of the plain forward,
    and sum of hook_v_* == hook_v, within 1e-5 in float32."""
    model, world = clip_for(cfg)
    enc = model.encoders[encoder]
    tokens = world["unseen_pair"].images[:16] if encoder == "vision" else world.captions[:16]
    _, plain = enc.run_with_cache(tokens)
    for layer in range(enc.cfg.n_layers):
        d = decompose(enc, tokens, layer=layer)
        total = sum(d.terms.values())
        masked = torch.isinf(plain["attn_scores", layer])
        assert torch.equal(masked, torch.isinf(d.scores))
        torch.testing.assert_close(total[~masked], plain["attn_scores", layer][~masked], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sum(d.values.values()), plain["v", layer], atol=1e-5, rtol=1e-5)
    assert (enc.cfg.mask == "causal") == (encoder == "text")


def test_term_names_follow_sources() -> None:
    """Layer 0 without LN: E, P, B; deeper layers add H; pre-LN adds N; rotary has no P."""
    cfg = RunConfig().with_overrides({"model.vision.n_layers": 2, "model.vision.d_model": 16, "model.vision.d_head": 4})
    enc = clip_for(cfg)[0].vision
    assert enc.term_names(0) == ["EE", "EP", "EB", "PE", "PP", "PB", "BE", "BP", "BB"]
    assert enc.value_sources(1) == ["E", "P", "H", "B"]
    ln = clip_for(cfg.with_overrides({"model.vision.normalization": "pre", "model.vision.positional": "rotary"}))[0].vision
    assert ln.value_sources(0) == ["E", "N", "B"]
    assert "hook_score_EP" not in str(list(ln.hook_dict))


def test_paper_terms_match_their_formulas() -> None:
    """hook_score_EP is E W_Q W_K^T P^T / sqrt(d_head); hook_score_BP is b_Q W_K^T P^T / sqrt(d_head)."""
    model, world = clip_for(RunConfig())
    with torch.no_grad():
        for p in model.vision.blocks[0].attn.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # non-zero biases
    images = world["unseen_pair"].images[:4]
    d = decompose(model, images)
    attn = model.vision.blocks[0].attn
    E = model.vision.embed.W_E[images]  # [b, pos, d_model]
    P = model.vision.pos_embed.W_pos
    scale = attn.cfg.d_head**0.5
    ep = torch.einsum("bqm,hmd,hnd,kn->bhqk", E, attn.W_Q, attn.W_K, P) / scale
    bp = torch.einsum("hd,hnd,kn->hk", attn.b_Q, attn.W_K, P) / scale
    torch.testing.assert_close(d.terms["EP"], ep, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(d.terms["BP"], bp[None, :, None, :].expand_as(d.terms["BP"]), atol=1e-5, rtol=1e-4)


def test_decomposition_is_off_by_default_and_switchable() -> None:
    model, world = clip_for(RunConfig().with_overrides({"model.vision.d_model": 16, "model.vision.d_head": 4}))
    images = world["train_pair"].images[:3]
    _, cache = model.vision.run_with_cache(images)
    assert not any("hook_score_" in k for k in cache.keys())
    with model.vision.decomposed():
        _, cache = model.vision.run_with_cache(images)
    assert "blocks.0.attn.hook_score_EP" in cache.keys()
    assert model.vision.decompose is False


def test_pooled_row_and_combinations() -> None:
    model, world = clip_for(RunConfig().with_overrides({"model.text.d_model": 16, "model.text.d_head": 4}))
    captions = world.captions[:5]
    row = pooled_row_terms(model, captions, encoder="text")
    assert row.query == 3 and row.terms["EP"].shape == (5, 4, 4)
    torch.testing.assert_close(row.combine("EP+PP"), row.terms["EP"] + row.terms["PP"])
    assert parse_terms(model.text, 0, ["EP+PP", "BP", "EP"]) == ["EP", "PP", "BP"]
    with pytest.raises(CircuitsError, match="unknown term 'XP'.*EE"):
        parse_terms(model.text, 0, ["XP"])
    with pytest.raises(CircuitsError, match="unknown term"):
        combine(row.terms, "EP+QQ")
    with pytest.raises(CircuitsError, match="layers 0..0"):
        decompose(model, captions, encoder="text", layer=3)

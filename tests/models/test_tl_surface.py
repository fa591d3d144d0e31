"""Specification of the TransformerLens surface: ActivationCache utilities give correct values on
our encoders, stacked weights are shaped as in HookedTransformer, and the CLIP pair is a
HookedRootModule whose cache splits into one ActivationCache per encoder."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import ActivationCache, FactoredMatrix

from circuits.config import EncoderConfig
from conftest import clip_for
from circuits.models import HookedEncoder

CONFIGS = {
    "ln-mlp": EncoderConfig(n_layers=2, n_heads=2, d_model=12, d_head=4, d_mlp=8, attn_only=False, normalization="pre"),
    "attn-only": EncoderConfig(n_layers=2, n_heads=3, d_model=12, d_head=4),
}


@pytest.fixture(params=list(CONFIGS), scope="module")
def run(request):
    enc = HookedEncoder(CONFIGS[request.param], d_vocab=7, n_ctx=5, generator=torch.Generator().manual_seed(4)).eval()
    tokens = torch.randint(0, 7, (3, 5), generator=torch.Generator().manual_seed(5))
    _, cache = enc.run_with_cache(tokens)
    return enc, cache


def _final_ln(enc: HookedEncoder, x: torch.Tensor) -> torch.Tensor:
    """What the final LayerNorm computes before its affine part (identity without LN)."""
    if enc.cfg.normalization != "pre":
        return x
    x = x - x.mean(-1, keepdim=True)
    return x / (x.pow(2).mean(-1, keepdim=True) + enc.ln_final.eps).sqrt()


def test_config_exposes_transformer_lens_names():
    ln, plain = CONFIGS["ln-mlp"], CONFIGS["attn-only"]
    assert (ln.normalization_type, plain.normalization_type) == ("LN", None)
    assert (ln.act_fn, plain.act_fn) == ("gelu", None)
    assert EncoderConfig(positional="learned").positional_embedding_type == "standard"
    assert EncoderConfig(positional="rotary").positional_embedding_type == "rotary"


def test_accumulated_resid_with_ln_ends_with_the_normalised_final_stream(run):
    enc, cache = run
    stack = cache.accumulated_resid(apply_ln=True)
    assert stack.shape[0] == enc.cfg.n_layers + 1
    torch.testing.assert_close(stack[-1], enc.ln_final(cache["resid_post", -1]))
    torch.testing.assert_close(cache.accumulated_resid()[1], cache["resid_pre", 1])


def test_decompose_resid_sums_to_the_final_stream(run):
    enc, cache = run
    torch.testing.assert_close(cache.decompose_resid().sum(0), cache["resid_post", -1], rtol=1e-5, atol=1e-5)


def test_decompose_resid_with_ln_sums_to_the_normalised_final_stream(run):
    enc, cache = run
    want = _final_ln(enc, cache["resid_post", -1])
    torch.testing.assert_close(cache.decompose_resid(apply_ln=True).sum(0), want, rtol=1e-5, atol=1e-5)


def test_apply_ln_to_stack_normalises_by_the_cached_scale(run):
    enc, cache = run
    stack = cache["resid_post", -1][None]
    torch.testing.assert_close(cache.apply_ln_to_stack(stack)[0], _final_ln(enc, stack[0]), rtol=1e-5, atol=1e-5)


def test_stack_head_results_are_the_per_head_outputs(run):
    enc, cache = run
    heads, labels = cache.stack_head_results(return_labels=True)
    assert labels[:2] == ["L0H0", "L0H1"] and len(labels) == enc.cfg.n_layers * enc.cfg.n_heads
    torch.testing.assert_close(heads[1], cache["result", 0][:, :, 1])


def test_full_resid_decomposition_sums_to_the_final_stream(run):
    enc, cache = run
    full = cache.get_full_resid_decomposition(expand_neurons=True)
    torch.testing.assert_close(full.sum(0), cache["resid_post", -1], rtol=1e-4, atol=1e-5)


def test_accumulated_bias_sums_the_output_biases_before_the_layer(run):
    enc, _ = run
    with torch.no_grad():
        for i, block in enumerate(enc.blocks):
            block.attn.b_O.fill_(i + 1.0)
            if block.mlp is not None:
                block.mlp.b_out.fill_(10.0 * (i + 1))
    mlp = 0 if enc.cfg.attn_only else 10
    assert torch.all(enc.accumulated_bias(1) == 1 + mlp)
    assert torch.all(enc.accumulated_bias(1, mlp_input=True) == 1 + mlp + 2)
    assert torch.all(enc.accumulated_bias(2, include_mlp_biases=False) == 3)


def test_pattern_shorthand(run):
    _, cache = run
    assert torch.equal(cache["pattern", 0], cache["blocks.0.attn.hook_pattern"])


def test_stacked_weights_follow_hooked_transformer_shapes_and_values():
    enc = HookedEncoder(CONFIGS["ln-mlp"], d_vocab=7, n_ctx=5)
    L, h, m, d = 2, 2, 12, 4
    assert enc.W_Q.shape == enc.W_K.shape == enc.W_V.shape == (L, h, m, d)
    assert enc.W_O.shape == (L, h, d, m) and enc.b_Q.shape == (L, h, d) and enc.b_O.shape == (L, m)
    assert enc.W_in.shape == (L, m, 8) and enc.W_out.shape == (L, 8, m)
    assert torch.equal(enc.W_K[1], enc.blocks[1].attn.W_K)
    assert enc.W_E is enc.embed.W_E and enc.W_pos is enc.pos_embed.W_pos
    assert isinstance(enc.QK, FactoredMatrix) and isinstance(enc.OV, FactoredMatrix)
    torch.testing.assert_close(enc.QK.AB[1, 0], enc.W_Q[1, 0] @ enc.W_K[1, 0].T)
    torch.testing.assert_close(enc.OV.AB[0, 1], enc.W_V[0, 1] @ enc.W_O[0, 1])


@pytest.fixture(scope="module")
def pair_cache(make_tiny_cfg):
    model, world = clip_for(make_tiny_cfg())
    images, captions = world["train_single"].images[:3], world.captions[:4]
    logits, cache = model.run_with_cache(images, captions)
    return model, images, captions, logits, cache


def test_pair_cache_has_prefixed_names(pair_cache):
    model, _, _, logits, cache = pair_cache
    assert "vision.blocks.0.attn.hook_q" in cache.cache_dict and "text.hook_embed" in cache.cache_dict
    torch.testing.assert_close(logits, model(*pair_cache[1:3]))


def test_encoder_caches_match_each_encoders_own_cache(pair_cache):
    model, images, captions, _, cache = pair_cache
    caches = model.encoder_caches(cache)
    _, own = model.text.run_with_cache(captions)
    assert isinstance(caches["text"], ActivationCache) and caches["text"].model is model.text
    assert caches["text"].cache_dict.keys() == own.cache_dict.keys()
    assert torch.equal(caches["text"]["pattern", 0], own["pattern", 0])
    torch.testing.assert_close(caches["vision"].decompose_resid().sum(0), caches["vision"]["resid_post", -1])


def test_pair_hooks_accept_prefixed_names(pair_cache):
    model, images, captions, logits, _ = pair_cache
    zero = lambda x, hook: torch.zeros_like(x)  # noqa: E731
    with torch.no_grad():
        ablated = model.run_with_hooks(images, captions, fwd_hooks=[("text.blocks.0.attn.hook_pattern", zero)])
    assert not torch.allclose(ablated, logits)
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())


def test_encoder_caches_keep_encoder_relative_hook_names(pair_cache):
    model = pair_cache[0]
    assert model.hook_dict["vision.hook_embed"].name == "hook_embed"


@pytest.mark.slow
def test_transformer_lens_utilities_give_exact_values_on_the_trained_default_pair(default_checkpoint):
    """The same utilities on a trained model (the session's default checkpoint), through the pair's cache."""
    from circuits.checkpoint import load

    run = load(default_checkpoint)
    images, captions = run.task["unseen_pair"].images[:16], run.task.captions[:8]
    _, cache = run.model.run_with_cache(images, captions)
    for name, enc_cache in run.model.encoder_caches(cache).items():
        final = enc_cache["resid_post", -1]
        torch.testing.assert_close(enc_cache.decompose_resid(apply_ln=True).sum(0), final, rtol=1e-4, atol=1e-5, msg=name)
        torch.testing.assert_close(enc_cache.accumulated_resid(apply_ln=True)[-1], final, msg=name)
        torch.testing.assert_close(enc_cache.get_full_resid_decomposition().sum(0), final, rtol=1e-4, atol=1e-5, msg=name)
        heads = enc_cache.stack_head_results()  # [head, batch, pos, d_model]
        b_O = run.model.encoders[name].blocks[0].attn.b_O
        torch.testing.assert_close(heads.sum(0) + b_O, enc_cache["attn_out", 0], rtol=1e-4, atol=1e-5, msg=name)

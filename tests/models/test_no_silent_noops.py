"""Specification: a hook that could not take effect raises a one-line CircuitsError instead of
being silently ignored (decomposition hooks in plain mode, any hook on the pooled fast path,
read-only hooks edited in decomposed mode); edits of the residual stream in decomposed mode are
carried into source H exactly."""

from __future__ import annotations

import pytest
import torch

from circuits.config import EncoderConfig
from circuits.errors import CircuitsError
from circuits.models import HookedEncoder

TOKENS = torch.randint(0, 7, (3, 5), generator=torch.Generator().manual_seed(0))


def _enc(**cfg) -> HookedEncoder:
    base = dict(n_layers=2, n_heads=2, d_model=12, d_head=4, d_mlp=8)
    return HookedEncoder(EncoderConfig(**{**base, **cfg}), d_vocab=7, n_ctx=5).eval()


DELTA = torch.linspace(-1.0, 1.0, 12)  # not constant: LayerNorm would remove a constant shift


def _add(scale: float):
    return lambda x, hook: x + scale * DELTA[: x.shape[-1]] if x.shape[-1] == 12 else x + scale


def test_score_hook_in_plain_mode_raises_naming_the_hook():
    enc = _enc()
    with pytest.raises(CircuitsError, match="blocks.0.attn.hook_score_EP.*decompose"):
        enc.run_with_hooks(TOKENS, fwd_hooks=[("blocks.0.attn.hook_score_EP", _add(1.0))])


def test_value_source_hook_in_plain_mode_raises():
    with pytest.raises(CircuitsError, match="hook_v_P"):
        _enc().run_with_hooks(TOKENS, fwd_hooks=[("blocks.1.attn.hook_v_P", _add(1.0))])


def test_caching_every_hook_in_plain_mode_still_works():
    _, cache = _enc().run_with_cache(TOKENS)
    assert "blocks.0.attn.hook_pattern" in cache.cache_dict
    assert not any("hook_score_" in name for name in cache.cache_dict)


def test_score_hook_in_decomposed_mode_is_accepted():
    enc = _enc()
    with torch.no_grad():
        out = enc.run_with_hooks(TOKENS, fwd_hooks=[("blocks.0.attn.hook_score_EP", _add(1.0))], decompose=True)
    assert out.shape == (3, 12)


@pytest.mark.parametrize("n_layers", [1, 2])
def test_any_hook_on_the_pooled_fast_path_raises_naming_it(n_layers):
    enc = _enc(n_layers=n_layers)
    with pytest.raises(CircuitsError, match="hook_embed.*pooled_only"):
        enc.run_with_hooks(TOKENS, fwd_hooks=[("hook_embed", lambda x, hook: None)], pooled_only=True)


@pytest.mark.parametrize("name", ["blocks.0.attn.hook_q", "blocks.1.attn.hook_k", "blocks.0.ln1.hook_normalized"])
def test_editing_a_read_only_hook_in_decomposed_mode_raises(name):
    enc = _enc(normalization="pre")
    with pytest.raises(CircuitsError, match=name):
        enc.run_with_hooks(TOKENS, fwd_hooks=[(name, _add(1.0))], decompose=True)


def test_reading_a_read_only_hook_in_decomposed_mode_is_fine():
    seen = []
    _enc().run_with_hooks(TOKENS, fwd_hooks=[("blocks.0.attn.hook_q", lambda x, hook: seen.append(x))], decompose=True)
    assert len(seen) == 1


@pytest.mark.parametrize(
    "name", ["blocks.1.hook_resid_pre", "blocks.0.hook_resid_mid", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
)
def test_residual_edits_in_decomposed_mode_equal_the_plain_edit(name):
    enc = _enc(attn_only=False, normalization="pre")
    hook = [(name, _add(0.5))]
    with torch.no_grad():
        plain = enc.run_with_hooks(TOKENS, fwd_hooks=hook)
        dec = enc.run_with_hooks(TOKENS, fwd_hooks=hook, decompose=True)
        untouched = enc(TOKENS)
    assert not torch.allclose(plain, untouched)
    torch.testing.assert_close(dec, plain, rtol=1e-5, atol=1e-5)


def test_residual_edit_goes_to_source_h():
    enc = _enc()
    name = "blocks.0.hook_resid_post"
    _, ref = enc.run_with_cache(TOKENS, decompose=True)
    with enc.hooks(fwd_hooks=[(name, _add(0.5))]):
        _, cache = enc.run_with_cache(TOKENS, decompose=True, names_filter=lambda n: "hook_v_" in n)
    W_V = enc.blocks[1].attn.W_V
    delta = torch.einsum("m,hmd->hd", 0.5 * DELTA, W_V)
    torch.testing.assert_close(cache["blocks.1.attn.hook_v_H"], ref["blocks.1.attn.hook_v_H"] + delta, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cache["blocks.1.attn.hook_v_E"], ref["blocks.1.attn.hook_v_E"])


def test_editing_the_first_residual_in_decomposed_mode_raises():
    with pytest.raises(CircuitsError, match="blocks.0.hook_resid_pre"):
        _enc().run_with_hooks(TOKENS, fwd_hooks=[("blocks.0.hook_resid_pre", _add(1.0))], decompose=True)

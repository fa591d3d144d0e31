"""The RoPE sensitivity probe ([B] v2 code ``_compute_uniform_delta_probe``; spec B11, an extension)."""

from __future__ import annotations

import pytest
import torch

from circuits.config import DecoderConfig
from circuits.errors import ConfigError
from circuits.models import HookedPrefixLM
from circuits.spatial.rope_probe import rope_probe

SIZES = dict(d_vocab_vision=8, d_vocab_text=10, height=1, width=6, n_text=4)
N_VIS = 6


def tiny(positional: str = "rotary") -> HookedPrefixLM:
    """A random 2-layer rotary decoder with q/k biases, scaled so that its patterns are far from uniform."""
    cfg = DecoderConfig(d_model=16, d_head=4, n_heads=2, d_mlp=24, positional=positional, qkv_bias=True)
    model = HookedPrefixLM(cfg, **SIZES, seed=0).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_Q.mul_(4.0)
            block.attn.W_K.mul_(4.0)
            block.attn.b_Q.copy_(torch.randn(block.attn.b_Q.shape, generator=g))
            block.attn.b_K.copy_(torch.randn(block.attn.b_K.shape, generator=g))
    return model


def tokens(n: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.cat([torch.randint(0, 8, (n, 6), generator=g), torch.randint(0, 10, (n, 4), generator=g)], dim=1)


def neox_rotate(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """RoPE written out independently (GPT-NeoX layout, dimension i pairs with i + d/2), in float64."""
    half = x.shape[-1] // 2
    z = torch.complex(x[..., :half].double(), x[..., half:].double())
    angle = positions.double()[:, None] * base ** (-torch.arange(half, dtype=torch.float64) / half)
    z = z * torch.polar(torch.ones_like(angle), angle)[:, None, :]  # [pos, 1, half] against [batch, pos, head, half]
    return torch.cat([z.real, z.imag], dim=-1).float()


def test_a_zero_shift_changes_nothing() -> None:
    out = rope_probe(tiny(), tokens(), query=1, delta=0)
    assert out["delta_alpha_v"].abs().max() == 0 and out["delta_g_v"].abs().max() == 0


@pytest.mark.parametrize("query", [0, 2])
def test_attn0_is_the_models_own_pattern_row(query: int) -> None:
    model, x = tiny(), tokens()
    out = rope_probe(model, x, query=query)
    _, cache = model.run_with_cache(x, names_filter=lambda name: name.endswith("hook_pattern"))
    for l in range(model.cfg.n_layers):
        torch.testing.assert_close(out["attn0"][:, l], cache[f"blocks.{l}.attn.hook_pattern"][:, :, N_VIS + query])
    assert (out["attn0"][..., N_VIS + query + 1 :] == 0).all()  # later text keys are masked


def test_delta_g_v_matches_a_finite_difference_through_the_models_own_forward() -> None:
    model, x, delta, query = tiny(), tokens(), 2, 1
    qpos, base = N_VIS + query, model.cfg.rotary_base
    out = rope_probe(model, x, query=query, delta=delta)
    _, clean = model.run_with_cache(x)
    for l in range(model.cfg.n_layers):
        stored = {}

        def keep_k(k, hook):
            stored["k"] = k

        def shift_vision_keys(k_rot, hook):
            k_rot = k_rot.clone()
            k_rot[:, :N_VIS] = neox_rotate(stored["k"][:, :N_VIS], torch.arange(N_VIS) + delta, base)
            return k_rot

        hooks = [(f"blocks.{l}.attn.hook_k", keep_k), (f"blocks.{l}.attn.hook_rot_k", shift_vision_keys)]
        with model.hooks(fwd_hooks=hooks):
            _, shifted = model.run_with_cache(x)
        logits0 = clean[f"blocks.{l}.attn.hook_attn_scores"][:, :, qpos, :N_VIS]
        logits1 = shifted[f"blocks.{l}.attn.hook_attn_scores"][:, :, qpos, :N_VIS]
        attn0 = clean[f"blocks.{l}.attn.hook_pattern"][:, :, qpos, :N_VIS]
        attn1 = shifted[f"blocks.{l}.attn.hook_pattern"][:, :, qpos, :N_VIS]
        alpha = attn0.sum(-1)
        expected_g = (attn0 / alpha[..., None] * (logits1 - logits0)).sum(-1) / delta
        torch.testing.assert_close(out["delta_g_v"][:, l], expected_g, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out["delta_alpha_v"][:, l], attn1.sum(-1) - alpha, rtol=1e-4, atol=1e-6)
    assert out["delta_g_v"].abs().max() > 1e-2  # the check has teeth: the shift moves the logits


def test_the_probe_refuses_a_decoder_without_rotary() -> None:
    with pytest.raises(ConfigError, match=r"^the RoPE probe needs model.decoder.positional='rotary'$"):
        rope_probe(tiny("learned"), tokens())


def test_a_shift_the_rotary_tables_do_not_hold_is_refused() -> None:
    with pytest.raises(ConfigError, match="whole number of positions"):
        rope_probe(tiny(), tokens(), delta=-1)

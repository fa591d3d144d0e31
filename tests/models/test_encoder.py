"""Specification of the hooked encoders: TransformerLens hook names/shapes and parameter names,
causal vs bidirectional attention, and the exactness of the fast (pooled-only) and decomposed
forward paths, on random tiny configurations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformer_lens import ActivationCache

from circuits.config import EncoderConfig, RunConfig
from conftest import clip_for
from circuits.models import HookedCLIP, HookedEncoder, HookedTextEncoder, HookedVisionEncoder

SIDES = ("vision", "text")


def random_tokens(encoder: HookedEncoder, batch: int, seed: int = 0) -> torch.Tensor:
    """Arbitrary token sequences of full context length (vision: [CLS] first, then any pixel values)."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, encoder.d_vocab, (batch, encoder.n_ctx), generator=gen)
    if isinstance(encoder, HookedVisionEncoder):
        cls = encoder.d_vocab - 1
        tokens = torch.randint(0, cls, (batch, encoder.n_ctx), generator=gen)
        tokens[:, 0] = cls
    return tokens


def expected_hooks(enc: HookedEncoder) -> dict[str, tuple[int, ...]]:
    """Every hook the plain forward documents for this architecture, with its shape for batch b=3."""
    cfg, b, p = enc.cfg, 3, enc.n_ctx
    m, h, d = cfg.d_model, cfg.n_heads, cfg.d_head
    shapes: dict[str, tuple[int, ...]] = {"hook_embed": (b, p, m), "hook_pooled": (b, m)}
    if cfg.positional == "learned":
        shapes["hook_pos_embed"] = (b, p, m)
    for layer in range(cfg.n_layers):
        pre = f"blocks.{layer}."
        shapes.update(
            {
                pre + "hook_resid_pre": (b, p, m),
                pre + "attn.hook_q": (b, p, h, d),
                pre + "attn.hook_k": (b, p, h, d),
                pre + "attn.hook_v": (b, p, h, d),
                pre + "attn.hook_attn_scores": (b, h, p, p),
                pre + "attn.hook_pattern": (b, h, p, p),
                pre + "attn.hook_z": (b, p, h, d),
                pre + "attn.hook_result": (b, p, h, m),
                pre + "hook_attn_out": (b, p, m),
                pre + "hook_resid_post": (b, p, m),
            }
        )
        if cfg.positional == "rotary":
            shapes[pre + "attn.hook_rot_q"] = (b, p, h, d)
            shapes[pre + "attn.hook_rot_k"] = (b, p, h, d)
        if not cfg.attn_only:
            shapes[pre + "hook_resid_mid"] = (b, p, m)
            shapes[pre + "mlp.hook_pre"] = (b, p, cfg.d_mlp)
            shapes[pre + "mlp.hook_post"] = (b, p, cfg.d_mlp)
            shapes[pre + "hook_mlp_out"] = (b, p, m)
        if cfg.normalization == "pre":
            lns = ["ln1"] + ([] if cfg.attn_only else ["ln2"])
            for ln in lns:
                shapes[pre + f"{ln}.hook_scale"] = (b, p, 1)
                shapes[pre + f"{ln}.hook_normalized"] = (b, p, m)
    if cfg.normalization == "pre":
        shapes["ln_final.hook_scale"] = (b, p, 1)
        shapes["ln_final.hook_normalized"] = (b, p, m)
    return shapes


def forbidden_hooks(enc: HookedEncoder) -> list[str]:
    """Hooks that must not exist for this architecture."""
    cfg = enc.cfg
    names = []
    if cfg.positional != "learned":
        names.append("hook_pos_embed")
    for layer in range(cfg.n_layers):
        pre = f"blocks.{layer}."
        if cfg.positional != "rotary":
            names += [pre + "attn.hook_rot_q", pre + "attn.hook_rot_k"]
        if cfg.attn_only:
            names += [pre + "hook_resid_mid", pre + "mlp.hook_pre", pre + "mlp.hook_post", pre + "hook_mlp_out"]
        if cfg.normalization != "pre":
            names += [pre + "ln1.hook_scale", pre + "ln1.hook_normalized"]
        if cfg.normalization != "pre" or cfg.attn_only:
            names += [pre + "ln2.hook_scale", pre + "ln2.hook_normalized"]
    if cfg.normalization != "pre":
        names += ["ln_final.hook_scale", "ln_final.hook_normalized"]
    return names


# ---------------------------------------------------------------------------- hooks & names
@pytest.mark.parametrize("side", SIDES)
def test_run_with_cache_exposes_the_documented_hooks_with_their_shapes(rand_model, side):
    enc = rand_model.encoders[side]
    out, cache = enc.run_with_cache(random_tokens(enc, 3))
    want = expected_hooks(enc)
    missing = sorted(set(want) - set(cache.keys()))
    assert not missing, f"hooks not in cache: {missing}"
    for name, shape in want.items():
        assert tuple(cache[name].shape) == shape, name
    for name in forbidden_hooks(enc):
        assert name not in enc.hook_dict and name not in cache.keys(), name
    assert torch.equal(cache["hook_pooled"], out)


@pytest.mark.parametrize("side", SIDES)
def test_every_hook_point_is_a_known_name(rand_model, side):
    """Plain hooks are the documented ones; the rest are decomposition terms hook_score_* / hook_v_*."""
    enc = rand_model.encoders[side]
    plain = set(expected_hooks(enc))
    for name in enc.hook_dict:
        last = name.rsplit(".", 1)[-1]
        assert name in plain or last.startswith(("hook_score_", "hook_v_")), name


@pytest.mark.parametrize("side", SIDES)
def test_parameters_follow_transformer_lens_names_and_shapes(rand_model, side):
    enc = rand_model.encoders[side]
    cfg = enc.cfg
    m, h, d = cfg.d_model, cfg.n_heads, cfg.d_head
    params = {name: tuple(p.shape) for name, p in enc.named_parameters()}
    assert params["embed.W_E"] == (enc.d_vocab, m)
    if cfg.positional == "learned":
        assert params["pos_embed.W_pos"] == (enc.n_ctx, m)
    else:
        assert not any(n.startswith("pos_embed") for n in params)
    for layer in range(cfg.n_layers):
        a = f"blocks.{layer}.attn."
        for W in ("W_Q", "W_K", "W_V"):
            assert params[a + W] == (h, m, d)
        for bias in ("b_Q", "b_K", "b_V"):
            assert params[a + bias] == (h, d)
        assert params[a + "W_O"] == (h, d, m)
        assert params[a + "b_O"] == (m,)
        mlp = f"blocks.{layer}.mlp."
        if cfg.attn_only:
            assert not any(n.startswith(mlp) for n in params)
        else:
            assert (params[mlp + "W_in"], params[mlp + "b_in"]) == ((m, cfg.d_mlp), (cfg.d_mlp,))
            assert (params[mlp + "W_out"], params[mlp + "b_out"]) == ((cfg.d_mlp, m), (m,))
        if cfg.normalization == "pre":
            assert params[f"blocks.{layer}.ln1.w"] == params[f"blocks.{layer}.ln1.b"] == (m,)
    assert ("ln_final.w" in params) == (cfg.normalization == "pre")


def test_vocabulary_and_context_come_from_the_world(rand_model, rand_world):
    world = rand_world
    assert (rand_model.vision.d_vocab, rand_model.vision.n_ctx) == (world.d_vocab_vision, world.n_ctx_vision)
    assert (rand_model.text.d_vocab, rand_model.text.n_ctx) == (world.d_vocab_text, world.n_ctx_text)
    assert isinstance(rand_model.vision, HookedVisionEncoder) and isinstance(rand_model.text, HookedTextEncoder)
    assert rand_model.vision.cfg.mask == "bidirectional" and rand_model.text.cfg.mask == "causal"


def test_qkv_bias_off_freezes_the_projection_biases_at_zero():
    enc = HookedVisionEncoder(EncoderConfig(d_model=16, d_head=4, qkv_bias=False), d_vocab=5, n_ctx=4)
    attn = enc.blocks[0].attn
    for b in (attn.b_Q, attn.b_K, attn.b_V):
        assert not b.requires_grad and torch.count_nonzero(b) == 0
    assert attn.b_O.requires_grad
    assert "B" not in enc.value_sources(0)


@pytest.mark.parametrize("side", SIDES)
def test_cache_is_an_activation_cache_with_transformer_lens_shorthand(rand_model, side):
    enc = rand_model.encoders[side]
    _, cache = enc.run_with_cache(random_tokens(enc, 2))
    assert isinstance(cache, ActivationCache)
    last = enc.cfg.n_layers - 1
    assert torch.equal(cache["pattern", 0], cache["blocks.0.attn.hook_pattern"])
    assert torch.equal(cache["q", last], cache[f"blocks.{last}.attn.hook_q"])
    assert torch.equal(cache["resid_post", last], cache[f"blocks.{last}.hook_resid_post"])


def test_cache_without_batch_dim():
    model, world = clip_for(
        RunConfig().with_overrides(
            {"model.vision.d_model": 16, "model.vision.d_head": 4, "model.text.d_model": 16, "model.text.d_head": 4}
        )
    )
    tokens = world["train_pair"].images[:1]
    _, cache = model.vision.run_with_cache(tokens, remove_batch_dim=True)
    assert cache["pattern", 0].shape == (4, 11, 11)


def test_input_longer_than_the_context_is_rejected(rand_model):
    enc = rand_model.vision
    with pytest.raises(ValueError, match="tokens"):
        enc(torch.zeros(1, enc.n_ctx + 1, dtype=torch.long))
    with pytest.raises(ValueError):
        enc(torch.zeros(enc.n_ctx, dtype=torch.long))


# ------------------------------------------------------------------- causal vs bidirectional
def test_text_encoder_is_causal_position_by_position(rand_model):
    """Changing the token at t leaves every layer's residual stream at positions < t unchanged, exactly."""
    enc = rand_model.text
    base = random_tokens(enc, 1, seed=1)
    names = [f"blocks.{layer}.hook_resid_post" for layer in range(enc.cfg.n_layers)]
    _, ref = enc.run_with_cache(base, names_filter=lambda n: n in names)
    for t in range(enc.n_ctx):
        changed = base.clone()
        changed[0, t] = (base[0, t] + 1) % enc.d_vocab
        _, cache = enc.run_with_cache(changed, names_filter=lambda n: n in names)
        for name in names:
            assert torch.equal(cache[name][:, :t], ref[name][:, :t]), (t, name)
            assert not torch.allclose(cache[name][:, t], ref[name][:, t]), (t, name)


def test_text_pattern_is_zero_above_the_diagonal(rand_model):
    enc = rand_model.text
    _, cache = enc.run_with_cache(random_tokens(enc, 4))
    future = torch.triu(torch.ones(enc.n_ctx, enc.n_ctx, dtype=torch.bool), diagonal=1)
    for layer in range(enc.cfg.n_layers):
        pattern = cache["pattern", layer]
        assert (pattern[..., future] == 0).all()
        assert (pattern[..., ~future] > 0).all()


def test_vision_cls_attends_to_every_pixel(rand_model, rand_world):
    enc = rand_model.vision
    _, cache = enc.run_with_cache(rand_world["train_pair"].images[:4])
    for layer in range(enc.cfg.n_layers):
        assert (cache["pattern", layer][:, :, 0, :] > 0).all()


def test_vision_pooled_output_depends_on_every_pixel(rand_model, rand_world):
    enc = rand_model.vision
    image = rand_world["train_pair"].images[0]
    variants = image.repeat(enc.n_ctx - 1, 1)
    pixels = torch.arange(1, enc.n_ctx)
    variants[pixels - 1, pixels] = (image[pixels] + 1) % (enc.d_vocab - 1)  # a different label or background
    with torch.no_grad():
        ref, out = enc(image[None]), enc(variants)
    diff = (out - ref).abs().amax(-1)
    assert (diff > 1e-6).all(), f"pixels whose change left [CLS] unchanged: {torch.nonzero(diff <= 1e-6).flatten()}"


# ---------------------------------------------------------------------- fast path = full path
@pytest.mark.parametrize("length", ["full", "shorter"])
@pytest.mark.parametrize("side", SIDES)
def test_pooled_only_path_matches_full_path(rand_model, side, length):
    """The pooled fast path is the full forward's pooled row, also on inputs shorter than n_ctx."""
    enc = rand_model.encoders[side]
    tokens = random_tokens(enc, 16, seed=3)[:, : enc.n_ctx - (length == "shorter")]
    with torch.no_grad():
        full = enc(tokens)
        fast = enc(tokens, pooled_only=True)
    assert fast.shape == full.shape == (16, enc.cfg.d_model)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("side", SIDES)
def test_decomposed_path_matches_full_path(rand_model, side):
    enc = rand_model.encoders[side]
    tokens = random_tokens(enc, 8, seed=5)
    with torch.no_grad():
        full = enc(tokens)
        torch.testing.assert_close(enc(tokens, decompose=True), full, rtol=1e-5, atol=1e-5)
        with enc.decomposed():
            assert enc.decompose
            torch.testing.assert_close(enc(tokens), full, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(enc(tokens, pooled_only=True), full, rtol=1e-5, atol=1e-5)
        assert not enc.decompose


@pytest.mark.parametrize("side", SIDES)
def test_decomposed_path_reproduces_every_plain_activation(rand_model, side):
    enc = rand_model.encoders[side]
    tokens = random_tokens(enc, 4, seed=6)
    _, plain = enc.run_with_cache(tokens)
    _, dec = enc.run_with_cache(tokens, decompose=True)
    for name in expected_hooks(enc):
        torch.testing.assert_close(dec[name], plain[name], rtol=1e-4, atol=1e-5, msg=name)


def _loss_and_grads(model: HookedCLIP, world, pooled_only: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    from circuits.train import clip_loss

    data = world.train
    ids = world.train_caption_ids
    img = F.normalize(model.encode_image(data.images, pooled_only=pooled_only), dim=-1)
    txt = F.normalize(model.encode_text(world.captions[ids], pooled_only=pooled_only), dim=-1)
    loss = clip_loss(model.scale * img @ txt.T, data.truth(world.n_captions)[:, ids])
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads = {
        n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
        for n, p in model.named_parameters()
        if p.requires_grad
    }
    return loss.detach(), grads


def test_training_gradients_through_the_fast_path_match_the_full_path(rand_run_cfg):
    model, world = clip_for(rand_run_cfg)
    model.train()
    loss_full, g_full = _loss_and_grads(model, world, pooled_only=False)
    loss_fast, g_fast = _loss_and_grads(model, world, pooled_only=True)
    torch.testing.assert_close(loss_fast, loss_full, rtol=1e-5, atol=1e-6)
    assert g_full.keys() == g_fast.keys()
    scale = max(g.abs().max() for g in g_full.values())
    assert scale > 0
    for name in g_full:
        torch.testing.assert_close(g_fast[name], g_full[name], rtol=1e-4, atol=1e-5 * scale, msg=name)


# ------------------------------------------------------------------------------- hooks work
@pytest.mark.parametrize("side", SIDES)
def test_run_with_hooks_zeroing_the_pattern_changes_the_output_and_is_removed_afterwards(rand_model, side):
    enc = rand_model.encoders[side]
    tokens = random_tokens(enc, 4, seed=7)
    with torch.no_grad():
        ref = enc(tokens)
        hooked = enc.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_pattern", lambda x, hook: torch.zeros_like(x))])
        after = enc(tokens)
    assert not torch.allclose(hooked, ref)
    assert torch.equal(after, ref)
    assert all(not hp._forward_hooks for hp in enc.hook_dict.values())


@pytest.mark.parametrize("side", SIDES)
def test_hook_values_replace_activations(rand_model, side):
    """A hook that returns the cached value of another input transplants that input's pooled output."""
    enc = rand_model.encoders[side]
    a, b = random_tokens(enc, 2, seed=8), random_tokens(enc, 2, seed=9)
    last = enc.cfg.n_layers - 1
    name = f"blocks.{last}.hook_resid_post"
    with torch.no_grad():
        _, cache_b = enc.run_with_cache(b)
        out = enc.run_with_hooks(a, fwd_hooks=[(name, lambda x, hook: cache_b[name])])
    torch.testing.assert_close(out, cache_b["hook_pooled"])


def test_encoder_initialisation_is_a_function_of_the_generator():
    cfg = EncoderConfig(n_layers=2, d_model=16, d_head=4, attn_only=False)
    a = HookedVisionEncoder(cfg, 7, 5, generator=torch.Generator().manual_seed(1))
    b = HookedVisionEncoder(cfg, 7, 5, generator=torch.Generator().manual_seed(1))
    c = HookedVisionEncoder(cfg, 7, 5, generator=torch.Generator().manual_seed(2))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["embed.W_E"], sc["embed.W_E"])
    assert float(sa["embed.W_E"].std()) == pytest.approx(cfg.init_embed_std, rel=0.5)


@pytest.mark.parametrize("score_table", [True, False], ids=["score-table", "gathered-qk"])
@pytest.mark.parametrize("side", SIDES)
def test_first_block_from_the_input_table_equals_its_plain_forward(rand_model, side, score_table):
    """`TransformerBlock.forward_table` (layer 0 of the multi-layer fast path: queries, keys and
    values projected once per (token, position)) gives the plain block's output at every position
    and the same gradients, in both of its ways to form the scores (a [head, row, row] table when
    d_vocab^2 <= batch, per-image products otherwise)."""
    enc = rand_model.encoders[side]
    block = enc.blocks[0]
    batch = enc.d_vocab ** 2 - (0 if score_table else 1)
    tokens = random_tokens(enc, batch, seed=11)
    n = tokens.shape[1]
    table = enc._input_table(n).detach().requires_grad_(True)
    probe = torch.randn(batch, n, enc.cfg.d_model, generator=torch.Generator().manual_seed(1))
    outs, grads = [], []
    for fast in (False, True):
        enc.zero_grad(set_to_none=True)
        table.grad = None
        x = table[tokens, torch.arange(n)]
        out = block.forward_table(table, tokens) if fast else block(x)
        (out * probe).sum().backward()
        outs.append(out.detach())
        grads.append({"table": table.grad.clone(), **{k: p.grad.clone() for k, p in block.named_parameters() if p.grad is not None}})
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    assert grads[0].keys() == grads[1].keys()
    scale = max(g.abs().max() for g in grads[0].values())  # (b_K's gradient is zero up to rounding)
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-5 * scale, msg=name)


@pytest.mark.parametrize("side", SIDES)
def test_hook_result_is_skipped_only_when_nothing_is_attached_to_it(rand_model, side):
    """Without a hook on ``hook_result`` the per-head outputs are not built (one matmul through
    W_O); the output is the same, a cache still holds them, and an edit through the hook point
    (zeroing head 0 of the last layer) changes the output exactly as removing that head's term."""
    enc = rand_model.encoders[side]
    tokens = random_tokens(enc, 6, seed=12)
    last = f"blocks.{enc.cfg.n_layers - 1}.attn.hook_result"
    with torch.no_grad():
        plain = enc(tokens)
        _, cache = enc.run_with_cache(tokens)
        assert cache[last].shape == (6, enc.n_ctx, enc.cfg.n_heads, enc.cfg.d_model)
        torch.testing.assert_close(enc.run_with_hooks(tokens, fwd_hooks=[(last, lambda x, hook: None)]), plain)

        def zero_head_0(result, hook):
            result[:, :, 0] = 0.0
            return result

        edited = enc.run_with_hooks(tokens, fwd_hooks=[(last, zero_head_0)])
        removed = cache[last][:, enc.pool_index, 0]  # head 0's output at the pooled row
        if enc.cfg.normalization == "none" and enc.cfg.attn_only:  # the pooled row moves by exactly that term
            torch.testing.assert_close(edited, plain - removed, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(edited, plain)

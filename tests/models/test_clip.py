"""Specification of the CLIP pair: cosine similarity, logit scale, projection, initialisation and
the context managers for decomposition and temporary hooks."""

from __future__ import annotations

import math

import pytest
import torch

from circuits.config import RunConfig
from conftest import clip_for
from circuits.models import HookedCLIP


def test_similarity_is_the_cosine_of_image_and_projected_text_embeddings(rand_model, rand_world):
    world = rand_world
    images, captions = world["train_pair"].images[:7], world.captions
    with torch.no_grad():
        sim = rand_model.similarity(images, captions)
        img = rand_model.vision(images)
        txt = rand_model.text(captions) @ rand_model.text_projection
    assert sim.shape == (len(images), world.n_captions)
    want = torch.nn.functional.cosine_similarity(img[:, None, :], txt[None, :, :], dim=-1)
    torch.testing.assert_close(sim, want, rtol=1e-5, atol=1e-5)
    assert (sim.abs() <= 1 + 1e-5).all()


def test_text_is_projected_into_the_image_space(rand_model, rand_world, rand_run_cfg):
    vis, txt = rand_run_cfg.model.vision, rand_run_cfg.model.text
    assert rand_model.text_projection.shape == (txt.d_model, vis.d_model)
    with torch.no_grad():
        assert rand_model.encode_text(rand_world.captions[:3]).shape == (3, vis.d_model)
        assert rand_model.encode_image(rand_world["train_single"].images[:3]).shape == (3, vis.d_model)


def test_forward_gives_scaled_cosine_logits(rand_model, rand_world):
    world = rand_world
    images = world["train_single"].images[:5]
    with torch.no_grad():
        logits = rand_model(images, world.captions)
        torch.testing.assert_close(logits, rand_model.scale * rand_model.similarity(images, world.captions))
    assert float(rand_model.scale.detach()) == pytest.approx(1 / 0.07, rel=1e-5)  # exp(logit_scale_init)


def test_scale_is_capped_at_logit_scale_max():
    cfg = RunConfig().with_overrides(
        {"model.logit_scale_init": math.log(500.0), "model.logit_scale_max": 50.0, "model.vision.d_model": 8,
         "model.vision.d_head": 2, "model.text.d_model": 8, "model.text.d_head": 2}
    )
    model, world = clip_for(cfg)
    assert float(model.scale) == pytest.approx(50.0)
    assert float(model.logit_scale.exp()) == pytest.approx(500.0, rel=1e-5)
    low, _ = clip_for(cfg.with_overrides({"model.logit_scale_init": math.log(3.0)}))
    assert float(low.scale) == pytest.approx(3.0, rel=1e-6)


def test_initialisation_is_determined_by_train_seed_alone(rand_run_cfg):
    """Same train.seed (whatever the world's seed): same weights; another train.seed: others."""
    (a, _), (b, _) = clip_for(rand_run_cfg), clip_for(rand_run_cfg.with_overrides({"world.seed": rand_run_cfg.world.seed + 1}))
    other, _ = clip_for(rand_run_cfg.with_overrides({"train.seed": rand_run_cfg.train.seed + 100}))
    sa, sb, so = a.state_dict(), b.state_dict(), other.state_dict()
    assert sa.keys() == sb.keys() == so.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["vision.embed.W_E"], so["vision.embed.W_E"])
    assert not torch.equal(sa["text.embed.W_E"], so["text.embed.W_E"])


def test_vision_and_text_get_different_initial_weights():
    cfg = RunConfig().with_overrides({"model.text.mask": "bidirectional"})  # identical architectures on both sides
    model, world = clip_for(cfg)
    w_v, w_t = model.vision.blocks[0].attn.W_Q, model.text.blocks[0].attn.W_Q
    assert w_v.shape == w_t.shape and not torch.equal(w_v, w_t)


def test_the_pair_is_sized_by_its_task_not_built_from_it(rand_run_cfg, rand_world):
    model = HookedCLIP.for_task(rand_run_cfg, rand_world)
    assert (model.vision.d_vocab, model.vision.n_ctx) == (rand_world.d_vocab_vision, rand_world.n_ctx_vision)
    assert (model.text.d_vocab, model.text.n_ctx) == (rand_world.d_vocab_text, rand_world.n_ctx_text)
    assert not any(isinstance(v, type(rand_world)) for v in vars(model).values())


def test_decomposed_context_switches_both_encoders_and_restores_them(rand_model, rand_world):
    world = rand_world
    images = world["train_single"].images[:4]
    with torch.no_grad():
        ref = rand_model.similarity(images, world.captions)
        with rand_model.decomposed() as m:
            assert m is rand_model and rand_model.vision.decompose and rand_model.text.decompose
            _, cache = rand_model.vision.run_with_cache(images)
            dec = rand_model.similarity(images, world.captions)
        assert not rand_model.vision.decompose and not rand_model.text.decompose
    assert any("hook_score_" in name for name in cache.keys())
    torch.testing.assert_close(dec, ref, rtol=1e-5, atol=1e-5)


def test_hooks_context_applies_to_each_encoder_and_is_removed_afterwards(rand_model, rand_world):
    world = rand_world
    images = world["train_single"].images[:4]
    seen = []

    def record(side):
        def hook(x, hook):
            seen.append((side, hook.name))

        return hook

    zero = lambda x, hook: torch.zeros_like(x)  # noqa: E731
    with torch.no_grad():
        ref = rand_model.similarity(images, world.captions)
        with rand_model.hooks(vision=[("hook_embed", record("vision"))], text=[("hook_embed", record("text"))]):
            noop = rand_model.similarity(images, world.captions)
        with rand_model.hooks(text=[("blocks.0.attn.hook_pattern", zero)]):
            ablated = rand_model.similarity(images, world.captions)
        after = rand_model.similarity(images, world.captions)
    assert ("vision", "hook_embed") in seen and ("text", "hook_embed") in seen
    torch.testing.assert_close(noop, ref)
    assert not torch.allclose(ablated, ref)
    assert torch.equal(after, ref)
    for enc in rand_model.encoders.values():
        assert all(not hp._forward_hooks for hp in enc.hook_dict.values())


def test_hooks_are_removed_even_when_the_body_raises(rand_model):
    with pytest.raises(RuntimeError):
        with rand_model.hooks(vision=[("hook_embed", lambda x, hook: x)]):
            raise RuntimeError("boom")
    assert all(not hp._forward_hooks for hp in rand_model.vision.hook_dict.values())


def test_hooks_accept_a_name_filter(rand_model, rand_world, rand_run_cfg):
    calls = []
    with torch.no_grad(), rand_model.hooks(vision=[(lambda n: n.endswith("hook_pattern"), lambda x, hook: calls.append(hook.name))]):
        rand_model.encode_image(rand_world["train_single"].images[:2])
    assert sorted(calls) == [f"blocks.{l}.attn.hook_pattern" for l in range(rand_run_cfg.model.vision.n_layers)]

"""The prefix-LM toy VLM: mask, exact decomposition, norm matching, pooling, permutation."""

from __future__ import annotations

import itertools

import pytest
import torch

from circuits.config import DecoderConfig, RunConfig
from circuits.decompose import decompose
from circuits.errors import CircuitsError, ConfigError
from circuits.models import HookedEncoder, HookedPrefixLM, build_model
from circuits.models.vlm import average_pool, match_code_norm
from circuits.tasks import CaptionTask, build_task

SIZES = dict(d_vocab_vision=8, d_vocab_text=10, height=1, width=6, n_text=4)


def tiny(seed: int = 0, **fields) -> HookedPrefixLM:
    cfg = DecoderConfig(d_model=16, d_head=4, n_heads=2, d_mlp=24, **fields)
    return HookedPrefixLM(cfg, **{**SIZES, **fields.pop("sizes", {})}, seed=seed).eval()


def tokens(n: int = 5, seed: int = 0, width: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.randint(0, 8, (n, width), generator=g), torch.randint(0, 10, (n, 4), generator=g)], dim=1)


def final_resid(model: HookedPrefixLM, x: torch.Tensor) -> torch.Tensor:
    name = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    _, cache = model.run_with_cache(x, names_filter=[name])
    return cache[name]


def test_a_prefix_lm_is_a_hooked_encoder_with_a_prefix_mask_over_the_vision_tokens() -> None:
    model = tiny()
    assert isinstance(model, HookedEncoder)
    assert model.blocks[0].attn.mask.n_prefix == 6 and model.n_ctx == 10


def test_no_text_token_changes_the_output_of_a_vision_position() -> None:
    model = tiny(attn_only=False)
    x = tokens()
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 3) % 10  # every text token changed
    torch.testing.assert_close(final_resid(model, x)[:, :6], final_resid(model, y)[:, :6], rtol=0, atol=0)
    assert not torch.allclose(final_resid(model, x)[:, 6:], final_resid(model, y)[:, 6:])


@pytest.mark.parametrize("changed", [1, 2, 3])
def test_no_later_text_token_changes_the_output_of_an_earlier_text_position(changed: int) -> None:
    model = tiny(attn_only=False)
    x = tokens()
    y = x.clone()
    y[:, 6 + changed] = (y[:, 6 + changed] + 1) % 10
    a, b = final_resid(model, x), final_resid(model, y)
    torch.testing.assert_close(a[:, : 6 + changed], b[:, : 6 + changed], rtol=0, atol=0)
    assert not torch.allclose(a[:, 6 + changed], b[:, 6 + changed])


CONFIGS = [
    dict(positional=p, normalization=n, attn_only=a, n_layers=l)
    for p, n, a, l in itertools.product(["learned", "rotary"], ["none", "pre", "pre_rms"], [True, False], [1, 2])
]


@pytest.mark.parametrize("fields", CONFIGS, ids=lambda f: "-".join(str(v) for v in f.values()))
def test_decomposed_terms_sum_to_the_scores_and_the_decomposed_forward_is_exact(fields: dict) -> None:
    model = tiny(seed=3, vision_scale=7.0, **fields)
    x = tokens(seed=4)
    for layer in range(model.cfg.n_layers):
        dec = decompose(model, x, layer=layer)
        allowed = torch.isfinite(dec.scores)
        total = sum(dec.terms.values())
        torch.testing.assert_close(total[allowed], dec.scores[allowed], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(x, decompose=True), model(x), rtol=1e-5, atol=1e-5)


def test_the_decoder_terms_are_the_encoders_names() -> None:
    assert tiny().term_names(0) == ["EE", "EP", "EB", "PE", "PP", "PB", "BE", "BP", "BB"]
    assert "N" not in tiny(normalization="pre_rms").value_sources(0)  # RMSNorm has no bias source


def test_match_code_output_norms_follow_the_formula() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 16, generator=g) * torch.logspace(-2, 3, 5)[:, None]
    w = torch.rand(16, generator=g) * 0.3
    out = match_code_norm(x, w, max_norm=1.22, target_mean=0.83)
    rms = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
    torch.testing.assert_close(out.norm(dim=-1), rms.norm(dim=-1).clamp(max=1.22) * 0.83)


def test_match_code_sends_every_vision_token_near_max_times_mean_whatever_the_scale() -> None:
    model = tiny(vision_norm="match_code", vision_scale=100.0, norm_target_mean=0.83, norm_max=1.22)
    _, cache = model.run_with_cache(tokens(), names_filter=["vision.hook_out"])
    torch.testing.assert_close(cache["vision.hook_out"].norm(dim=-1), torch.full((5, 6), 1.22 * 0.83))


def test_match_mean_sends_every_vision_token_to_the_measured_text_mean() -> None:
    model = tiny(vision_norm="match_mean", vision_scale=100.0)
    _, cache = model.run_with_cache(tokens(), names_filter=["vision.hook_out"])
    mean = model.embed.W_E.norm(dim=-1).mean()
    torch.testing.assert_close(cache["vision.hook_out"].norm(dim=-1), mean.expand(5, 6))


def test_average_pool_takes_the_mean_of_equal_bins_in_1d_and_2d() -> None:
    x = torch.arange(16.0).reshape(1, 16, 1)
    assert average_pool(x, 1, 16, 4).flatten().tolist() == [1.5, 5.5, 9.5, 13.5]
    # 4x4 grid, row-major -> 2x2 bins: top-left bin holds pixels 0, 1, 4, 5
    assert average_pool(x, 4, 4, 4).flatten().tolist() == [2.5, 4.5, 10.5, 12.5]


def test_pooling_to_one_token_makes_a_pair_and_its_mirror_indistinguishable() -> None:
    model = tiny(pool_tokens=1)
    x = torch.tensor([[0, 3, 0, 0, 5, 0, 9, 1, 2, 4]])
    mirrored = torch.tensor([[0, 5, 0, 0, 3, 0, 9, 1, 2, 4]])
    torch.testing.assert_close(model(x), model(mirrored), rtol=0, atol=1e-6)
    assert model.n_vision == 1 and model(x).shape == (1, 4, 10)


def test_without_positions_any_permutation_of_the_vision_tokens_leaves_the_text_outputs_unchanged() -> None:
    model = tiny(positional="none")
    x = tokens()
    perm = torch.tensor([5, 2, 0, 4, 1, 3])
    y = torch.cat([x[:, :6][:, perm], x[:, 6:]], dim=1)
    torch.testing.assert_close(model(x), model(y), rtol=1e-5, atol=1e-6)


def test_the_vision_table_is_frozen_and_the_projector_trains() -> None:
    model = tiny()
    assert not model.vision.W_vis.requires_grad
    assert model.vision.projector.W_in.requires_grad


def test_no_pooled_path_and_bad_lengths_raise() -> None:
    model = tiny()
    with pytest.raises(CircuitsError, match="no pooled fast path"):
        model(tokens(), pooled_only=True)
    with pytest.raises(CircuitsError, match="expected tokens"):
        model(tokens()[:, :6])


def test_generation_reproduces_its_own_teacher_forced_argmax() -> None:
    model = tiny(seed=1)
    x = tokens(n=20, seed=2)
    generated = model.generate(x[:, :6], bos=9)
    forced = torch.cat([x[:, :6], torch.full((20, 1), 9), generated[:, :3]], dim=1)
    assert torch.equal(model(forced).argmax(-1), generated)


def test_pool_sizes_that_do_not_divide_the_grid_are_rejected() -> None:
    with pytest.raises(ConfigError, match="pool_tokens must be a divisor of world.width=10"):
        RunConfig().with_overrides(["model.kind=prefix_lm", "model.decoder.pool_tokens=3"])
    with pytest.raises(ConfigError, match="square"):
        RunConfig().with_overrides(["model.kind=prefix_lm", "world.height=4", "world.width=4", "model.decoder.pool_tokens=2"])


def test_build_model_dispatches_on_kind() -> None:
    cfg = RunConfig().with_overrides({"model.kind": "prefix_lm", "world.width": 6, "world.n_labels": 6,
                                      "world.n_pair_labels": 4, "world.n_pair_positions": 3})
    task = build_task(cfg)
    assert isinstance(task, CaptionTask)
    model = build_model(cfg, task)
    assert isinstance(model, HookedPrefixLM) and model.n_vision == 6 and model.W_U.shape[1] == task.world.d_vocab_text + 1

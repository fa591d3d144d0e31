"""Vision sources of the prefix-LM ([B] B0, B6): frozen CLIP tokens, multilayer features, the
exact decomposition with them, and the checks that refuse an encoder that cannot read the task."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch
from conftest import RANDOM_RUNS, clip_for, run_id

from circuits.config import DecoderConfig, EncoderConfig, RunConfig
from circuits.decompose import decompose
from circuits.errors import CircuitsError, ConfigError
from circuits.models import HookedPrefixLM, HookedVisionEncoder, VisionEncoderSource, build_model
from circuits.models.vision_source import clip_features

SIZES = dict(d_vocab_vision=8, d_vocab_text=10, height=1, width=6, n_text=4)
CLS = 7


def clip_encoder(seed: int = 5, **fields) -> HookedVisionEncoder:
    """A random CLIP-like vision encoder over [CLS] + 6 pixels, values 0..7 (7 = [CLS])."""
    cfg = EncoderConfig(**{"n_layers": 2, "n_heads": 2, "d_model": 12, "d_head": 4, "d_mlp": 20, **fields})
    return HookedVisionEncoder(cfg, d_vocab=8, n_ctx=7, generator=torch.Generator().manual_seed(seed)).eval()


def source(**fields) -> VisionEncoderSource:
    return VisionEncoderSource(clip_encoder(**fields), CLS, "test-clip")


def vlm(source_kind: str = "clip_tokens", enc: VisionEncoderSource | None = None, seed: int = 0, **fields) -> HookedPrefixLM:
    cfg = DecoderConfig(d_model=16, d_head=4, n_heads=2, d_mlp=24, vision_source=source_kind, **fields)
    return HookedPrefixLM(cfg, **SIZES, seed=seed, vision=enc if enc is not None else source()).eval()


def tokens(n: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.randint(0, 7, (n, 6), generator=g), torch.randint(0, 10, (n, 4), generator=g)], dim=1)


def encoder_residuals(enc: HookedVisionEncoder, pixels: torch.Tensor) -> list[torch.Tensor]:
    """The encoder's own run: final-norm of each layer's hook_resid_post, [CLS] dropped."""
    x = torch.cat([torch.full((len(pixels), 1), CLS), pixels], dim=1)
    names = [f"blocks.{l}.hook_resid_post" for l in range(enc.cfg.n_layers)]
    _, cache = enc.run_with_cache(x, names_filter=names)
    return [enc.ln_final(cache[n])[:, 1:] for n in names]


@pytest.mark.parametrize("norm", ["none", "pre"])
def test_clip_tokens_are_the_encoders_final_per_pixel_stream(norm: str) -> None:
    src = source(normalization=norm, attn_only=False)
    model = vlm(enc=src)
    pixels = tokens()[:, :6]
    _, cache = model.run_with_cache(tokens(), names_filter=["vision.hook_vision_features"])
    expected = encoder_residuals(src.encoder, pixels)[-1]
    torch.testing.assert_close(cache["vision.hook_vision_features"], expected)
    # and the encoder's ordinary forward agrees (its stream, [CLS] at 0)
    image = torch.cat([torch.full((5, 1), CLS), pixels], 1)
    full = src.encoder.stream({"E": src.encoder.embed(image), "P": src.encoder.pos_embed(image)})
    torch.testing.assert_close(expected, full[:, 1:])


def test_multilayer_features_concatenate_the_chosen_layers_in_order() -> None:
    src = source(n_layers=3, normalization="pre")
    model = vlm("clip_multilayer", src, vision_layers=[3, 1])
    assert model.vision.d_features == 2 * 12 and model.vision.projector.W_in.shape == (24, 16)
    pixels = tokens()[:, :6]
    per_layer = encoder_residuals(src.encoder, pixels)
    torch.testing.assert_close(clip_features(model.vision.encoder, pixels, CLS, [3, 1]),
                               torch.cat([per_layer[2], per_layer[0]], dim=-1))
    assert vlm("clip_multilayer", source(n_layers=3)).vision.d_features == 3 * 12  # default: every layer


def assert_exact(model: HookedPrefixLM, x: torch.Tensor) -> None:
    """Every layer's terms sum to its scores, and the decomposed forward equals the plain one."""
    for layer in range(model.cfg.n_layers):
        dec = decompose(model, x, layer=layer)
        allowed = torch.isfinite(dec.scores)
        torch.testing.assert_close(sum(dec.terms.values())[allowed], dec.scores[allowed], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(x, decompose=True), model(x), rtol=1e-5, atol=1e-5)


def test_the_decomposition_stays_exact_with_multilayer_clip_tokens_and_rmsnorm() -> None:
    model = vlm("clip_multilayer", source(normalization="pre", attn_only=False, seed=9), seed=3, vision_scale=7.0,
                positional="rotary", normalization="pre_rms", attn_only=False)
    assert_exact(model, tokens(seed=4))


@pytest.mark.parametrize("run_cfg", RANDOM_RUNS[:4], ids=[run_id(r) for r in RANDOM_RUNS[:4]])
def test_the_decomposition_stays_exact_with_clip_tokens_on_random_configs(run_cfg) -> None:
    """The random CLIP's vision encoder (1 or 2 layers) is the source; the decoder takes the
    random text encoder's architecture (layers, heads, widths, learned / rotary / no positions,
    LayerNorm or none, MLP, biases); the first four random runs cover each of these."""
    rand_model, rand_world = clip_for(run_cfg)
    w = rand_world.cfg
    text = run_cfg.model.text
    kind = ("clip_tokens", "clip_multilayer")[run_cfg.train.seed % 2]
    cfg = DecoderConfig(**{f.name: getattr(text, f.name) for f in fields(EncoderConfig)}, vision_source=kind)
    src = VisionEncoderSource(rand_model.vision, rand_world.vocab.cls, "random")
    model = HookedPrefixLM(cfg, d_vocab_vision=rand_world.d_vocab_vision, d_vocab_text=rand_world.d_vocab_text + 1,
                           height=w.height, width=w.width, n_text=4, seed=run_cfg.train.seed, vision=src).eval()
    g = torch.Generator().manual_seed(run_cfg.train.seed)
    pixels = torch.randint(0, rand_world.d_vocab_vision - 1, (4, w.n_pixels), generator=g)  # no [CLS] among pixels
    text_tokens = torch.randint(0, rand_world.d_vocab_text + 1, (4, 4), generator=g)
    assert_exact(model, torch.cat([pixels, text_tokens], dim=1))


def test_the_clip_encoder_is_frozen_and_stays_in_eval_mode() -> None:
    model = vlm(enc=source(dropout=0.5))
    assert not any(p.requires_grad for p in model.vision.encoder.parameters())
    assert model.vision.projector.W_in.requires_grad
    model.train()
    assert model.training and not model.vision.encoder.training
    x = tokens()
    _, a = model.run_with_cache(x, names_filter=["vision.hook_vision_features"])
    _, b = model.run_with_cache(x, names_filter=["vision.hook_vision_features"])
    assert torch.equal(a["vision.hook_vision_features"], b["vision.hook_vision_features"])  # no dropout


def test_the_source_encoder_is_copied_not_shared() -> None:
    src = source()
    model = vlm(enc=src)
    with torch.no_grad():
        src.encoder.embed.W_E.add_(1.0)
    assert not torch.equal(model.vision.encoder.embed.W_E, src.encoder.embed.W_E)


@pytest.mark.parametrize("kind", ["frozen_random", "clip_tokens"])
def test_an_edit_of_the_vision_features_takes_effect_and_reading_them_changes_nothing(kind: str) -> None:
    model = vlm() if kind == "clip_tokens" else HookedPrefixLM(DecoderConfig(d_model=16, d_head=4, n_heads=2), **SIZES).eval()
    x = tokens()
    plain = model(x)
    with model.hooks(fwd_hooks=[("vision.hook_vision_features", lambda t, hook: t)]):
        torch.testing.assert_close(model(x), plain, rtol=1e-5, atol=1e-6)  # the per-pixel path = the table path
    zero = [("vision.hook_vision_features", lambda t, hook: torch.zeros_like(t))]
    with model.hooks(fwd_hooks=zero):
        _, cache = model.run_with_cache(x, names_filter=["vision.hook_projected"])
        assert not torch.allclose(model(x), plain)
    projected = cache["vision.hook_projected"]  # every pixel now projects the zero vector
    torch.testing.assert_close(projected, projected[:1, :1].expand_as(projected))


def test_hooks_on_the_frozen_encoders_score_terms_are_refused() -> None:
    model = vlm()
    for decompose_ in (False, True):
        with model.hooks(fwd_hooks=[("vision.encoder.blocks.0.attn.hook_score_EP", lambda t, hook: t * 0)]):
            with pytest.raises(CircuitsError, match="frozen CLIP vision encoder"):
                model(tokens(), decompose=decompose_)


def test_an_encoder_that_cannot_read_the_task_is_refused_in_one_line() -> None:
    wide = VisionEncoderSource(HookedVisionEncoder(EncoderConfig(d_model=12, d_head=4, n_heads=2), 8, 11), CLS, "wide")
    with pytest.raises(ConfigError, match="reads images of 10 pixels, but this task's images have 6") as e:
        vlm(enc=wide)
    assert "\n" not in str(e.value)
    other = VisionEncoderSource(HookedVisionEncoder(EncoderConfig(d_model=12, d_head=4, n_heads=2), 12, 7), 11, "other")
    with pytest.raises(ConfigError, match="reads 12 vision token values"):
        vlm(enc=other)
    with pytest.raises(ConfigError, match="vision_layers has layer 3, but the vision encoder has layers 1..2"):
        vlm("clip_multilayer", vision_layers=[1, 3])


def test_a_clip_source_without_an_encoder_and_a_table_with_one_are_refused() -> None:
    with pytest.raises(ConfigError, match="needs the frozen vision encoder"):
        HookedPrefixLM(DecoderConfig(d_model=16, d_head=4, vision_source="clip_tokens"), **SIZES)
    with pytest.raises(ConfigError, match="frozen_random"):
        HookedPrefixLM(DecoderConfig(d_model=16, d_head=4), **SIZES, vision=source())


BASE = {"model.kind": "prefix_lm"}


@pytest.mark.parametrize("overrides, message", [
    ({"model.decoder.vision_source": "clip_tokens"}, "needs model.decoder.vision_checkpoint"),
    ({"model.decoder.vision_source": "clip_multilayer"}, "needs model.decoder.vision_checkpoint"),
    ({"model.decoder.vision_checkpoint": "runs/clip"}, "only read by vision_source='clip_tokens'"),
    ({"model.decoder.vision_source": "clip_tokens", "model.decoder.vision_checkpoint": "c", "model.decoder.vision_layers": [1]},
     "vision_layers is only read by vision_source='clip_multilayer'"),
    ({"model.decoder.vision_source": "clip_multilayer", "model.decoder.vision_checkpoint": "c", "model.decoder.vision_layers": [0]},
     "distinct 1-based"),
    ({"model.decoder.vision_source": "clip_multilayer", "model.decoder.vision_checkpoint": "c", "model.decoder.vision_layers": [1, 1]},
     "distinct 1-based"),
    ({"model.decoder.vision_source": "clip_multilayer", "model.decoder.vision_checkpoint": "c", "model.decoder.vision_layers": "x"},
     "must be a list"),
    ({"model.decoder.norm_max": 1.2}, "only read by norm matching"),
    ({"model.decoder.vision_norm": "match_mean", "model.decoder.norm_max": 1.2}, "only read by vision_norm='match_code'"),
    ({"model.kind": "clip", "model.decoder.vision_norm": "match_code"}, "a CLIP .model.kind='clip'. has none to measure"),
    ({"model.kind": "clip", "model.decoder.vision_scale": 10}, "only applies to model.kind='prefix_lm'"),
    ({"task": "toy2ds", "model.decoder.caption_order": "relation_first"}, "applies to the captioning task"),
    ({"model.decoder.caption_order": "object_first"}, "caption_order must be one of 'subject_first', 'relation_first'"),
])
def test_vision_source_settings_that_cannot_take_effect_are_config_errors(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        RunConfig().with_overrides({**BASE, **overrides})
    assert "\n" not in str(e.value)


def test_vision_layers_parse_from_an_override_string() -> None:
    cfg = RunConfig().with_overrides(["model.kind=prefix_lm", "model.decoder.vision_source=clip_multilayer",
                                      "model.decoder.vision_checkpoint=runs/clip", "model.decoder.vision_layers=[2, 1]"])
    assert cfg.model.decoder.vision_layers == [2, 1]
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_build_model_refuses_an_encoder_for_a_clip() -> None:
    cfg = RunConfig().with_overrides({"world.width": 6, "world.n_labels": 6, "world.n_pair_labels": 4, "world.n_pair_positions": 3})
    from circuits.data import World

    with pytest.raises(ConfigError, match="only applies to model.kind='prefix_lm'"):
        build_model(cfg, World(cfg.world), source())

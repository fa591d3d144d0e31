"""Where the prefix-LM's vision tokens come from, before the projector ([B] B0, B6; spec B0, B6).

* ``frozen_random`` ([L] App. O): a frozen random table ``W_vis`` of one row per pixel value,
  no positions.
* ``clip_tokens``: the per-pixel final residual stream of a trained toolkit CLIP vision
  encoder, after its final LayerNorm if it has one, [CLS] dropped; it carries that encoder's
  learned positions (`clip_features`).
* ``clip_multilayer`` ([B] Sec. 5.2, code: layers 12/16/20/24 of 24, each through
  ``post_layernorm``, CLS removed, concatenated on the feature axis): the same after each of
  ``vision_layers`` (1-based), concatenated, so the projector reads ``n * d_model`` features.

The CLIP encoder is frozen (``requires_grad=False``, always in eval mode) and is a submodule, so
its weights are saved in the prefix-LM's own ``model.safetensors``; `VisionEncoderSource`
carries what is needed to rebuild it (its config and sizes; `circuits.checkpoint` writes them to
``vision_encoder.json``). Hooks: ``vision.hook_vision_features`` [batch, pixels, d_features]
(what enters the projector, per pixel, for every source) and, for CLIP sources, every hook of the
encoder under ``vision.encoder.`` (plain forward only: it is never decomposed).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuits.config import DecoderConfig
from circuits.errors import CircuitsError, ConfigError
from circuits.models.encoder import HookedEncoder

CLIP_SOURCES = ("clip_tokens", "clip_multilayer")


@dataclass
class VisionEncoderSource:
    """A trained CLIP vision encoder to read vision tokens from, and how to rebuild it.

    ``cls_token``: the encoder's [CLS] id (prepended to the pixels); ``source``: the checkpoint
    directory it came from (absolute; informational once copied); ``clip_config``: that
    checkpoint's `RunConfig` as a dict (its ``model.vision`` section rebuilds the encoder)."""

    encoder: HookedEncoder
    cls_token: int
    source: str = ""
    clip_config: dict[str, Any] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        """JSON-serialisable description (everything but the weights)."""
        return {"source": self.source, "cls_token": self.cls_token, "d_vocab": self.encoder.d_vocab,
                "n_ctx": self.encoder.n_ctx, "n_layers": self.encoder.cfg.n_layers, "d_model": self.encoder.cfg.d_model,
                "clip_config": self.clip_config}


def check_encoder(source: VisionEncoderSource, d_vocab_vision: int, n_pixels: int) -> None:
    """One-line `ConfigError` unless the encoder reads this task's images (same pixel values, same pixel count)."""
    enc = source.encoder
    where = f"the vision encoder of {source.source or 'model.decoder.vision_checkpoint'}"
    if enc.d_vocab != d_vocab_vision:
        raise ConfigError(f"{where} reads {enc.d_vocab} vision token values ([CLS] included), but this task's images"
                          f" have {d_vocab_vision}: train the CLIP on a world with the same labels")
    if enc.n_ctx - 1 != n_pixels:
        raise ConfigError(f"{where} reads images of {enc.n_ctx - 1} pixels, but this task's images have {n_pixels}:"
                          " train the CLIP on a world of the same size")


def feature_layers(cfg: DecoderConfig, n_layers: int) -> list[int]:
    """1-based encoder layers whose residual is read: the last (clip_tokens), or ``vision_layers`` (default all)."""
    if cfg.vision_source == "clip_tokens":
        return [n_layers]
    layers = list(cfg.vision_layers) if cfg.vision_layers is not None else list(range(1, n_layers + 1))
    bad = [layer for layer in layers if not 1 <= layer <= n_layers]
    if bad:
        raise ConfigError(f"model.decoder.vision_layers has layer {bad[0]}, but the vision encoder has layers 1..{n_layers}")
    return layers


def frozen_copy(encoder: HookedEncoder) -> HookedEncoder:
    """A copy of ``encoder`` with every parameter frozen, in eval mode."""
    enc = copy.deepcopy(encoder)
    for p in enc.parameters():
        p.requires_grad_(False)
    return enc.eval()


def clip_features(
    encoder: HookedEncoder, pixels: Int[Tensor, "batch pixels"], cls_token: int, layers: list[int]
) -> Float[Tensor, "batch pixels n_layers_x_d"]:
    """The per-pixel residual of ``encoder`` after each of ``layers`` (1-based), each through the
    final norm (identity without one), [CLS] dropped, concatenated on the feature axis ([B] B6)."""
    hooked = [n for n, hp in encoder.hook_dict.items() if hp.fwd_hooks and n in encoder._decomposed_only]
    if hooked:
        raise CircuitsError(f"hook vision.encoder.{hooked[0]} cannot fire: the frozen CLIP vision encoder of a"
                            " prefix-LM always runs its plain forward (no score terms)")
    tokens = torch.cat([torch.full_like(pixels[:, :1], cls_token), pixels], dim=1)
    resid = encoder.hook_embed(encoder.embed(tokens))
    if encoder.pos_embed is not None:
        resid = resid + encoder.hook_pos_embed(encoder.pos_embed(tokens))
    kept = []
    for layer, block in enumerate(encoder.blocks, start=1):
        resid = block(resid)
        if layer in layers:
            kept.append(resid)
    kept = [kept[sorted(layers).index(layer)] for layer in layers]  # in the order of ``layers``
    # every kept layer through the final norm in one call (per token, so exact), [CLS] dropped
    normed = encoder.ln_final(einops.rearrange(torch.stack(kept), "n b p d -> (n b) p d"))
    return einops.rearrange(normed[:, 1:], "(n b) p d -> b p (n d)", n=len(kept))

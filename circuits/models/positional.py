"""Positional-embedding variants as small swappable parts.

* ``learned``: a `PosEmbed` added to the residual stream (the source **P** of the decomposition);
* ``rotary``: a `Rotary` applied to queries and keys in every attention layer (no **P** source;
  each decomposed term is rotated, so position enters through the rotation, App. J);
* ``none``: neither.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from circuits.config import EncoderConfig
from circuits.models.components import PosEmbed


class Rotary(nn.Module):
    """Rotary embedding (Su et al. 2024), GPT-NeoX layout: dimension i pairs with i + d_head/2."""

    def __init__(self, d_head: int, n_ctx: int, base: float):
        super().__init__()
        half = d_head // 2
        freq = base ** (-torch.arange(half, dtype=torch.float64) / half)
        angle = torch.arange(n_ctx, dtype=torch.float64)[:, None] * freq[None, :]
        angle = torch.cat([angle, angle], dim=-1)
        self.register_buffer("cos", angle.cos().float(), persistent=False)  # [n_ctx, d_head]
        self.register_buffer("sin", angle.sin().float(), persistent=False)

    def forward(
        self, x: Float[Tensor, "batch pos head d_head"], positions: Int[Tensor, " pos"]
    ) -> Float[Tensor, "batch pos head d_head"]:
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        cos, sin = self.cos[positions][:, None, :], self.sin[positions][:, None, :]
        return x * cos + rotated * sin


def make_pos_embed(cfg: EncoderConfig, n_ctx: int) -> PosEmbed | None:
    """The residual-stream positional embedding of this variant, if it has one."""
    return PosEmbed(n_ctx, cfg.d_model) if cfg.positional == "learned" else None


def make_rotary(cfg: EncoderConfig, n_ctx: int) -> Rotary | None:
    """The query/key rotation of this variant, if it has one."""
    return Rotary(cfg.d_head, n_ctx, cfg.rotary_base) if cfg.positional == "rotary" else None

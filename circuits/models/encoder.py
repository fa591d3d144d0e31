"""Hooked Transformer encoders: the vision encoder (bidirectional, pools [CLS]) and the text
encoder (causal, pools [EOT]), both `transformer_lens.HookedRootModule`s.

Hook names follow TransformerLens: ``hook_embed``, ``hook_pos_embed``,
``blocks.{l}.hook_resid_pre``, ``blocks.{l}.attn.hook_q`` ... ``hook_result``,
``blocks.{l}.hook_attn_out``, ``hook_resid_mid``, ``blocks.{l}.mlp.hook_pre|post``,
``hook_mlp_out``, ``hook_resid_post``, ``blocks.{l}.ln1.hook_scale`` ..., ``ln_final.*``, and
``hook_pooled`` [batch, d_model] for the pooled representation.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens import ActivationCache, HookedRootModule
from transformer_lens.hook_points import HookPoint

from circuits.config import EncoderConfig
from circuits.models.attention import Attention
from circuits.models.masks import AttentionMask, make_mask
from circuits.models.components import MLP, Embed, LayerNorm, Sources, fan_in_std, init_normal_
from circuits.models.positional import make_pos_embed
from circuits.models.terms import E, H, N, P


class NoNorm(nn.Module):
    """Stands in for LayerNorm in models without normalization."""

    def forward(self, x: Tensor) -> Tensor:
        return x

    def decompose(self, sources: Sources) -> Sources:
        return sources


class TransformerBlock(nn.Module):
    def __init__(
        self, cfg: EncoderConfig, n_ctx: int, layer: int, stream_sources: list[str], mask: AttentionMask | None = None
    ):
        super().__init__()
        pre_ln = cfg.normalization == "pre"
        self.ln1 = LayerNorm(cfg.d_model) if pre_ln else NoNorm()
        self.attn = Attention(cfg, n_ctx, [*stream_sources, *([N] if pre_ln else [])], mask)
        self.mlp = None if cfg.attn_only else MLP(cfg.d_model, cfg.d_mlp)
        self.ln2 = LayerNorm(cfg.d_model) if pre_ln and self.mlp is not None else NoNorm()
        self.dropout = nn.Dropout(cfg.dropout)
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        if self.mlp is not None:
            self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
            self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]

    def forward(self, resid: Float[Tensor, "batch pos d_model"], query_index: int | None = None) -> Tensor:
        """With ``query_index`` only that row leaves the block (pooled-only last layer)."""
        resid = self.hook_resid_pre(resid)
        if query_index is None:
            attn_out = self.hook_attn_out(self.dropout(self.attn(self.ln1(resid))))
        else:
            attn_out = self.dropout(self.attn.forward_pooled(self.ln1(resid), query_index))
            resid = resid[:, [query_index]]
        resid = resid + attn_out
        if self.mlp is not None:
            resid = self.hook_resid_mid(resid)
            resid = resid + self.hook_mlp_out(self.dropout(self.mlp(self.ln2(resid))))
        return self.hook_resid_post(resid)

    def forward_pooled_table(
        self, table: Float[Tensor, "vocab pos d_model"], tokens: Int[Tensor, "batch pos"], query_index: int
    ) -> Float[Tensor, "batch d_model"]:
        """As the first block, pooled row only, from the (token, position) input table."""
        attn_out = self.dropout(self.attn.forward_pooled_table(self.ln1(table), tokens, query_index))
        qi = query_index % tokens.shape[1]
        resid = table[:, qi].index_select(0, tokens[:, qi]) + attn_out
        if self.mlp is not None:
            resid = resid + self.dropout(self.mlp(self.ln2(resid)))
        return resid

    def forward_decomposed(self, sources: Sources) -> Sources:
        """The block on ``sum(sources)``; what it writes is added to source ``"H"``."""
        self.hook_resid_pre(sum(sources.values()))
        written = self.hook_attn_out(self.dropout(self.attn.forward_decomposed(self.ln1.decompose(sources))))
        sources = {**sources, H: sources[H] + written if H in sources else written}
        if self.mlp is not None:
            resid_mid = self.hook_resid_mid(sum(sources.values()))
            sources[H] = sources[H] + self.hook_mlp_out(self.dropout(self.mlp(self.ln2(resid_mid))))
        self.hook_resid_post(sum(sources.values()))
        return sources


class HookedEncoder(HookedRootModule):
    """A Transformer encoder whose representation is the output at ``pool_index``.

    ``forward(tokens)`` returns the pooled representation [batch, d_model]. Pass
    ``decompose=True`` (or use `decomposed()`) to run the analysis path that exposes every
    attention-score term and value source as a hook (see `circuits.models.attention`).
    ``mask`` overrides the attention mask ``cfg.mask`` names (any `AttentionMask`).
    """

    pool_index: int = 0

    def __init__(
        self,
        cfg: EncoderConfig,
        d_vocab: int,
        n_ctx: int,
        generator: torch.Generator | None = None,
        mask: AttentionMask | None = None,
    ):
        super().__init__()
        self.cfg, self.d_vocab, self.n_ctx = cfg, d_vocab, n_ctx
        self.mask = mask if mask is not None else make_mask(cfg.mask)
        self.decompose = False
        self.embed = Embed(d_vocab, cfg.d_model)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.pos_embed = make_pos_embed(cfg, n_ctx)
        if self.pos_embed is not None:
            self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg, n_ctx, layer, self.stream_sources(layer), self.mask) for layer in range(cfg.n_layers)
        )
        self.ln_final = LayerNorm(cfg.d_model) if cfg.normalization == "pre" else NoNorm()
        self.hook_pooled = HookPoint()  # [batch, d_model]
        self.init_weights(generator if generator is not None else torch.Generator().manual_seed(0))
        self.setup()

    def stream_sources(self, layer: int) -> list[str]:
        """Named parts of the residual stream entering ``layer``: E, P (learned positions), H (layer > 0)."""
        return [E, *([P] if self.pos_embed is not None else []), *([H] if layer > 0 else [])]

    def init_weights(self, generator: torch.Generator) -> None:
        cfg = self.cfg
        init_normal_(self.embed.W_E, cfg.init_embed_std, generator)
        if self.pos_embed is not None:
            init_normal_(self.pos_embed.W_pos, cfg.init_pos_std, generator)
        for block in self.blocks:
            for W in (block.attn.W_Q, block.attn.W_K, block.attn.W_V):
                init_normal_(W, fan_in_std(cfg.d_model, cfg.init_weight_std), generator)
            init_normal_(block.attn.W_O, fan_in_std(cfg.n_heads * cfg.d_head, cfg.init_weight_std), generator)
            if block.mlp is not None:
                init_normal_(block.mlp.W_in, fan_in_std(cfg.d_model, cfg.init_weight_std), generator)
                init_normal_(block.mlp.W_out, fan_in_std(cfg.d_mlp, cfg.init_weight_std), generator)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        tokens: Int[Tensor, "batch pos"],
        *,
        decompose: bool | None = None,
        pooled_only: bool = False,
    ) -> Float[Tensor, "batch d_model"]:
        """Pooled representation. ``pooled_only`` computes only the pooled row in the last layer
        (exact; used for training); ``decompose`` runs the term-by-term analysis path."""
        if tokens.ndim != 2 or tokens.shape[1] > self.n_ctx:
            raise ValueError(f"expected tokens of shape [batch, pos<= {self.n_ctx}], got {tuple(tokens.shape)}")
        if pooled_only and len(self.blocks) == 1 and not (self.decompose if decompose is None else decompose):
            return self.hook_pooled(self.ln_final(self.blocks[0].forward_pooled_table(self._input_table(tokens.shape[1]), tokens, self.pool_index)))
        sources = {E: self.hook_embed(self.embed(tokens))}
        if self.pos_embed is not None:
            sources[P] = self.hook_pos_embed(self.pos_embed(tokens))
        if self.decompose if decompose is None else decompose:
            for block in self.blocks:
                sources = block.forward_decomposed(sources)
            resid = self.ln_final(sum(sources.values()))
            return self.hook_pooled(resid[:, self.pool_index])
        resid = sum(sources.values())
        for layer, block in enumerate(self.blocks):
            last = layer == len(self.blocks) - 1
            resid = block(resid, self.pool_index if pooled_only and last else None)
        resid = self.ln_final(resid)
        return self.hook_pooled(resid[:, 0] if pooled_only else resid[:, self.pool_index])

    def _input_table(self, n: int) -> Float[Tensor, "vocab pos d_model"]:
        """Residual stream entering layer 0 for every (token, position) pair."""
        table = self.embed.W_E[:, None, :]
        if self.pos_embed is not None:
            return table + self.pos_embed.W_pos[None, :n]
        return table.expand(-1, n, -1)

    @contextmanager
    def decomposed(self) -> Iterator[HookedEncoder]:
        """Within this block every forward exposes the score terms and value sources."""
        previous, self.decompose = self.decompose, True
        try:
            yield self
        finally:
            self.decompose = previous

    def run_with_cache(self, *args, **kwargs) -> tuple[Tensor, ActivationCache]:  # type: ignore[override]
        """As in TransformerLens, but the cache is an `ActivationCache` (``cache["pattern", 0]`` works)."""
        out, cache = super().run_with_cache(*args, **kwargs)
        return out, ActivationCache(cache, self, has_batch_dim=not kwargs.get("remove_batch_dim", False))

    def term_names(self, layer: int) -> list[str]:
        return self.blocks[layer].attn.term_names

    def value_sources(self, layer: int) -> list[str]:
        return list(self.blocks[layer].attn.sources)


class HookedVisionEncoder(HookedEncoder):
    """Bidirectional encoder over [CLS] + pixels; the representation is the [CLS] output."""

    pool_index = 0


class HookedTextEncoder(HookedEncoder):
    """Causal encoder over caption tokens; the representation is the final [EOT] output."""

    pool_index = -1

"""Hooked Transformer encoders: the vision encoder (bidirectional, pools [CLS]) and the text
encoder (causal, pools [EOT]), both `transformer_lens.HookedRootModule`s.

Hook names follow TransformerLens: ``hook_embed``, ``hook_pos_embed``,
``blocks.{l}.hook_resid_pre``, ``blocks.{l}.attn.hook_q`` ... ``hook_result``,
``blocks.{l}.hook_attn_out``, ``hook_resid_mid``, ``blocks.{l}.mlp.hook_pre|post``,
``hook_mlp_out``, ``hook_resid_post``, ``blocks.{l}.ln1.hook_scale`` ..., ``ln_final.*``, and
``hook_pooled`` [batch, d_model] for the pooled representation.

No silent no-ops (checked once per forward, from the hook points' forward-hook lists): a hook on
``hook_score_*`` / ``hook_v_{S}`` outside decomposed mode, or any hook on the pooled fast path,
raises `CircuitsError` (caching hooks on term hooks are allowed in plain mode: the cache just
lacks them). In decomposed mode, edits of ``hook_resid_pre`` (layer > 0) / ``hook_resid_mid`` /
``hook_resid_post`` are carried into source H exactly (`carry_edit`); edits of hooks that path
does not use (``blocks.0.hook_resid_pre``, ``hook_q``/``hook_k``/``hook_rot_*``,
``ln*.hook_normalized``) raise.

TransformerLens surface: stacked weights (``W_Q`` [layer, head, d_model, d_head], ``QK``, ``OV``
...), `accumulated_bias`, and TL config names on `EncoderConfig`, so `ActivationCache` helpers
(``accumulated_resid``, ``decompose_resid``, ``get_full_resid_decomposition`` ...) work.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens import ActivationCache, FactoredMatrix, HookedRootModule
from transformer_lens.hook_points import HookPoint

from circuits.config import EncoderConfig
from circuits.errors import CircuitsError
from circuits.models.attention import Attention
from circuits.models.masks import AttentionMask, make_mask
from circuits.models.components import MLP, Embed, LayerNorm, RMSNorm, Sources, fan_in_std, init_normal_
from circuits.models.positional import make_pos_embed
from circuits.models.terms import E, H, N, P


class NoNorm(nn.Module):
    """Stands in for LayerNorm in models without normalization."""

    def forward(self, x: Tensor) -> Tensor:
        return x

    def decompose(self, sources: Sources) -> Sources:
        return sources


def make_norm(cfg: EncoderConfig) -> nn.Module:
    """The pre-norm of ``cfg.normalization``: LayerNorm ("pre"), RMSNorm ("pre_rms") or none."""
    if cfg.normalization == "pre":
        return LayerNorm(cfg.d_model)
    if cfg.normalization == "pre_rms":
        return RMSNorm(cfg.d_model)
    return NoNorm()


def norm_sources(cfg: EncoderConfig) -> list[str]:
    """Sources a pre-norm adds to the attention input: N (the LayerNorm bias) for "pre"."""
    return [N] if cfg.normalization == "pre" else []


class TransformerBlock(nn.Module):
    def __init__(
        self, cfg: EncoderConfig, n_ctx: int, layer: int, stream_sources: list[str], mask: AttentionMask | None = None
    ):
        super().__init__()
        self.ln1 = make_norm(cfg)
        self.attn = Attention(cfg, n_ctx, [*stream_sources, *norm_sources(cfg)], mask)
        self.mlp = None if cfg.attn_only else MLP(cfg.d_model, cfg.d_mlp)
        self.ln2 = make_norm(cfg) if self.mlp is not None else NoNorm()
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
        qi = query_index % tokens.shape[1]
        if self.dropout.p == 0 or not self.training:  # the residual row enters the attention's sum
            resid = self.attn.forward_pooled_table(self.ln1(table), tokens, query_index, residual=table[:, qi])
        else:
            attn_out = self.dropout(self.attn.forward_pooled_table(self.ln1(table), tokens, query_index))
            resid = table[:, qi].index_select(0, tokens[:, qi]) + attn_out
        if self.mlp is not None:
            resid = resid + self.dropout(self.mlp(self.ln2(resid)))
        return resid

    def forward_table(
        self, table: Float[Tensor, "vocab pos d_model"], tokens: Int[Tensor, "batch pos"]
    ) -> Float[Tensor, "batch pos d_model"]:
        """As the first block at every position (``forward`` without hooks), from the
        (token, position) input table: the attention's queries, keys and values come from the
        table (`Attention.forward_table`)."""
        n = tokens.shape[1]
        attn_out = self.dropout(self.attn.forward_table(self.ln1(table), tokens))
        rows = (tokens * n + torch.arange(n, device=tokens.device)).reshape(-1)  # each position's table row
        resid = table[:, :n].reshape(-1, table.shape[-1]).index_select(0, rows).view(*tokens.shape, -1) + attn_out
        if self.mlp is not None:
            resid = resid + self.dropout(self.mlp(self.ln2(resid)))
        return resid

    def forward_decomposed(self, sources: Sources) -> Sources:
        """The block on ``sum(sources)``; what it writes is added to source ``"H"``."""
        sources, _ = carry_edit(self.hook_resid_pre, sources)
        written = self.hook_attn_out(self.dropout(self.attn.forward_decomposed(self.ln1.decompose(sources))))
        sources = {**sources, H: sources[H] + written if H in sources else written}
        if self.mlp is not None:
            sources, resid_mid = carry_edit(self.hook_resid_mid, sources)
            sources[H] = sources[H] + self.hook_mlp_out(self.dropout(self.mlp(self.ln2(resid_mid))))
        sources, _ = carry_edit(self.hook_resid_post, sources)
        return sources


def carry_edit(hook: HookPoint, sources: Sources) -> tuple[Sources, Tensor]:
    """Fire a residual-stream hook on ``sum(sources)`` in decomposed mode. An edit is carried into
    the stream exactly, as the difference added to source H (the sources then sum to the edited
    stream); where there is no H yet (``blocks.0.hook_resid_pre``) an edit raises `CircuitsError`.
    Returns the sources and the (edited) stream."""
    stream = sum(sources.values())
    edited = hook(stream)
    if edited is stream:
        return sources, stream
    if H not in sources:
        if torch.equal(edited, stream):
            return sources, stream
        raise CircuitsError(
            f"an edit of {hook.name} in decomposed mode has no source to go to (no H before layer 0); "
            "edit hook_embed / hook_pos_embed instead, or run without decompose"
        )
    return {**sources, H: sources[H] + (edited - stream)}, edited


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
        self.ln_final = make_norm(cfg)
        self.hook_pooled = HookPoint()  # [batch, d_model]
        self.init_weights(generator if generator is not None else torch.Generator().manual_seed(0))
        self.setup()

    def setup(self) -> None:
        super().setup()
        self._decomposed_only = frozenset(
            n for n in self.hook_dict if n.rsplit(".", 1)[-1].startswith(("hook_score_", "hook_v_"))
        )

    def _check_hooks(self, decompose: bool, pooled_only: bool) -> None:
        """No silent no-ops: raise for hooks that could not fire on this path (one pass over the
        hook points' forward-hook lists; nothing else on the training path)."""
        hooked = [name for name, hp in self.hook_dict.items() if hp.fwd_hooks]
        if not hooked or decompose:
            return
        if pooled_only:
            raise CircuitsError(
                f"hook {hooked[0]} is attached, but pooled_only=True runs the pooled fast path where hooks "
                "do not fire; call with pooled_only=False"
            )
        for name in hooked:
            if name in self._decomposed_only and not all(
                getattr(h.user_hook, "reads_only", False) for h in self.hook_dict[name].fwd_hooks
            ):
                raise CircuitsError(
                    f"hook {name} only fires in decomposed mode; pass decompose=True or use encoder.decomposed()"
                )

    def get_caching_hooks(self, *args, **kwargs) -> tuple[dict, list, list]:
        """TransformerLens' caching hooks, marked as reading only (so they never trigger the
        decomposed-mode check: a cache simply lacks the terms of a plain run)."""
        cache, fwd, bwd = super().get_caching_hooks(*args, **kwargs)
        for _, fn in [*fwd, *bwd]:
            fn.reads_only = True
        return cache, fwd, bwd

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
        decompose = self.decompose if decompose is None else decompose
        self._check_hooks(decompose, pooled_only)
        if pooled_only and not decompose:  # layer 0 from the (token, position) table, the last at the pooled row
            table = self._input_table(tokens.shape[1])
            if len(self.blocks) == 1:
                return self.hook_pooled(self.ln_final(self.blocks[0].forward_pooled_table(table, tokens, self.pool_index)))
            resid = self.blocks[0].forward_table(table, tokens)
            for block in self.blocks[1:-1]:
                resid = block(resid)
            return self.hook_pooled(self.ln_final(self.blocks[-1](resid, self.pool_index))[:, 0])
        sources = {E: self.hook_embed(self.embed(tokens))}
        if self.pos_embed is not None:
            sources[P] = self.hook_pos_embed(self.pos_embed(tokens))
        return self.hook_pooled(self.stream(sources, decompose)[:, self.pool_index])

    def stream(self, sources: Sources, decompose: bool = False) -> Float[Tensor, "batch pos d_model"]:
        """The final residual stream (after ``ln_final``) at every position, from the input
        sources (E, P); ``decompose`` runs the blocks' term-by-term path."""
        if decompose:
            for block in self.blocks:
                sources = block.forward_decomposed(sources)
            return self.ln_final(sum(sources.values()))
        resid = sum(sources.values())
        for block in self.blocks:
            resid = block(resid)
        return self.ln_final(resid)

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

    # --------------------------------------------- TransformerLens weights, stacked over layers
    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        return self.embed.W_E

    @property
    def W_pos(self) -> Float[Tensor, "n_ctx d_model"]:
        if self.pos_embed is None:
            raise CircuitsError(f"this encoder has no learned positional embedding (positional={self.cfg.positional!r})")
        return self.pos_embed.W_pos

    def _stack(self, module: str, name: str) -> Tensor:
        parts = [getattr(getattr(block, module), name) for block in self.blocks if getattr(block, module) is not None]
        if len(parts) != len(self.blocks):
            raise CircuitsError(f"{name} needs an MLP in every block; this encoder is attention-only")
        return torch.stack(parts)

    @property
    def W_Q(self) -> Float[Tensor, "n_layers n_heads d_model d_head"]:
        return self._stack("attn", "W_Q")

    @property
    def W_K(self) -> Float[Tensor, "n_layers n_heads d_model d_head"]:
        return self._stack("attn", "W_K")

    @property
    def W_V(self) -> Float[Tensor, "n_layers n_heads d_model d_head"]:
        return self._stack("attn", "W_V")

    @property
    def W_O(self) -> Float[Tensor, "n_layers n_heads d_head d_model"]:
        return self._stack("attn", "W_O")

    @property
    def b_Q(self) -> Float[Tensor, "n_layers n_heads d_head"]:
        return self._stack("attn", "b_Q")

    @property
    def b_K(self) -> Float[Tensor, "n_layers n_heads d_head"]:
        return self._stack("attn", "b_K")

    @property
    def b_V(self) -> Float[Tensor, "n_layers n_heads d_head"]:
        return self._stack("attn", "b_V")

    @property
    def b_O(self) -> Float[Tensor, "n_layers d_model"]:
        return self._stack("attn", "b_O")

    @property
    def W_in(self) -> Float[Tensor, "n_layers d_model d_mlp"]:
        return self._stack("mlp", "W_in")

    @property
    def W_out(self) -> Float[Tensor, "n_layers d_mlp d_model"]:
        return self._stack("mlp", "W_out")

    @property
    def b_in(self) -> Float[Tensor, "n_layers d_mlp"]:
        return self._stack("mlp", "b_in")

    @property
    def b_out(self) -> Float[Tensor, "n_layers d_model"]:
        return self._stack("mlp", "b_out")

    @property
    def QK(self) -> FactoredMatrix:
        """W_Q W_K^T, [n_layers, n_heads, d_model, d_model] (factored)."""
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self) -> FactoredMatrix:
        """W_V W_O, [n_layers, n_heads, d_model, d_model] (factored)."""
        return FactoredMatrix(self.W_V, self.W_O)

    def accumulated_bias(
        self, layer: int, mlp_input: bool = False, include_mlp_biases: bool = True
    ) -> Float[Tensor, " d_model"]:
        """Sum of the output biases (b_O, and b_out if ``include_mlp_biases``) written to the
        stream before ``layer`` (with ``mlp_input``: plus layer's own b_O), as TransformerLens."""
        total = torch.zeros_like(self.embed.W_E[0])
        for block in self.blocks[:layer]:
            total = total + block.attn.b_O
            if include_mlp_biases and block.mlp is not None:
                total = total + block.mlp.b_out
        if mlp_input:
            total = total + self.blocks[layer].attn.b_O
        return total

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

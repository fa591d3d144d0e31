"""Multi-head attention with TransformerLens names, and its exact term decomposition.

Plain forward: ``hook_q|k|v`` -> ``hook_attn_scores`` (pre-softmax, / sqrt(d_head), masked) ->
``hook_pattern`` -> ``hook_z`` -> ``hook_result`` (per head) -> summed output. ``hook_result``
(4x the output's size) is built only when a hook is attached to it (caching included);
otherwise ``z`` goes through ``W_O`` in one matmul.

Decomposed forward (analysis only, see `HookedEncoder.decomposed`): the attention input arrives
as named sources (E token embedding, P positional embedding, H what earlier layers wrote, N the
LayerNorm bias) and the projection biases form source B. Queries, keys and values are computed
per source, and the scores are the sum of one hooked term per (query source, key source)::

    blocks.{l}.attn.hook_score_{S}{T}   [batch, head, q_pos, k_pos]   (q_S . k_T) / sqrt(d_head)
    blocks.{l}.attn.hook_v_{S}          [batch, pos, head, d_head]

so ``hook_score_EP`` is the paper's E W_QK P^T (Sec. 5, Eq. 2) and ``hook_score_BP`` its
b_Q W_K^T P^T (App. E). Zeroing a term hook removes that term from the scores (Fig. 5e).
"""

from __future__ import annotations

import functools
import math

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens import FactoredMatrix
from transformer_lens.hook_points import HookPoint

from circuits.config import EncoderConfig
from circuits.models.components import Sources, fire_read_only, has_hooks, softmax
from circuits.models.masks import AttentionMask, make_mask
from circuits.models.terms import B, term_name
from circuits.models.pooled_ops import LayerPlan, PlanCache, pooled_table_attention
from circuits.models.positional import make_rotary


@functools.lru_cache(maxsize=256)
def _pooled_keys(mask: AttentionMask, qi: int, n: int) -> tuple[int, Tensor | None]:
    """(number of keys up to the last one query ``qi`` may read, the disallowed ones among them
    or None), from the mask on the CPU (no device sync); cached (masks are frozen)."""
    if mask.is_full:
        return n, None
    row = mask.allowed(torch.tensor([qi]), torch.arange(n))[0]
    n_keys = int(row.nonzero().max()) + 1
    hidden = ~row[:n_keys]
    return n_keys, (hidden if bool(hidden.any()) else None)


class Attention(nn.Module):
    def __init__(self, cfg: EncoderConfig, n_ctx: int, input_sources: list[str], mask: AttentionMask | None = None):
        super().__init__()
        h, m, d = cfg.n_heads, cfg.d_model, cfg.d_head
        self.cfg = cfg
        self.mask = mask if mask is not None else make_mask(cfg.mask)
        self.W_Q = nn.Parameter(torch.empty(h, m, d))
        self.W_K = nn.Parameter(torch.empty(h, m, d))
        self.W_V = nn.Parameter(torch.empty(h, m, d))
        self.W_O = nn.Parameter(torch.empty(h, d, m))
        bias = {"requires_grad": cfg.qkv_bias}
        self.b_Q = nn.Parameter(torch.zeros(h, d), **bias)
        self.b_K = nn.Parameter(torch.zeros(h, d), **bias)
        self.b_V = nn.Parameter(torch.zeros(h, d), **bias)
        self.b_O = nn.Parameter(torch.zeros(m))
        self.rotary = make_rotary(cfg, n_ctx)

        self.hook_q = HookPoint()  # [batch, q_pos, head, d_head]
        self.hook_k = HookPoint()  # [batch, k_pos, head, d_head]
        self.hook_v = HookPoint()  # [batch, k_pos, head, d_head]
        if self.rotary is not None:
            self.hook_rot_q = HookPoint()  # [batch, q_pos, head, d_head]
            self.hook_rot_k = HookPoint()  # [batch, k_pos, head, d_head]
        self.hook_attn_scores = HookPoint()  # [batch, head, q_pos, k_pos]
        self.hook_pattern = HookPoint()  # [batch, head, q_pos, k_pos]
        self.hook_z = HookPoint()  # [batch, q_pos, head, d_head]
        self.hook_result = HookPoint()  # [batch, q_pos, head, d_model]

        self.sources = [*input_sources, *([B] if cfg.qkv_bias else [])]
        for s in self.sources:
            self.add_module(f"hook_v_{s}", HookPoint())  # [batch, k_pos, head, d_head]
            for t in self.sources:
                self.add_module(f"hook_score_{term_name(s, t)}", HookPoint())  # [batch, head, q_pos, k_pos]

    @property
    def term_names(self) -> list[str]:
        """Score terms of this layer, query source first: ``["EE", "EP", ..., "BB"]``."""
        return [term_name(s, t) for s in self.sources for t in self.sources]

    @property
    def QK(self) -> FactoredMatrix:
        """W_Q W_K^T per head, [head, d_model, d_model] (heads-first, as in TransformerLens)."""
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self) -> FactoredMatrix:
        return FactoredMatrix(self.W_V, self.W_O)

    # ------------------------------------------------------------------ plain
    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        n = x.shape[1]
        pos = torch.arange(n, device=x.device)
        q = self.hook_q(self._project(x, self.W_Q, self.b_Q))
        k = self.hook_k(self._project(x, self.W_K, self.b_K))
        v = self.hook_v(self._project(x, self.W_V, self.b_V))
        if self.rotary is not None:
            q = self.hook_rot_q(self.rotary(q, pos))
            k = self.hook_rot_k(self.rotary(k, pos))
        scores = einops.einsum(q, k, "b q h d, b k h d -> b h q k") / math.sqrt(self.cfg.d_head)
        return self._attend(scores, v, pos, pos)

    @staticmethod
    def _project(x: Tensor, W: Tensor, b: Tensor) -> Float[Tensor, "batch pos head d_head"]:
        """x W + b for all heads in one matmul."""
        flat = x @ einops.rearrange(W, "h m d -> m (h d)")
        return einops.rearrange(flat, "b p (h d) -> b p h d", h=W.shape[0]) + b

    def forward_pooled(
        self, x: Float[Tensor, "batch pos d_model"], query_index: int
    ) -> Float[Tensor, "batch 1 d_model"]:
        """Output at one query position only, exactly, at a fraction of the cost.

        Used for the last layer in training, where only the pooled row reaches the output.
        Without rotary, weights are contracted with the query first: scores = (q W_K^T) . x_j
        + q . b_K and z = (sum_j a_j x_j) W_V + b_V, so keys and values are never formed for
        every position. No hooks fire on this path.
        """
        n = x.shape[1]
        k_pos = torch.arange(n, device=x.device)
        q_pos = k_pos[[query_index]]
        q = self._project(x[:, q_pos], self.W_Q, self.b_Q)[:, 0]  # [b, h, d]
        if self.rotary is None:
            q_key = einops.einsum(q, self.W_K, "b h d, h m d -> b h m")
            scores = einops.einsum(q_key, x, "b h m, b k m -> b h k") + einops.einsum(q, self.b_K, "b h d, h d -> b h")[..., None]
        else:
            q = self.rotary(q[:, None], q_pos)[:, 0]
            k = self.rotary(self._project(x, self.W_K, self.b_K), k_pos)
            scores = einops.einsum(q, k, "b h d, b k h d -> b h k")
        scores = scores / math.sqrt(self.cfg.d_head)
        if not self.mask.is_full:
            scores = scores.masked_fill(~self.mask.allowed(q_pos, k_pos), float("-inf"))
        pattern = softmax(scores)
        mixed = einops.einsum(pattern, x, "b h k, b k m -> b h m")
        z = einops.einsum(mixed, self.W_V, "b h m, h m d -> b h d") + self.b_V
        out = einops.rearrange(z, "b h d -> b (h d)") @ einops.rearrange(self.W_O, "h d m -> (h d) m")
        return (out + self.b_O)[:, None]

    def forward_table(
        self, table: Float[Tensor, "vocab pos d_model"], tokens: Int[Tensor, "batch pos"]
    ) -> Float[Tensor, "batch pos d_model"]:
        """`forward` of layer 0 (every position) from the table of its possible inputs.

        The input at position p is a function of (token, p) only, so queries, keys and values are
        projected once per (token, position) pair (d_vocab x n rows instead of batch x n) and
        gathered per image; when there are fewer vocabulary pairs than images (d_vocab^2 <=
        batch) the scores too come from a [head, row, row] table. Exact; no hooks fire.
        """
        n_vocab, _, m = table.shape
        b, n = tokens.shape
        h, d = self.cfg.n_heads, self.cfg.d_head
        score_table = n_vocab * n_vocab <= b
        if "_plans" not in self.__dict__:
            self._plans = PlanCache()
        plan = self._plans.get(tokens, n_vocab, h, score_table, kind=LayerPlan)
        n_rows = plan.n_rows
        W = torch.cat([self.W_Q, self.W_K, self.W_V]).permute(1, 0, 2).reshape(m, 3 * h * d)
        bias = torch.cat([self.b_Q, self.b_K, self.b_V]).reshape(3 * h * d)
        qkv = torch.addmm(bias, table[:, :n].reshape(n_rows, m), W).view(n_rows, 3, h * d)
        q, k, v = qkv.unbind(1)  # [rows, h * d] each
        pos = torch.arange(n, device=table.device)
        if self.rotary is not None:
            q = self.rotary(q.reshape(n_vocab, n, h, d), pos).reshape(n_rows, h * d)
            k = self.rotary(k.reshape(n_vocab, n, h, d), pos).reshape(n_rows, h * d)
        if score_table:
            qk = torch.bmm(q.view(n_rows, h, d).transpose(0, 1), k.view(n_rows, h, d).permute(1, 2, 0))  # [h, rows, rows]
            scores = (qk / math.sqrt(d)).reshape(-1).gather(0, plan.score_index).view(b, h, n, n)
        else:
            qs, ks = (x.index_select(0, plan.rows).view(b, n, h, d) for x in (q, k))
            scores = einops.einsum(qs, ks, "b q h d, b k h d -> b h q k") / math.sqrt(d)
        if not self.mask.is_full:
            scores = scores.masked_fill(~self.mask.allowed(pos, pos), float("-inf"))
        pattern = softmax(scores)
        vs = v.view(n_rows, h, d).transpose(0, 1).reshape(h * n_rows, d).index_select(0, plan.head_rows)  # [b, h, k, d]
        z = torch.bmm(pattern.view(b * h, n, n), vs.view(b * h, n, d)).view(b, h, n, d)
        out = torch.addmm(self.b_O, z.transpose(1, 2).reshape(b * n, h * d), self.W_O.reshape(h * d, m))
        return out.view(b, n, m)

    def forward_pooled_table(
        self,
        table: Float[Tensor, "vocab pos d_model"],
        tokens: Int[Tensor, "batch pos"],
        query_index: int,
        residual: Float[Tensor, "vocab d_model"] | None = None,
    ) -> Float[Tensor, "batch d_model"]:
        """First-layer output at one query position, from the table of its possible inputs.

        The input of layer 0 at position p is a function of (token, p) only, so queries, keys
        and values are computed once per (token, position) pair (d_vocab x n_ctx rows instead
        of batch x n_ctx), in one matmul. Queries are needed at the query position only, and keys after
        the last one the mask allows it are dropped (disallowed keys before that get -inf). The scores are
        gathered from the [head, query token, key row] table, and each head's values are
        folded into W_O once per table row (``ov``), so the output is a sparse weighted sum of
        ``ov`` rows (`pooled_ops.mix_rows`): batch x head x key terms, no dense
        [batch, table rows] matrix. With ``residual`` (the stream's row per query token) the
        output also holds ``residual[query token]``, and the bias: both enter the same sum, as
        rows of weight 1. One autograd node with a hand-written backward
        (`pooled_ops.pooled_table_attention`); with every key allowed and mostly-background
        images, the keys are grouped (`pooled_ops.BackgroundGroups`). Exact; no hooks fire on this path.
        """
        n_vocab, n, h = table.shape[0], tokens.shape[1], self.cfg.n_heads
        qi = query_index % n
        n_keys, hidden = _pooled_keys(self.mask, qi, n)  # keys after the last allowed one get no weight
        with_residual = residual is not None
        if "_plans" not in self.__dict__:  # token-dependent indices, kept per token tensor (`PlanCache`)
            self._plans = PlanCache()
        plan = self._plans.get(tokens, n_vocab, n_keys, qi, h, with_residual, hidden is None)  # (grouped if it pays)
        rotary = self.rotary
        return pooled_table_attention(
            table, self.W_Q, self.W_K, self.W_V, self.b_Q, self.b_K, self.b_V, self.W_O, self.b_O, residual,
            None if rotary is None else rotary.cos, None if rotary is None else rotary.sin,
            None if hidden is None else hidden.to(table.device), plan, qi,
        )

    # ------------------------------------------------------------- decomposed
    def forward_decomposed(self, sources: Sources) -> Float[Tensor, "batch pos d_model"]:
        """Same output as `forward` on ``sum(sources)``, with every score term and value source hooked."""
        first = next(iter(sources.values()))
        n = first.shape[1]
        pos = torch.arange(n, device=first.device)

        def project(W: Tensor, b: Tensor) -> Sources:
            parts = {s: self._project(x, W, 0.0) for s, x in sources.items()}
            if B in self.sources:
                parts[B] = b.expand(first.shape[0], n, *b.shape)
            return parts

        qs, ks = project(self.W_Q, self.b_Q), project(self.W_K, self.b_K)
        vs = {s: getattr(self, f"hook_v_{s}")(v) for s, v in project(self.W_V, self.b_V).items()}
        fire_read_only(self.hook_q, sum(qs.values()))
        fire_read_only(self.hook_k, sum(ks.values()))
        v = self.hook_v(sum(vs.values()))
        if self.rotary is not None:
            qs = {s: self.rotary(q, pos) for s, q in qs.items()}
            ks = {s: self.rotary(k, pos) for s, k in ks.items()}
            fire_read_only(self.hook_rot_q, sum(qs.values()))
            fire_read_only(self.hook_rot_k, sum(ks.values()))
        scale = math.sqrt(self.cfg.d_head)
        scores = sum(
            getattr(self, f"hook_score_{term_name(s, t)}")(einops.einsum(qs[s], ks[t], "b q h d, b k h d -> b h q k") / scale)
            for s in qs
            for t in ks
        )
        return self._attend(scores, v, pos, pos)

    # ---------------------------------------------------------------- shared
    def _attend(self, scores: Tensor, v: Tensor, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        if not self.mask.is_full:
            scores = scores.masked_fill(~self.mask.allowed(q_pos, k_pos), float("-inf"))
        scores = self.hook_attn_scores(scores)
        pattern = self.hook_pattern(softmax(scores))
        z = self.hook_z(einops.einsum(pattern, v, "b h q k, b k h d -> b q h d"))
        if not has_hooks(self.hook_result):  # nothing reads or edits the per-head outputs: one matmul
            b, q, h, d = z.shape
            return torch.addmm(self.b_O, z.reshape(b * q, h * d), self.W_O.reshape(h * d, -1)).view(b, q, -1)
        result = self.hook_result(einops.einsum(z, self.W_O, "b q h d, h d m -> b q h m"))
        return result.sum(dim=2) + self.b_O

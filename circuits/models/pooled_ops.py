"""Index plans and a sparse row-mixing op for the pooled-only training path (no hooks here).

`Attention.forward_pooled_table` computes the first layer's pooled output from the table of
its possible inputs (one row per (token, position)). What depends on the tokens alone (which
table row each pixel reads, where each score sits in the score table, and the transposed
structure the backward pass needs) is collected once in a `TablePlan` (`LayerPlan` for a first
layer computed at every position); training passes the same token tensor every step and
evaluation the same splits, so each attention module keeps its last few plans (`PlanCache`).
`pooled_table_attention` is the whole pooled first layer as one autograd node with a
hand-written backward (its vmap rule generated), so that the training step pays autograd's
per-op bookkeeping once instead of ~40 times. Where the images are mostly background (a toy
world's), the plan also groups their keys (`BackgroundGroups`): each image then mixes one row per
head for its background and one per object, instead of one per key.

`mix_rows` is ``out[i] = sum_j weights[i, j] * table[index[i, j]]``: an exact weighted sum of
table rows, with ``embedding_bag`` forward and a backward that never forms a dense
[bags, table rows] matrix (the table gradient is another ``embedding_bag`` over the entries
sorted by row, the weight gradient a sampled dot product).
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor


class TablePlan:
    """Token-dependent indices for attention from a ``[vocab, n_keys]`` table, pooled at ``query``.

    Rows of the key/value tables are ``token * n_keys + position`` (``n_rows = vocab * n_keys``);
    the mixing table stacks one such block per head (row ``head * n_rows + row``), and each
    output's entries are ordered (head, key position), like a ``[batch, head, key]`` pattern.
    """

    def __init__(self, tokens: Tensor, n_vocab: int, n_keys: int, query: int, n_heads: int, residual: bool = False,
                 group_background: bool = False):
        self.tokens, self.version = tokens, tokens._version
        self.key = (n_vocab, n_keys, query, n_heads, residual, group_background)
        dev = tokens.device
        b, h = tokens.shape[0], n_heads
        self.n_rows = n_vocab * n_keys
        self.query_tokens = tokens[:, query].contiguous()  # [b]
        self.rows = tokens[:, :n_keys] * n_keys + torch.arange(n_keys, device=dev)  # [b, k]
        head = torch.arange(h, device=dev)[None, :, None]
        # flat index into a [head, vocab, n_rows] score table: score of (b's query row, b's key row k)
        self.score_index = ((head * n_vocab + self.query_tokens[:, None, None]) * self.n_rows + self.rows[:, None, :]).reshape(-1)
        self.mix_index = (head * self.n_rows + self.rows[:, None, :]).reshape(b, h * n_keys)  # [b, h*k]
        self.n_table_rows = n_heads * self.n_rows  # rows of the mixing table
        self.groups = BackgroundGroups.of(self, tokens[:, :n_keys]) if group_background else None
        if self.groups is not None:
            self.mix_index, self.n_table_rows = self.groups.mix_index, self.groups.n_table_rows
        self.n_extra = 0
        if residual:  # two more entries per output (weight 1): the bias row, the query token's residual row
            t = self.n_table_rows
            extra = torch.stack([torch.full_like(self.query_tokens, t), t + 1 + self.query_tokens], 1)
            self.mix_index = torch.cat([self.mix_index, extra], 1)
            self.n_table_rows, self.n_extra = t + 1 + n_vocab, 2
        self._backward: tuple[Tensor, Tensor, Tensor] | None = None
        self._pattern: Tensor | None = None
        self._folded: dict[tuple[int, bool], FoldedPlan] = {}  # vmap: see `FoldedPlan`

    def matches(self, tokens: Tensor, n_vocab: int, n_keys: int, query: int, n_heads: int, residual: bool = False,
                group_background: bool = False) -> bool:
        return same_tokens(tokens, self.tokens, self.version) and self.key == (
            n_vocab, n_keys, query, n_heads, residual, group_background)

    def backward_order(self) -> tuple[Tensor, Tensor, Tensor]:
        """(entries sorted by mixing-table row, the output each belongs to, row offsets).

        Without extra entries it is derived from a sort of the b*k pixel rows: within head ``h``
        the mixing-table rows are ``h * n_rows + row``, so the order is that of the pixels,
        repeated per head.
        """
        if self._backward is None and (self.n_extra or self.groups is not None):
            self._backward = _sorted_entries(self.mix_index, self.n_table_rows)
        if self._backward is None:
            with torch._C._DisableFuncTorch():  # (cached: plain tensors, whatever transform asks first)
                k = self.rows.shape[1]
                h = self.key[3]
                dev = self.rows.device
                flat_rows = self.rows.reshape(-1)
                pixel = torch.argsort(flat_rows, stable=True)  # b*k pixels, by row
                out_of = torch.div(pixel, k, rounding_mode="floor")
                pos = pixel - out_of * k
                head = torch.arange(h, device=dev)[:, None]
                entry = ((out_of[None, :] * h + head) * k + pos[None, :]).reshape(-1)  # [h * b*k]
                counts = torch.bincount(flat_rows, minlength=self.n_rows).repeat(h)
                offsets = counts.cumsum(0) - counts
                self._backward = (entry, out_of.repeat(h), offsets)
        return self._backward

    def sparsity(self, dtype: torch.dtype) -> Tensor:
        """The mixing matrix's pattern as CSR ([b, h*n_rows], values 0), for sampled products."""
        if self._pattern is None or self._pattern.dtype != dtype:
            self._pattern = _csr_pattern(self.mix_index, self.n_table_rows, dtype)
        return self._pattern


class BackgroundGroups:
    """The keys of a pooled attention split into background and exceptions (exact; much less work).

    Images of a toy world are mostly background: at each key position most images hold the same
    token (its mode over the batch), and an image differs in at most ``E`` positions (its
    objects). A softmax over all keys is a softmax over two kinds of entries: the image's
    exceptions, with their own scores, and its background keys as one block, with logit the
    block's logsumexp and value the block's own softmax average of its rows. Images with the same
    query token and the same exception positions share that block (a *group*), so it is
    computed once per group and head, and each image mixes ``1 + E`` rows per head instead of
    ``n_keys``. Exceptions are padded to ``E`` (score -inf, weight exactly 0).

    Layout of the mixing table: the per-head value rows (as `TablePlan`), then one row per
    (head, group), then `TablePlan`'s extra rows.
    """

    def __init__(self, plan: TablePlan, background: Tensor, exceptions: Tensor, width: int):
        n_vocab, n_keys, _, h, _, _ = plan.key
        b, dev = exceptions.shape[0], exceptions.device
        self.width = width  # E: exception slots per image
        order = torch.argsort((~exceptions).to(torch.int8), dim=1, stable=True)[:, :width]  # exceptions first
        self.valid = exceptions.gather(1, order)  # [b, E]
        exc_rows = plan.rows.gather(1, order)  # [b, E] (padding: some row of the image, weight 0)
        pattern, self.group_of = torch.unique(
            torch.cat([plan.query_tokens[:, None], exceptions.to(plan.query_tokens.dtype)], 1), dim=0, return_inverse=True)
        self.n_groups = g = pattern.shape[0]
        self.member = pattern[:, 1:] == 0  # [G, K]: key j is background in group g
        self.background_rows = background * n_keys + torch.arange(n_keys, device=dev)  # [K]
        head = torch.arange(h, device=dev)
        qg = pattern[:, 0]
        self.group_score_index = (((head[:, None, None] * n_vocab + qg[None, :, None]) * plan.n_rows)
                                  + self.background_rows[None, None, :]).reshape(-1)  # [h, G, K]
        self.exception_score_index = (((head[None, :, None] * n_vocab + plan.query_tokens[:, None, None]) * plan.n_rows)
                                      + exc_rows[:, None, :]).reshape(-1)  # [b, h, E]
        base = h * plan.n_rows + head[None, :, None] * g + self.group_of[:, None, None]  # [b, h, 1]
        own = head[None, :, None] * plan.n_rows + exc_rows[:, None, :]  # [b, h, E]
        self.mix_index = torch.cat([base, own], 2).reshape(b, h * (1 + width))
        self.n_table_rows = h * plan.n_rows + h * g

    @staticmethod
    def of(plan: TablePlan, keys: Tensor) -> BackgroundGroups | None:
        """The grouping of ``keys`` [b, n_keys], or None where it would not pay (dense images)."""
        b, n_keys = keys.shape
        if b < 16:
            return None
        background = keys.mode(0).values  # [K]
        exceptions = keys != background
        width = int(exceptions.sum(1).max())
        if 2 * (1 + width) > n_keys:
            return None
        groups = BackgroundGroups(plan, background, exceptions, width)
        saved = b * (n_keys - 1 - width)  # entries per head no image mixes any more
        return groups if 2 * groups.n_groups * n_keys <= saved else None  # against the blocks' own work


def same_tokens(tokens: Tensor, seen: Tensor, version: int) -> bool:
    """Whether ``tokens`` holds what ``seen`` held at ``version``: the same tensor, or a view of
    the same memory (a chunk of a split cut again) with the same shape, strides and version."""
    if tokens is seen:
        return tokens._version == version
    return (
        tokens.data_ptr() == seen.data_ptr() and tokens.shape == seen.shape and tokens.stride() == seen.stride()
        and tokens.dtype == seen.dtype and tokens.device == seen.device and tokens._version == version
    )


class LayerPlan:
    """Token-dependent indices for a first layer computed at every position from its
    ``[vocab, n]`` input table (`Attention.forward_table`): each position's table row
    ``token * n + position`` (also per head, as rows of a ``[head, rows]`` table) and, with
    ``score_table``, the flat index of each (query, key) score
    in a ``[head, rows, rows]`` score table, ordered like a ``[batch, head, query, key]`` pattern."""

    def __init__(self, tokens: Tensor, n_vocab: int, n_heads: int, score_table: bool):
        self.tokens, self.version = tokens, tokens._version
        self.key = (n_vocab, n_heads, score_table)
        n = tokens.shape[1]
        self.n_rows = n_vocab * n
        rows = tokens * n + torch.arange(n, device=tokens.device)  # [b, n]
        self.rows = rows.reshape(-1)  # [b * n]
        head = torch.arange(n_heads, device=tokens.device)[None, :, None]
        self.head_rows = (head * self.n_rows + rows[:, None, :]).reshape(-1)  # [b, head, n] rows of a [head, rows] table
        self.score_index = None
        if score_table:
            head = torch.arange(n_heads, device=tokens.device)[None, :, None, None]
            self.score_index = ((head * self.n_rows + rows[:, None, :, None]) * self.n_rows + rows[:, None, None, :]).reshape(-1)

    def matches(self, tokens: Tensor, *key) -> bool:
        return same_tokens(tokens, self.tokens, self.version) and self.key == key


class PlanCache:
    """The last few plans (`TablePlan`, `LayerPlan`) of a module: the training batch and the
    evaluation splits. A plan holds its tokens, so their memory cannot be reused while it is cached."""

    def __init__(self, size: int = 16):
        self.size, self.plans = size, OrderedDict()

    def get(self, tokens: Tensor, *key, kind: type = TablePlan):
        functorch = torch._C._functorch  # under grad the (undifferentiated) tokens come wrapped
        while functorch.is_functorch_wrapped_tensor(tokens) and not functorch.is_batchedtensor(tokens):
            tokens = functorch.get_unwrapped(tokens)
        slot = (kind, tokens.data_ptr(), tuple(tokens.shape), *key)
        plan = self.plans.get(slot)
        if plan is None or not plan.matches(tokens, *key):
            with torch._C._DisableFuncTorch():  # plain index tensors, even when built inside grad / vmap
                plan = kind(tokens, *key)
            self.plans[slot] = plan
            while len(self.plans) > self.size:
                self.plans.popitem(last=False)
        self.plans.move_to_end(slot)
        return plan


class FoldedPlan:
    """The plan of `members` stacked copies of one mixing, as a single mixing (the vmap rule).

    Bag ``k * b + i`` of the folded op is bag ``i`` of member ``k``. With ``shared_table`` the
    members read one ``[T, width]`` table (indices unchanged); otherwise member ``k`` reads
    rows ``k * T ...`` of the members' tables stacked as ``[members * T, width]``. Depends on
    the base plan (tokens) only; cached on it.
    """

    def __init__(self, base: TablePlan | FoldedPlan, members: int, shared_table: bool):
        b, per = base.mix_index.shape
        rows = base.n_table_rows
        offset = 0 if shared_table else torch.arange(members, device=base.mix_index.device)[:, None, None] * rows
        self.mix_index = (base.mix_index[None] + offset).expand(members, b, per).reshape(members * b, per)
        self.n_table_rows = rows if shared_table else members * rows
        self._backward: tuple[Tensor, Tensor, Tensor] | None = None
        self._pattern: Tensor | None = None
        self._folded: dict[tuple[int, bool], FoldedPlan] = {}

    def backward_order(self) -> tuple[Tensor, Tensor, Tensor]:
        if self._backward is None:
            self._backward = _sorted_entries(self.mix_index, self.n_table_rows)
        return self._backward

    def sparsity(self, dtype: torch.dtype) -> Tensor:
        if self._pattern is None or self._pattern.dtype != dtype:
            self._pattern = _csr_pattern(self.mix_index, self.n_table_rows, dtype)
        return self._pattern

    def folded(self, members: int, shared_table: bool) -> FoldedPlan:
        return _folded(self, members, shared_table)


def _sorted_entries(mix_index: Tensor, n_table_rows: int) -> tuple[Tensor, Tensor, Tensor]:
    """(entries of ``mix_index`` sorted by table row, the output each belongs to, row offsets);
    plain tensors (they are cached), whatever function transform asks first."""
    with torch._C._DisableFuncTorch():
        flat = mix_index.reshape(-1)
        entry = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=n_table_rows)
        return entry, torch.div(entry, mix_index.shape[1], rounding_mode="floor"), counts.cumsum(0) - counts


def _csr_pattern(mix_index: Tensor, n_cols: int, dtype: torch.dtype) -> Tensor:
    b, per = mix_index.shape
    with torch._C._DisableFuncTorch():  # (cached)
        crow = torch.arange(0, b * per + 1, per, device=mix_index.device)
        values = torch.zeros(b * per, device=mix_index.device, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, mix_index.reshape(-1), values, size=(b, n_cols))


def _folded(plan: TablePlan | FoldedPlan, members: int, shared_table: bool) -> FoldedPlan:
    key = (members, shared_table)
    if key not in plan._folded:
        with torch._C._DisableFuncTorch():  # (cached: plain tensors, whatever transform builds it)
            plan._folded[key] = FoldedPlan(plan, members, shared_table)
    return plan._folded[key]


def _member_first(x: Tensor, dim: int | None, members: int) -> Tensor:
    """``x`` with its member axis first (expanded from an unbatched ``x`` when ``dim`` is None)."""
    return x.expand(members, *x.shape) if dim is None else x.movedim(dim, 0)


class _MixRows(torch.autograd.Function):
    """`mix_rows` as a function-transform-ready autograd.Function (setup_context style).

    The backward is another Function (`_MixRowsGrad`), so that it too has a vmap rule: both
    fold a leading member axis into the bags (and the table rows), so one ``embedding_bag``
    serves every member under `torch.func.vmap`, whether vmap is outside or inside ``grad``.
    """

    @staticmethod
    def forward(weights: Tensor, table: Tensor, plan: TablePlan | FoldedPlan) -> Tensor:  # type: ignore[override]
        return F.embedding_bag(plan.mix_index, table, mode="sum", per_sample_weights=weights)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        weights, table, plan = inputs
        ctx.plan = plan
        ctx.save_for_backward(weights, table)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # type: ignore[override]
        weights, table = ctx.saved_tensors
        need_weights, need_table = ctx.needs_input_grad[:2]
        grad_weights, grad_table = _MixRowsGrad.apply(grad, weights, table, ctx.plan, need_weights, need_table)
        return grad_weights, grad_table, None

    @staticmethod
    def vmap(info, in_dims, weights: Tensor, table: Tensor, plan):  # type: ignore[override]
        k = info.batch_size
        w_dim, t_dim, _ = in_dims
        weights = _member_first(weights, w_dim, k)
        b, per = weights.shape[1:]
        shared = t_dim is None  # one table for all members: no copy, indices unchanged
        flat_table = table if shared else table.movedim(t_dim, 0).reshape(-1, table.shape[-1])
        out = _MixRows.apply(weights.reshape(k * b, per), flat_table, _folded(plan, k, shared))
        return out.view(k, b, -1), 0


class _MixRowsGrad(torch.autograd.Function):
    """(d weights, d table) of `_MixRows` given the output gradient; not differentiable again.

    The table gradient is an ``embedding_bag`` over the entries sorted by table row, the
    weight gradient a sampled dot product (CPU) or a gather (elsewhere).
    """

    @staticmethod
    def forward(grad: Tensor, weights: Tensor, table: Tensor, plan, need_weights: bool, need_table: bool):  # type: ignore[override]
        grad = grad.contiguous()
        grad_weights = grad_table = None
        if need_weights:
            if grad.device.type == "cpu" and grad.dtype in (torch.float32, torch.float64):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    product = torch.sparse.sampled_addmm(plan.sparsity(grad.dtype), grad, table.T, beta=0.0)
                grad_weights = product.values().view_as(weights)
            else:
                grad_weights = torch.einsum("bjm,bm->bj", table[plan.mix_index], grad)
        if need_table:
            entry, out_of, offsets = plan.backward_order()
            grad_table = F.embedding_bag(out_of, grad, offsets, mode="sum", per_sample_weights=weights.reshape(-1)[entry])
        return grad_weights, grad_table

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        pass

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        raise RuntimeError("mix_rows supports first derivatives only (no double backward)")

    @staticmethod
    def vmap(info, in_dims, grad, weights, table, plan, need_weights, need_table):  # type: ignore[override]
        # every output is per member (the gradient of a shared table differs by member), so the
        # members' tables are stacked (an unbatched table is expanded: rare, e.g. frozen weights)
        k = info.batch_size
        g_dim, w_dim, t_dim = in_dims[:3]
        grad, weights, table = (_member_first(x, d, k) for x, d in ((grad, g_dim), (weights, w_dim), (table, t_dim)))
        (_, b, per), rows = weights.shape, table.shape[1]
        grad_weights, grad_table = _MixRowsGrad.apply(
            grad.reshape(k * b, -1), weights.reshape(k * b, per), table.reshape(k * rows, -1),
            _folded(plan, k, False), need_weights, need_table,
        )
        grad_weights = None if grad_weights is None else grad_weights.view(k, b, per)
        grad_table = None if grad_table is None else grad_table.view(k, rows, -1)
        return (grad_weights, grad_table), (None if grad_weights is None else 0, None if grad_table is None else 0)


def mix_rows(weights: Tensor, table: Tensor, plan: TablePlan) -> Tensor:
    """``out[i] = sum_j weights[i, j] * table[plan.mix_index[i, j]]``, [b, width]; exact.

    Works under `torch.func` transforms (``grad``, ``vmap``, and their compositions): a
    leading member axis on ``weights`` and/or ``table`` is folded into one ``embedding_bag``.
    """
    return fast_apply(_MixRows, weights, table, plan)


def fast_apply(function: type[torch.autograd.Function], *args):
    """``function.apply(*args)`` without its per-call ``inspect.signature`` binding (~30 us) when
    no function transform is active (the training step calls a handful of these every step)."""
    if torch._C._are_functorch_transforms_active():
        return function.apply(*args)
    return super(torch.autograd.Function, function).apply(*args)


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """`Rotary`'s rotation of ``x`` [..., d_head] (``cos`` / ``sin`` broadcast against it)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


def _rotate_back(g: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """The gradient through `_rotate` (its transpose) applied to ``g``."""
    half = g.shape[-1] // 2
    gs = g * sin
    return g * cos + torch.cat([gs[..., half:], -gs[..., :half]], dim=-1)


class _PooledTableAttention(torch.autograd.Function):
    """First-layer attention output at one query position from the (token, position) input
    table, as one autograd node: `Attention.forward_pooled_table`'s computation (see there) with
    a hand-written backward (the same kernels as autograd's, without its per-op bookkeeping,
    which cost about as much as the kernels at the default model's size). A vmap rule is generated."""

    generate_vmap_rule = True

    @staticmethod
    def forward(  # type: ignore[override]
        table: Tensor, W_Q: Tensor, W_K: Tensor, W_V: Tensor, b_Q: Tensor, b_K: Tensor, b_V: Tensor, W_O: Tensor,
        b_O: Tensor, residual: Tensor | None, cos: Tensor | None, sin: Tensor | None, hidden: Tensor | None,
        plan: TablePlan, query: int,
    ) -> tuple[Tensor, ...]:
        n_vocab, _, m = table.shape
        h, _, d = W_Q.shape
        n_keys, rows, b = plan.key[1], plan.n_rows, plan.tokens.shape[0]
        x = table[:, :n_keys].reshape(rows, m)
        x_q = table[:, query]  # queries at the query position only
        W = torch.cat([W_K, W_V]).permute(1, 0, 2).reshape(m, 2 * h * d)
        kv = torch.addmm(torch.cat([b_K, b_V]).reshape(2 * h * d), x, W).view(n_vocab, n_keys, 2, h, d)
        k, v = kv[:, :, 0], kv[:, :, 1]  # [vocab, keys, h, d] x2
        q = torch.addmm(b_Q.reshape(h * d), x_q, W_Q.permute(1, 0, 2).reshape(m, h * d)).view(n_vocab, h, d)
        if cos is not None:
            q = _rotate(q, cos[query], sin[query])
            k = _rotate(k, cos[:n_keys, None], sin[:n_keys, None])
        qh = q.transpose(0, 1)  # [h, vocab, d]
        kh = k.reshape(rows, h, d).transpose(0, 1)  # [h, rows, d]
        vh = v.reshape(rows, h, d).transpose(0, 1)
        qk = torch.bmm(qh, kh.transpose(1, 2)).mul_(1 / math.sqrt(d))  # [h, vocab, rows]
        mixing = torch.bmm(vh, W_O).reshape(h * rows, m)  # each head's values through W_O, per table row
        groups = plan.groups
        if groups is None:
            scores = qk.reshape(-1).gather(0, plan.score_index).view(b, h, n_keys)
            if hidden is not None:
                scores = scores.masked_fill(hidden, float("-inf"))
            within = mixing.new_empty(0)
        else:  # entries: each head's background block (one row per group), then the exceptions
            if hidden is not None:
                raise ValueError("background groups are built for unmasked keys only")
            block_scores = qk.reshape(-1)[groups.group_score_index].view(h, groups.n_groups, n_keys)
            block_scores = block_scores.masked_fill(~groups.member, float("-inf"))
            top = block_scores.amax(-1, keepdim=True)  # finite: every group has a background key
            within = (block_scores - top).exp_()
            total = within.sum(-1, keepdim=True)
            within = within.div_(total)  # [h, G, K]: each block's own softmax
            block_logit = total.log_().add_(top).squeeze(-1)  # [h, G]: the block's logsumexp
            block_rows = torch.bmm(within, mixing.view(h, rows, m)[:, groups.background_rows])  # [h, G, m]
            own = qk.reshape(-1)[groups.exception_score_index].view(b, h, groups.width)
            own = own.masked_fill(~groups.valid[:, None, :], float("-inf"))
            scores = torch.cat([block_logit.T[groups.group_of][:, :, None], own], 2)  # [b, h, 1 + E]
            mixing = torch.cat([mixing, block_rows.reshape(-1, m)])
        per = scores.shape[-1]
        pattern = (scores - scores.amax(-1, keepdim=True)).exp_()
        pattern = pattern.div_(pattern.sum(-1, keepdim=True)).view(b, h * per)
        if plan.n_extra:  # the bias and the query token's residual row enter the sum with weight 1
            mixing = torch.cat([mixing, b_O[None], residual])
            pattern = torch.cat([pattern, pattern.new_ones(1, 1).expand(b, plan.n_extra)], 1)
        out = fast_apply(_MixRows, pattern, mixing, plan)
        if not plan.n_extra:
            out = out + b_O
        return out, x, x_q, W, qh, kh, vh, pattern, mixing, within

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        table, W_Q, _, _, _, _, _, W_O, _, _, cos, sin, _, plan, query = inputs
        ctx.plan, ctx.query, ctx.shape = plan, query, table.shape
        ctx.save_for_backward(*output[1:], W_Q, W_O, cos, sin)
        ctx.mark_non_differentiable(*output[1:])
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad: Tensor, *_) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, x_q, W, qh, kh, vh, pattern, mixing, within, W_Q, W_O, cos, sin = ctx.saved_tensors
        plan, query = ctx.plan, ctx.query
        n_vocab, n, m = ctx.shape
        h, rows, d = vh.shape
        n_keys, b, groups = plan.key[1], plan.tokens.shape[0], plan.groups
        g_pattern, g_mixing = fast_apply(_MixRowsGrad, grad, pattern, mixing, plan, True, True)
        g_ov = g_mixing[: h * rows].view(h, rows, m)
        end = h * rows + (0 if groups is None else h * groups.n_groups)  # the extra rows after the entries'
        if plan.n_extra:
            g_bias_O, g_residual = g_mixing[end], g_mixing[end + 1 :]
        else:
            g_bias_O, g_residual = grad.sum(0), None
        per = n_keys if groups is None else 1 + groups.width
        p = pattern[:, : h * per].view(b, h, per)
        gp = g_pattern[:, : h * per].view(b, h, per)
        g_scores = p * (gp - (p * gp).sum(-1, keepdim=True))
        if groups is None:
            g_qk = qh.new_zeros(h * n_vocab * rows).index_add(0, plan.score_index, g_scores.reshape(-1))
        else:  # back through each group's block: its logsumexp and its softmax average of value rows
            g_block_logit = g_scores.new_zeros(groups.n_groups, h).index_add(0, groups.group_of, g_scores[:, :, 0])
            g_block_rows = g_mixing[h * rows : end].view(h, groups.n_groups, m)
            background = mixing[: h * rows].view(h, rows, m)[:, groups.background_rows]  # [h, K, m]
            g_within = torch.bmm(g_block_rows, background.transpose(1, 2))  # [h, G, K]
            g_block = within * (g_within - (within * g_within).sum(-1, keepdim=True) + g_block_logit.T[:, :, None])
            g_ov = g_ov.index_add(1, groups.background_rows, torch.bmm(within.transpose(1, 2), g_block_rows))
            g_qk = qh.new_zeros(h * n_vocab * rows).index_add(0, groups.exception_score_index, g_scores[:, :, 1:].reshape(-1))
            g_qk = g_qk.index_add(0, groups.group_score_index, g_block.reshape(-1))
        g_qk = g_qk.view(h, n_vocab, rows).mul_(1 / math.sqrt(d))
        g_q = torch.bmm(g_qk, kh).transpose(0, 1)  # [vocab, h, d]
        g_k = torch.bmm(g_qk.transpose(1, 2), qh).transpose(0, 1).reshape(n_vocab, n_keys, h, d)
        g_v = torch.bmm(g_ov, W_O.transpose(1, 2)).transpose(0, 1).reshape(n_vocab, n_keys, h, d)
        g_W_O = torch.bmm(vh.transpose(1, 2), g_ov)
        if cos is not None:
            g_q = _rotate_back(g_q, cos[query], sin[query])
            g_k = _rotate_back(g_k, cos[:n_keys, None], sin[:n_keys, None])
        g_kv = torch.stack([g_k, g_v], dim=2).reshape(rows, 2 * h * d)
        g_x = (g_kv @ W.T).view(n_vocab, n_keys, m)
        g_W = (x.T @ g_kv).view(m, 2, h, d).permute(1, 2, 0, 3)  # [2, h, m, d]
        g_b = g_kv.sum(0).view(2, h, d)
        g_q = g_q.reshape(n_vocab, h * d)
        g_W_Q = (x_q.T @ g_q).view(m, h, d).transpose(0, 1)
        g_x_q = g_q @ W_Q.permute(1, 0, 2).reshape(m, h * d).T  # [vocab, m]
        if n_keys < n:
            g_x = torch.cat([g_x, g_x.new_zeros(n_vocab, n - n_keys, m)], 1)
        g_x = g_x.index_add(1, torch.tensor([query], device=g_x.device), g_x_q[:, None])
        return (g_x, g_W_Q, g_W[0], g_W[1], g_q.sum(0).view(h, d), g_b[0], g_b[1], g_W_O, g_bias_O, g_residual,
                None, None, None, None, None)


def pooled_table_attention(
    table: Tensor, W_Q: Tensor, W_K: Tensor, W_V: Tensor, b_Q: Tensor, b_K: Tensor, b_V: Tensor, W_O: Tensor,
    b_O: Tensor, residual: Tensor | None, cos: Tensor | None, sin: Tensor | None, hidden: Tensor | None,
    plan: TablePlan, query: int,
) -> Tensor:
    """`_PooledTableAttention`: [batch, d_model]; with a residual plan (``plan.n_extra``) the output
    includes ``residual[query token]`` ([vocab, d_model], the stream's row) and ``b_O``."""
    return fast_apply(_PooledTableAttention, table, W_Q, W_K, W_V, b_Q, b_K, b_V, W_O, b_O, residual, cos, sin, hidden,
                      plan, query)[0]

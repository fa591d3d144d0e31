"""Index plans and a sparse row-mixing op for the pooled-only training path (no hooks here).

`Attention.forward_pooled_table` computes the first layer's pooled output from the table of
its possible inputs (one row per (token, position)). What depends on the tokens alone (which
table row each pixel reads, where each score sits in the score table, and the transposed
structure the backward pass needs) is collected once in a `TablePlan`; training passes the
same token tensor every step, so the attention module keeps the last plan it built.

`mix_rows` is ``out[i] = sum_j weights[i, j] * table[index[i, j]]``: an exact weighted sum of
table rows, with ``embedding_bag`` forward and a backward that never forms a dense
[bags, table rows] matrix (the table gradient is another ``embedding_bag`` over the entries
sorted by row, the weight gradient a sampled dot product).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor


class TablePlan:
    """Token-dependent indices for attention from a ``[vocab, n_keys]`` table, pooled at ``query``.

    Rows of the key/value tables are ``token * n_keys + position`` (``n_rows = vocab * n_keys``);
    the mixing table stacks one such block per head (row ``head * n_rows + row``), and each
    output's entries are ordered (head, key position), like a ``[batch, head, key]`` pattern.
    """

    def __init__(self, tokens: Tensor, n_vocab: int, n_keys: int, query: int, n_heads: int, residual: bool = False):
        self.tokens, self.version = tokens, tokens._version
        self.key = (n_vocab, n_keys, query, n_heads, residual)
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
        self.n_extra = 0
        if residual:  # two more entries per output (weight 1): the bias row, the query token's residual row
            t = self.n_table_rows
            extra = torch.stack([torch.full_like(self.query_tokens, t), t + 1 + self.query_tokens], 1)
            self.mix_index = torch.cat([self.mix_index, extra], 1)
            self.n_table_rows, self.n_extra = t + 1 + n_vocab, 2
        self._backward: tuple[Tensor, Tensor, Tensor] | None = None
        self._pattern: Tensor | None = None
        self._folded: dict[tuple[int, bool], FoldedPlan] = {}  # vmap: see `FoldedPlan`

    def matches(self, tokens: Tensor, n_vocab: int, n_keys: int, query: int, n_heads: int, residual: bool = False) -> bool:
        return tokens is self.tokens and tokens._version == self.version and self.key == (n_vocab, n_keys, query, n_heads, residual)

    def backward_order(self) -> tuple[Tensor, Tensor, Tensor]:
        """(entries sorted by mixing-table row, the output each belongs to, row offsets).

        Without extra entries it is derived from a sort of the b*k pixel rows: within head ``h``
        the mixing-table rows are ``h * n_rows + row``, so the order is that of the pixels,
        repeated per head.
        """
        if self._backward is None and self.n_extra:
            self._backward = _sorted_entries(self.mix_index, self.n_table_rows)
        if self._backward is None:
            b, k = self.rows.shape
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
    """(entries of ``mix_index`` sorted by table row, the output each belongs to, row offsets)."""
    flat = mix_index.reshape(-1)
    entry = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=n_table_rows)
    return entry, torch.div(entry, mix_index.shape[1], rounding_mode="floor"), counts.cumsum(0) - counts


def _csr_pattern(mix_index: Tensor, n_cols: int, dtype: torch.dtype) -> Tensor:
    b, per = mix_index.shape
    crow = torch.arange(0, b * per + 1, per, device=mix_index.device)
    values = torch.zeros(b * per, device=mix_index.device, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, mix_index.reshape(-1), values, size=(b, n_cols))


def _folded(plan: TablePlan | FoldedPlan, members: int, shared_table: bool) -> FoldedPlan:
    key = (members, shared_table)
    if key not in plan._folded:
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
    return _MixRows.apply(weights, table, plan)

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
from torch.autograd.function import once_differentiable


class TablePlan:
    """Token-dependent indices for attention from a ``[vocab, n_keys]`` table, pooled at ``query``.

    Rows of the key/value tables are ``token * n_keys + position`` (``n_rows = vocab * n_keys``);
    the mixing table stacks one such block per head (row ``head * n_rows + row``), and each
    output's entries are ordered (head, key position), like a ``[batch, head, key]`` pattern.
    """

    def __init__(self, tokens: Tensor, n_vocab: int, n_keys: int, query: int, n_heads: int):
        self.tokens, self.version = tokens, tokens._version
        self.key = (n_vocab, n_keys, query, n_heads)
        dev = tokens.device
        b, h = tokens.shape[0], n_heads
        self.n_rows = n_vocab * n_keys
        self.query_tokens = tokens[:, query].contiguous()  # [b]
        self.rows = tokens[:, :n_keys] * n_keys + torch.arange(n_keys, device=dev)  # [b, k]
        head = torch.arange(h, device=dev)[None, :, None]
        # flat index into a [head, vocab, n_rows] score table: score of (b's query row, b's key row k)
        self.score_index = ((head * n_vocab + self.query_tokens[:, None, None]) * self.n_rows + self.rows[:, None, :]).reshape(-1)
        self.mix_index = (head * self.n_rows + self.rows[:, None, :]).reshape(b, h * n_keys)  # [b, h*k]
        self._backward: tuple[Tensor, Tensor, Tensor] | None = None
        self._pattern: Tensor | None = None

    def matches(self, tokens: Tensor, n_vocab: int, n_keys: int, query: int, n_heads: int) -> bool:
        return tokens is self.tokens and tokens._version == self.version and self.key == (n_vocab, n_keys, query, n_heads)

    def backward_order(self) -> tuple[Tensor, Tensor, Tensor]:
        """(entries sorted by mixing-table row, the output each belongs to, row offsets).

        Derived from a sort of the b*k pixel rows: within head ``h`` the mixing-table rows are
        ``h * n_rows + row``, so the order is that of the pixels, repeated per head.
        """
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
            b, per = self.mix_index.shape
            dev = self.mix_index.device
            crow = torch.arange(0, b * per + 1, per, device=dev)
            values = torch.zeros(b * per, device=dev, dtype=dtype)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
                self._pattern = torch.sparse_csr_tensor(
                    crow, self.mix_index.reshape(-1), values, size=(b, self.key[3] * self.n_rows)
                )
        return self._pattern


class _MixRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weights: Tensor, table: Tensor, plan: TablePlan) -> Tensor:  # type: ignore[override]
        ctx.plan = plan
        ctx.save_for_backward(weights, table)
        return F.embedding_bag(plan.mix_index, table, mode="sum", per_sample_weights=weights)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # type: ignore[override]
        weights, table = ctx.saved_tensors
        plan: TablePlan = ctx.plan
        grad = grad.contiguous()
        grad_weights = grad_table = None
        if ctx.needs_input_grad[0]:
            if grad.device.type == "cpu" and grad.dtype in (torch.float32, torch.float64):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    product = torch.sparse.sampled_addmm(plan.sparsity(grad.dtype), grad, table.T, beta=0.0)
                grad_weights = product.values().view_as(weights)
            else:
                grad_weights = torch.einsum("bjm,bm->bj", table[plan.mix_index], grad)
        if ctx.needs_input_grad[1]:
            entry, out_of, offsets = plan.backward_order()
            grad_table = F.embedding_bag(out_of, grad, offsets, mode="sum", per_sample_weights=weights.reshape(-1)[entry])
        return grad_weights, grad_table, None


def mix_rows(weights: Tensor, table: Tensor, plan: TablePlan) -> Tensor:
    """``out[i] = sum_j weights[i, j] * table[plan.mix_index[i, j]]``, [b, width]; exact."""
    return _MixRows.apply(weights, table, plan)

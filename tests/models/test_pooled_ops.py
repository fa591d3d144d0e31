"""`pooled_table_attention` with the keys grouped into background blocks and exceptions
(`BackgroundGroups`) computes what the dense plan computes: output and every gradient, alone and
under vmap; the plan groups only where it pays."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, vmap

from circuits.models.pooled_ops import TablePlan, pooled_table_attention

VOCAB, N, HEADS, D_MODEL, D_HEAD, BATCH = 6, 9, 3, 8, 4, 256


def sparse_images(seed: int, batch: int = BATCH, max_objects: int = 2) -> torch.Tensor:
    """[CLS]-like query token (5) then background (0) with up to ``max_objects`` other tokens."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(batch, N, dtype=torch.long)
    tokens[:, 0] = VOCAB - 1
    for i in range(batch):
        n = int(torch.randint(0, max_objects + 1, (1,), generator=gen))
        where = 1 + torch.randperm(N - 1, generator=gen)[:n]
        tokens[i, where] = torch.randint(1, VOCAB - 1, (n,), generator=gen)
    return tokens


def weights(seed: int, residual: bool, rotary: bool) -> dict[str, torch.Tensor | None]:
    gen = torch.Generator().manual_seed(seed)

    def r(*shape, std=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * std).requires_grad_()

    w = dict(
        table=r(VOCAB, N, D_MODEL), W_Q=r(HEADS, D_MODEL, D_HEAD, std=0.7), W_K=r(HEADS, D_MODEL, D_HEAD, std=0.7),
        W_V=r(HEADS, D_MODEL, D_HEAD), b_Q=r(HEADS, D_HEAD), b_K=r(HEADS, D_HEAD), b_V=r(HEADS, D_HEAD),
        W_O=r(HEADS, D_HEAD, D_MODEL), b_O=r(D_MODEL), residual=r(VOCAB, D_MODEL) if residual else None,
        cos=None, sin=None,
    )
    if rotary:
        angle = torch.arange(N, dtype=torch.float64)[:, None] * torch.linspace(0.1, 1.0, D_HEAD // 2, dtype=torch.float64)
        w["cos"], w["sin"] = torch.cat([angle.cos()] * 2, -1), torch.cat([angle.sin()] * 2, -1)
    return w


def attend(w: dict, plan: TablePlan) -> torch.Tensor:
    args = [w[k] for k in ("table", "W_Q", "W_K", "W_V", "b_Q", "b_K", "b_V", "W_O", "b_O", "residual", "cos", "sin")]
    return pooled_table_attention(*args, None, plan, 0)


def plans(tokens: torch.Tensor, residual: bool) -> tuple[TablePlan, TablePlan]:
    dense = TablePlan(tokens, VOCAB, N, 0, HEADS, residual)
    grouped = TablePlan(tokens, VOCAB, N, 0, HEADS, residual, group_background=True)
    assert dense.groups is None and grouped.groups is not None
    return dense, grouped


@pytest.mark.parametrize("rotary", [False, True], ids=["learned", "rotary"])
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual-rows"])
def test_grouped_keys_give_the_dense_output_and_gradients(residual, rotary):
    tokens = sparse_images(0)
    dense, grouped = plans(tokens, residual)
    probe = torch.randn(BATCH, D_MODEL, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    results = []
    for plan in (dense, grouped):
        w = weights(2, residual, rotary)
        out = attend(w, plan)
        (out * probe).sum().backward()
        results.append((out.detach(), {k: v.grad for k, v in w.items() if v is not None and v.requires_grad}))
    (out_d, g_d), (out_g, g_g) = results
    torch.testing.assert_close(out_g, out_d, rtol=1e-12, atol=1e-12)
    for name in g_d:
        torch.testing.assert_close(g_g[name], g_d[name], rtol=1e-10, atol=1e-10, msg=name)


def test_grouped_keys_stay_exact_when_one_key_dominates_every_score():
    """Scores far apart (a block's logsumexp against an exception 200 above it): no overflow."""
    tokens = sparse_images(3)
    dense, grouped = plans(tokens, False)
    w = weights(4, False, False)
    with torch.no_grad():
        w["b_K"].zero_()
        w["table"][1:5, :, :] *= 60.0  # object tokens: huge keys, so scores of order +-200
        torch.testing.assert_close(attend(w, grouped), attend(w, dense), rtol=1e-10, atol=1e-10)


def test_under_vmap_each_member_gets_its_own_gradient():
    tokens = sparse_images(5)
    _, grouped = plans(tokens, True)
    members = [weights(10 + k, True, False) for k in range(3)]
    names = ["W_Q", "W_K", "W_V", "W_O"]
    probe = torch.randn(BATCH, D_MODEL, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    fixed = {k: v for k, v in members[0].items() if k not in names}

    def loss(*ws):
        return (attend({**fixed, **dict(zip(names, ws))}, grouped) * probe).sum()

    stacked = [torch.stack([m[n].detach() for m in members]) for n in names]
    got = vmap(grad(loss, argnums=(0, 1, 2, 3)))(*stacked)
    for k, member in enumerate(members):
        want = grad(loss, argnums=(0, 1, 2, 3))(*(member[n].detach() for n in names))
        for name, g, w in zip(names, got, want):
            torch.testing.assert_close(g[k], w, rtol=1e-10, atol=1e-10, msg=name)


@pytest.mark.parametrize("case", ["dense-images", "small-batch"])
def test_the_plan_keeps_every_key_where_grouping_would_not_pay(case):
    if case == "dense-images":  # random tokens: no background to share
        tokens = torch.randint(0, VOCAB, (BATCH, N), generator=torch.Generator().manual_seed(7))
    else:
        tokens = sparse_images(8, batch=8)
    assert TablePlan(tokens, VOCAB, N, 0, HEADS, group_background=True).groups is None


def test_a_group_is_a_query_token_and_a_set_of_exception_positions():
    tokens = sparse_images(9, batch=1024, max_objects=3)
    groups = TablePlan(tokens, VOCAB, N, 0, HEADS, group_background=True).groups
    exceptions = tokens != torch.zeros(N, dtype=torch.long).index_fill(0, torch.tensor([0]), VOCAB - 1)
    assert groups.width == int(exceptions.sum(1).max())
    assert groups.n_groups == len({tuple(row.tolist()) for row in exceptions})
    same = groups.group_of[:, None] == groups.group_of[None, :]
    assert torch.equal(same, (exceptions[:, None, :] == exceptions[None, :, :]).all(-1))
    assert torch.equal(groups.valid.sum(1), exceptions.sum(1))

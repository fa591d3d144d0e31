"""`mix_rows` under torch.func: a member axis on the weights and/or the table gives, per member,
the output and gradients of that member alone, whichever order vmap and grad compose in."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, vmap

from circuits.models.pooled_ops import TablePlan, mix_rows

K, VOCAB, N_POS, HEADS, BATCH, WIDTH = 3, 5, 4, 2, 7, 6


@pytest.fixture(scope="module")
def case():
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, VOCAB, (BATCH, N_POS), generator=gen)
    plan = TablePlan(tokens, VOCAB, N_POS, 0, HEADS)
    weights = torch.randn(K, BATCH, HEADS * N_POS, generator=gen, dtype=torch.float64)
    table = torch.randn(K, plan.n_table_rows, WIDTH, generator=gen, dtype=torch.float64)
    probe = torch.randn(BATCH, WIDTH, generator=gen, dtype=torch.float64)

    def f(w, t):  # a scalar of the output, so every output entry gets its own gradient
        return (mix_rows(w, t, plan) * probe).sum()

    return plan, weights, table, f


def stack(fn, k=K):
    return torch.stack([fn(i) for i in range(k)])


def test_forward_under_vmap_is_each_members_output(case):
    plan, w, t, _ = case
    got = vmap(lambda a, b: mix_rows(a, b, plan))(w, t)
    torch.testing.assert_close(got, stack(lambda k: mix_rows(w[k], t[k], plan)))


@pytest.mark.parametrize("in_dims", [(0, 0), (0, None), (None, 0)], ids=["both", "shared-table", "shared-weights"])
def test_vmap_of_grad_is_each_members_gradient(case, in_dims):
    _, w, t, f = case
    member = lambda x, d, k: x if d is None else x[k]  # noqa: E731
    args = [x if d is not None else x[0] for x, d in zip((w, t), in_dims)]
    got = vmap(grad(f, argnums=(0, 1)), in_dims=in_dims)(*args)
    for i in range(2):
        want = stack(lambda k: grad(f, argnums=i)(member(args[0], in_dims[0], k), member(args[1], in_dims[1], k)))
        torch.testing.assert_close(got[i], want)


def test_autograd_through_vmap_gives_each_member_its_gradient(case):
    _, w, t, f = case
    w, t = w.clone().requires_grad_(), t.clone().requires_grad_()
    vmap(f)(w, t).sum().backward()
    torch.testing.assert_close(w.grad, stack(lambda k: grad(f, argnums=0)(w[k].detach(), t[k].detach())))
    torch.testing.assert_close(t.grad, stack(lambda k: grad(f, argnums=1)(w[k].detach(), t[k].detach())))


def test_a_shared_table_gets_the_sum_of_the_members_gradients(case):
    _, w, t, f = case
    table = t[0].clone().requires_grad_()
    vmap(f, in_dims=(0, None))(w, table).sum().backward()
    torch.testing.assert_close(table.grad, stack(lambda k: grad(f, argnums=1)(w[k], t[0])).sum(0))


def test_nested_vmap_folds_both_member_axes(case):
    _, w, t, f = case
    w2, t2 = torch.stack([w, 2 * w]), torch.stack([t, -t])
    got = vmap(vmap(grad(f, argnums=1)))(w2, t2)
    want = torch.stack([stack(lambda k: grad(f, argnums=1)(w2[j, k], t2[j, k])) for j in range(2)])
    torch.testing.assert_close(got, want)


def test_the_plan_caches_no_tensor_derived_from_the_weights_or_table(case):
    plan, w, t, f = case
    vmap(grad(f, argnums=(0, 1)))(w, t)
    cached = [plan.mix_index, plan.score_index, plan.rows, plan.query_tokens, *plan.backward_order()]
    for folded in plan._folded.values():
        cached += [folded.mix_index, *folded.backward_order()]
    assert plan._folded, "the vmap rule should have folded the plan"
    assert all(not c.is_floating_point() for c in cached)

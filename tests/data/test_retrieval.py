"""The retrieval metrics of Sec. 2.3 / Sec. 7 / App. H on hand-built similarity matrices."""

from __future__ import annotations

import pytest
import torch

from circuits.data.retrieval import label_set_correct, mean, top1_correct, true_captions_on_top

# three candidate captions; caption 0 names (1, 2), caption 1 names (2, 1), caption 2 names (3,) alone
CAPTION_OBJECTS = torch.tensor([[1, 2], [2, 1], [3, -1]])


def test_true_captions_on_top_asks_every_true_caption_above_every_false_one():
    sim = torch.tensor([[0.9, 0.8, 0.1],    # both true captions on top: correct
                        [0.9, 0.1, 0.8],    # a false caption between them: wrong
                        [0.1, 0.2, 0.9]])   # its one true caption on top: correct
    truth = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])
    assert true_captions_on_top(sim, truth).tolist() == [True, False, True]


def test_top1_only_asks_that_the_best_caption_is_true():
    sim = torch.tensor([[0.9, 0.1, 0.8], [0.1, 0.2, 0.9]])
    truth = torch.tensor([[True, True, False], [True, False, False]])
    assert top1_correct(sim, truth).tolist() == [True, False]


def test_label_set_accepts_either_order_and_rejects_other_labels():
    sim = torch.tensor([[0.1, 0.9, 0.0], [0.9, 0.1, 0.0], [0.0, 0.1, 0.9]])
    objects = torch.tensor([[1, 2], [1, 2], [1, 2]])  # the second image's caption 0 is right, the first's reversed
    assert label_set_correct(sim, objects, CAPTION_OBJECTS).tolist() == [True, True, False]


def test_mean_of_an_empty_split_is_nan():
    assert mean(torch.tensor([True, False, False, True])) == 0.5
    assert mean(torch.zeros(0, dtype=torch.bool)) != mean(torch.zeros(0, dtype=torch.bool))


# ------------------------------------------------ App. L, M, N metrics on hand-built rankings
from circuits.data.retrieval import (  # noqa: E402
    failure_breakdown,
    failure_class,
    label_aware_chance,
    pair_identity_correct,
    three_object_metrics,
)

# bidirectional candidates about labels 1, 2, 3: 0 "1L2", 1 "2R1", 2 "1R2", 3 "2L1", 4 "1L3", 5 "3R1"
BIDI_OBJECTS = torch.tensor([[1, 2], [2, 1], [1, 2], [2, 1], [1, 3], [3, 1]])


def _ranked(*order: int, n: int = 6) -> list[float]:
    """Similarities that rank the given captions first, in this order; the rest below."""
    sim = [0.0] * n
    for rank, c in enumerate(order):
        sim[c] = 1.0 - 0.1 * rank
    return sim


def test_failure_classes_of_hand_built_rankings():
    # every image shows 1 left of 2: true captions 0 (1L2) and 1 (2R1)
    sim = torch.tensor([_ranked(1, 0), _ranked(2, 3), _ranked(0, 2), _ranked(2, 4), _ranked(4, 5)])
    truth = torch.zeros(5, 6, dtype=torch.bool)
    truth[:, :2] = True
    objects = torch.tensor([[1, 2]] * 5)
    got = failure_class(sim, truth, objects, BIDI_OBJECTS).tolist()
    # correct; wrong ordering (1R2, 2L1); one true + one wrong; wrong label (1R2, 1L3); wrong label (both about 1,3)
    assert got == [0, 1, 2, 3, 3]


def test_top1_classes_of_hand_built_rankings():
    from circuits.data.retrieval import top1_class

    # left-only candidates: 0 "1L2", 1 "2L1", 2 "1", 3 "1L3", 4 "3L4", 5 "4"; every image shows 1 left of 2
    caption_objects = torch.tensor([[1, 2], [2, 1], [1, -1], [1, 3], [3, 4], [4, -1]])
    sim = torch.tensor([_ranked(c) for c in range(6)])
    truth = torch.zeros(6, 6, dtype=torch.bool)
    truth[:, 0] = True
    objects = torch.tensor([[1, 2]] * 6)
    # correct, reversed, one object, a pair naming one of its objects, unrelated pair, unrelated single
    assert top1_class(sim, truth, objects, caption_objects).tolist() == [0, 1, 2, 3, 4, 4]


def test_failure_breakdown_shares_are_fractions_of_failures():
    out = failure_breakdown(torch.tensor([0, 0, 1, 1, 1, 2, 3]))
    assert out["n_correct"] == 2 and out["n_wrong_ordering"] == 3
    assert out["wrong_ordering_share"] == 3 / 5 and out["one_true_share"] == 1 / 5 and out["wrong_label_share"] == 1 / 5


def test_pair_identity_needs_both_top2_captions_about_the_pair():
    sim = torch.tensor([_ranked(2, 3), _ranked(0, 4), _ranked(3, 0)])
    objects = torch.tensor([[1, 2]] * 3)
    assert pair_identity_correct(sim, objects, BIDI_OBJECTS).tolist() == [True, False, True]


def test_three_object_metrics_on_hand_built_rankings():
    # captions 0..5 about one image of A B C; true ones are 0, 1, 2
    truth = torch.tensor([[1, 1, 1, 0, 0, 0]] * 3, dtype=torch.bool)
    sim = torch.tensor([_ranked(0, 1, 2), _ranked(1, 3, 2), _ranked(4, 5, 0)])
    out = three_object_metrics(sim, truth)
    assert out["3obj_top1"] == pytest.approx(2 / 3)
    assert out["3obj_top3_mean"] == pytest.approx((3 + 2 + 1) / 3)
    assert out["3obj_top3_all"] == pytest.approx(1 / 3)


def test_label_aware_chance_matches_enumerating_every_ranking():
    import itertools

    true = {0, 1, 2}
    perms = list(itertools.permutations(range(6)))
    top1 = sum(p[0] in true for p in perms) / len(perms)
    top3_mean = sum(len(true & set(p[:3])) for p in perms) / len(perms)
    top3_all = sum(set(p[:3]) == true for p in perms) / len(perms)
    chance = label_aware_chance(3, 6)
    assert (chance["top1"], chance["top_k_mean"]) == pytest.approx((top1, top3_mean))
    assert chance["top_k_all"] == pytest.approx(top3_all)
    assert (top1, top3_mean, top3_all) == pytest.approx((0.5, 1.5, 0.05))
    assert label_aware_chance(2, 4)["top_k_all"] == pytest.approx(1 / 6)


def _on_top_by_sorting(sim: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """The definition, with a stable sort: the t most similar captions are the t true ones."""
    order = torch.sort(sim, dim=-1, descending=True, stable=True).indices
    ranked_true = truth.gather(1, order)
    k = torch.arange(sim.shape[1])
    return (ranked_true | (k[None, :] >= truth.sum(-1)[:, None])).all(-1)


@pytest.mark.parametrize("seed", range(5))
def test_true_captions_on_top_equals_the_sorted_definition_ties_included(seed):
    gen = torch.Generator().manual_seed(seed)
    n, c = 400, 9
    sim = torch.randint(0, 4, (n, c), generator=gen).float() / 4  # many exact ties
    truth = torch.rand(n, c, generator=gen) < torch.rand(n, 1, generator=gen) * 0.5
    truth[:5] = False  # no true caption: correct by definition
    truth[5:10] = True  # no false caption
    want = _on_top_by_sorting(sim, truth)
    assert torch.equal(true_captions_on_top(sim, truth), want)
    assert 0 < int(want.sum()) < n
    noisy = sim + 1e-3 * torch.randn(n, c, generator=gen)  # no ties
    assert torch.equal(true_captions_on_top(noisy, truth), _on_top_by_sorting(noisy, truth))

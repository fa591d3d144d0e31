"""The retrieval metrics of Sec. 2.3 / Sec. 7 / App. H on hand-built similarity matrices."""

from __future__ import annotations

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

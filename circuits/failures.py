"""Failure analysis: bidirectional captions (App. M, Table 3; specs A8, A9) and, for any
two-object split, what the top caption is when it is wrong (`top1_breakdown`, App. C's reading).

For each unseen two-object image (true set T = {XLY, YRX}) the top-2 captions are classified
(`circuits.data.retrieval.failure_class`): correct, wrong ordering ({XRY, YLX}: the right pair,
the reversed relation), one true + one wrong, or a wrong label; optionally under an ablation::

    failure_analysis(run.model, run.task, Ablation(terms=("EP",)))["wrong_ordering_share"]

Reference points (A9): a random ranking of the four pair captions gives 20 % wrong ordering
among failures (`WRONG_ORDERING_RANDOM`); a model that keeps XLY and YRX together gives 100 %.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from circuits.ablate import Ablation, ablated
from circuits.data import retrieval
from circuits.errors import CircuitsError
from circuits.evaluation import similarity_matrix


def failure_analysis(model, task, ablation: Ablation | None = None, split: str = "unseen_pair") -> dict[str, float]:
    """Counts and shares of the failure classes on ``split`` (two-object images, bidirectional
    captions), plus App. L's strict (top-2), relaxed (top-1) and pair-identity accuracies."""
    if getattr(getattr(task, "cfg", None), "captions", None) != "bidirectional":
        raise CircuitsError("failure analysis needs bidirectional captions (a model trained with world.captions=bidirectional)")
    data, sim, truth = _two_object_similarity(model, task, split, ablation)
    classes = retrieval.failure_class(sim, truth, data.objects, task.caption_objects)
    return {
        "strict": retrieval.mean(classes == 0),
        "relaxed": retrieval.mean(retrieval.top1_correct(sim, truth)),
        "pair_identity": retrieval.mean(retrieval.pair_identity_correct(sim, data.objects, task.caption_objects)),
        **retrieval.failure_breakdown(classes),
        "wrong_ordering_random": retrieval.WRONG_ORDERING_RANDOM,
    }


def top1_breakdown(model, task, split: str = "unseen_pair", ablation: Ablation | None = None) -> dict[str, float]:
    """Shares of the two-object images of ``split`` whose top caption is of each class of
    `retrieval.TOP1_CLASSES` (they sum to 1), and ``training_caption``: the share of the wrong
    top captions that are captions of the training set (NaN without failures). Left-only or
    bidirectional captions; optionally under an ablation."""
    data, sim, truth = _two_object_similarity(model, task, split, ablation)
    classes = retrieval.top1_class(sim, truth, data.objects, task.caption_objects)
    out = {name: retrieval.mean(classes == i) for i, name in enumerate(retrieval.TOP1_CLASSES)}
    wrong = classes > 0
    in_train = torch.isin(sim.argmax(-1), task.train_caption_ids.to(sim.device))
    out["training_caption"] = retrieval.mean(in_train[wrong])
    return out


def _two_object_similarity(model, task, split: str, ablation: Ablation | None):
    """(the split, its image x caption similarities, its truth), checking it holds two-object images."""
    data = task[split]
    if data.objects.shape[1] != 2 or bool((data.objects < 0).any()):
        raise CircuitsError(f"split {split!r} does not hold two-object images; use seen_pair or unseen_pair")
    with ablated(model, ablation) if ablation is not None else nullcontext():
        sim = similarity_matrix(model, task, data)
    return data, sim, data.truth(task.n_captions).to(sim.device)

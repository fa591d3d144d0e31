"""Retrieval metrics of the CLIP worlds (Sec. 2.3, Sec. 7, App. H), as functions of a
similarity matrix: no model here.

An image counts as correct when its true captions occupy the top ranks: the top-1 for
single-object and left-only captions, the top-2 for bidirectional two-object images (both
"X is on the left of Y" and "Y is on the right of X", Sec. 7). Label-set recognition (App. H)
asks only that the top-1 caption names the image's objects, in either order. Also here: App. L's
pair-identity metric (A8), App. M's failure classes (Table 3, A9), App. N's three-object
metrics (Table 4, A10.3) and the label-aware chance levels printed beside them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor


def true_captions_on_top(sim: Float[Tensor, "n c"], truth: Bool[Tensor, "n c"]) -> Bool[Tensor, " n"]:
    """The image's t true captions are exactly its t most similar captions: every true caption
    ranks above every false one (the lowest true similarity above the highest false one; on an
    exact tie the lower caption index ranks first, as in a stable sort). No sort: a few passes."""
    lowest_true = sim.masked_fill(~truth, float("inf")).amin(-1)  # +inf: no true caption
    highest_false = sim.masked_fill(truth, float("-inf")).amax(-1)  # -inf: no false caption
    on_top = lowest_true > highest_false
    tie = lowest_true == highest_false
    if bool(tie.any()):
        index = torch.arange(sim.shape[1], device=sim.device)
        last_true = torch.where(truth & (sim == lowest_true[:, None]), index, -1).amax(-1)
        first_false = torch.where(~truth & (sim == highest_false[:, None]), index, sim.shape[1]).amin(-1)
        on_top = on_top | (tie & (last_true < first_false))
    return on_top


def top1_correct(sim: Float[Tensor, "n c"], truth: Bool[Tensor, "n c"]) -> Bool[Tensor, " n"]:
    """The most similar caption is one of the image's true captions."""
    return truth.gather(1, sim.argmax(-1, keepdim=True)).squeeze(1)


def label_set_correct(
    sim: Float[Tensor, "n c"], objects: Int[Tensor, "n k"], caption_objects: Int[Tensor, "c 2"]
) -> Bool[Tensor, " n"]:
    """The top-1 caption names exactly the image's objects, in either order (App. H)."""
    named = caption_objects.to(sim.device)[sim.argmax(-1)]  # [n, 2], -1 padded
    want = objects.to(sim.device)
    if want.shape[1] < named.shape[1]:
        want = F.pad(want, (0, named.shape[1] - want.shape[1]), value=-1)
    return (named.sort(-1).values == want.sort(-1).values).all(-1)


def mean(x: Tensor) -> float:
    """Fraction of True (NaN for an empty split)."""
    return float(x.float().mean()) if x.numel() else float("nan")


def true_in_top_k(sim: Float[Tensor, "n c"], truth: Bool[Tensor, "n c"], k: int) -> Int[Tensor, " n"]:
    """How many of the ``k`` most similar captions are true of the image."""
    return truth.gather(1, sim.topk(k, dim=-1).indices).sum(-1)


def three_object_metrics(sim: Float[Tensor, "n c"], truth: Bool[Tensor, "n c"]) -> dict[str, float]:
    """App. N, Table 4 (A10.3): ``3obj_top1`` (a true caption ranks first), ``3obj_top3_mean``
    (true captions among the top k, averaged, 0..k) and ``3obj_top3_all`` (the top k are exactly
    the true captions), with k = the number of true captions (3 for left-only captions)."""
    k = int(truth.sum(-1).max()) if len(truth) else 3
    return {
        "3obj_top1": mean(top1_correct(sim, truth)),
        "3obj_top3_mean": float(true_in_top_k(sim, truth, k).float().mean()) if len(truth) else float("nan"),
        "3obj_top3_all": mean(true_captions_on_top(sim, truth)),
    }


def label_aware_chance(n_true: int, n_candidates: int) -> dict[str, float]:
    """Exact scores of a model that knows which objects are present but ranks the
    ``n_candidates`` captions about them at random (Sec. 0.1 of the specs), ``n_true`` of which
    are true: ``top1`` = P(first is true), ``top_k_mean`` = expected true captions in the top
    k = n_true, ``top_k_all`` = P(the top k are exactly the true ones) = 1 / C(n, k).

    Three objects, left-only (A10.3): ``label_aware_chance(3, 6)`` = 0.5, 1.5, 1/20.
    Two objects, bidirectional (A8): ``label_aware_chance(2, 4)["top_k_all"]`` = 1/6."""
    return {
        "top1": n_true / n_candidates,
        "top_k_mean": n_true * n_true / n_candidates,
        "top_k_all": 1 / math.comb(n_candidates, n_true),
    }


def pair_identity_correct(
    sim: Float[Tensor, "n c"], objects: Int[Tensor, "n 2"], caption_objects: Int[Tensor, "c 2"], k: int = 2
) -> Bool[Tensor, " n"]:
    """App. L (A8): each of the top-``k`` captions names exactly the image's two objects, in
    either order and with either relation (XLY, XRY, YLX or YRX)."""
    named = caption_objects.to(sim.device)[sim.topk(k, dim=-1).indices].sort(-1).values  # [n, k, 2]
    want = objects.to(sim.device).sort(-1).values[:, None, :]
    return (named == want).all(-1).all(-1)


FAILURE_CLASSES = ("correct", "wrong_ordering", "one_true", "wrong_label")


def failure_class(
    sim: Float[Tensor, "n c"], truth: Bool[Tensor, "n c"], objects: Int[Tensor, "n 2"], caption_objects: Int[Tensor, "c 2"]
) -> Int[Tensor, " n"]:
    """App. M, Table 3 (A9), bidirectional two-object images (true set T = {XLY, YRX}): an index
    into `FAILURE_CLASSES` per image from its top-2 captions.

    ``correct``: top-2 = T. ``wrong_ordering``: neither is true but both are about {X, Y}, i.e.
    top-2 = {XRY, YLX}. ``one_true``: one true caption and one wrong one. ``wrong_label``: no
    true caption and at least one caption names another label."""
    n_true = true_in_top_k(sim, truth, 2)
    about_pair = pair_identity_correct(sim, objects, caption_objects, k=2)
    out = torch.full_like(n_true, 3)  # wrong_label unless below
    out = torch.where((n_true == 0) & about_pair, 1, out)
    out = torch.where(n_true == 1, 2, out)
    return torch.where(n_true >= 2, 0, out)


def failure_breakdown(classes: Int[Tensor, " n"]) -> dict[str, float]:
    """Counts of each class, and each failure class as a fraction of the failures (NaN if none).
    ``wrong_ordering_share`` is Table 3's "wrong ordering (%)"; an unstructured random ranking
    of the four pair captions gives (1/6)/(5/6) = 0.2 (`WRONG_ORDERING_RANDOM`)."""
    counts = torch.bincount(classes.cpu(), minlength=len(FAILURE_CLASSES)).tolist()
    n_fail = sum(counts[1:])
    out: dict[str, float] = {f"n_{name}": float(c) for name, c in zip(FAILURE_CLASSES, counts)}
    for name, c in zip(FAILURE_CLASSES[1:], counts[1:]):
        out[f"{name}_share"] = c / n_fail if n_fail else float("nan")
    return out


WRONG_ORDERING_RANDOM = (1 / 6) / (5 / 6)  # A9: random ranking of the 4 pair captions

TOP1_CLASSES = ("correct", "reversed", "one_object", "pair_one_label", "unrelated")


def top1_class(
    sim: Float[Tensor, "n c"], truth: Bool[Tensor, "n c"], objects: Int[Tensor, "n 2"], caption_objects: Int[Tensor, "c 2"]
) -> Int[Tensor, " n"]:
    """What the top caption of each two-object image is, as an index into `TOP1_CLASSES` (ours;
    App. C's failures): ``correct`` (a true caption), ``reversed`` (names both its objects but is
    false: the relation reversed), ``one_object`` (a single-object caption of one of its
    objects), ``pair_one_label`` (a pair caption naming one of its objects), ``unrelated``
    (names neither). Left-only and bidirectional captions alike."""
    named = caption_objects.to(sim.device)[sim.argmax(-1)]  # [n, 2], -1 padded
    want = objects.to(sim.device)
    hits = ((named[:, :, None] == want[:, None, :]) & (named[:, :, None] >= 0)).any(-1).sum(-1)  # its objects named
    single = named[:, 1] < 0
    out = torch.full_like(hits, 4)
    out = torch.where((hits == 1) & ~single, 3, out)
    out = torch.where((hits == 1) & single, 2, out)
    out = torch.where(hits == 2, 1, out)
    return torch.where(top1_correct(sim, truth), 0, out)

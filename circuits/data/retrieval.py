"""Retrieval metrics of the CLIP worlds (Sec. 2.3, Sec. 7, App. H), as functions of a
similarity matrix: no model here.

An image counts as correct when its true captions occupy the top ranks: the top-1 for
single-object and left-only captions, the top-2 for bidirectional two-object images (both
"X is on the left of Y" and "Y is on the right of X", Sec. 7). Label-set recognition (App. H)
asks only that the top-1 caption names the image's objects, in either order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor


def true_captions_on_top(sim: Float[Tensor, "n c"], truth: Bool[Tensor, "n c"]) -> Bool[Tensor, " n"]:
    """The image's t true captions are exactly its t most similar captions."""
    n_true = truth.sum(-1)
    top_is_true = truth.gather(1, sim.argsort(dim=-1, descending=True))  # is the k-th ranked caption true?
    k = torch.arange(sim.shape[1], device=sim.device)
    return (top_is_true | (k[None, :] >= n_true[:, None])).all(-1)


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

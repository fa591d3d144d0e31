"""Symmetric CLIP loss with multi-positive targets.

A batch is a set of images; its texts are the captions true of them, with multiplicity (the
caption "3 is in the image" occurs once per single-object image of label 3). This is the usual
B x B CLIP loss in which every (image, text) pair whose caption is *true of the image* is a
positive: identical captions are never pushed apart as negatives, and with bidirectional
captions "X left Y" and "Y right X" of one image are both positives.

It is computed exactly, without the B x B matrix, over the U distinct captions: a caption
occurring n_c times enters the image->text softmax with logit ``s + log n_c`` and carries
target mass proportional to n_c; the text->image direction averages one soft cross-entropy per
caption, weighted by n_c. The loss is the mean of the two directions.

`masked_clip_loss` is App. N's alternative (``train.loss = "mask_false_negatives"``, A10.2):
each image has one chosen text, and every other text of the batch that is also true of the
image is removed from the negatives instead of being counted as a positive.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor


def clip_loss(
    logits: Float[Tensor, "batch n_captions"], truth: Bool[Tensor, "batch n_captions"]
) -> Float[Tensor, ""]:
    """Symmetric multi-positive CLIP loss.

    ``logits[i, c]`` = scale * cos(image i, caption c); ``truth[i, c]`` = caption c is true of
    image i. Captions true of no image in the batch are ignored.
    """
    truth_f = truth.float()
    counts = truth_f.sum(0)  # n_c: how often caption c occurs among the batch's texts
    present = counts > 0
    if not bool(present.all()):  # full batches hold every caption: no copy of the logits then
        logits, truth_f, counts = logits[:, present], truth_f[:, present], counts[present]
    return _clip_loss_present(logits, truth_f, counts)


def clip_loss_all_present(
    logits: Float[Tensor, "batch n_captions"], truth: Bool[Tensor, "batch n_captions"]
) -> Float[Tensor, ""]:
    """`clip_loss` when every caption is true of some image of the batch (a full training batch).

    No data-dependent indexing, so it runs under ``torch.func.vmap`` over stacked batches.
    """
    truth_f = truth.float()
    return _clip_loss_present(logits, truth_f, truth_f.sum(0))


def _clip_loss_present(logits: Tensor, truth_f: Tensor, counts: Tensor) -> Tensor:
    # image -> text: softmax over the batch's texts, duplicates folded into log n_c
    target_i2t = truth_f * counts
    target_i2t = target_i2t / target_i2t.sum(1, keepdim=True)
    log_counts = counts.log()
    # (the + target . log n_c term is constant; it makes the value equal the B x B loss's)
    loss_i2t = (target_i2t * (log_counts - F.log_softmax(logits + log_counts, dim=1))).sum(1).mean()

    # text -> image: each caption's softmax over images, uniform over the images it is true of
    target_t2i = truth_f / counts
    loss_t2i_per_caption = -(target_t2i * F.log_softmax(logits, dim=0)).sum(0)
    loss_t2i = (loss_t2i_per_caption * counts).sum() / counts.sum()
    return (loss_i2t + loss_t2i) / 2


def clip_loss_reference(
    logits: Float[Tensor, "batch n_captions"], truth: Bool[Tensor, "batch n_captions"]
) -> Float[Tensor, ""]:
    """The same loss written as the textbook B x B soft-target CLIP loss (slow; for tests).

    Texts are expanded with multiplicity; pair (i, j) is positive when text j is true of image i.
    """
    text_caption = torch.nonzero(truth)[:, 1]  # one text per (image, true caption), caption id
    big = logits[:, text_caption]  # [B, T]
    positive = truth[:, text_caption].float()
    i2t = -(positive / positive.sum(1, keepdim=True) * F.log_softmax(big, dim=1)).sum(1).mean()
    t2i = -(positive / positive.sum(0, keepdim=True) * F.log_softmax(big, dim=0)).sum(0).mean()
    return (i2t + t2i) / 2


def masked_clip_loss(
    logits: Float[Tensor, "batch n_captions"], truth: Bool[Tensor, "batch n_captions"], chosen: Int[Tensor, " batch"]
) -> Float[Tensor, ""]:
    """False-negative masking, App. N.2 (A10.2): the B x B CLIP loss of each image i against
    its chosen text t_i (``chosen[i]``, a column of ``logits``), with ``L[i, j] = -inf`` wherever
    j != i and caption t_j is true of image i (the other true captions of a 3-object image, and
    copies of the same caption attached to other images); then
    ``(CE_rows(L, diag) + CE_cols(L, diag)) / 2`` on the same masked matrix."""
    big = logits[:, chosen]  # [B, B]: image i against the text of image j
    eye = torch.eye(len(chosen), dtype=torch.bool, device=logits.device)
    big = big.masked_fill(truth[:, chosen] & ~eye, float("-inf"))
    target = torch.arange(len(chosen), device=logits.device)
    return (F.cross_entropy(big, target) + F.cross_entropy(big.T, target)) / 2

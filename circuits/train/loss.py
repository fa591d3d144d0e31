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
    plain = _unbatched(truth)
    if plain is None:  # a batched truth inside vmap: op by op (no data-dependent shapes)
        truth_f = truth.float()
        return _clip_loss_present(logits, truth_f, truth_f.sum(0))
    targets = _targets(plain, logits.dtype)
    if targets.present is not None:  # full batches hold every caption: no copy of the logits then
        logits = logits[:, targets.present]
    return _ClipLoss.apply(logits, *targets.tensors())[0]


def clip_loss_all_present(
    logits: Float[Tensor, "batch n_captions"], truth: Bool[Tensor, "batch n_captions"]
) -> Float[Tensor, ""]:
    """`clip_loss` when every caption is true of some image of the batch (a full training batch).

    Runs under ``torch.func.vmap`` over stacked logits, and over stacked batches (then op by op).
    """
    plain = _unbatched(truth)
    if plain is None:
        truth_f = truth.float()
        return _clip_loss_present(logits, truth_f, truth_f.sum(0))
    return _ClipLoss.apply(logits, *_targets(plain, logits.dtype, all_present=True).tensors())[0]


class _Targets:
    """What the loss needs of ``truth`` (not of the logits): computed once per truth tensor.

    With ``counts`` n_c (how often caption c occurs among the batch's texts), N = sum n_c and
    B images: the flat indices of the true (image, caption) pairs, and there ``t_i2t / B`` (the
    image->text target: rows of ``truth * n_c``, normalised) and ``truth / N = 1 / N``.
    Captions true of no image are dropped (``present``, None when all are there).
    """

    def __init__(self, truth: Tensor, dtype: torch.dtype, all_present: bool):
        truth_f = truth.to(dtype)
        counts = truth_f.sum(0)
        present = None if all_present else counts > 0
        if present is not None and bool(present.all()):
            present = None
        if present is not None:
            truth_f, counts = truth_f[:, present], counts[present]
        self.present = present
        b = truth_f.shape[0]
        self.log_counts = counts.log()  # [C]
        total = counts.sum()
        self.t2i_weight = counts / total  # [C]: weight of caption c's text->image term
        target_i2t = truth_f * counts
        target_i2t = target_i2t / target_i2t.sum(1, keepdim=True)
        flat = truth_f.reshape(-1).nonzero().squeeze(1)
        self.index = flat  # flat indices of the true (image, caption) pairs
        self.k_i2t = target_i2t.reshape(-1)[flat] / b  # t_i2t / B there
        self.k_t2i = 1 / total  # truth / N there (a 0-d tensor)
        self.log_count_term = (self.k_i2t * self.log_counts.repeat(b)[flat]).sum()  # sum_ic t_ic log n_c / B

    def tensors(self) -> tuple[Tensor, ...]:
        """The inputs of `_ClipLoss` after the logits (tensors, so that function transforms see them)."""
        return self.log_counts, self.t2i_weight, self.index, self.k_i2t, self.k_t2i, self.log_count_term


_TARGETS: list = [None]  # one entry: (truth, its version, dtype, all_present, _Targets)


def _unbatched(t: Tensor) -> Tensor | None:
    """``t`` unwrapped from function transforms (``grad`` wraps even tensors it does not
    differentiate), or None when some ``vmap`` level batches it."""
    functorch = torch._C._functorch
    while functorch.is_functorch_wrapped_tensor(t):
        if functorch.is_batchedtensor(t):
            return None
        t = functorch.get_unwrapped(t)
    return t


def _targets(truth: Tensor, dtype: torch.dtype, all_present: bool = False) -> _Targets:
    """`_Targets` of ``truth`` (a plain tensor), cached for the last truth seen (training passes
    the same one every full-batch step; under ``grad`` it arrives in a new wrapper, around the
    same storage, hence the second test)."""
    entry = _TARGETS[0]
    if entry is not None and entry[1:4] == (truth._version, dtype, all_present) and (
        entry[0] is truth
        or (entry[0].data_ptr() == truth.data_ptr() and entry[0].shape == truth.shape
            and entry[0].stride() == truth.stride() and entry[0].dtype == truth.dtype and entry[0].device == truth.device)
    ):
        return entry[4]
    targets = _Targets(truth, dtype, all_present)
    _TARGETS[0] = (truth, truth._version, dtype, all_present, targets)  # (the reference keeps its storage alive)
    return targets


def _loss_from_shifted(a: Tensor, t2i_weight: Tensor, index: Tensor, k_i2t: Tensor, k_t2i: Tensor, log_count_term: Tensor):
    """(loss, e1, s1, e0, s0) from ``a = logits + log n_c`` (a fresh tensor; overwritten)."""
    e0 = a - a.amax(0, keepdim=True)  # logits - max_i logits (the log n_c shift cancels)
    e1 = a.sub_(a.amax(1, keepdim=True))  # A - max_c A, <= 0
    picked = (e1.reshape(-1)[index] * k_i2t + e0.reshape(-1)[index] * k_t2i).sum()
    s1 = e1.exp_().sum(1, keepdim=True)
    s0 = e0.exp_().sum(0, keepdim=True)
    value = s1.log().mean() + (s0.log().squeeze(0) * t2i_weight).sum() + log_count_term - picked
    return value / 2, e1, s1, e0, s0


def _loss_from_bounded(a: Tensor, t2i_weight: Tensor, index: Tensor, k_i2t: Tensor, k_t2i: Tensor, log_count_term: Tensor):
    """`_loss_from_shifted` when ``a = logits + log n_c - scale`` with ``|logits| <= scale`` (cosines
    times the scale) and ``scale <= _BOUNDED_SCALE``: ``exp(a)`` cannot overflow or underflow, so
    one exponential serves both directions and no maxima are needed. Returns (loss, E, s1, E, s0)
    with ``E = exp(a)`` (overwriting ``a``): ``softmax_c(A) = E / s1`` and ``softmax_i(logits) =
    E / s0``, as `_logits_grad` expects of (e1, s1, e0, s0). The shift cancels from the value:
    ``loss = mean_i log s1_i + sum_c (n_c / N) log s0_c + sum_ic t_ic log n_c / B - sum_ic K_ic a_ic``."""
    picked = (a.reshape(-1)[index] * (k_i2t + k_t2i)).sum()
    e = a.exp_()
    s1 = e.sum(1, keepdim=True)
    s0 = e.sum(0, keepdim=True)
    value = s1.log().mean() + (s0.log().squeeze(0) * t2i_weight).sum() + log_count_term - picked
    return value / 2, e, s1, e, s0


_BOUNDED_SCALE = 40.0  # exp(-2 * 40) ~ 2e-35 is still a normal float32


def _logits_grad(grad: Tensor, e1: Tensor, s1: Tensor, e0: Tensor, s0: Tensor, t2i_weight: Tensor, index: Tensor,
                 k_i2t: Tensor, k_t2i: Tensor) -> Tensor:
    """d loss / d logits from what `_loss_from_shifted` kept (a fresh tensor)."""
    half = grad / 2
    out = torch.addcmul(e1 * (half / (e1.shape[0] * s1)), e0, half * t2i_weight / s0)
    out.view(-1).index_add_(0, index, (k_i2t + k_t2i) * -half)
    return out


class _ClipLoss(torch.autograd.Function):
    """The soft-target loss in closed form, forward and backward in a few passes over the logits.

    With ``A = logits + log n_c`` and ``lse1_i = logsumexp_c A_ic``, ``lse0_c = logsumexp_i logits_ic``::

        loss = (mean_i lse1_i + sum_c (n_c / N) lse0_c - sum_ic K_ic logits_ic) / 2
        dloss/dlogits = (softmax_c(A) / B + (n_c / N) softmax_i(logits) - K) / 2

    with ``K = t_i2t / B + truth / N``: `_clip_loss_present` (image->text: ``sum_c t_ic (log n_c -
    log_softmax(A)_ic)``, whose rows of ``t`` sum to 1; text->image: each caption's
    cross-entropy over images, weighted by n_c), rearranged. The value is summed from the shifted
    logits ``A - max`` and ``logits - max`` (no cancellation between two large terms). A vmap
    rule is generated (ensembles).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(  # type: ignore[override]
        logits: Tensor, log_counts: Tensor, t2i_weight: Tensor, index: Tensor, k_i2t: Tensor, k_t2i: Tensor, log_count_term: Tensor
    ) -> tuple[Tensor, ...]:
        return _loss_from_shifted(logits + log_counts, t2i_weight, index, k_i2t, k_t2i, log_count_term)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        _, _, t2i_weight, index, k_i2t, k_t2i, _ = inputs
        _, e1, s1, e0, s0 = output
        ctx.save_for_backward(e1, s1, e0, s0, t2i_weight, index, k_i2t, k_t2i)
        ctx.mark_non_differentiable(e1, s1, e0, s0)
        ctx.set_materialize_grads(False)  # (no zero gradients for the outputs after the first)

    @staticmethod
    def backward(ctx, grad: Tensor, *_) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        return _logits_grad(grad, *ctx.saved_tensors), None, None, None, None, None, None


class _ClipHeadLoss(torch.autograd.Function):
    """`_ClipLoss` of ``scale * normalize(images) @ normalize(texts).T``, normalisation and the
    logits matmul included (as ``F.normalize``: ``x / max(|x|, 1e-12)``). ``log n_c`` enters the
    matmul as its bias; backward: two matmuls, the scale's gradient from the [B, d] product
    ``(dL/dlogits @ texts) . images`` and the normalisations' Jacobians, with no autograd
    graph inside. A vmap rule is generated (ensembles)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(  # type: ignore[override]
        images: Tensor, texts: Tensor, scale: Tensor, log_counts: Tensor, t2i_weight: Tensor, index: Tensor,
        k_i2t: Tensor, k_t2i: Tensor, log_count_term: Tensor, bounded: bool,
    ) -> tuple[Tensor, ...]:
        img_norm = images.norm(dim=-1, keepdim=True).clamp_min(_EPS)
        txt_norm = texts.norm(dim=-1, keepdim=True).clamp_min(_EPS)
        img = images / img_norm
        txt = texts / txt_norm
        if bounded:  # one exponential, no maxima (`_loss_from_bounded`)
            value, e, s1, _, s0 = _loss_from_bounded(
                torch.addmm(log_counts - scale, img * scale, txt.T), t2i_weight, index, k_i2t, k_t2i, log_count_term)
            return value, e, s1, e.new_empty(0), s0, img, img_norm, txt, txt_norm
        a = torch.addmm(log_counts, img * scale, txt.T)
        return (*_loss_from_shifted(a, t2i_weight, index, k_i2t, k_t2i, log_count_term), img, img_norm, txt, txt_norm)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        _, _, scale, _, t2i_weight, index, k_i2t, k_t2i, _, _ = inputs
        _, e1, s1, e0, s0, img, img_norm, txt, txt_norm = output
        ctx.save_for_backward(e1, s1, e0, s0, t2i_weight, index, k_i2t, k_t2i, img, img_norm, txt, txt_norm, scale)
        ctx.mark_non_differentiable(e1, s1, e0, s0, img, img_norm, txt, txt_norm)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad: Tensor, *_) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        e1, s1, e0, s0, t2i_weight, index, k_i2t, k_t2i, img, img_norm, txt, txt_norm, scale = ctx.saved_tensors
        if e0.numel() == 0:  # bounded: one exponential for both directions
            e0 = e1
        g = _logits_grad(grad, e1, s1, e0, s0, t2i_weight, index, k_i2t, k_t2i)  # d loss / d logits
        g_img = g @ txt  # d loss / d (scale * img), / scale
        g_txt = (g.T @ img).mul_(scale)
        g_scale = (g_img * img).sum()
        g_img = g_img.mul_(scale)
        return (_normalize_grad(g_img, img, img_norm), _normalize_grad(g_txt, txt, txt_norm), g_scale,
                None, None, None, None, None, None, None)


_EPS = 1e-12  # F.normalize's


def _normalize_grad(grad: Tensor, unit: Tensor, norm: Tensor) -> Tensor:
    """d / dx of ``x / max(|x|, eps)`` applied to ``grad`` (``unit`` the output, ``norm`` the clamped |x|)."""
    along = (grad * unit).sum(-1, keepdim=True) * (norm > _EPS)  # (a clamped norm is a constant: no projection)
    return torch.addcmul(grad, unit, along, value=-1).div_(norm)


def clip_loss_of_embeddings(
    images: Float[Tensor, "batch d"], texts: Float[Tensor, "n_captions d"], scale: Float[Tensor, ""],
    truth: Bool[Tensor, "batch n_captions"],
) -> Float[Tensor, ""]:
    """``clip_loss(scale * normalize(images) @ normalize(texts).T, truth)`` in one fused step
    (`_ClipHeadLoss`); the training objective's form. Captions true of no image are dropped from
    ``texts`` before the matmul."""
    plain = _unbatched(truth)
    if plain is None:
        return clip_loss(scale * F.normalize(images, dim=-1) @ F.normalize(texts, dim=-1).T, truth)
    targets = _targets(plain, images.dtype)
    if targets.present is not None:
        texts = texts[targets.present]
    return _ClipHeadLoss.apply(images, texts, scale, *targets.tensors(), _bounded(scale))[0]


def _bounded(scale: Tensor) -> bool:
    """Whether `_loss_from_bounded` applies: on the CPU (reading the scale is free there; on a GPU
    it would wait for the device), every member's scale at most ``_BOUNDED_SCALE``."""
    plain = scale
    functorch = torch._C._functorch
    while functorch.is_functorch_wrapped_tensor(plain):  # all members' scales, under vmap
        plain = functorch.get_unwrapped(plain)
    return plain.device.type == "cpu" and float(plain.detach().max()) <= _BOUNDED_SCALE


def _clip_loss_present(logits: Tensor, truth_f: Tensor, counts: Tensor) -> Tensor:
    # (the reference of `_ClipLoss`, op by op as first written; tests compare the two)
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

"""Specification of the symmetric multi-positive CLIP loss.

The reference here is written independently of the library, with explicit loops: the batch's
texts are the captions true of its images *with multiplicity* (one text per (image, true
caption)), and the loss is the mean of the image->text and text->image soft-target
cross-entropies of the B x T logit matrix, a pair being positive when its caption is true of
its image.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from circuits.train import clip_loss, clip_loss_reference
from conftest import clip_for


def textbook_loss(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    n_images, _ = truth.shape
    texts = [c for i in range(n_images) for c in range(truth.shape[1]) if truth[i, c]]  # with multiplicity
    big = logits[:, texts]  # [B, T]
    positive = truth[:, texts]
    i2t = []
    for i in range(n_images):
        target = positive[i].double() / positive[i].sum()
        i2t.append(-(target * F.log_softmax(big[i].double(), dim=0)).sum())
    t2i = []
    for j in range(len(texts)):
        target = positive[:, j].double() / positive[:, j].sum()
        t2i.append(-(target * F.log_softmax(big[:, j].double(), dim=0)).sum())
    return (torch.stack(i2t).mean() + torch.stack(t2i).mean()) / 2


def random_batch(seed: int, n_images: int = 9, n_captions: int = 12, max_true: int = 2):
    """Random logits and a truth matrix where images have 1..max_true true captions, several
    images share captions, and some captions are true of no image in the batch."""
    gen = torch.Generator().manual_seed(seed)
    pool = torch.randperm(n_captions, generator=gen)[: max(2, n_captions // 2)]  # the others are absent
    truth = torch.zeros(n_images, n_captions, dtype=torch.bool)
    for i in range(n_images):
        k = int(torch.randint(1, max_true + 1, (), generator=gen))
        truth[i, pool[torch.randperm(len(pool), generator=gen)[:k]]] = True
    logits = 5 * torch.randn(n_images, n_captions, generator=gen, dtype=torch.float64)
    return logits, truth


CASES = [(seed, n, c, t) for seed, (n, c, t) in enumerate([(9, 12, 2), (5, 4, 1), (16, 30, 3), (6, 20, 2), (2, 3, 2)])]


@pytest.mark.parametrize("seed, n_images, n_captions, max_true", CASES)
def test_clip_loss_equals_the_textbook_b_by_b_loss(seed, n_images, n_captions, max_true):
    logits, truth = random_batch(seed, n_images, n_captions, max_true)
    assert (truth.sum(0) > 1).any() or n_images <= 2, "the case should have captions shared by several images"
    want = textbook_loss(logits, truth)
    # (clip_loss counts captions in float32, so float64 inputs agree to ~1e-8, not to 1e-15)
    torch.testing.assert_close(clip_loss(logits, truth), want, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(clip_loss_reference(logits, truth), want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("seed, n_images, n_captions, max_true", CASES)
def test_clip_loss_gradient_equals_the_textbook_gradient(seed, n_images, n_captions, max_true):
    logits, truth = random_batch(seed, n_images, n_captions, max_true)
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    clip_loss(a, truth).backward()
    textbook_loss(b, truth).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-8)
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_float32_loss_matches_reference():
    logits, truth = random_batch(11, 40, 50, 2)
    torch.testing.assert_close(clip_loss(logits.float(), truth), clip_loss_reference(logits.float(), truth), rtol=1e-5, atol=1e-6)


def test_one_distinct_caption_per_image_is_standard_clip():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 7, generator=gen, dtype=torch.float64)
    labels = torch.arange(7)
    standard = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    torch.testing.assert_close(clip_loss(logits, torch.eye(7, dtype=torch.bool)), standard)


def test_captions_absent_from_the_batch_are_ignored():
    logits, truth = random_batch(3, 8, 10, 2)
    extra_logits = torch.cat([logits, 100 * torch.randn(8, 5, dtype=torch.float64)], dim=1).requires_grad_(True)
    extra_truth = torch.cat([truth, torch.zeros(8, 5, dtype=torch.bool)], dim=1)
    loss = clip_loss(extra_logits, extra_truth)
    torch.testing.assert_close(loss, clip_loss(logits, truth))
    loss.backward()
    absent = extra_truth.sum(0) == 0
    assert absent[10:].all()
    assert (extra_logits.grad[:, absent] == 0).all()


def test_loss_is_invariant_to_the_order_of_images_and_captions():
    logits, truth = random_batch(5, 10, 14, 2)
    rows, cols = torch.randperm(10), torch.randperm(14)
    torch.testing.assert_close(clip_loss(logits[rows][:, cols], truth[rows][:, cols]), clip_loss(logits, truth))


def _entropy_floor(truth: torch.Tensor) -> float:
    """Lowest value of the soft-target loss: the mean entropy of its uniform targets."""
    per_image = truth.sum(1).double()  # positives of image i among the texts: sum of n_c over its captions
    counts = truth.sum(0).double()
    texts_per_image = (truth.double() * counts).sum(1)
    i2t = texts_per_image.log().mean()
    t2i = (counts[counts > 0] * counts[counts > 0].log()).sum() / counts.sum()
    assert per_image.min() >= 1
    return float((i2t + t2i) / 2)


def test_duplicate_captions_are_not_pushed_apart():
    """Two images of the same label share the caption "3 is in the image".

    With perfectly separated logits (true pairs high, false pairs low) the loss sits at its
    floor and its gradient vanishes: nothing pushes the two duplicates apart, and the two
    images' logit rows receive identical gradients.
    """
    truth = torch.tensor(
        [
            [1, 0, 0, 0],  # image 0: "3 is in the image"
            [1, 0, 0, 0],  # image 1: "3 is in the image" again (another position)
            [0, 1, 1, 0],  # image 2: "1 L 2" and "2 R 1"
            [0, 0, 0, 1],
        ],
        dtype=torch.bool,
    )
    losses = []
    for s in (5.0, 10.0, 20.0, 40.0):
        logits = (s * (2 * truth.double() - 1)).requires_grad_(True)
        loss = clip_loss(logits, truth)
        loss.backward()
        losses.append(loss.item())
        torch.testing.assert_close(logits.grad[0], logits.grad[1])
    assert losses == sorted(losses, reverse=True)
    assert losses[-1] == pytest.approx(_entropy_floor(truth), abs=1e-9)
    assert logits.grad.abs().max() < 1e-12


def test_identical_images_of_a_shared_caption_get_identical_gradients():
    logits, truth = random_batch(7, 6, 8, 1)
    truth[1] = truth[0]
    logits[1] = logits[0]
    x = logits.clone().requires_grad_(True)
    clip_loss(x, truth).backward()
    torch.testing.assert_close(x.grad[0], x.grad[1])


def test_loss_floor_with_a_caption_shared_by_two_images():
    """One caption true of two images, one caption of a third: only the shared caption's
    text->image target is uncertain (two images), and each image's i2t target has two copies."""
    truth = torch.tensor([[1, 0], [1, 0], [0, 1]], dtype=torch.bool)
    logits = 50.0 * (2 * truth.double() - 1)
    # i2t: images 0 and 1 see 2 copies of caption 0 -> log 2 each; image 2 -> 0; mean 2/3 log 2
    # t2i: 3 texts; the two copies of caption 0 each spread over 2 images -> log 2; mean 2/3 log 2
    assert float(clip_loss(logits, truth)) == pytest.approx(2 / 3 * math.log(2), abs=1e-9)


def test_gradient_flows_into_both_encoders_and_the_logit_scale(tiny_cfg):

    model, world = clip_for(tiny_cfg)
    model.train()
    world = world
    ids = world.train_caption_ids
    img = F.normalize(model.encode_image(world.train.images, pooled_only=True), dim=-1)
    txt = F.normalize(model.encode_text(world.captions[ids], pooled_only=True), dim=-1)
    loss = clip_loss(model.scale * img @ txt.T, world.train.truth(world.n_captions)[:, ids])
    loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


# ------------------------------------------------------------ false-negative masking (A10.2)
def direct_masked_loss(logits, truth, chosen):
    """App. N.2 written out cell by cell: B x B matrix of image i against image j's text, -inf
    where j != i and image j's text is true of image i, then CE along rows and along columns."""
    B = len(chosen)
    L = torch.empty(B, B, dtype=torch.float64)
    for i in range(B):
        for j in range(B):
            masked = j != i and bool(truth[i, chosen[j]])
            L[i, j] = float("-inf") if masked else float(logits[i, chosen[j]])
    rows = [-(L[i, i] - torch.logsumexp(L[i], 0)) for i in range(B)]
    cols = [-(L[j, j] - torch.logsumexp(L[:, j], 0)) for j in range(B)]
    return (torch.stack(rows).mean() + torch.stack(cols).mean()) / 2


def test_masked_loss_equals_the_direct_computation_on_a_hand_built_batch():
    from circuits.train.loss import masked_clip_loss

    # captions: 0 "A L B", 1 "A L C", 2 "B L C", 3 "D in image"
    # image 0: A B C (3-object, drew caption 1); image 1: A B (caption 0, also true of image 0);
    # image 2: D alone (caption 3); image 3: D alone again (caption 3, a duplicate text)
    truth = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]], dtype=torch.bool)
    chosen = torch.tensor([1, 0, 3, 3])
    logits = torch.tensor([[2.0, 1.0, -1.0, 0.5], [0.3, -0.2, 0.1, 1.5], [0.0, 0.7, -0.4, 2.2], [1.1, 0.2, 0.0, 0.9]])
    got = masked_clip_loss(logits, truth, chosen)
    assert got.item() == pytest.approx(direct_masked_loss(logits, truth, chosen).item(), rel=1e-6)


def test_masking_removes_exactly_the_false_negatives():
    from circuits.train.loss import masked_clip_loss

    # image 0's row: its own text (caption 1) and image 1's text (caption 0, true of image 0).
    # Raising the logit of a masked cell changes nothing; raising an unmasked negative does.
    truth = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.bool)
    chosen = torch.tensor([1, 0, 2])
    logits = torch.zeros(3, 3)
    base = masked_clip_loss(logits, truth, chosen)
    masked_cell = logits.clone()
    masked_cell[0, 0] = 5.0  # image 0 vs image 1's text: a false negative
    assert masked_clip_loss(masked_cell, truth, chosen).item() == pytest.approx(base.item(), abs=1e-7)
    negative = logits.clone()
    negative[0, 2] = 5.0  # image 0 vs image 2's text: a true negative
    assert masked_clip_loss(negative, truth, chosen).item() > base.item() + 0.1


def test_without_shared_truths_the_masked_loss_is_the_plain_clip_loss():
    from circuits.train.loss import masked_clip_loss

    logits = torch.randn(5, 5, generator=torch.Generator().manual_seed(3))
    eye = torch.eye(5, dtype=torch.bool)
    want = (F.cross_entropy(logits, torch.arange(5)) + F.cross_entropy(logits.T, torch.arange(5))) / 2
    assert masked_clip_loss(logits, eye, torch.arange(5)).item() == pytest.approx(want.item(), rel=1e-6)
    assert clip_loss(logits, eye).item() == pytest.approx(want.item(), rel=1e-6)


def test_training_with_masked_loss_runs_on_a_three_object_world(make_tiny_cfg):
    from circuits.train import train

    cfg = make_tiny_cfg(max_objects=3, n_labels=9, n_pair_labels=6).with_overrides(
        {"train.loss": "mask_false_negatives", "train.steps": 3, "train.eval_every": 3})
    run = train(cfg, progress=False)
    assert {"3obj_top1", "3obj_top3_mean", "3obj_top3_all"} <= run.history[-1].keys()
    assert math.isfinite(run.history[-1]["loss"])


def test_unknown_loss_mode_is_a_one_line_config_error():
    from circuits.config import RunConfig
    from circuits.errors import ConfigError

    with pytest.raises(ConfigError, match="train.loss must be one of 'soft_targets', 'mask_false_negatives'"):
        RunConfig().with_overrides(["train.loss=hard"])


def test_clip_batch_chosen_text_is_each_images_drawn_caption(make_tiny_cfg):
    from circuits.data import World
    from circuits.train import clip_batch

    world = World(make_tiny_cfg(max_objects=3, n_labels=9, n_pair_labels=6).world)
    batch = clip_batch(world, torch.device("cpu"))
    assert torch.equal(batch.captions[batch.chosen], world.captions[world.train.captions])
    assert bool(batch.truth[torch.arange(len(batch)), batch.chosen].all())


@pytest.mark.parametrize("seed, n_images, n_captions, max_true", CASES)
def test_closed_form_loss_and_gradient_equal_the_op_by_op_form(seed, n_images, n_captions, max_true):
    """`clip_loss` runs a closed form (`_ClipLoss`: value and gradient in a few passes);
    `_clip_loss_present` is the loss as first written, op by op, under autograd."""
    from circuits.train.loss import _clip_loss_present

    logits, truth = random_batch(seed, n_images, n_captions, max_true)
    present = truth.sum(0) > 0
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        a = (20 * logits).to(dtype).requires_grad_(True)
        b = (20 * logits).to(dtype)[:, present].detach().requires_grad_(True)
        fast = clip_loss(a, truth)
        truth_f = truth[:, present].to(dtype)
        slow = _clip_loss_present(b, truth_f, truth_f.sum(0))
        torch.testing.assert_close(fast, slow, rtol=tol, atol=tol)
        fast.backward()
        slow.backward()
        torch.testing.assert_close(a.grad[:, present], b.grad, rtol=tol, atol=tol)
        assert (a.grad[:, ~present] == 0).all()


def test_loss_under_vmap_of_grad_equals_each_members_loss_and_gradient():
    _, truth = random_batch(4, 12, 9, 2)
    truth = truth[:, truth.sum(0) > 0]
    stacked = torch.randn(3, *truth.shape, dtype=torch.float64) * 5
    grads, values = torch.func.vmap(torch.func.grad_and_value(lambda x: clip_loss(x, truth)))(stacked)
    batched_truth = torch.func.vmap(lambda x: clip_loss(x[0], x[1]))((stacked, truth.expand(3, *truth.shape)))
    for k in range(3):
        x = stacked[k].clone().requires_grad_(True)
        loss = clip_loss(x, truth)
        loss.backward()
        torch.testing.assert_close(values[k], loss.detach())
        torch.testing.assert_close(batched_truth[k], loss.detach())
        torch.testing.assert_close(grads[k], x.grad)


def test_one_drawn_positive_is_one_of_each_images_true_captions_and_uses_both_phrasings(make_tiny_cfg):
    from circuits.data import World
    from circuits.train import clip_batch

    world = World(make_tiny_cfg(captions="bidirectional").world)
    batch = clip_batch(world, torch.device("cpu"), "one_drawn")
    own = torch.searchsorted(world.train_caption_ids, world.train.true_captions.clamp(min=0))
    drawn = (own == batch.chosen[:, None]) & (world.train.true_captions >= 0)
    assert bool(drawn.any(1).all())
    pairs = world.train.n_objects == 2
    assert 0 < int(drawn[pairs, 1].sum()) < int(pairs.sum())  # some pair images are captioned "Y right X", some not
    assert torch.equal(batch.chosen, clip_batch(world, torch.device("cpu"), "one_drawn").chosen)


def test_one_drawn_positives_make_the_other_true_caption_a_negative(make_tiny_cfg):
    from circuits.train import ClipObjective, clip_batch

    model, world = clip_for(make_tiny_cfg(captions="bidirectional"))
    batch = clip_batch(world, torch.device("cpu"), "one_drawn")
    with torch.no_grad():
        img = F.normalize(model.encode_image(batch.images), dim=-1)
        logits = model.scale * img @ F.normalize(model.encode_text(batch.captions), dim=-1).T
        got = ClipObjective(positives="one_drawn").loss(model, batch)
    one = F.one_hot(batch.chosen, len(batch.captions)).bool()
    torch.testing.assert_close(got, textbook_loss(logits, one).float(), rtol=1e-5, atol=1e-6)
    assert abs(got.item() - textbook_loss(logits, batch.truth).item()) > 1e-3


@pytest.mark.parametrize("scale", [12.0, 40.0, 90.0], ids=["bounded", "bounded-at-its-limit", "large-scale"])
@pytest.mark.parametrize("seed, n_images, n_captions, max_true", CASES)
def test_the_fused_loss_of_embeddings_equals_the_loss_of_their_cosine_logits(seed, n_images, n_captions, max_true, scale):
    """`clip_loss_of_embeddings` (normalisation, logits matmul and loss in one autograd step)
    against `clip_loss` of ``scale * cos`` under autograd: value and every gradient, on both of
    its routes (one exponential while the scale is at most 40, maxima above)."""
    from circuits.train.loss import clip_loss_of_embeddings

    _, truth = random_batch(seed, n_images, n_captions, max_true)
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(n_images, 6, generator=gen, dtype=torch.float64)
    texts = torch.randn(n_captions, 6, generator=gen, dtype=torch.float64)
    images[0] = 0.0  # a zero embedding: F.normalize's eps branch
    log_scale = torch.tensor(scale, dtype=torch.float64).log()
    leaves = [[t.clone().requires_grad_(True) for t in (images, texts, log_scale)] for _ in range(2)]
    (i1, t1, s1), (i2, t2, s2) = leaves
    fused = clip_loss_of_embeddings(i1, t1, s1.exp(), truth)
    plain = clip_loss(s2.exp() * F.normalize(i2, dim=-1) @ F.normalize(t2, dim=-1).T, truth)
    torch.testing.assert_close(fused, plain, rtol=1e-12, atol=1e-12)
    fused.backward()
    plain.backward()
    for a, b in zip((i1, t1, s1), (i2, t2, s2)):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)

"""Retrieval evaluation (Sec. 2.3, Sec. 7, App. H).

Every image is scored against every candidate caption (all captions of the train and
validation splits, `World.captions`). An image counts as correct when its true captions
occupy the top ranks: the top-1 for single-object and left-only captions, the top-2 for
bidirectional two-object images (both "X is on the left of Y" and "Y is on the right of X",
Sec. 7). Label-set recognition (App. H) asks only that the top-1 caption names the image's
objects, in either order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from circuits.data import EVAL_SPLITS, Split, World
from circuits.models import HookedCLIP

CHUNK = 4096  # images per forward pass


def _hooks_active(model: HookedCLIP) -> bool:
    return any(hp._forward_hooks for enc in (model.vision, model.text) for hp in enc.hook_dict.values())


def _fast(model: HookedCLIP, pooled_only: bool | None) -> bool:
    """Pooled-only forward unless hooks are attached (they expect full-shape activations)."""
    return (not _hooks_active(model)) if pooled_only is None else pooled_only


@torch.no_grad()
def caption_embeddings(model: HookedCLIP, pooled_only: bool | None = None) -> Float[Tensor, "n_captions d"]:
    """Unit-norm text embeddings of every candidate caption."""
    captions = model.world.captions.to(model.device)
    return F.normalize(model.encode_text(captions, pooled_only=_fast(model, pooled_only)), dim=-1)


@torch.no_grad()
def image_embeddings(model: HookedCLIP, images: Tensor, pooled_only: bool | None = None) -> Float[Tensor, "n d"]:
    """Unit-norm image embeddings, computed in chunks."""
    fast = _fast(model, pooled_only)
    parts = [model.encode_image(chunk.to(model.device), pooled_only=fast) for chunk in images.split(CHUNK)]
    return F.normalize(torch.cat(parts), dim=-1)


@torch.no_grad()
def similarity_matrix(
    model: HookedCLIP, split: Split | Tensor, pooled_only: bool | None = None
) -> Float[Tensor, "n_images n_captions"]:
    """Cosine similarity of each image (a `Split` or a token tensor) with every candidate caption."""
    images = split.images if isinstance(split, Split) else split
    return image_embeddings(model, images, pooled_only) @ caption_embeddings(model, pooled_only).T


def true_captions_on_top(sim: Float[Tensor, "n c"], split: Split) -> Bool[Tensor, " n"]:
    """The image's t true captions are exactly its t most similar captions."""
    truth = split.truth(sim.shape[1]).to(sim.device)
    n_true = truth.sum(-1)
    ranked = sim.argsort(dim=-1, descending=True)
    top_is_true = truth.gather(1, ranked)  # [n, c]: is the k-th ranked caption true?
    k = torch.arange(sim.shape[1], device=sim.device)
    return (top_is_true | (k[None, :] >= n_true[:, None])).all(-1)


def top1_correct(sim: Float[Tensor, "n c"], split: Split) -> Bool[Tensor, " n"]:
    """The most similar caption is one of the image's true captions."""
    return split.truth(sim.shape[1]).to(sim.device).gather(1, sim.argmax(-1, keepdim=True)).squeeze(1)


def label_set_correct(sim: Float[Tensor, "n c"], split: Split, world: World) -> Bool[Tensor, " n"]:
    """The top-1 caption names exactly the image's objects, in either order (App. H)."""
    objects = world.caption_objects.to(sim.device)[sim.argmax(-1)]  # [n, 2], -1 padded
    want = split.objects.to(sim.device)
    if want.shape[1] < objects.shape[1]:
        want = F.pad(want, (0, objects.shape[1] - want.shape[1]), value=-1)
    return (objects.sort(-1).values == want.sort(-1).values).all(-1)


def _mean(x: Tensor) -> float:
    return float(x.float().mean()) if x.numel() else float("nan")


@torch.no_grad()
def evaluate(
    model: HookedCLIP, splits: tuple[str, ...] = EVAL_SPLITS, pooled_only: bool | None = None
) -> dict[str, float]:
    """Accuracy table: one number per split (true captions on top), plus ``label_set`` (App. H)
    and, for bidirectional captions, ``top1`` / ``top2`` of the unseen-pair split (Sec. 7).

    Runs with whatever hooks are attached to the encoders (so ablations are evaluated the same
    way), in eval mode; the training mode of the model is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        world = model.world
        texts = caption_embeddings(model, pooled_only)
        out: dict[str, float] = {}
        for name in splits:
            split = world[name]
            sim = image_embeddings(model, split.images, pooled_only) @ texts.T
            out[name] = _mean(true_captions_on_top(sim, split))
            if name == "unseen_pair":
                out["label_set"] = _mean(label_set_correct(sim, split, world))
                if world.cfg.captions == "bidirectional":
                    out["top1"] = _mean(top1_correct(sim, split))
                    out["top2"] = out[name]
        return out
    finally:
        model.train(was_training)

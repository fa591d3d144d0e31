"""Evaluation of a model on a task: the task's own metrics, run the way analyses need.

`evaluate` runs the task's metric functions (`Task.evaluate`) in eval mode without gradients,
on the pooled-row fast path unless hooks are attached to the model (hooks need the full hooked
forward, where they fire), so ablations are evaluated the same way as the plain model. For the
CLIP worlds the metrics are the retrieval accuracies of Sec. 2.3 (`circuits.data.retrieval`).
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from circuits.data import Split
from circuits.tasks import Task


def hooks_active(model: nn.Module) -> bool:
    """Whether any TransformerLens hook is attached anywhere in ``model``."""
    return any(m._forward_hooks for m in model.modules() if isinstance(m, HookPoint))


def _fast(model: nn.Module, pooled_only: bool | None) -> bool:
    """Pooled-only forward unless hooks are attached (they expect full-shape activations)."""
    return (not hooks_active(model)) if pooled_only is None else pooled_only


@torch.no_grad()
def evaluate(
    model: nn.Module, task: Task, splits: tuple[str, ...] | None = None, pooled_only: bool | None = None
) -> dict[str, float]:
    """The task's metrics on ``splits`` (default: its generalization splits), in eval mode; the
    training mode of the model is restored afterwards. ``pooled_only=None`` picks the fast path
    unless hooks are attached."""
    was_training = model.training
    model.eval()
    try:
        return task.evaluate(model, splits, pooled_only=_fast(model, pooled_only))
    finally:
        model.train(was_training)


@torch.no_grad()
def similarity_matrix(
    model: nn.Module, task: Task, split: Split | Int[Tensor, "n seq"] | str, pooled_only: bool | None = None
) -> Float[Tensor, "n_images n_captions"]:
    """Cosine similarity of each image (a split name, a `Split` or a token tensor) with every
    candidate caption of a CLIP world."""
    if isinstance(split, str):
        split = task[split]
    images = split.images if isinstance(split, Split) else split
    return task.similarity(model, images, _fast(model, pooled_only))


"""Spatial compression, retrained per token count ([B] Sec. 3.2, Fig. 2; spec B4).

[B] average-pools LLaVA's 576 projected vision tokens to 256, 64, 16 and 1 and *retrains* the
model for each count; standard benchmarks drop by at most 8.5 %. Here one prefix-LM is trained
per pooled size s (``model.decoder.pool_tokens``: s equal bins of the 1D image, or an s = k x k
grid of a 2D one) from a base config through the public training API, and each model reports
its accuracy per split, label-set accuracy, and its pair accuracy split by whether the two
objects fall into the **same pooled bin** (then the bin holds their average, so with
position-free inputs like ``frozen_random`` their order cannot be recovered).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from jaxtyping import Bool
from torch import Tensor

from circuits.config import RunConfig, WorldConfig
from circuits.errors import CircuitsError
from circuits.evaluation import evaluate
from circuits.runtime import training_entry
from circuits.train import train

PAIR_SPLITS = ("seen_pair", "unseen_pair")


def pool_sizes(world: WorldConfig) -> tuple[int, ...]:
    """Every pooled size the world allows, largest first: the divisors of the width (1D, spec:
    10, 5, 2, 1) or the squares s*s with s dividing height and width (2D 4x4: 16, 4, 1)."""
    if world.height == 1:
        return tuple(s for s in range(world.width, 0, -1) if world.width % s == 0)
    g = math.gcd(world.height, world.width)
    return tuple(s * s for s in range(g, 0, -1) if g % s == 0)


def same_bin(task, split: str) -> Bool[Tensor, " n"]:
    """For each image of a two-object ``split``: both objects are in the same pooled bin."""
    data = task[split]
    if data.objects.shape[1] < 2:
        raise CircuitsError(f"split {split!r} has no two-object images")
    return task.vision_position(data.positions[:, 0]) == task.vision_position(data.positions[:, 1])


@torch.no_grad()
def pair_accuracy_by_bin(model, task, split: str) -> dict[str, float | int]:
    """Exact-match accuracy of greedy captions on ``split``, separately for the images whose two
    objects share a pooled bin and the others (NaN where a group is empty), with the group sizes."""
    data = task[split]
    correct = task.exact_match(task.generate(model, data), data).cpu()
    shared = same_bin(task, split)
    out: dict[str, float | int] = {}
    for name, mask in (("same_bin", shared), ("diff_bin", ~shared)):
        out[name] = float(correct[mask].float().mean()) if mask.any() else float("nan")
        out[f"n_{name}"] = int(mask.sum())
    return out


def pooling_row(model, task) -> dict[str, Any]:
    """Every B4 number of one trained model: `evaluate` (each split, label_set) and, per pair
    split, ``{split}.same_bin`` / ``{split}.diff_bin`` accuracies and their image counts."""
    row: dict[str, Any] = {"n_vision": task.n_vision, **evaluate(model, task)}
    for split in PAIR_SPLITS:
        if len(task[split]):
            row.update({f"{split}.{k}": v for k, v in pair_accuracy_by_bin(model, task, split).items()})
    return row


@training_entry  # the analyses after each training run with train.threads threads too
def pooling_sweep(
    cfg: RunConfig, sizes: tuple[int, ...] | None = None, seeds: tuple[int, ...] = (0,), progress: bool = False
) -> list[dict[str, Any]]:
    """[B] Fig. 2 on a toy: train one prefix-LM per pooled size s in ``sizes`` (default
    `pool_sizes`) and seed, from ``cfg`` (any vision source: frozen_random, clip_tokens, ...),
    and return one `pooling_row` per model with ``pool_tokens`` and ``seed``."""
    if cfg.model.kind != "prefix_lm":
        raise CircuitsError("the pooling sweep trains prefix-LMs; set model.kind=prefix_lm")
    sizes = pool_sizes(cfg.world) if sizes is None else tuple(sizes)
    rows = []
    for s in sizes:
        pooled = None if s == cfg.world.n_pixels else s
        for seed in seeds:
            run = train(cfg.with_overrides({"model.decoder.pool_tokens": pooled, "train.seed": seed}), progress=progress)
            rows.append({"pool_tokens": s, "seed": seed, **pooling_row(run.model, run.task)})
    return rows

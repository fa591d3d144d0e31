"""Normalised attention entropy over the vision tokens ([B] Sec. 7, Table 4, App. C; spec B9).

The paper's aggregation (VLM-Visualizer convention, [B] code): per layer the mean over heads;
in every query row except the first, the attention to the sink token (BOS; key 0 in LLaVA) is
set to 0 and the row renormalised; then the mean over layers. A text token's row restricted to
the vision keys, renormalised (``+1e-10``), has entropy ``H / log2(N_vis)`` (`normalized_entropy`).
Table 4 averages the vision-restricted rows of all text tokens first, then takes the entropy.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

EPS = 1e-10  # [B] code


def normalized_entropy(weights: Float[Tensor, "... k"]) -> Float[Tensor, "..."]:
    """``H(p) / log2(k)`` of ``p = w / sum(w)``, smoothed as [B]'s code: ``p <- (p + 1e-10) /
    sum(p + 1e-10)``. 1 for a uniform row, 0 (up to the smoothing) for a one-hot row."""
    k = weights.shape[-1]
    if k < 2:
        raise ValueError(f"entropy over {k} key(s) is undefined; need at least 2 vision tokens")
    p = weights / weights.sum(-1, keepdim=True)
    p = (p + EPS) / (p + EPS).sum(-1, keepdim=True)
    return -(p * torch.log2(p)).sum(-1) / math.log2(k)


def aggregate_attention(
    patterns: list[Float[Tensor, "batch head q k"]] | Float[Tensor, "layer batch head q k"], sink: int | None = 0
) -> Float[Tensor, "batch q k"]:
    """[B]'s aggregation: mean over heads per layer; in every row but the sink's own, zero the
    ``sink`` column and renormalise (LLaVA: sink = BOS = position 0, so rows 1..; None: keep
    it); then the mean over layers."""
    per_layer = torch.stack(list(patterns)).mean(dim=2)  # [layer, batch, q, k]
    if sink is None:
        return per_layer.mean(0)
    n_q = per_layer.shape[2]
    keep = torch.ones(n_q, per_layer.shape[3], device=per_layer.device)
    keep[:, sink] = 0.0
    keep[sink % n_q] = 1.0  # the sink's own row is left as it is
    rows = per_layer * keep
    rows = rows / rows.sum(-1, keepdim=True).clamp_min(1e-30)
    return rows.mean(0)


def model_vision_entropy(model, task, split: str, queries: tuple[int, ...] = (0, 1, 2, 3)) -> dict[str, float | list]:
    """[B] Table 4 on a prefix-LM and a split of its `CaptionTask`: teacher-forced canonical
    captions, every layer's pattern, the sink = [BOS], the text ``queries`` (0 = [BOS] row ..
    3); returns the Table 4 entropy, per query and per (layer, head, query), means over images."""
    batch = task.batch(task[split]) if isinstance(split, str) else split
    n_vis = model.n_vision
    names = [f"blocks.{l}.attn.hook_pattern" for l in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(batch.tokens.to(model.device), names_filter=names)
    patterns = [cache[n] for n in names]
    text_q = [n_vis + q for q in queries]
    ent = vision_entropy(aggregate_attention(patterns, sink=n_vis), slice(0, n_vis), text_q)
    return {
        "table4": float(ent["table4"].mean()),
        "per_query": ent["per_query"].mean(0).tolist(),
        "per_head": head_entropies(patterns, slice(0, n_vis), text_q).tolist(),
    }


def vision_entropy(
    aggregated: Float[Tensor, "batch q k"], vision: slice, text_queries: list[int] | Tensor
) -> dict[str, Tensor]:
    """From an aggregated attention map: ``table4`` [batch], the entropy of the mean of the text
    queries' vision-restricted rows ([B] Table 4), and ``per_query`` [batch, n_queries]."""
    rows = aggregated[:, text_queries, vision]  # [batch, n_q, n_vis]
    rows = rows / rows.sum(-1, keepdim=True).clamp_min(1e-30)
    return {"table4": normalized_entropy(rows.mean(1)), "per_query": normalized_entropy(rows)}


def head_entropies(
    patterns: list[Float[Tensor, "batch head q k"]], vision: slice, text_queries: list[int] | Tensor
) -> Float[Tensor, "layer head n_queries"]:
    """Per layer, head and text query: the normalised entropy of its vision-restricted row,
    mean over the batch (no aggregation; the toy has few heads, spec B9)."""
    rows = torch.stack(list(patterns))[:, :, :, text_queries, vision]  # [layer, batch, head, q, vis]
    return normalized_entropy(rows).mean(1)

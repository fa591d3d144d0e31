"""The norm sweep ([B] Sec. 4.2 / App. A; spec B2): train with vision_scale c in {0.1, 1, 10, 100}
and measure, per c, the attention mass on vision α_V, the position share of the text->vision
logit spread at layer 0, and accuracy. [B]'s prediction: as c grows, α_V(1 - α_V), the position
share and relational accuracy fall; single-object accuracy does not."""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from circuits.decompose import decompose
from circuits.errors import CircuitsError
from circuits.evaluation import evaluate
from circuits.runtime import training_entry
from circuits.spatial.norms import embedding_norms
from circuits.train import train

SCALES = (0.1, 1.0, 10.0, 100.0)  # [B] B2 / spec: c
POSITION_TERMS = ("EP", "PP", "BP")  # key-position terms (spec B2(b))


@torch.no_grad()
def vision_attention_mass(model, tokens: Tensor) -> Float[Tensor, "layer head text"]:
    """α_V: attention mass on the vision keys from each text query, per layer and head, mean over inputs."""
    names = [f"blocks.{l}.attn.hook_pattern" for l in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(tokens.to(model.device), names_filter=names)
    n = model.n_vision
    return torch.stack([cache[name][:, :, n:, :n].sum(-1).mean(0) for name in names])


@torch.no_grad()
def position_share(model, tokens: Tensor, layer: int = 0) -> Float[Tensor, "head text"]:
    """``std_over_vision_keys(EP + PP + BP) / std_over_vision_keys(scores)`` on the text-query
    rows of ``layer``, mean over inputs (spec B2(b); the decoder needs learned positions)."""
    if model.pos_embed is None:
        raise CircuitsError("position share needs learned decoder positions (positional='learned'); use the RoPE probe")
    dec = decompose(model, tokens, layer=layer)
    n = model.n_vision
    names = [t for t in POSITION_TERMS if t in dec.terms]
    pos = sum(dec.terms[t] for t in names)[:, :, n:, :n]
    total = dec.scores[:, :, n:, :n]
    return (pos.std(-1) / total.std(-1).clamp_min(1e-12)).mean(0)


def sweep_row(model, task, split: str = "unseen_pair") -> dict[str, Any]:
    """Every B2 measurement of one trained model, on the teacher-forced canonical captions of ``split``:
    accuracies, α_V and α_V(1 - α_V) (mean over layers, heads and text queries; per layer), the
    layer-0 position share (learned positions only) and log10 of the median vision / text norm."""
    tokens = task.batch(task[split]).tokens
    alpha = vision_attention_mass(model, tokens)
    row: dict[str, Any] = {**evaluate(model, task),
                           "alpha_v": float(alpha.mean()), "alpha_v_sensitivity": float((alpha * (1 - alpha)).mean()),
                           "alpha_v_per_layer": alpha.mean((1, 2)).tolist()}
    if model.pos_embed is not None:
        row["position_share"] = float(position_share(model, tokens).mean())
    row["log10_norm_ratio"] = embedding_norms(model, task, split)["ratios"]["log10_median_vis_over_txt"]
    return row


@training_entry  # the analyses after each training run with train.threads threads too
def norm_sweep(cfg, scales: tuple[float, ...] = SCALES, seeds: tuple[int, ...] = (0,), progress: bool = False) -> list[dict]:
    """Train a prefix-LM per (c, seed) from ``cfg`` and return one `sweep_row` per model."""
    if cfg.model.kind != "prefix_lm":
        raise CircuitsError("the norm sweep trains prefix-LMs; set model.kind=prefix_lm")
    rows = []
    for c in scales:
        for seed in seeds:
            run = train(cfg.with_overrides({"model.decoder.vision_scale": c, "train.seed": seed}), progress=progress)
            rows.append({"vision_scale": c, "seed": seed, **sweep_row(run.model, run.task)})
    return rows

"""Embedding and hidden-state norms per token group ([B] Sec. 4.1, Fig. 3, and v2's hidden-state
norms; spec B1).

`norm_summary` is the statistic (mean, median, p5, p95, max); `group_norms_by_layer` reads any
`ActivationCache` with the token spans of each group; `embedding_norms` measures a prefix-LM on
a split: projected vision tokens, text embeddings of every caption token with multiplicity
([BOS] included, as the paper's tokenizer adds it) and decoder positional rows.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

from circuits.errors import CircuitsError


def norm_summary(norms: Float[Tensor, " n"]) -> dict[str, float]:
    """mean, median, p5, p95 and max of a set of L2 norms."""
    x = norms.detach().flatten().float()
    q = torch.quantile(x, torch.tensor([0.05, 0.5, 0.95], device=x.device))
    return {"mean": float(x.mean()), "median": float(q[1]), "p5": float(q[0]), "p95": float(q[2]), "max": float(x.max())}


def group_norms_by_layer(cache, groups: dict[str, slice | Tensor], n_layers: int, hook: str = "hook_resid_pre") -> dict[str, list[float]]:
    """Mean L2 norm of the residual stream over each token group, per layer (``blocks.{l}.{hook}``)
    and after the last block (``hook_resid_post`` of the last layer); works on any hooked model's cache."""
    names = [f"blocks.{l}.{hook}" for l in range(n_layers)] + [f"blocks.{n_layers - 1}.hook_resid_post"]
    return {g: [float(cache[n][:, pos].norm(dim=-1).mean()) for n in names] for g, pos in groups.items()}


@torch.no_grad()
def token_norms(model, task, split: str) -> dict[str, Float[Tensor, " n"]]:
    """Per-token L2 norms of a prefix-LM on a split ([B] Fig. 3's two distributions, plus ours):
    ``vision`` (the tokens entering the decoder, every image of the split), ``text`` (the text
    embedding of every caption token, [BOS] included, with multiplicity) and, with learned
    positions, ``position`` (the decoder's positional rows)."""
    batch = task.batch(task[split])
    tokens = batch.tokens.to(model.device)
    if not hasattr(model, "embed") or not hasattr(model, "vision"):
        raise CircuitsError("token norms compare a prefix-LM's vision tokens with its text embeddings; this model has none")
    _, cache = model.run_with_cache(tokens, names_filter=["vision.hook_out"])
    out = {"vision": cache["vision.hook_out"].norm(dim=-1).flatten(),
           "text": model.embed.W_E[batch.text.to(model.device)].norm(dim=-1).flatten()}
    if model.pos_embed is not None:
        out["position"] = model.pos_embed.W_pos.norm(dim=-1)
    return out


@torch.no_grad()
def embedding_norms(model, task, split: str) -> dict[str, dict[str, float]]:
    """[B] Fig. 3 on a prefix-LM: `norm_summary` of each group of `token_norms`; plus
    ``log10(median_vis / median_txt)``, ``log10(p95_vis / median_txt)`` and ``median_vis / median_P``."""
    norms = token_norms(model, task, split)
    out = {name: norm_summary(values) for name, values in norms.items()}
    vision, text = out["vision"], out["text"]
    ratios = {"log10_median_vis_over_txt": math.log10(vision["median"] / text["median"]),
              "log10_p95_vis_over_median_txt": math.log10(vision["p95"] / text["median"])}
    if "position" in out:
        ratios["median_vis_over_P"] = vision["median"] / out["position"]["median"]
    out["ratios"] = ratios
    return out

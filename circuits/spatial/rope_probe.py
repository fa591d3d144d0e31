"""The RoPE sensitivity probe ([B] v2's code ``_compute_uniform_delta_probe``; spec B11, B2(c)).
An EXTENSION: not in [B] v1's text.

Per layer and head, at one query row (default: the text position that predicts the first
output token, [BOS] for captions):

* q and k after RoPE (``hook_rot_q`` / ``hook_rot_k``; the q / k biases are inside them, and
  the toolkit's attention adds no other score term), ``logits0 = q·k / √d_head`` over the keys
  the query may see (the model's mask; the others get −inf), ``attn0 = softmax(logits0)``;
* ``α_V = Σ_V attn0`` and ``α_V (1 − α_V)``;
* only the vision keys are rotated by a uniform relative offset Δ (default 1 position: a RoPE
  rotation by Δ·inv_freq, done by the layer's own `Rotary` at position Δ, since
  R(Δ) R(p) = R(p + Δ)), giving ``logits1`` and ``attn1``;
* ``Δα_V = Σ_V attn1 − Σ_V attn0``;
* ``Δg_V = Σ_{v∈V} (attn0_v / α_V) (logits1_v − logits0_v) / Δ``: the attention-weighted mean
  change of the vision logits per position of shift.

CHOICES (ours): Δ is a whole number of positions, 0 ≤ Δ < n_ctx (the rotary tables hold those
angles); at Δ = 0 the difference is divided by 1 (so Δg_V = 0, not 0/0). Each layer is probed
with its own inputs unchanged (the shift is not propagated to later layers). `rope_sweep` is
B2(c): the probe and CMB against the vision scale c.
"""

from __future__ import annotations

import math
from typing import Any

import einops
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from circuits.errors import CircuitsError, ConfigError
from circuits.evaluation import evaluate
from circuits.models.components import softmax
from circuits.runtime import training_entry
from circuits.spatial.balance import Span, first_output_query, model_modality_balance
from circuits.spatial.sweep import SCALES
from circuits.train import train

NEEDS_ROTARY = "the RoPE probe needs model.decoder.positional='rotary'"
PROBE_STATS = ("alpha_v", "alpha_v_sensitivity", "delta_alpha_v", "delta_g_v")


def uniform_delta_probe(
    q: Float[Tensor, "batch head d_head"], k: Float[Tensor, "batch key head d_head"], rotary, vision: Span,
    allowed: Bool[Tensor, " key"] | None = None, delta: int = 1,
) -> dict[str, Tensor]:
    """The probe on one layer: ``q`` the query row and ``k`` the keys, both after RoPE; ``rotary``
    the layer's `Rotary`; ``allowed`` the keys the query may see (None: all). Returns
    ``alpha_v``, ``alpha_v_sensitivity``, ``delta_alpha_v``, ``delta_g_v`` [batch, head] and
    ``attn0``, ``attn1`` [batch, head, key]."""
    n_ctx = rotary.cos.shape[0]
    if isinstance(delta, bool) or not isinstance(delta, int) or not 0 <= delta < n_ctx:
        raise ConfigError(f"the RoPE probe shifts by a whole number of positions 0 <= delta < {n_ctx} (got {delta!r})")
    scale = math.sqrt(q.shape[-1])
    shifted = k.clone()
    k_vis = k[:, vision]
    shifted[:, vision] = rotary(k_vis, torch.full((k_vis.shape[1],), delta, dtype=torch.long, device=k.device))
    logits0 = einops.einsum(q, k, "b h d, b k h d -> b h k") / scale
    logits1 = einops.einsum(q, shifted, "b h d, b k h d -> b h k") / scale
    change = (logits1 - logits0)[..., vision]  # before masking: a hidden vision key has weight 0 below
    if allowed is not None:
        hidden = ~allowed.to(q.device)
        logits0, logits1 = logits0.masked_fill(hidden, float("-inf")), logits1.masked_fill(hidden, float("-inf"))
    attn0, attn1 = softmax(logits0), softmax(logits1)
    alpha0, alpha1 = attn0[..., vision].sum(-1), attn1[..., vision].sum(-1)
    weights = attn0[..., vision] / alpha0.clamp_min(1e-30)[..., None]
    return {"alpha_v": alpha0, "alpha_v_sensitivity": alpha0 * (1 - alpha0), "delta_alpha_v": alpha1 - alpha0,
            "delta_g_v": (weights * change).sum(-1) / (delta or 1), "attn0": attn0, "attn1": attn1}


def check_rotary(model) -> None:
    """One-line errors for a model the probe cannot read: not a prefix-LM, or no rotary decoder."""
    if not hasattr(model, "n_vision"):
        raise CircuitsError("the RoPE probe reads a prefix-LM's vision keys; this model has none (model.kind=prefix_lm)")
    if getattr(model.cfg, "positional", None) != "rotary":
        raise ConfigError(NEEDS_ROTARY)


@torch.no_grad()
def rope_probe(model, tokens: Tensor, query: int = 0, delta: int = 1) -> dict[str, Tensor]:
    """`uniform_delta_probe` at every layer of a rotary prefix-LM on ``tokens``, at text position
    ``query`` (0 = [BOS]): the `PROBE_STATS` [batch, layer, head] and ``attn0`` / ``attn1``
    [batch, layer, head, key]."""
    check_rotary(model)
    n_vis, n_text = model.n_vision, tokens.shape[1] - model.n_pixels
    if not 0 <= query < n_text:
        raise CircuitsError(f"query must be a text position 0..{n_text - 1} (got {query})")
    qpos = n_vis + query
    names = [f"blocks.{l}.attn.hook_rot_{x}" for l in range(model.cfg.n_layers) for x in "qk"]
    _, cache = model.run_with_cache(tokens.to(model.device), names_filter=names)
    per_layer = []
    for l, block in enumerate(model.blocks):
        attn = block.attn
        k = cache[f"blocks.{l}.attn.hook_rot_k"]
        pos = torch.arange(k.shape[1], device=k.device)
        allowed = None if attn.mask.is_full else attn.mask.allowed(pos[[qpos]], pos)[0]
        q = cache[f"blocks.{l}.attn.hook_rot_q"][:, qpos]
        per_layer.append(uniform_delta_probe(q, k, attn.rotary, slice(0, n_vis), allowed, delta))
    return {name: torch.stack([out[name] for out in per_layer], dim=1) for name in per_layer[0]}


def model_rope_probe(model, task, split, query: int | None = None, delta: int = 1) -> dict[str, Any]:
    """`rope_probe` on the teacher-forced sequences of a split (or a batch) of the model's task,
    at ``query`` (default `first_output_query`): each of `PROBE_STATS` as [layer][head], the mean
    over inputs, plus ``query`` and ``delta``."""
    batch = task.batch(task[split]) if isinstance(split, str) else split
    query = first_output_query(task) if query is None else query
    out = rope_probe(model, batch.tokens, query, delta)
    return {"query": query, "delta": delta, **{name: out[name].mean(0).tolist() for name in PROBE_STATS}}


def rope_row(model, task, split: str = "unseen_pair", delta: int = 1) -> dict[str, Any]:
    """B2(c) and CMB of one trained rotary prefix-LM: accuracies, `model_rope_probe` ([layer][head]
    means over the teacher-forced sequences of ``split``) and the CMB vision share (mean and per layer)."""
    cmb = model_modality_balance(model, task, split)
    return {**evaluate(model, task), **model_rope_probe(model, task, split, delta=delta),
            "cmb_share_v": cmb["share_v"], "cmb_share_v_per_layer": cmb["per_layer"], "cmb_share_v_per_head": cmb["per_head"]}


@training_entry  # the analyses after each training run with train.threads threads too
def rope_sweep(cfg, scales: tuple[float, ...] = SCALES, seeds: tuple[int, ...] = (0,), split: str = "unseen_pair",
               progress: bool = False) -> list[dict]:
    """Train a rotary prefix-LM per (c, seed) from ``cfg`` and return one `rope_row` per model."""
    if cfg.model.kind != "prefix_lm":
        raise CircuitsError("the RoPE sweep trains prefix-LMs; set model.kind=prefix_lm")
    if cfg.model.decoder.positional != "rotary":
        raise ConfigError(NEEDS_ROTARY)
    rows = []
    for c in scales:
        for seed in seeds:
            run = train(cfg.with_overrides({"model.decoder.vision_scale": c, "train.seed": seed}), progress=progress)
            rows.append({"vision_scale": c, "seed": seed, **rope_row(run.model, run.task, split)})
    return rows

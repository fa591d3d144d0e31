"""Cross-Modality Balance (CMB; [B] v2's code, spec B11). An EXTENSION: not in [B] v1's text.

For an attention row ``a`` over the keys (a B9-aggregated row, `aggregate_attention`, or one
head's row)::

    share_V = Σ_vision a / (Σ_vision a + Σ_text a)          (1 = all vision)
    pref    = (Σ_V − Σ_T) / (Σ_V + Σ_T)   (= 2 share_V − 1)

and, where a system-prompt span is given, ``system_share = Σ_sys / (Σ_V + Σ_T + Σ_sys)``; the
system prompt is otherwise in neither sum ([B] code removes its span). Per (layer, head): the
mean share_V over the chosen query rows (and the inputs).

The toy has **no system prompt** (the prompt is ``[pixels][BOS] w1 w2 w3``), so ``system`` is
left out. The sink is [BOS], as in B9 (`circuits.spatial.entropy.model_vision_entropy`): in every
query row but [BOS]'s own, the [BOS] column is zeroed (the aggregation does it for aggregated
rows; ``sink=`` does it for per-head rows). CHOICE: the text span is every text key, [BOS]
included, so [BOS] counts as text in its own row only; there (the row that predicts the first
caption token, which sees the vision tokens and itself) share_V is B2's attention mass α_V.
The functions on rows and patterns take the spans, so they apply to any hooked model's cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from circuits.spatial.entropy import aggregate_attention

Span = slice | Sequence[int] | Tensor
TINY = 1e-30  # a row with no mass on either span gets share 0, not NaN


def modality_shares(
    rows: Float[Tensor, "... k"], vision: Span, text: Span, system: Span | None = None
) -> dict[str, Float[Tensor, "..."]]:
    """``share_v`` and ``pref`` of every row (and ``system_share`` with a ``system`` span); rows
    need not be normalised (each statistic is a ratio)."""
    v, t = rows[..., vision].sum(-1), rows[..., text].sum(-1)
    both = (v + t).clamp_min(TINY)
    out = {"share_v": v / both, "pref": (v - t) / both}
    if system is not None:
        s = rows[..., system].sum(-1)
        out["system_share"] = s / (v + t + s).clamp_min(TINY)
    return out


def modality_balance(
    aggregated: Float[Tensor, "batch q k"], vision: Span, text: Span, queries: Sequence[int] | Tensor,
    system: Span | None = None,
) -> dict[str, Float[Tensor, "batch n_queries"]]:
    """`modality_shares` of the aggregated rows of ``queries`` (residual positions): [batch, n_queries] each."""
    return modality_shares(aggregated[:, queries], vision, text, system)


def head_modality_balance(
    patterns: list[Float[Tensor, "batch head q k"]] | Float[Tensor, "layer batch head q k"], vision: Span, text: Span,
    queries: Sequence[int] | Tensor, sink: int | None = None, system: Span | None = None,
) -> dict[str, Float[Tensor, "layer head"]]:
    """Per (layer, head): the mean of `modality_shares` over the rows of ``queries`` and the batch.
    ``sink`` (a key position, or None): its column is zeroed in every row but its own, as
    `aggregate_attention` does."""
    queries = torch.as_tensor(queries, dtype=torch.long)
    rows = torch.stack(list(patterns))[:, :, :, queries]  # [layer, batch, head, n_q, k]
    if sink is not None:
        n_k = rows.shape[-1]
        keep = torch.ones(len(queries), n_k, dtype=rows.dtype, device=rows.device)
        keep[queries.to(rows.device) != sink % n_k, sink] = 0.0
        rows = rows * keep
    return {name: value.mean((1, 3)) for name, value in modality_shares(rows, vision, text, system).items()}


def output_queries(task, n_text: int) -> tuple[int, ...]:
    """The text positions (0 = [BOS]) whose rows predict the output tokens: [BOS] w1 w2 w3 for
    captions; [SEP] and the answer slots for the toy 2DS (`Toy2DSTask.sep_offset`)."""
    return tuple(range(first_output_query(task), n_text))


def first_output_query(task) -> int:
    """The text position that predicts the first output token: [BOS] (0) for captions, [SEP] for the toy 2DS."""
    return int(getattr(task, "sep_offset", 0))


@torch.no_grad()
def model_modality_balance(model, task, split, queries: tuple[int, ...] | None = None) -> dict[str, float | list]:
    """CMB of a prefix-LM on a split of its task (teacher-forced sequences, every layer's pattern,
    the sink = [BOS]; ``queries``: text positions, 0 = [BOS]; default `output_queries`): the
    vision share and pref of the B9-aggregated rows (``share_v``, ``pref``; means over images
    and queries), ``per_query``, ``per_layer`` (the share of each layer's own aggregated row:
    mean over heads, sink dropped) and ``per_head`` [layer][head] (mean per-head share)."""
    batch = task.batch(task[split]) if isinstance(split, str) else split
    n_vis = model.n_vision
    queries = output_queries(task, model.n_text) if queries is None else queries
    names = [f"blocks.{l}.attn.hook_pattern" for l in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(batch.tokens.to(model.device), names_filter=names)
    patterns = [cache[n] for n in names]
    text_q = [n_vis + q for q in queries]
    vision, text = slice(0, n_vis), slice(n_vis, None)
    agg = modality_balance(aggregate_attention(patterns, sink=n_vis), vision, text, text_q)
    per_layer = [float(modality_balance(aggregate_attention([p], sink=n_vis), vision, text, text_q)["share_v"].mean())
                 for p in patterns]
    heads = head_modality_balance(patterns, vision, text, text_q, sink=n_vis)
    return {"share_v": float(agg["share_v"].mean()), "pref": float(agg["pref"].mean()), "queries": list(queries),
            "per_query": agg["share_v"].mean(0).tolist(), "per_layer": per_layer, "per_head": heads["share_v"].tolist()}

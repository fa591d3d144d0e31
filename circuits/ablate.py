"""Zero-ablation of attention-score terms and value sources at inference (Fig. 5e, App. H, I, M).

An `Ablation` names the terms (``"EP"``, ``"PP"``, ...) and value sources (``"P"``, ...) to
zero, in which encoders, layers and heads. Zeroing ``hook_score_EP`` removes the EP term from
the scores, exactly as the paper does; zeroing ``hook_v_P`` removes the positional part of
the values (App. I). Use it as hooks for ``run_with_hooks``, as a context manager, or through
`evaluate_ablation` for the accuracy table before and after::

    abl = Ablation(terms=("EP", "PP", "BP"))
    with ablated(model, abl):
        circuits.evaluate(model, task)
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, TypeVar

import torch
from torch import Tensor, nn

from circuits.decompose import check_layer, get_encoder, parse_terms
from circuits.errors import CircuitsError
from circuits.evaluation import evaluate
from circuits.models import HookedEncoder
from circuits.tasks import Task

Hook = tuple[str, Callable]
M = TypeVar("M", bound=nn.Module)


@dataclass(frozen=True)
class Ablation:
    """What to zero. ``layers``/``heads`` of None mean all of them."""

    terms: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    encoders: tuple[str, ...] = ("vision",)
    layers: tuple[int, ...] | None = None
    heads: tuple[int, ...] | None = None
    block: tuple[str, str] | None = None  # (query group, key group), e.g. ("text", "vision"): zero only that block


    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


#: The ablation conditions of the paper's Fig. 5e (vision encoder, every layer and head), by name;
#: the report's ablation table and the reproduction scripts use this one table.
PAPER_ABLATIONS: dict[str, Ablation] = {
    "EP": Ablation(terms=("EP",)),
    "PP": Ablation(terms=("PP",)),
    "BP": Ablation(terms=("BP",)),
    "EP+PP": Ablation(terms=("EP", "PP")),
    "EP+PP+BP": Ablation(terms=("EP", "PP", "BP")),
}


def _zero(head_dim: int, heads: tuple[int, ...] | None) -> Callable:
    def hook(x: Tensor, hook) -> Tensor:
        if heads is None:
            return torch.zeros_like(x)
        index = torch.tensor(heads, device=x.device)
        return x.index_fill(head_dim, index, 0.0)

    return hook


def _zero_block(heads: tuple[int, ...] | None, queries: Tensor, keys: Tensor) -> Callable:
    """Zero a score term [batch, head, q, k] on the (queries x keys) block of ``heads`` only."""

    def hook(x: Tensor, hook) -> Tensor:
        keep = torch.ones(x.shape[1:], dtype=x.dtype, device=x.device)
        h = slice(None) if heads is None else torch.tensor(heads, device=x.device)[:, None, None]
        q, k = queries.to(x.device)[:, None], keys.to(x.device)[None, :]
        keep[h, q, k] = 0.0
        return x * keep

    return hook


def _block_positions(enc: HookedEncoder, block: tuple[str, str]) -> tuple[Tensor, Tensor]:
    groups = getattr(enc, "token_groups", None)
    if groups is None:
        raise CircuitsError("a block-restricted ablation needs a model with token groups (a prefix-LM); this encoder has none")
    named = groups()
    unknown = [g for g in block if g not in named]
    if unknown:
        raise CircuitsError(f"unknown token group {unknown[0]!r}; groups are {', '.join(named)}")
    return named[block[0]], named[block[1]]


def encoder_hooks(enc: HookedEncoder, ablation: Ablation) -> list[Hook]:
    """The forward hooks that implement ``ablation`` on one encoder (validated, clear errors)."""
    layers = range(enc.cfg.n_layers) if ablation.layers is None else [check_layer(enc, l) for l in ablation.layers]
    if ablation.heads is not None:
        bad = [h for h in ablation.heads if not 0 <= h < enc.cfg.n_heads]
        if bad:
            raise CircuitsError(f"unknown head {bad[0]}; this encoder has heads 0..{enc.cfg.n_heads - 1}")
    if ablation.block is not None and ablation.values:
        raise CircuitsError("a block-restricted ablation zeroes score terms only; drop the value sources or the block")
    zero_term = _zero(1, ablation.heads) if ablation.block is None else _zero_block(ablation.heads, *_block_positions(enc, ablation.block))
    hooks: list[Hook] = []
    for layer in layers:
        for term in parse_terms(enc, layer, ablation.terms):
            hooks.append((f"blocks.{layer}.attn.hook_score_{term}", zero_term))
        sources = enc.value_sources(layer)
        for source in ablation.values:
            if source not in sources:
                raise CircuitsError(f"unknown value source {source!r} in layer {layer}; sources are {', '.join(sources)}")
            hooks.append((f"blocks.{layer}.attn.hook_v_{source}", _zero(2, ablation.heads)))
    return hooks


def ablation_hooks(model: nn.Module, ablation: Ablation) -> dict[str, list[Hook]]:
    """Hooks per encoder name; pass them to ``model.<encoder>.run_with_hooks(..., decompose=True)``.
    ``model``: a CLIP pair, a bare encoder or a module holding one (see `get_encoder`)."""
    return {name: encoder_hooks(get_encoder(model, name), ablation) for name in ablation.encoders}


@contextmanager
def ablated(model: M, ablation: Ablation) -> Iterator[M]:
    """Within this block the chosen encoders run decomposed, with the ablation hooks attached
    (``model``: a CLIP pair, a bare encoder, or any module holding one, e.g. with a readout head)."""
    hooks = ablation_hooks(model, ablation)
    with ExitStack() as stack:
        for name, enc_hooks in hooks.items():
            enc = get_encoder(model, name)
            stack.enter_context(enc.decomposed())
            stack.enter_context(enc.hooks(fwd_hooks=enc_hooks))
        yield model


def evaluate_ablation(
    model: nn.Module, task: Task, ablation: Ablation, splits: tuple[str, ...] | None = None
) -> dict[str, dict]:
    """``{"baseline": metrics, "ablated": metrics, "ablation": spec}`` with the task's metric keys
    (``splits``: which splits to evaluate, default the task's generalization splits)."""
    baseline = evaluate(model, task, splits)
    with ablated(model, ablation):
        after = evaluate(model, task, splits)
    return {"baseline": baseline, "ablated": after, "ablation": ablation.to_dict()}

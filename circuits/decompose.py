"""Attention-logit decomposition (Sec. 5, Eq. 1-2; App. E, F, R).

Each encoder can run a *decomposed* forward in which the pre-softmax scores of every layer are
the sum of named hooked terms ``blocks.{l}.attn.hook_score_{S}{T}`` (query source S, key source
T) and the values the sum of ``hook_v_{S}``. This module reads them out:

* `decompose` runs one encoder and returns every term of one layer, [batch, head, q, k];
* `pooled_row` keeps the row of the pooled query ([CLS] for vision, [EOT] for text), the only
  row that reaches the output of a 1-layer encoder;
* `combine` evaluates a term expression such as ``"EP+PP"``.

Sources: E token embedding, P learned positional embedding, H what earlier layers wrote to the
residual stream, N the LayerNorm bias (pre-LN models), B the Q/K/V projection biases.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from circuits.errors import CircuitsError
from circuits.models import HookedCLIP, HookedEncoder
from circuits.models.terms import parse_expression

def get_encoder(model: nn.Module, encoder: str | None = "vision") -> HookedEncoder:
    """The hooked stack an analysis runs on: the named one of a model with an ``encoders``
    mapping (vision / text of a CLIP pair, decoder of a prefix-LM), a bare encoder itself, or the
    one `HookedEncoder` of a module that holds exactly one (an encoder with a readout head, say;
    ``encoder`` is then not used). ``None``: the model itself if it is one stack, else "vision"."""
    named = getattr(model, "encoders", None)
    if isinstance(model, HookedEncoder) and (named is None or encoder is None):
        return model
    if named is not None:
        encoder = "vision" if encoder is None else encoder
        if encoder not in named:
            kind = " (a prefix-LM checkpoint)" if "decoder" in named else ""
            raise CircuitsError(f"unknown encoder {encoder!r}; encoders are {', '.join(named)}{kind}")
        return named[encoder]
    found = [m for m in model.modules() if isinstance(m, HookedEncoder)]
    if len(found) != 1:
        raise CircuitsError(
            f"{type(model).__name__} holds {len(found)} HookedEncoders; analyses need a bare encoder, a CLIP pair "
            "or a module with exactly one (or an `encoders` mapping of name to encoder)"
        )
    return found[0]


def check_layer(enc: HookedEncoder, layer: int) -> int:
    n = enc.cfg.n_layers
    if not -n <= layer < n:
        raise CircuitsError(f"unknown layer {layer}; this encoder has layers 0..{n - 1}")
    return layer % n


def parse_terms(enc: HookedEncoder, layer: int, expressions: list[str] | tuple[str, ...]) -> list[str]:
    """Validate term names (``"EP"``, or sums such as ``"EP+PP"``) and return the flat list."""
    known = enc.term_names(layer)
    out: list[str] = []
    for expr in expressions:
        for name in parse_expression(expr):
            if name not in known:
                raise CircuitsError(f"unknown term {name!r} in layer {layer}; terms are {', '.join(known)}")
            if name not in out:
                out.append(name)
    return out


@dataclass
class Decomposition:
    """Every score term and value source of one attention layer for a batch of inputs."""

    layer: int
    terms: dict[str, Float[Tensor, "batch head q k"]]  # pre-softmax, / sqrt(d_head), unmasked
    values: dict[str, Float[Tensor, "batch k head d_head"]]
    scores: Float[Tensor, "batch head q k"]  # hook_attn_scores (masked with -inf)
    pattern: Float[Tensor, "batch head q k"]

    def combine(self, expression: str) -> Float[Tensor, "batch head q k"]:
        """Sum of the terms in ``"EP+PP+BP"``."""
        return combine(self.terms, expression)


def combine(terms: dict[str, Tensor], expression: str) -> Tensor:
    names = parse_expression(expression)
    missing = [n for n in names if n not in terms]
    if missing:
        raise CircuitsError(f"unknown term {missing[0]!r}; terms are {', '.join(terms)}")
    return sum(terms[n] for n in names)


@torch.no_grad()
def decompose(
    model: HookedCLIP | HookedEncoder,
    tokens: Int[Tensor, "batch pos"],
    encoder: str | None = None,
    layer: int = 0,
) -> Decomposition:
    """Run the decomposed forward on ``tokens`` and collect layer ``layer``'s terms (``encoder``:
    which stack of a CLIP pair, default vision; a bare encoder or prefix-LM is used as it is)."""
    enc = get_encoder(model, encoder)
    layer = check_layer(enc, layer)
    prefix = f"blocks.{layer}.attn."
    names = [prefix + f"hook_score_{t}" for t in enc.term_names(layer)]
    names += [prefix + f"hook_v_{s}" for s in enc.value_sources(layer)]
    names += [prefix + "hook_attn_scores", prefix + "hook_pattern"]
    device = next(enc.parameters()).device
    was_training = enc.training
    enc.eval()
    try:
        _, cache = enc.run_with_cache(tokens.to(device), names_filter=names, decompose=True)
    finally:
        enc.train(was_training)
    return Decomposition(
        layer=layer,
        terms={t: cache[prefix + f"hook_score_{t}"] for t in enc.term_names(layer)},
        values={s: cache[prefix + f"hook_v_{s}"] for s in enc.value_sources(layer)},
        scores=cache[prefix + "hook_attn_scores"],
        pattern=cache[prefix + "hook_pattern"],
    )


@dataclass
class PooledRow:
    """The pooled query's row of every term: what the [CLS] / [EOT] token attends with."""

    terms: dict[str, Float[Tensor, "batch head k"]]
    scores: Float[Tensor, "batch head k"]
    pattern: Float[Tensor, "batch head k"]
    query: int  # position of the pooled query

    def combine(self, expression: str) -> Float[Tensor, "batch head k"]:
        return combine(self.terms, expression)


def pooled_row(decomposition: Decomposition, query: int) -> PooledRow:
    """Restrict a decomposition to one query position (0 = [CLS], -1 = [EOT])."""
    q = query % decomposition.scores.shape[2]
    return PooledRow(
        terms={t: v[:, :, q] for t, v in decomposition.terms.items()},
        scores=decomposition.scores[:, :, q],
        pattern=decomposition.pattern[:, :, q],
        query=q,
    )


def pooled_row_terms(
    model: HookedCLIP | HookedEncoder,
    tokens: Int[Tensor, "batch pos"],
    encoder: str = "vision",
    layer: int = 0,
) -> PooledRow:
    """`decompose` then `pooled_row` at the encoder's pooled position."""
    enc = get_encoder(model, encoder)
    return pooled_row(decompose(enc, tokens, layer=layer), enc.pool_index)

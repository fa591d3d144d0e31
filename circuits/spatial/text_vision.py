"""The text -> vision block of a prefix-LM's scores ([L] App. O, Fig. 23; spec A13).

App. O: "the EP and PP terms exhibit a clear attention gradient from text token queries over
the vision token keys, preferring one side". `text_vision_gradients` gives, for each text query
([BOS], w1, w2, w3) of layer ``layer``, the monotonicity and slope of each score term along the
vision keys' columns (`circuits.stats.term_gradient` on the decoder's probe); BOS always sits at
the same position, so on its row EP and PP are not identifiable (as for CLS in the encoders).
`text_vision_ablations` zeroes position terms on that block only (spec A13's suggested
ablation: EP+PP+BP -> relational accuracy near the label-aware chance 0.5, label set intact).
"""

from __future__ import annotations

from circuits.ablate import Ablation, ablated
from circuits.errors import CircuitsError
from circuits.evaluation import evaluate
from circuits.stats import Gradient, term_gradient

TEXT_QUERIES = ("[BOS]", "w1", "w2", "w3")  # the caption's input positions; w1 predicts the relation
GRADIENT_TERMS = ("EP", "PP", "BP", "EE", "PE")
POSITION_ABLATIONS = {"EP": ("EP",), "PP": ("PP",), "BP": ("BP",), "EP+PP": ("EP", "PP"), "EP+PP+BP": ("EP", "PP", "BP")}


def text_vision_gradients(
    model, task, split: str = "unseen_pair", layer: int = 0, terms: tuple[str, ...] | None = None
) -> dict[str, dict[str, Gradient]]:
    """``{query: {term: Gradient}}`` for each text query row over the vision keys (Fig. 23);
    ``terms`` default to those of `GRADIENT_TERMS` the layer has."""
    names = model.term_names(layer)
    terms = tuple(t for t in (terms or GRADIENT_TERMS) if t in names) or None
    return {q: term_gradient(model, task.probe(split, "decoder", query=i), layer, terms) for i, q in enumerate(TEXT_QUERIES)}


def text_vision_ablation(terms: tuple[str, ...], layer: int = 0) -> Ablation:
    """Zero ``terms`` on the text-query x vision-key block of decoder ``layer``, every head."""
    return Ablation(terms=terms, encoders=("decoder",), layers=(layer,), block=("text", "vision"))


def text_vision_ablations(
    model, task, splits: tuple[str, ...] | None = None, layer: int = 0, names: tuple[str, ...] | None = None
) -> dict[str, dict[str, float]]:
    """``{"baseline": metrics, "EP": metrics, ...}``: `evaluate` after zeroing each of
    `POSITION_ABLATIONS` (or those named in ``names``) on the text -> vision block of ``layer``
    (those the layer has)."""
    have = set(model.term_names(layer))
    unknown = sorted(set(names or ()) - set(POSITION_ABLATIONS))
    if unknown:
        raise CircuitsError(f"unknown ablation {unknown[0]!r}; the text -> vision ablations are {', '.join(POSITION_ABLATIONS)}")
    table = {"baseline": evaluate(model, task, splits)}
    for name, terms in POSITION_ABLATIONS.items():
        if (names is None or name in names) and set(terms) <= have:
            with ablated(model, text_vision_ablation(terms, layer)):
                table[name] = evaluate(model, task, splits)
    return table

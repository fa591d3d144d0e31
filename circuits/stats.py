"""Head statistics on the pooled query's attention row (Sec. 4-6; App. E, F, G).

For two-object inputs, "first" is the left object of an image (vision) or the first-mentioned
object of a caption (text: subject at word position 0, object at position 2); "second" the
other. All statistics are per head.

* `head_bias` (Fig. 4c, App. G, Fig. 6): how often the pooled query attends more to the first
  or the second object, and which key gets its maximal attention; plus the relational /
  label-specific split of Fig. 5c-d.
* `term_spread` (App. E, Fig. 13): each term's standard deviation along the pooled row,
  relative to that of the full scores.
* `term_gradient` (App. F, G): the "horizontal gradient" of a term along the pooled row as
  a number: Spearman rank correlation with the key column, and the least-squares slope.

Relational vs label-specific (the paper's inequality was lost in extraction). On the pooled row
of a first layer without LayerNorm, the difference of the scores at the two objects is
exactly ``D = D_pos + D_tok``, with ``D_pos`` the difference of the terms whose key source is
P (``EP+PP+BP``: the key-position part, the identifiable combination since E[CLS] and P[0]
always meet at the query) and ``D_tok`` that of the terms whose key source is E (``EE+PE+BE``).
An (input, head) is *relational* when ``|D_pos| > |D_tok|``: the position part alone decides
which object gets more attention, whatever the labels, so its direction is ``sign(D_pos)``
(toward the second object if positive). Otherwise it is *label-specific*. ``D = right - left``
as in Fig. 5c. `head_bias` accepts other term groups, e.g. the paper's EP vs EE.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuits.decompose import PooledRow, check_layer, combine, get_encoder, pooled_row_terms
from circuits.errors import CircuitsError
from circuits.models import HookedCLIP
from circuits.models.terms import E, P, join_expression, key_source, parse_expression, term_name


@dataclass
class TwoObjectInputs:
    """Inputs with two objects and where they sit (first = left / subject)."""

    encoder: str
    tokens: Int[Tensor, "n pos"]
    first: Int[Tensor, " n"]  # key position of the first object
    second: Int[Tensor, " n"]
    columns: Int[Tensor, " pos"]  # horizontal coordinate of each key position (-1: not a pixel / word)


def two_object_inputs(model: HookedCLIP, encoder: str = "vision", split: str = "unseen_pair") -> TwoObjectInputs:
    """The two-object images of ``split`` (vision) or the distinct two-object captions of its
    images (text)."""
    world = model.world
    data = world[split]
    if data.objects.shape[1] < 2 or bool((data.objects[:, 1] < 0).any()):
        raise CircuitsError(f"split {split!r} does not hold two-object images; use seen_pair, unseen_pair or train_pair")
    get_encoder(model, encoder)
    if encoder == "vision":
        n_px = world.cfg.n_pixels
        columns = torch.cat([torch.tensor([-1]), torch.arange(n_px) % world.cfg.width])
        return TwoObjectInputs("vision", data.images, data.positions[:, 0] + 1, data.positions[:, 1] + 1, columns)
    ids = torch.unique(data.true_captions[data.true_captions >= 0])
    captions = world.captions[ids]
    n = len(ids)
    columns = torch.tensor([0, 1, 2, -1])  # words X, relation, Y; [EOT] is the query
    return TwoObjectInputs("text", captions, torch.zeros(n, dtype=torch.long), torch.full((n,), 2), columns)


def _at(row: Float[Tensor, "n head k"], pos: Int[Tensor, " n"]) -> Float[Tensor, "n head"]:
    return row.gather(2, pos.to(row.device)[:, None, None].expand(-1, row.shape[1], 1))[..., 0]


def key_source_group(terms: list[str] | dict, key: str) -> str:
    """``"EP+PP+BP"``: every term whose key source is ``key``."""
    names = [t for t in terms if key_source(t) == key]
    if not names:
        raise CircuitsError(f"no term has key source {key!r} (terms: {', '.join(terms)})")
    return join_expression(names)


@dataclass
class HeadBias:
    """Per-head fractions over the inputs (each a list, one value per head)."""

    encoder: str
    layer: int
    split: str
    n_inputs: int
    first: list[float]  # attention on the first (left) object > on the second
    second: list[float]
    argmax_first: list[float]  # the maximal attention of the row falls on the first object
    argmax_second: list[float]
    argmax_other: list[float]
    relational_first: list[float | None]  # relational, toward the first object (None: no P terms)
    relational_second: list[float | None]
    label_specific: list[float | None]
    position_terms: str = ""  # "" when no term has key source P (rotary / no positional embedding)
    token_terms: str = ""

    @property
    def relational(self) -> list[float | None]:
        return [None if a is None else a + b for a, b in zip(self.relational_first, self.relational_second)]

    def rows(self) -> list[dict]:
        keys = ["first", "second", "argmax_first", "argmax_second", "argmax_other",
                "relational_first", "relational_second", "label_specific"]
        return [{"head": h, **{k: getattr(self, k)[h] for k in keys}} for h in range(len(self.first))]


def head_bias(
    model: HookedCLIP,
    encoder: str = "vision",
    split: str = "unseen_pair",
    layer: int = 0,
    position_terms: str | None = None,
    token_terms: str | None = None,
) -> HeadBias:
    """Left/right (first/second) attention bias and relational / label-specific split per head.

    ``position_terms`` / ``token_terms`` default to every term with key source P / E; without
    P terms (rotary or no positional embedding) the relational fields are None.
    """
    inputs = two_object_inputs(model, encoder, split)
    enc = get_encoder(model, encoder)
    layer = check_layer(enc, layer)
    row = pooled_row_terms(enc, inputs.tokens, layer=layer)
    if position_terms is None:  # "" for rotary / no positional embedding: the relational split is undefined
        position_terms = key_source_group(row.terms, P) if any(key_source(t) == P for t in row.terms) else ""
    token_terms = token_terms or key_source_group(row.terms, E)

    att_first, att_second = _at(row.pattern, inputs.first), _at(row.pattern, inputs.second)
    argmax = row.pattern.argmax(-1)  # [n, head]
    is_first = argmax == inputs.first.to(argmax.device)[:, None]
    is_second = argmax == inputs.second.to(argmax.device)[:, None]

    def frac(mask: Tensor) -> list[float]:
        return mask.float().mean(0).tolist()

    return HeadBias(
        encoder=encoder,
        layer=layer,
        split=split,
        n_inputs=len(inputs.tokens),
        first=frac(att_first > att_second),
        second=frac(att_second > att_first),
        argmax_first=frac(is_first),
        argmax_second=frac(is_second),
        argmax_other=frac(~is_first & ~is_second),
        **_relational_split(row, inputs, position_terms, token_terms),
        position_terms=position_terms,
        token_terms=token_terms,
    )


def _relational_split(row: PooledRow, inputs: TwoObjectInputs, position_terms: str, token_terms: str) -> dict:
    """Fractions of relational (toward first / second) and label-specific (input, head)s; None without P terms."""
    if not position_terms:
        none = [None] * row.scores.shape[1]
        return {"relational_first": none, "relational_second": none, "label_specific": none}

    def delta(expression: str) -> Tensor:
        combined = row.combine(expression)
        return _at(combined, inputs.second) - _at(combined, inputs.first)

    d_pos = delta(position_terms)
    relational = d_pos.abs() > delta(token_terms).abs()
    return {
        "relational_first": (relational & (d_pos < 0)).float().mean(0).tolist(),
        "relational_second": (relational & (d_pos > 0)).float().mean(0).tolist(),
        "label_specific": (~relational).float().mean(0).tolist(),
    }


def _valid_keys(row: PooledRow) -> Tensor:
    return torch.isfinite(row.scores)  # [n, head, k]: unmasked keys


def _inputs_and_row(model: HookedCLIP, encoder: str, split: str, layer: int) -> tuple[TwoObjectInputs, PooledRow]:
    inputs = two_object_inputs(model, encoder, split)
    return inputs, pooled_row_terms(get_encoder(model, encoder), inputs.tokens, layer=layer)


def default_terms(terms: list[str] | dict) -> list[str]:
    """Every term, then the key-position groups: EP+PP, and every query source x P if larger."""
    names = list(terms)
    pair = join_expression([term_name(E, P), term_name(P, P)])
    if all(t in terms for t in parse_expression(pair)):
        names.append(pair)
        group = key_source_group(terms, P)
        if group != pair:
            names.append(group)
    return names


def term_spread(
    model: HookedCLIP,
    encoder: str = "vision",
    split: str = "unseen_pair",
    layer: int = 0,
    terms: tuple[str, ...] | None = None,
) -> dict[str, list[float]]:
    """Per term (default: `default_terms`), per head: mean over inputs of the term's standard
    deviation across the unmasked keys of the pooled row, divided by the mean standard
    deviation of the full scores (App. E, Fig. 13)."""
    _, row = _inputs_and_row(model, encoder, split, layer)
    return _spread(row, terms or default_terms(row.terms))


def _spread(row: PooledRow, names: list[str] | tuple[str, ...]) -> dict[str, list[float]]:
    valid = _valid_keys(row)
    total = _masked_std(row.scores, valid).mean(0)
    return {name: (_masked_std(row.combine(name), valid).mean(0) / total).tolist() for name in names}


def _masked_std(x: Tensor, valid: Tensor) -> Tensor:
    count = valid.sum(-1)
    x = torch.where(valid, x, 0.0)
    mean = x.sum(-1) / count
    var = torch.where(valid, (x - mean[..., None]) ** 2, 0.0).sum(-1) / count
    return var.sqrt()


@dataclass
class Gradient:
    """Horizontal gradient of one term along the pooled row, per head."""

    monotonicity: list[float]  # Spearman correlation with the key column, mean over inputs
    slope: list[float]  # least-squares slope per column, mean over inputs
    profile: list[list[float]] = field(default_factory=list)  # mean value at each key column [head][column]


def term_gradient(
    model: HookedCLIP,
    encoder: str = "vision",
    split: str = "unseen_pair",
    layer: int = 0,
    terms: tuple[str, ...] | None = None,
) -> dict[str, Gradient]:
    """Monotonicity and slope of each term (default: `default_terms`) along the key columns of
    the pooled row (pixels for vision, words X / relation / Y for text)."""
    inputs, row = _inputs_and_row(model, encoder, split, layer)
    return _gradients(inputs, row, terms or default_terms(row.terms))


def _gradients(inputs: TwoObjectInputs, row: PooledRow, names: list[str] | tuple[str, ...]) -> dict[str, Gradient]:
    keys = (inputs.columns >= 0).nonzero()[:, 0]
    x = inputs.columns[keys].float()
    out = {}
    for name in names:
        y = row.combine(name)[:, :, keys.to(row.scores.device)].cpu()  # [n, head, keys]
        out[name] = Gradient(
            monotonicity=_spearman(y, x).mean(0).tolist(),
            slope=_slope(y, x).mean(0).tolist(),
            profile=_column_profile(y, x).tolist(),
        )
    return out


def spread_and_gradients(
    model: HookedCLIP,
    encoder: str = "vision",
    split: str = "unseen_pair",
    layer: int = 0,
    spread_terms: tuple[str, ...] | None = None,
    gradient_terms: tuple[str, ...] | None = None,
) -> tuple[dict[str, list[float]], dict[str, Gradient]]:
    """`term_spread` and `term_gradient` from one decomposition (the same numbers, half the cost)."""
    inputs, row = _inputs_and_row(model, encoder, split, layer)
    default = default_terms(row.terms)
    return _spread(row, spread_terms or default), _gradients(inputs, row, gradient_terms or default)


def term_summary(
    model: HookedCLIP, encoder: str = "vision", split: str = "unseen_pair", layer: int = 0
) -> list[dict]:
    """One row per (head, term): share of the row's spread, monotonicity and slope (the table
    of ``lenscli decompose``), for every term and the key-position groups."""
    spread, grads = spread_and_gradients(model, encoder, split, layer)
    names, n_heads = list(spread), len(next(iter(spread.values())))
    return [
        {"head": h, "term": name, "share": spread[name][h], "monotonicity": grads[name].monotonicity[h],
         "slope": grads[name].slope[h]}
        for h in range(n_heads)
        for name in names
    ]


def _ranks(v: Tensor) -> Tensor:
    """Average ranks along the last dim (ties share their mean rank)."""
    order = v.argsort(-1)
    ranks = torch.empty_like(v)
    ranks.scatter_(-1, order, torch.arange(v.shape[-1], dtype=v.dtype).expand_as(v).contiguous())
    eq = v[..., :, None] == v[..., None, :]
    return (eq.to(v.dtype) * ranks[..., None, :]).sum(-1) / eq.sum(-1)


def _pearson(a: Tensor, b: Tensor) -> Tensor:
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    denom = (a.pow(2).sum(-1) * b.pow(2).sum(-1)).sqrt()
    return torch.where(denom > 0, (a * b).sum(-1) / denom.clamp_min(1e-30), torch.zeros_like(denom))


def _spearman(y: Float[Tensor, "n head k"], x: Float[Tensor, " k"]) -> Float[Tensor, "n head"]:
    return _pearson(_ranks(y), _ranks(x).expand_as(y))


def _slope(y: Float[Tensor, "n head k"], x: Float[Tensor, " k"]) -> Float[Tensor, "n head"]:
    xc = x - x.mean()
    return ((y - y.mean(-1, keepdim=True)) * xc).sum(-1) / xc.pow(2).sum()


def _column_profile(y: Float[Tensor, "n head k"], x: Float[Tensor, " k"]) -> Float[Tensor, "head columns"]:
    cols = torch.unique(x)
    return torch.stack([y[..., x == c].mean(dim=(0, 2)) for c in cols], dim=-1)


@dataclass
class InputProfile:
    """Every term along the pooled row for one input (Fig. 5b): values ``[head][key]``."""

    encoder: str
    layer: int
    tokens: list[int]
    keys: list[str]  # a label per key position: "CLS", "p0".. (vision) or the words (text)
    terms: dict[str, list[list[float]]]
    scores: list[list[float]]  # hook_attn_scores on the pooled row (masked keys: -inf)
    pattern: list[list[float]]

    def to_dict(self) -> dict:
        inf = float("-inf")
        return {
            "encoder": self.encoder, "layer": self.layer, "tokens": self.tokens, "keys": self.keys,
            "terms": self.terms, "pattern": self.pattern,
            "scores": [[None if v == inf else v for v in head] for head in self.scores],
        }


def key_labels(model: HookedCLIP, tokens: Int[Tensor, " pos"], encoder: str = "vision") -> list[str]:
    """Names of the key positions of one input: ``CLS, p0, p1, ...`` (pixel index) or the words."""
    world = model.world
    if encoder == "vision":
        return ["CLS"] + [f"p{i}" for i in range(len(tokens) - 1)]
    return [world.vocab.text_token_str(int(t)) for t in tokens]


def input_profile(
    model: HookedCLIP,
    tokens: Int[Tensor, "1 pos"] | Int[Tensor, " pos"],
    encoder: str = "vision",
    layer: int = 0,
    terms: tuple[str, ...] | None = None,
) -> InputProfile:
    """The pooled row of every term (default: `default_terms`) for one input, as plain lists."""
    tokens = tokens.reshape(1, -1)
    enc = get_encoder(model, encoder)
    layer = check_layer(enc, layer)
    row = pooled_row_terms(enc, tokens, layer=layer)
    names = terms or default_terms(row.terms)
    return InputProfile(
        encoder=encoder,
        layer=layer,
        tokens=tokens[0].tolist(),
        keys=key_labels(model, tokens[0], encoder),
        terms={name: row.combine(name)[0].tolist() for name in names},
        scores=row.scores[0].tolist(),
        pattern=row.pattern[0].tolist(),
    )


def example_input(model: HookedCLIP, encoder: str = "vision", split: str = "unseen_pair", index: int = 0) -> Int[Tensor, "1 pos"]:
    """One two-object input of ``split``: its ``index``-th image (vision) or caption (text)."""
    tokens = two_object_inputs(model, encoder, split).tokens
    return tokens[index % len(tokens)][None]

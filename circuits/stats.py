"""Head statistics on the pooled query's attention row (Sec. 4-6; App. E, F, G).

Every statistic takes a model (a CLIP pair or a bare encoder) and a `circuits.tasks.Probe`:
two-object inputs with their "first" and "second" object positions (for the CLIP worlds,
``task.probe(split, encoder)``: the left / right object of an image, the subject / object of a
caption). All statistics are per head, on the probe's query row (default: the pooled one).

* `head_bias` (Fig. 4c, App. G, Fig. 6): how often the pooled query attends more to the first
  or the second object, and which key gets its maximal attention; plus the relational /
  label-specific split of Fig. 5c-d.
* `term_spread` (App. E, Fig. 13): each term's standard deviation along the pooled row,
  relative to that of the full scores.
* `term_gradient` (App. F, G): the "horizontal gradient" of a term along the pooled row as
  a number: Spearman rank correlation with the key column, and the least-squares slope.

Relational vs label-specific (the paper's inequality was lost in extraction). On the pooled row
of a first layer, the difference of the scores at the two objects is
exactly ``D = D_pos + D_tok``, with ``D_pos`` the difference of the terms whose key source is
P (``EP+PP+BP``: the key-position part, the identifiable combination since E[CLS] and P[0]
always meet at the query) and ``D_tok`` that of the terms whose key source is E (``EE+PE+BE``).
An (input, head) is *relational* when ``|D_pos| > |D_tok|``: the position part alone decides
which object gets more attention, whatever the labels, so its direction is ``sign(D_pos)``
(toward the second object if positive). Otherwise it is *label-specific*. ``D = right - left``
as in Fig. 5c. `head_bias` accepts other term groups, e.g. the paper's EP vs EE. The identity
holds at layer 0 (with LayerNorm too: the N and B key sources are the same at every key and
cancel in D); at a later layer the keys also carry what earlier layers wrote (source H), so
the split is not exact there and `head_bias` leaves it out (``relational_*`` None, with the
reason in ``relational_note``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from circuits.decompose import PooledRow, check_layer, decompose, get_encoder, pooled_row
from circuits.errors import CircuitsError
from circuits.models import HookedCLIP, HookedEncoder
from circuits.models.terms import E, H, P, join_expression, key_source, parse_expression, term_name
from circuits.tasks import Probe

Model = HookedCLIP | HookedEncoder | nn.Module  # a pair, an encoder or a module holding one (`get_encoder`)


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
    names: tuple[str, str]  # what the first and second object are called ("left", "right")
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
    relational_note: str = ""  # why the relational fields are None, when they are

    @property
    def relational(self) -> list[float | None]:
        return [None if a is None else a + b for a, b in zip(self.relational_first, self.relational_second)]

    def labels(self) -> dict[str, str]:
        """Field -> column heading in the probe's words (`names`), shared by the CLI's table and
        the report's: ``{"first": "left", "argmax_first": "max left", "relational_first":
        "rel→left", ..., "label_specific": "label"}``."""
        first, second = self.names
        return {"first": first, "second": second, "argmax_first": f"max {first}", "argmax_second": f"max {second}",
                "argmax_other": "max elsewhere", "relational_first": f"rel→{first}",
                "relational_second": f"rel→{second}", "label_specific": "label"}

    def rows(self) -> list[dict]:
        keys = ["first", "second", "argmax_first", "argmax_second", "argmax_other",
                "relational_first", "relational_second", "label_specific"]
        return [{"head": h, **{k: getattr(self, k)[h] for k in keys}} for h in range(len(self.first))]


def head_bias(
    model: Model,
    probe: Probe,
    layer: int = 0,
    position_terms: str | None = None,
    token_terms: str | None = None,
) -> HeadBias:
    """Left/right (first/second) attention bias and relational / label-specific split per head.

    ``position_terms`` / ``token_terms`` default to every term with key source P / E; without
    P terms (rotary or no positional embedding), or past layer 0 (see the module docstring), the
    relational fields are None and ``relational_note`` says why.
    """
    layer, row = probe_row(model, probe, layer)
    note = ""
    if any(key_source(t) == H for t in row.terms):
        note = f"layer {layer} keys carry earlier layers' output (source H): the split D = D_pos + D_tok is exact at layer 0 only"
    elif not any(key_source(t) == P for t in row.terms):
        note = "no term has key source P (rotary or no positional embedding): no position part to split off"
    if position_terms is None:
        position_terms = "" if note else key_source_group(row.terms, P)
    if token_terms is None:
        token_terms = "" if note else key_source_group(row.terms, E)

    att_first, att_second = _at(row.pattern, probe.first), _at(row.pattern, probe.second)
    argmax = row.pattern.argmax(-1)  # [n, head]
    is_first = argmax == probe.first.to(argmax.device)[:, None]
    is_second = argmax == probe.second.to(argmax.device)[:, None]

    def frac(mask: Tensor) -> list[float]:
        return mask.float().mean(0).tolist()

    return HeadBias(
        encoder=probe.encoder,
        layer=layer,
        split=probe.split,
        n_inputs=len(probe),
        names=probe.names,
        first=frac(att_first > att_second),
        second=frac(att_second > att_first),
        argmax_first=frac(is_first),
        argmax_second=frac(is_second),
        argmax_other=frac(~is_first & ~is_second),
        **_relational_split(row, probe, position_terms, token_terms),
        position_terms=position_terms,
        token_terms=token_terms,
        relational_note=note if not position_terms else "",
    )


def _relational_split(row: PooledRow, probe: Probe, position_terms: str, token_terms: str) -> dict:
    """Fractions of relational (toward first / second) and label-specific (input, head)s; None without P terms."""
    if not position_terms:
        none = [None] * row.scores.shape[1]
        return {"relational_first": none, "relational_second": none, "label_specific": none}

    def delta(expression: str) -> Tensor:
        combined = row.combine(expression)
        return _at(combined, probe.second) - _at(combined, probe.first)

    d_pos = delta(position_terms)
    relational = d_pos.abs() > delta(token_terms).abs()
    return {
        "relational_first": (relational & (d_pos < 0)).float().mean(0).tolist(),
        "relational_second": (relational & (d_pos > 0)).float().mean(0).tolist(),
        "label_specific": (~relational).float().mean(0).tolist(),
    }


def _valid_keys(row: PooledRow) -> Tensor:
    return torch.isfinite(row.scores)  # [n, head, k]: unmasked keys


def probe_row(model: Model, probe: Probe, layer: int) -> tuple[int, PooledRow]:
    """(layer, the probe's query row of every term of that layer)."""
    enc = get_encoder(model, probe.encoder)
    layer = check_layer(enc, layer)
    query = enc.pool_index if probe.query is None else probe.query
    return layer, pooled_row(decompose(enc, probe.tokens, layer=layer), query)


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
    model: Model, probe: Probe, layer: int = 0, terms: tuple[str, ...] | None = None
) -> dict[str, list[float]]:
    """Per term (default: `default_terms`), per head: mean over inputs of the term's standard
    deviation across the unmasked keys of the pooled row, divided by the mean standard
    deviation of the full scores (App. E, Fig. 13)."""
    _, row = probe_row(model, probe, layer)
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
    model: Model, probe: Probe, layer: int = 0, terms: tuple[str, ...] | None = None
) -> dict[str, Gradient]:
    """Monotonicity and slope of each term (default: `default_terms`) along the key columns of
    the probe's query row (pixel columns for vision, words X / relation / Y for text)."""
    _, row = probe_row(model, probe, layer)
    return _gradients(probe, row, terms or default_terms(row.terms))


def _gradients(probe: Probe, row: PooledRow, names: list[str] | tuple[str, ...]) -> dict[str, Gradient]:
    keys = (probe.columns >= 0).nonzero()[:, 0]
    x = probe.columns[keys].float()
    out = {}
    for name in names:
        y = row.combine(name)[:, :, keys.to(row.scores.device)].cpu()  # [n, head, keys]
        out[name] = Gradient(
            monotonicity=spearman(y, x).mean(0).tolist(),
            slope=_slope(y, x).mean(0).tolist(),
            profile=_column_profile(y, x).tolist(),
        )
    return out


def spread_and_gradients(
    model: Model,
    probe: Probe,
    layer: int = 0,
    spread_terms: tuple[str, ...] | None = None,
    gradient_terms: tuple[str, ...] | None = None,
) -> tuple[dict[str, list[float]], dict[str, Gradient]]:
    """`term_spread` and `term_gradient` from one decomposition (the same numbers, half the cost)."""
    _, row = probe_row(model, probe, layer)
    default = default_terms(row.terms)
    return _spread(row, spread_terms or default), _gradients(probe, row, gradient_terms or default)


def term_summary(model: Model, probe: Probe, layer: int = 0) -> list[dict]:
    """One row per (head, term): share of the row's spread, monotonicity and slope (the table
    of ``lenscli decompose``), for every term and the key-position groups."""
    spread, grads = spread_and_gradients(model, probe, layer)
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


def spearman(y: Float[Tensor, "n head k"], x: Float[Tensor, " k"]) -> Float[Tensor, "n head"]:
    """Spearman rank correlation of each row of ``y`` with ``x`` (ties share their mean rank)."""
    return _pearson(_ranks(y), _ranks(x).expand_as(y))


def _slope(y: Float[Tensor, "n head k"], x: Float[Tensor, " k"]) -> Float[Tensor, "n head"]:
    xc = x - x.mean()
    return ((y - y.mean(-1, keepdim=True)) * xc).sum(-1) / xc.pow(2).sum()


def _column_profile(y: Float[Tensor, "n head k"], x: Float[Tensor, " k"]) -> Float[Tensor, "head columns"]:
    cols = torch.unique(x)
    return torch.stack([y[..., x == c].mean(dim=(0, 2)) for c in cols], dim=-1)


@dataclass
class Gradient2D:
    """App. K's 2D gradient score (A12), per head: ``term ~ a*col + b*row + c`` fitted by least
    squares to the term's mean value at each pixel key of the pooled row."""

    col: list[float]  # a: change per column (the horizontal gradient)
    row: list[float]  # b: change per row
    intercept: list[float]
    r2: list[float]


def fit_plane(
    values: Float[Tensor, "head k"], col: Float[Tensor, " k"], row: Float[Tensor, " k"]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Least-squares ``values ~ a*col + b*row + c`` per head; returns a, b, c, R^2 (each [head]).
    R^2 is 1 for an exact plane and 0 when the fit explains nothing (a constant profile gives 1)."""
    X = torch.stack([col, row, torch.ones_like(col)], dim=1).double()  # [k, 3]
    y = values.double().T  # [k, head]
    coef = torch.linalg.lstsq(X, y).solution  # [3, head]
    resid = y - X @ coef
    total = (y - y.mean(0)).pow(2).sum(0)
    r2 = torch.where(total > 0, 1 - resid.pow(2).sum(0) / total.clamp_min(1e-300), torch.ones_like(total))
    return coef[0].float(), coef[1].float(), coef[2].float(), r2.float()


def gradient_2d(
    model: Model, probe: Probe, layer: int = 0, terms: tuple[str, ...] = ("EP", "PP", "BP", "EP+PP")
) -> dict[str, Gradient2D]:
    """App. K (A12): each term's pooled-row profile over the pixel keys, averaged over the
    probe's inputs, fitted as ``a*col + b*row + c`` (`fit_plane`). Needs a probe with ``rows``
    (the 2D grid's `World.probe`). Paper's claim: "horizontal attention gradients", i.e.
    |a| >> |b| for EP+PP in the heads that carry the L/R bias."""
    if probe.rows is None:
        raise CircuitsError("the 2D gradient score needs a probe with row coordinates (a 2D world's vision probe)")
    _, prow = probe_row(model, probe, layer)
    keys = (probe.columns >= 0).nonzero()[:, 0]
    col, row = probe.columns[keys].float(), probe.rows[keys].float()
    out = {}
    for name in terms:
        mean_profile = prow.combine(name)[:, :, keys.to(prow.scores.device)].mean(0).cpu()  # [head, keys]
        a, b, c, r2 = fit_plane(mean_profile, col, row)
        out[name] = Gradient2D(a.tolist(), b.tolist(), c.tolist(), r2.tolist())
    return out


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


def input_profile(
    model: Model,
    tokens: Int[Tensor, "1 pos"] | Int[Tensor, " pos"],
    encoder: str = "vision",
    layer: int = 0,
    terms: tuple[str, ...] | None = None,
    keys: list[str] | None = None,
) -> InputProfile:
    """The pooled row of every term (default: `default_terms`) for one input, as plain lists;
    ``keys`` names the positions (default ``p0, p1, ...``; a task's ``position_labels``)."""
    tokens = tokens.reshape(1, -1)
    enc = get_encoder(model, encoder)
    layer = check_layer(enc, layer)
    row = pooled_row(decompose(enc, tokens, layer=layer), enc.pool_index)
    names = terms or default_terms(row.terms)
    return InputProfile(
        encoder=encoder,
        layer=layer,
        tokens=tokens[0].tolist(),
        keys=keys or [f"p{i}" for i in range(tokens.shape[1])],
        terms={name: row.combine(name)[0].tolist() for name in names},
        scores=row.scores[0].tolist(),
        pattern=row.pattern[0].tolist(),
    )

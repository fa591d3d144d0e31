"""Plotly figures of the paper's analyses, one function per figure kind.

Every function computes with the library (`circuits.decompose`, `circuits.stats`,
`circuits.evaluation`) or takes an analysis result, and returns a titled ``go.Figure`` whose
axes name what they show: key / query positions as ``"CLS"``, ``"3:17"`` (pixel index : pixel
value) or caption words, heads as ``"H0"``, ``"H1"``, ... Signed quantities use a diverging colour
scale (``"RdBu_r"``) centred at zero (``zmid=0``); attention probabilities a sequential one on [0, 1].

=========================  ===================================================
`attention_patterns`       attention pattern per image and head (Fig. 4b, 6a)
`term_grid`                score terms, heads x terms (Fig. 5a, 12, 14)
`term_profiles`            pooled-row profiles of the terms (Fig. 5b)
`bias_bars`                left/right (subject/object) attention bias (Fig. 4c)
`relational_bars`          relational vs label-specific attention (Fig. 5d)
`ablation_bars`            accuracy under term ablations (Fig. 5e, 16, 17)
`similarity_heatmap`       image x caption cosine similarity (Fig. 3 right)
`training_curves`          accuracies and loss during training (Fig. 11)
`term_spread_bars`         each term's share of the pooled row's spread (Fig. 13)
`text_attention`           [EOT] attention over words, mean +- std (Fig. 6)
`term_gradient_figure`     column profiles of terms, monotonicity and slope (Fig. 5b, 14, 15b)
`gradient_rows`            the monotonicity and slope of each term and head, as table rows
=========================  ===================================================

Helpers: `head_names`, `position_labels`, `swap_objects` (a label pair and its position swap),
`ablation_results` / `ablation_name` (normalise `evaluate_ablation` outputs), `read_history`.
Figures that label inputs take the task (`circuits.tasks.Task`) the inputs come from.
`circuits.report` assembles these figures into one self-contained HTML file.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from jaxtyping import Int
from plotly.subplots import make_subplots
from torch import Tensor

from circuits.ablate import Ablation
from circuits.data import World
from circuits.decompose import check_layer, decompose, get_encoder, pooled_row_terms
from circuits.errors import CircuitsError
from circuits.models import HookedCLIP, HookedEncoder
from circuits.models.terms import key_source, query_source
from circuits.stats import Gradient, HeadBias
from circuits.tasks import Task

DIVERGING = "RdBu_r"
SEQUENTIAL = "Blues"
TEMPLATE = "plotly_white"
ACCURACY_KEYS = ("train_single", "train_pair", "single_object", "seen_pair", "unseen_pair", "label_set", "top1", "top2")


# ------------------------------------------------------------------------------ helpers
def head_names(n: int) -> list[str]:
    """``["H0", "H1", ...]``: the name of each head on every axis, legend and subplot title."""
    return [f"H{h}" for h in range(n)]


def _unique(labels: list[str]) -> list[str]:
    """Category labels must be distinct; repeated ones get their position appended."""
    seen: set[str] = set()
    out = []
    for i, label in enumerate(labels):
        out.append(label if label not in seen else f"{label} ({i})")
        seen.add(out[-1])
    return out


def position_labels(task: Task, tokens: Tensor, encoder: str = "vision") -> list[str]:
    """Axis labels of one input: ``"CLS"``, ``"pixel:value"`` (a world's images) or the task's
    `position_labels` (a caption's words), made distinct."""
    if isinstance(task, World) and encoder == "vision":
        return ["CLS" if i == 0 else f"{i - 1}:{int(t)}" for i, t in enumerate(tokens)]
    return _unique(task.position_labels(tokens, encoder))


def input_text(task: Task, tokens: Tensor, encoder: str = "vision") -> str:
    """An image as its pixel values, or a caption as its text (other tasks: the token ids)."""
    if not isinstance(task, World):
        return " ".join(str(int(t)) for t in tokens)
    if encoder == "vision":
        return task.image_text(tokens)
    return task.caption_text(tokens.cpu())


def as_tokens(
    task: Task, inputs: Int[Tensor, "n seq"] | Int[Tensor, " seq"] | str | Sequence[str], encoder: str = "vision"
) -> Int[Tensor, "n seq"]:
    """A [n, seq] token tensor from a tensor (1-D or 2-D) or image strings like ``"0 17 0 19"``."""
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, Tensor):
        if encoder != "vision" or not isinstance(task, World):
            raise CircuitsError("inputs other than a world's images must be given as a token tensor")
        inputs = torch.cat([task.parse_image(text) for text in inputs])
    return (inputs[None] if inputs.ndim == 1 else inputs).cpu()


def swap_objects(world: World, image: Int[Tensor, " seq"] | str) -> Int[Tensor, "2 seq"]:
    """``[image, mirror]``: a two-object image and the same label pair with the two objects'
    positions swapped (the pair of inputs of Fig. 4b, e.g. 17 left of 19 and 19 left of 17)."""
    tokens = as_tokens(world, image)[0]
    cls = world.vocab.cls
    pixels = ((tokens != 0) & (tokens != cls)).nonzero()[:, 0]
    if len(pixels) != 2:
        raise CircuitsError(f"swapping needs an image with exactly two objects;"
                            f" {world.image_text(tokens)!r} has {len(pixels)}")
    mirror = tokens.clone()
    mirror[pixels] = tokens[pixels.flip(0)]
    return torch.stack([tokens, mirror])


@contextmanager
def _eval(enc: HookedEncoder) -> Iterator[None]:
    was_training = enc.training
    enc.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        enc.train(was_training)


def _np(x: Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


def _finish(fig: go.Figure, title: str, height: int, width: int | None = None) -> go.Figure:
    top = max(90, 80 + 24 * title.count("<br>"))  # room for every subtitle line
    fig.update_layout(title=dict(text=title, yref="container", y=1, yanchor="top", pad=dict(t=14)), template=TEMPLATE, height=height, width=width, margin=dict(t=top, l=70, r=40, b=60))
    return fig


# ------------------------------------------------------------------------------ figures
def attention_patterns(
    model: HookedCLIP | HookedEncoder,
    task: Task,
    images: Int[Tensor, "n seq"] | Int[Tensor, " seq"] | str | Sequence[str],
    encoder: str = "vision",
    layer: int = 0,
    *,
    swap: bool = False,
) -> go.Figure:
    """Attention patterns (``blocks.{layer}.attn.hook_pattern``), rows = inputs, columns = heads
    (Fig. 4b; Fig. 6a with ``encoder="text"`` and caption tokens). ``swap=True`` adds, after each
    two-object image, the same label pair with the positions swapped (`swap_objects`), as in
    Fig. 4b. Trace ``i * n_heads + h`` holds input i, head h; the y axis (query) runs downward."""
    enc = get_encoder(model, encoder)
    layer = check_layer(enc, layer)
    tokens = as_tokens(task, images, encoder)
    if swap:
        tokens = torch.cat([swap_objects(task, t) for t in tokens])
    name = f"blocks.{layer}.attn.hook_pattern"
    with _eval(enc):
        _, cache = enc.run_with_cache(tokens.to(next(enc.parameters()).device), names_filter=name)
    pattern = cache[name].cpu()  # [n, head, q, k]
    n, n_heads = pattern.shape[:2]
    fig = make_subplots(rows=n, cols=n_heads, subplot_titles=head_names(n_heads) + [""] * (n - 1) * n_heads,
                        horizontal_spacing=0.04, vertical_spacing=0.25 / max(n, 1))  # room for each row's key labels
    traces, rows, cols = [], [], []
    for i in range(n):
        labels = position_labels(task, tokens[i], encoder)
        for h in range(n_heads):
            traces.append(go.Heatmap(z=_np(pattern[i, h]), x=labels, y=labels, coloraxis="coloraxis",
                                     name=f"{input_text(task, tokens[i], encoder)}, H{h}",
                                     hovertemplate="query %{y}<br>key %{x}<br>attention %{z:.3f}<extra></extra>"))
            rows.append(i + 1)
            cols.append(h + 1)
    fig.add_traces(traces, rows=rows, cols=cols)
    for i in range(n):
        fig.update_yaxes(title_text=f"{input_text(task, tokens[i], encoder)}<br>query", row=i + 1, col=1)
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    fig.update_xaxes(title_text="key", row=n)
    fig.update_layout(coloraxis=dict(colorscale=SEQUENTIAL, cmin=0.0, cmax=1.0, colorbar=dict(title="attention")))
    what = repr(input_text(task, tokens[0], encoder))
    if swap:
        what += " and its position swap" + (f" (+{n // 2 - 1} more pairs)" if n > 2 else "")
    elif n > 1:
        what += f" and {n - 1} more"
    fig.update_xaxes(tickfont=dict(size=9))
    return _finish(fig, f"Attention patterns of {what}, {encoder} encoder layer {layer} (Fig. 4b / 6a)", 250 * n + 130)


def term_grid(
    model: HookedCLIP | HookedEncoder,
    task: Task,
    image: Int[Tensor, " seq"] | Int[Tensor, "1 seq"] | str,
    encoder: str = "vision",
    layer: int = 0,
    terms: Sequence[str] | None = None,
    *,
    scale: str = "shared",
) -> go.Figure:
    """Decomposed pre-softmax scores of one input, rows = heads, columns = terms (or sums such
    as ``"EP+PP"``); the pooled query's row (the only one that reaches a 1-layer encoder's
    output) is outlined (Fig. 5a, 12, 14). Keys the causal text encoder masks are blank.

    Colour: ``scale="shared"`` (default) puts every panel on ONE diverging scale, symmetric about
    zero, with a colour bar (``layout.coloraxis``): the panels are compared, so a term that is
    nearly constant or tiny looks pale next to one that decides the attention. Each panel's
    corner gives its own largest magnitude, ``max |x|``. ``scale="panel"`` gives each panel its
    own range instead (to see the shape of small terms); the corners then read ``own scale ±x``
    and the title says so, and there is no colour bar."""
    if scale not in ("shared", "panel"):
        raise CircuitsError(f"scale must be 'shared' or 'panel', not {scale!r}")
    enc = get_encoder(model, encoder)
    tokens = as_tokens(task, image, encoder)[:1]
    d = decompose(enc, tokens, layer=layer)
    terms = list(terms) if terms is not None else enc.term_names(d.layer)
    masked = ~torch.isfinite(d.scores[0]).cpu()  # causal mask of the text encoder
    values = {t: d.combine(t)[0].cpu().masked_fill(masked, float("nan")) for t in terms}
    n_heads, seq = d.scores.shape[1], d.scores.shape[-1]
    labels = position_labels(task, tokens[0], encoder)
    q = enc.pool_index % seq
    n_cols = len(terms)
    shared = max((_absmax(v) for v in values.values()), default=0.0) or 1.0
    fig = make_subplots(rows=n_heads, cols=n_cols, row_titles=head_names(n_heads), subplot_titles=terms,
                        horizontal_spacing=0.02, vertical_spacing=0.12 / max(n_heads, 1))
    traces, rows, cols, shapes, notes = [], [], [], [], []
    for j, t in enumerate(terms):
        for h in range(n_heads):
            limit = _absmax(values[t][h])
            hover = f"{t} H{h}<br>query %{{y}}<br>key %{{x}}<br>%{{z:.4g}}<extra></extra>"
            if scale == "shared":
                colour = dict(coloraxis="coloraxis")
            else:
                colour = dict(colorscale=DIVERGING, zmid=0.0, zmin=-(limit or 1.0), zmax=limit or 1.0, showscale=False)
            traces.append(go.Heatmap(z=_np(values[t][h]), x=labels, y=labels, name=f"{t}, H{h}",
                                     hovertemplate=hover, **colour))
            rows.append(h + 1)
            cols.append(j + 1)
            axis = _axis_suffix(h * n_cols + j + 1)
            shapes.append(dict(type="rect", xref=f"x{axis}", yref=f"y{axis}", x0=-0.5, x1=seq - 0.5, y0=q - 0.5,
                               y1=q + 0.5, line=dict(color="black", width=2)))
            notes.append(dict(text=f"max |x| {limit:.2g}" if scale == "shared" else f"own scale ±{limit:.2g}",
                              x=1, y=0, xref=f"x{axis} domain", yref=f"y{axis} domain",
                              xanchor="right", yanchor="bottom", showarrow=False, font=dict(size=9),
                              bgcolor="rgba(255,255,255,0.7)"))
    fig.add_traces(traces, rows=rows, cols=cols)
    fig.update_layout(shapes=shapes, annotations=[*fig.layout.annotations, *notes])
    if scale == "shared":
        fig.update_layout(coloraxis=dict(colorscale=DIVERGING, cmid=0.0, cmin=-shared, cmax=shared,
                                         colorbar=dict(title="score term<br>(logit)", len=0.8)))
    fig.update_yaxes(autorange="reversed", showticklabels=False, type="category")
    fig.update_yaxes(showticklabels=True, title_text="query", col=1)
    fig.update_xaxes(type="category", showticklabels=False)
    fig.update_xaxes(title_text="key", showticklabels=True, tickangle=-90, tickfont=dict(size=9), row=n_heads)
    row_name = "CLS" if encoder == "vision" else "EOT"
    how = "one colour scale for all panels" if scale == "shared" else "each panel on its own colour scale"
    title = (f"Attention-score terms of {input_text(task, tokens[0], encoder)!r}, {encoder} layer {d.layer}"
             f" (Fig. 5a, 12, 14)<br><sup>{how}; outlined: the {row_name} row</sup>")
    return _finish(fig, title, 190 * n_heads + 180, min(1450, max(900, 150 * len(terms) + 200)))


def _axis_suffix(index: int) -> str:
    """Axis-name suffix of the ``index``-th (1-based, row-major) subplot of `make_subplots`."""
    return "" if index == 1 else str(index)


def _absmax(x: Tensor) -> float:
    finite = x[torch.isfinite(x)]
    return float(finite.abs().max()) if finite.numel() else 0.0


def term_profiles(
    model: HookedCLIP | HookedEncoder,
    task: Task,
    image: Int[Tensor, " seq"] | Int[Tensor, "1 seq"] | str,
    encoder: str = "vision",
    layer: int = 0,
    terms: Sequence[str] | None = None,
) -> go.Figure:
    """The pooled query's row of each term along the key positions, one subplot per head
    (Fig. 5b), one trace per (term, head): trace ``j * n_heads + h`` is term j, head h.

    ``terms=None`` draws every term of the decomposition except those whose key source is the
    bias B (``EB``, ``PB``, ``BB``): they are the same at every key, so they shift the row without
    changing the softmax; the figure's subtitle says they are left out. Each term has its own
    colour, dash pattern and marker, so lines that lie on top of each other stay visible; terms
    that coincide on every head (within 1% of the figure's range, `coinciding_terms`) are named in
    the subtitle. On the vision [CLS] row this is the finding that E[CLS] and P[0] always meet at
    the query: training only ever sees their sum, so EE tracks PE and EP tracks PP."""
    enc = get_encoder(model, encoder)
    layer = check_layer(enc, layer)
    tokens = as_tokens(task, image, encoder)[:1]
    row = pooled_row_terms(enc, tokens, layer=layer)
    left_out: list[str] = []
    if terms is None:
        terms = [t for t in row.terms if key_source(t) != "B"]
        left_out = [t for t in row.terms if t not in terms]
    terms = list(terms)
    values = {t: _np(row.combine(t)[0]) for t in terms}  # [head, key]
    n_heads = row.scores.shape[1]
    labels = position_labels(task, tokens[0], encoder)
    fig = make_subplots(rows=1, cols=n_heads, subplot_titles=head_names(n_heads), shared_yaxes=True,
                        horizontal_spacing=0.03)
    for j, t in enumerate(terms):
        for h in range(n_heads):
            fig.add_trace(go.Scatter(x=labels, y=values[t][h], mode="lines+markers", name=t, legendgroup=t,
                                     showlegend=h == 0, line=dict(color=_color(j), dash=_dash(j), width=_width(j)),
                                     marker=dict(symbol=_marker(j), size=_size(j), color=_color(j)),
                                     hovertemplate=f"{t} H{h}<br>key %{{x}}<br>%{{y:.4g}}<extra></extra>"),
                          row=1, col=h + 1)
    fig.add_hline(y=0, line=dict(color="grey", width=1))
    fig.update_xaxes(title_text="key position", type="category")
    row_name = "CLS" if encoder == "vision" else "EOT"
    fig.update_yaxes(title_text=f"{row_name}-row logit term", col=1)
    notes = [note] if (note := _coincidence_note(values, encoder == "vision" and enc.pool_index == 0)) else []
    if left_out:
        notes.append(f"not drawn: {', '.join(left_out)} (key source B, the same at every key)")
    title = f"Pooled-row term profiles of {input_text(task, tokens[0], encoder)!r}, {encoder} layer {layer} (Fig. 5b)"
    if notes:
        title += "<br><sup>" + "<br>".join(notes) + "</sup>"
    return _finish(fig, title, 480)


def coinciding_terms(values: dict[str, np.ndarray], tol: float = 0.02) -> list[tuple[str, str, float]]:
    """``(a, b, largest difference)`` for the pairs of terms whose curves (``term -> [head,
    key]`` arrays) differ nowhere by more than ``tol`` times the largest magnitude of all of
    them: at the figure's scale, lines drawn on top of each other."""
    values = {t: np.asarray(v, dtype=float) for t, v in values.items()}
    finite = [np.abs(v[np.isfinite(v)]).max() for v in values.values() if np.isfinite(v).any()]
    span = max(finite, default=0.0)
    if span == 0:
        return []
    names, out = list(values), []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            diff = np.abs(values[a] - values[b])
            if np.isfinite(diff).any() and np.nanmax(diff) <= tol * span:
                out.append((a, b, float(np.nanmax(diff))))
    return out


def _coincidence_note(values: dict[str, np.ndarray], cls_query: bool) -> str:
    """The subtitle naming the curves that lie on top of each other, with why when it is the
    [CLS] query's E and P sharing every gradient (EE ~ PE, EP ~ PP, EB ~ PB)."""
    pairs = coinciding_terms(values)
    if not pairs:
        return ""
    same = ", ".join(f"{a} ≈ {b}" for a, b, _ in pairs)
    largest = max(d for _, _, d in pairs)
    why = ""
    if cls_query and any({query_source(a), query_source(b)} == {"E", "P"} and key_source(a) == key_source(b)
                         for a, b, _ in pairs):
        why = ("<br>E[CLS] and P[0] always meet at the CLS query, so they get the same gradient and differ"
               " only by their initialisation")
    return f"lines on top of each other: {same} (largest difference {largest:.2g}){why}"


def _width(i: int) -> float:
    """Line width of the i-th curve: later curves (drawn on top) are thinner, so a curve that
    lies exactly under another still shows at its edges."""
    return max(4.5 - 0.6 * i, 1.2)


def _size(i: int) -> float:
    """Marker size of the i-th curve: later (upper) markers are smaller, as with `_width`."""
    return max(13 - 1.5 * i, 5)


def _dash(i: int) -> str:
    return ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")[i % 6]


def _marker(i: int) -> str:
    return ("circle", "x", "square-open", "diamond", "triangle-up-open", "cross", "star", "circle-open", "hexagon-open")[i % 9]


def _color(i: int) -> str:
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#393b79", "#637939")
    return palette[i % len(palette)]


def _object_names(bias: HeadBias) -> tuple[str, str]:
    """The probe's names of the two objects (`HeadBias.names`: left / right for images,
    subject / object for captions): the same words as the CLI's ``lenscli bias``."""
    return tuple(bias.names)  # type: ignore[return-value]


def bias_bars(bias: HeadBias, *, argmax: bool = False) -> go.Figure:
    """Per head, the fraction of inputs whose pooled query attends more to the first object
    (`HeadBias.names`: left for images, subject for captions) than to the second, and vice versa
    (`HeadBias.first` / `.second`; Fig. 4c; text encoder: Fig. 6b). ``argmax=True`` shows
    instead where the row's maximal attention falls: on either object or elsewhere
    (`argmax_first` / `argmax_second` / `argmax_other`), under its own title."""
    heads = head_names(len(bias.first))
    first, second = _object_names(bias)
    if argmax:
        bars = [(bias.argmax_first, f"maximum on the {first}"),
                (bias.argmax_second, f"maximum on the {second}"),
                (bias.argmax_other, "maximum elsewhere")]
        what = f"Where the {'CLS' if bias.encoder == 'vision' else 'EOT'} row's maximal attention falls"
    else:
        bars = [(bias.first, f"more attention on the {first}"), (bias.second, f"more attention on the {second}")]
        what = f"{first.capitalize()}/{second} attention bias"
    fig = go.Figure([go.Bar(x=heads, y=y, name=name, marker_color=_color(i) if i < 2 else "#aaaaaa")
                     for i, (y, name) in enumerate(bars)])
    fig.update_layout(barmode="group", xaxis_title="head", yaxis=dict(title="fraction of inputs", range=[0, 1]))
    return _finish(fig, f"{what}, {bias.encoder} layer {bias.layer}, {bias.split}"
                        f" ({bias.n_inputs} inputs) ({'Fig. 4c' if bias.encoder == 'vision' else 'Fig. 6b'})", 420)


def relational_bars(bias: HeadBias) -> go.Figure:
    """Per head, the fraction of inputs attended relationally toward the first / second object
    (`HeadBias.names`; the position terms decide, |D_pos| > |D_tok|) or label-specifically,
    stacked (Fig. 5d)."""
    heads = head_names(len(bias.first))
    first, second = _object_names(bias)
    fig = go.Figure([
        go.Bar(x=heads, y=bias.relational_first, name=f"relational, toward the {first}", marker_color=_color(0)),
        go.Bar(x=heads, y=bias.relational_second, name=f"relational, toward the {second}", marker_color=_color(1)),
        go.Bar(x=heads, y=bias.label_specific, name="label-specific", marker_color="#aaaaaa"),
    ])
    fig.update_layout(barmode="stack", xaxis_title="head", yaxis=dict(title="fraction of inputs", range=[0, 1]))
    return _finish(fig, f"Relational vs label-specific attention, {bias.encoder} layer {bias.layer}, {bias.split}"
                        f" (Fig. 5d)<br><sup>position terms {bias.position_terms} vs token terms {bias.token_terms}</sup>",
                   420)


def ablation_name(spec: dict | Ablation) -> str:
    """Short name of an ablation: its terms and value sources (``"VP"`` for source P) joined by
    ``+``, with the heads / layers / text encoder when it is restricted to them."""
    spec = spec.to_dict() if isinstance(spec, Ablation) else spec
    name = "+".join([*spec.get("terms", ()), *(f"V{v}" for v in spec.get("values", ()))]) or "nothing"
    if spec.get("heads") is not None:
        name += " (" + ",".join(f"H{h}" for h in spec["heads"]) + ")"
    if spec.get("layers") is not None:
        name += " (layer " + ",".join(str(l) for l in spec["layers"]) + ")"
    if list(spec.get("encoders", ["vision"])) != ["vision"]:
        name += " [" + ",".join(spec["encoders"]) + "]"
    return name


def _is_ablation_output(result: object) -> bool:
    return isinstance(result, dict) and {"baseline", "ablated"} <= set(result) and isinstance(result["ablated"], dict)


def ablation_results(results: dict) -> dict[str, dict[str, float]]:
    """Condition name -> metrics, ``"baseline"`` first, from any of: one `evaluate_ablation`
    output; a dict name -> `evaluate_ablation` output (the first baseline is kept); a dict
    name -> `evaluate` metrics (taken as they are)."""
    if _is_ablation_output(results):
        return {"baseline": dict(results["baseline"]), ablation_name(results.get("ablation", {})): dict(results["ablated"])}
    out: dict[str, dict[str, float]] = {}
    for name, result in results.items():
        if _is_ablation_output(result):
            out.setdefault("baseline", dict(result["baseline"]))
            out[name] = dict(result["ablated"])
        else:
            out[name] = dict(result)
    if "baseline" in out:
        out = {"baseline": out.pop("baseline"), **out}
    return out


def ablation_bars(
    results: dict, metrics: Sequence[str] = ("unseen_pair", "label_set")
) -> go.Figure:
    """Accuracy per ablation condition, one bar group per condition (x) and one bar trace per
    metric present (default: unseen-pair accuracy and label-set recognition); the dotted line is
    the 0.5 of a model that knows the objects but not their order (Fig. 5e, 16, 17).

    ``results``: the output of `circuits.ablate.evaluate_ablation`, a dict name -> such
    outputs, or a dict name -> `evaluate` metrics (see `ablation_results`)."""
    table = ablation_results(results)
    names = list(table)
    present = [m for m in metrics if any(m in row for row in table.values())]
    fig = go.Figure([
        go.Bar(x=names, y=[table[n].get(m, math.nan) for n in names], name=m, marker_color=_color(i),
               texttemplate="%{y:.2f}", textposition="outside")
        for i, m in enumerate(present)
    ])
    fig.add_hline(y=0.5, line=dict(color="grey", dash="dot"))
    fig.update_layout(barmode="group", xaxis=dict(title="zero-ablated terms (vision encoder, all heads)", type="category"),
                      yaxis=dict(title="accuracy", range=[0, 1.1]))
    return _finish(fig, "Accuracy after zero-ablating attention-score terms (Fig. 5e, 16, 17)", 420)


def similarity_heatmap(model: HookedCLIP, world: World, split: str = "unseen_pair", max_images: int = 200) -> go.Figure:
    """Cosine similarity of images of ``split`` (at most ``max_images``, evenly spaced) with the
    captions true of some image of the split, in caption order (Fig. 3 right)."""
    from circuits.evaluation import similarity_matrix

    data = world[split]
    index = torch.linspace(0, len(data) - 1, min(max_images, len(data))).round().long().unique()
    images = data.subset(index)
    ids = torch.unique(data.true_captions[data.true_captions >= 0])
    sim = similarity_matrix(model, world, images).cpu()[:, ids]
    fig = go.Figure(go.Heatmap(
        z=_np(sim), x=[world.caption_text(int(c)) for c in ids],
        y=[world.image_text(im) for im in images.images],
        colorscale=DIVERGING, zmid=0.0, colorbar=dict(title="cosine"),
        hovertemplate="image %{y}<br>caption %{x}<br>cosine %{z:.3f}<extra></extra>"))
    fig.update_layout(xaxis=dict(title="caption", tickfont=dict(size=9), automargin=True, tickangle=45),
                      yaxis=dict(title=f"image ({split}, {len(images)} of {len(data)})", autorange="reversed",
                                 tickfont=dict(size=8), automargin=True))
    return _finish(fig, f"Image-caption cosine similarity, {split} (Fig. 3 right)", 900)


def read_history(history: list[dict] | str | os.PathLike) -> list[dict]:
    """A list of metric rows as given, or `circuits.checkpoint.read_metrics` of a checkpoint
    directory or ``metrics.jsonl`` file."""
    if not isinstance(history, (str, os.PathLike)):
        return list(history)
    from circuits.checkpoint import read_metrics

    return read_metrics(history)


def training_curves(history: list[dict] | str | os.PathLike) -> go.Figure:
    """Accuracy of every split recorded (training splits dashed; the three generalization
    accuracies single_object / seen_pair / unseen_pair solid) and the training loss on a second
    y axis, against the training step (Fig. 11). ``history``: `TrainResult.history`, a
    ``metrics.jsonl`` file or a checkpoint directory. One trace per key, in `ACCURACY_KEYS`
    order, then ``loss``."""
    rows = read_history(history)
    steps = [r.get("step") for r in rows]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    keys = [k for k in ACCURACY_KEYS if any(k in r for r in rows)]
    for i, key in enumerate(keys):
        fig.add_trace(go.Scatter(x=steps, y=[r.get(key) for r in rows], name=key, mode="lines",
                                 line=dict(color=_color(i), dash="dash" if key.startswith("train") else "solid")),
                      secondary_y=False)
    if any("loss" in r for r in rows):
        fig.add_trace(go.Scatter(x=steps, y=[r.get("loss") for r in rows], name="loss", mode="lines",
                                 line=dict(color="black", width=1)), secondary_y=True)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], secondary_y=False)
    fig.update_yaxes(title_text="training loss", secondary_y=True, showgrid=False)
    return _finish(fig, "Accuracy and loss during training (Fig. 11)", 450)


def term_spread_bars(spread: dict[str, list[float]]) -> go.Figure:
    """Per head, each term's standard deviation along the pooled row relative to that of the
    full scores (`circuits.stats.term_spread`; App. E, Fig. 13)."""
    n_heads = len(next(iter(spread.values()), []))
    fig = go.Figure([go.Bar(x=head_names(n_heads), y=v, name=t, marker_color=_color(i))
                     for i, (t, v) in enumerate(spread.items())])
    fig.update_layout(barmode="group", xaxis_title="head", yaxis_title="std of term / std of scores (pooled row)")
    return _finish(fig, "Share of the pooled row's spread per term (App. E, Fig. 13)", 420)


def text_attention(
    model: HookedCLIP, world: World, captions: Int[Tensor, "n 4"] | Int[Tensor, " n"] | Sequence[int] | None = None, layer: int = 0
) -> go.Figure:
    """[EOT]-row attention over the word positions per head, mean +- std over ``captions``
    (token tensor or caption ids; default: the left captions of the unseen pairs) (Fig. 6)."""
    if captions is None:
        captions = torch.unique(world["unseen_pair"].captions)
    tokens = captions if isinstance(captions, Tensor) and captions.ndim == 2 else world.captions[torch.as_tensor(captions)]
    enc = model.text
    layer = check_layer(enc, layer)
    name = f"blocks.{layer}.attn.hook_pattern"
    with _eval(enc):
        _, cache = enc.run_with_cache(tokens.to(model.device), names_filter=name)
    eot = cache[name][:, :, enc.pool_index % tokens.shape[1], :].cpu()  # [n, head, k]
    mean, std = eot.mean(0), eot.std(0, correction=0)
    labels = word_labels(world, tokens)
    n_heads = eot.shape[1]
    fig = make_subplots(rows=1, cols=n_heads, subplot_titles=head_names(n_heads), shared_yaxes=True)
    for h in range(n_heads):
        fig.add_trace(go.Bar(x=labels, y=_np(mean[h]), error_y=dict(type="data", array=_np(std[h])),
                             marker_color=_color(h), name=f"H{h}", showlegend=False), row=1, col=h + 1)
    fig.update_xaxes(title_text="word position", automargin=True, ticktext=[_wrap(label) for label in labels],
                     tickvals=labels)
    fig.update_yaxes(title_text="EOT attention (mean ± std)", range=[0, 1.05], col=1)
    return _finish(fig, f"Text encoder layer {layer}: EOT attention over the words of {len(tokens)} captions (Fig. 6)", 420)


def _wrap(label: str, width: int = 12) -> str:
    """A tick label broken into lines of about ``width`` characters at spaces (``<br>``): whole,
    however narrow the subplot."""
    lines: list[str] = []
    for word in label.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join(lines)


def word_labels(world: World, tokens: Int[Tensor, "n seq"]) -> list[str]:
    """``"0: X"``, ``"1: is on the left of"``, ...: the word shared by all captions at a
    position, or X / Y for the label slots."""
    vocab, out, slots = world.vocab, [], iter("XYZ")
    for i in range(tokens.shape[1]):
        values = torch.unique(tokens[:, i]).tolist()
        if len(values) == 1:
            out.append(f"{i}: {vocab.text_token_str(values[0])}")
        elif all(1 <= v <= world.cfg.n_labels for v in values):
            out.append(f"{i}: {next(slots, 'label')}")
        else:
            out.append(f"{i}: (varies)")
    return out


def term_gradient_figure(gradients: dict[str, Gradient], encoder: str = "vision") -> go.Figure:
    """Mean value of each term at every key column of the pooled row (`circuits.stats.term_gradient`),
    one subplot per head: the "horizontal gradient" of the EP term (Fig. 5a-b, 14; its absence in
    non-generalizing models, Fig. 15b). Trace ``j * n_heads + h`` is term j, head h.

    The legend has one entry per term (a click hides that term on every head); each point's
    hover gives the curve's monotonicity (Spearman rho with the column) and least-squares slope
    per column, and `gradient_rows` gives the same numbers as a table (the report prints it
    under the figure). Terms have distinct colours, dash patterns and markers."""
    n_heads = len(next(iter(gradients.values())).profile) if gradients else 0
    fig = make_subplots(rows=1, cols=max(n_heads, 1), subplot_titles=head_names(n_heads), shared_yaxes=True)
    for j, (t, g) in enumerate(gradients.items()):
        for h in range(n_heads):
            columns = list(range(len(g.profile[h])))
            fig.add_trace(go.Scatter(
                x=columns, y=g.profile[h], mode="lines+markers", legendgroup=t, name=t, showlegend=h == 0,
                line=dict(color=_color(j), dash=_dash(j), width=_width(j)),
                marker=dict(symbol=_marker(j), size=_size(j)),
                hovertemplate=(f"{t} H{h}: ρ={g.monotonicity[h]:+.2f}, slope={g.slope[h]:+.3f}"
                               "<br>column %{x}<br>mean %{y:.4g}<extra></extra>")),
                row=1, col=h + 1)
    fig.add_hline(y=0, line=dict(color="grey", width=1))
    fig.update_xaxes(title_text="pixel column (left to right)" if encoder == "vision"
                     else "word (0 = X, 1 = relation, 2 = Y)")
    row_name = "CLS" if encoder == "vision" else "EOT"
    fig.update_yaxes(title_text=f"mean term on the {row_name} row", col=1)
    notes = ["monotonicity (Spearman ρ) and slope per head: hover, or the table"]
    if note := _coincidence_note({t: [list(p) for p in g.profile] for t, g in gradients.items()}, encoder == "vision"):
        notes.append(note)
    return _finish(fig, f"Horizontal gradient of the terms along the {row_name} row (Fig. 5b, 14, 15b)"
                        "<br><sup>" + "<br>".join(notes) + "</sup>", 480)


def gradient_rows(gradients: dict[str, Gradient]) -> list[dict[str, str]]:
    """One row per term: ``{"term": t, "H0": "ρ +0.98, slope +0.412", ...}``, the monotonicity
    and slope of `term_gradient_figure`'s curves as a small table."""
    return [{"term": t, **{f"H{h}": f"ρ {g.monotonicity[h]:+.2f}, slope {g.slope[h]:+.3f}"
                           for h in range(len(g.profile))}}
            for t, g in gradients.items()]

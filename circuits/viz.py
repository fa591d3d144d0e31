"""Plotly figures of the paper's analyses, one function per figure kind.

Every function computes with the library (`circuits.decompose`, `circuits.stats`,
`circuits.evaluate`) or takes an analysis result, and returns a titled ``go.Figure`` whose
axes name what they show: key / query positions as ``"CLS"``, ``"3:17"`` (pixel index : pixel
value) or caption words, heads as ``"H0"``, ``"H1"``, ... Signed quantities use a diverging colour
scale (``"RdBu_r"``) centred at zero (``zmid=0``); attention probabilities a sequential one on [0, 1].

=========================  ===================================================
`attention_patterns`       attention pattern per image and head (Fig. 4b, 6a)
`term_grid`                score terms, heads x terms (Fig. 5a, 12, 14)
`term_profiles`            pooled-row profiles of the terms (Fig. 5b)
`bias_bars`                left/right (first/second) attention bias (Fig. 4c)
`relational_bars`          relational vs label-specific attention (Fig. 5d)
`ablation_bars`            accuracy under term ablations (Fig. 5e, 16, 17)
`similarity_heatmap`       image x caption cosine similarity (Fig. 3 right)
`training_curves`          accuracies and loss during training (Fig. 11)
`term_spread_bars`         each term's share of the pooled row's spread (Fig. 13)
`text_attention`           [EOT] attention over words, mean +- std (Fig. 6)
`term_gradient_figure`     column profiles of terms, monotonicity and slope (Fig. 5b, 14, 15b)
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
from pathlib import Path
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
    fig.update_layout(title=title, template=TEMPLATE, height=height, width=width, margin=dict(t=90, l=70, r=40, b=60))
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
                        horizontal_spacing=0.04, vertical_spacing=0.12 / max(n, 1))
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
    return _finish(fig, f"Attention patterns, {encoder} encoder layer {layer} (Fig. 4b / 6a)", 230 * n + 130)


def term_grid(
    model: HookedCLIP | HookedEncoder,
    task: Task,
    image: Int[Tensor, " seq"] | Int[Tensor, "1 seq"] | str,
    encoder: str = "vision",
    layer: int = 0,
    terms: Sequence[str] | None = None,
) -> go.Figure:
    """Decomposed pre-softmax scores of one input, rows = heads, columns = terms (or sums such
    as ``"EP+PP"``), each panel on its own colour range symmetric about zero (its +-max in the
    corner); the pooled query's row (the only one that reaches a 1-layer encoder's output) is
    outlined (Fig. 5a, 12, 14). Keys the causal text encoder masks are blank."""
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
    fig = make_subplots(rows=n_heads, cols=n_cols, row_titles=head_names(n_heads), subplot_titles=terms,
                        horizontal_spacing=0.02, vertical_spacing=0.12 / max(n_heads, 1))
    traces, rows, cols, shapes, notes = [], [], [], [], []
    for j, t in enumerate(terms):
        for h in range(n_heads):
            limit = _absmax(values[t][h])
            traces.append(go.Heatmap(z=_np(values[t][h]), x=labels, y=labels, colorscale=DIVERGING, zmid=0.0,
                                     zmin=-(limit or 1.0), zmax=limit or 1.0, showscale=False, name=f"{t}, H{h}",
                                     hovertemplate=f"{t} H{h}<br>query %{{y}}<br>key %{{x}}<br>%{{z:.3f}}<extra></extra>"))
            rows.append(h + 1)
            cols.append(j + 1)
            axis = _axis_suffix(h * n_cols + j + 1)
            shapes.append(dict(type="rect", xref=f"x{axis}", yref=f"y{axis}", x0=-0.5, x1=seq - 0.5, y0=q - 0.5,
                               y1=q + 0.5, line=dict(color="black", width=2)))
            notes.append(dict(text=f"±{limit:.2g}", x=1, y=0, xref=f"x{axis} domain", yref=f"y{axis} domain",
                              xanchor="right", yanchor="bottom", showarrow=False, font=dict(size=9),
                              bgcolor="rgba(255,255,255,0.7)"))
    fig.add_traces(traces, rows=rows, cols=cols)
    fig.update_layout(shapes=shapes, annotations=[*fig.layout.annotations, *notes])
    fig.update_yaxes(autorange="reversed", showticklabels=False, type="category")
    fig.update_yaxes(showticklabels=True, title_text="query", col=1)
    fig.update_xaxes(type="category")
    fig.update_xaxes(title_text="key", row=n_heads)
    title = (f"Attention-score terms of {input_text(task, tokens[0], encoder)!r}, {encoder} layer {d.layer};"
             f" outlined: the {'CLS' if encoder == 'vision' else 'EOT'} row (Fig. 5a, 12, 14)")
    return _finish(fig, title, 190 * n_heads + 140, max(900, 150 * len(terms) + 150))


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
    terms: Sequence[str] | None = ("EE", "EP", "PE", "PP"),
) -> go.Figure:
    """The pooled query's row of each term along the key positions, one subplot per head
    (Fig. 5b). Terms the model lacks are dropped from the default set."""
    enc = get_encoder(model, encoder)
    layer = check_layer(enc, layer)
    tokens = as_tokens(task, image, encoder)[:1]
    row = pooled_row_terms(enc, tokens, layer=layer)
    if terms == ("EE", "EP", "PE", "PP"):
        terms = [t for t in terms if t in row.terms] or list(row.terms)
    terms = list(terms) if terms is not None else list(row.terms)
    n_heads = row.scores.shape[1]
    labels = position_labels(task, tokens[0], encoder)
    fig = make_subplots(rows=1, cols=n_heads, subplot_titles=head_names(n_heads), shared_yaxes=True,
                        horizontal_spacing=0.03)
    for j, t in enumerate(terms):
        value = row.combine(t)[0].cpu()
        for h in range(n_heads):
            fig.add_trace(go.Scatter(x=labels, y=_np(value[h]), mode="lines+markers", name=t, legendgroup=t,
                                     showlegend=h == 0, line=dict(color=_color(j))), row=1, col=h + 1)
    fig.add_hline(y=0, line=dict(color="grey", width=1))
    fig.update_xaxes(title_text="key position", type="category")
    fig.update_yaxes(title_text=f"{'CLS' if encoder == 'vision' else 'EOT'}-row logit term", col=1)
    title = f"Pooled-row term profiles of {input_text(task, tokens[0], encoder)!r}, {encoder} layer {layer} (Fig. 5b)"
    return _finish(fig, title, 420)


def _color(i: int) -> str:
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
    return palette[i % len(palette)]


def _object_names(bias: HeadBias) -> tuple[str, str]:
    if bias.encoder == "vision":
        return "left object", "right object"
    return "first-mentioned word", "second-mentioned word"


def bias_bars(bias: HeadBias, *, argmax: bool = False) -> go.Figure:
    """Per head, the fraction of inputs whose pooled query attends more to the first (left)
    than the second (right) object, and vice versa (`HeadBias.first` / `.second`; Fig. 4c; text
    encoder: Fig. 6b). ``argmax=True`` shows instead where the row's maximal attention falls:
    left object, right object or elsewhere (`argmax_first` / `argmax_second` / `argmax_other`)."""
    heads = head_names(len(bias.first))
    first, second = _object_names(bias)
    if argmax:
        bars = [(bias.argmax_first, f"maximal attention on the {first}"),
                (bias.argmax_second, f"maximal attention on the {second}"),
                (bias.argmax_other, "maximal attention elsewhere")]
    else:
        bars = [(bias.first, f"more attention on the {first}"), (bias.second, f"more attention on the {second}")]
    fig = go.Figure([go.Bar(x=heads, y=y, name=name, marker_color=_color(i) if i < 2 else "#aaaaaa")
                     for i, (y, name) in enumerate(bars)])
    fig.update_layout(barmode="group", xaxis_title="head", yaxis=dict(title="fraction of inputs", range=[0, 1]))
    return _finish(fig, f"Left/right attention bias, {bias.encoder} layer {bias.layer}, {bias.split}"
                        f" ({bias.n_inputs} inputs) (Fig. 4c)", 420)


def relational_bars(bias: HeadBias) -> go.Figure:
    """Per head, the fraction of inputs attended relationally toward the first / second object
    (the position terms decide, |D_pos| > |D_tok|) or label-specifically, stacked (Fig. 5d)."""
    heads = head_names(len(bias.first))
    first, second = _object_names(bias)
    fig = go.Figure([
        go.Bar(x=heads, y=bias.relational_first, name=f"relational, toward the {first}", marker_color=_color(0)),
        go.Bar(x=heads, y=bias.relational_second, name=f"relational, toward the {second}", marker_color=_color(1)),
        go.Bar(x=heads, y=bias.label_specific, name="label-specific", marker_color="#aaaaaa"),
    ])
    fig.update_layout(barmode="stack", xaxis_title="head", yaxis=dict(title="fraction of inputs", range=[0, 1]))
    return _finish(fig, f"Relational vs label-specific attention, {bias.encoder} layer {bias.layer}, {bias.split}"
                        f" (position terms {bias.position_terms} vs token terms {bias.token_terms}) (Fig. 5d)", 420)


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
    from circuits.evaluate import similarity_matrix

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
    fig.update_layout(xaxis=dict(title="caption", tickfont=dict(size=9)),
                      yaxis=dict(title=f"image ({split}, {len(images)} of {len(data)})", autorange="reversed",
                                 tickfont=dict(size=8)))
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
    fig.update_xaxes(title_text="word position")
    fig.update_yaxes(title_text="EOT attention (mean ± std)", range=[0, 1.05], col=1)
    return _finish(fig, f"Text encoder layer {layer}: EOT attention over the words of {len(tokens)} captions (Fig. 6)", 420)


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
    one subplot per head; each curve's legend entry gives its monotonicity (Spearman rho with the
    column) and least-squares slope per column: the "horizontal gradient" of the EP term
    (Fig. 5a-b, 14; its absence in non-generalizing models, Fig. 15b). Trace ``j * n_heads + h``
    is term j, head h."""
    n_heads = len(next(iter(gradients.values())).profile) if gradients else 0
    fig = make_subplots(rows=1, cols=max(n_heads, 1), subplot_titles=head_names(n_heads), shared_yaxes=True)
    for j, (t, g) in enumerate(gradients.items()):
        for h in range(n_heads):
            columns = list(range(len(g.profile[h])))
            fig.add_trace(go.Scatter(x=columns, y=g.profile[h], mode="lines+markers", legendgroup=t,
                                     name=f"{t}, H{h}: ρ={g.monotonicity[h]:+.2f}, slope={g.slope[h]:+.3f}",
                                     line=dict(color=_color(j))),
                          row=1, col=h + 1)
    fig.add_hline(y=0, line=dict(color="grey", width=1))
    fig.update_xaxes(title_text="pixel column (left to right)" if encoder == "vision"
                     else "word (0 = X, 1 = relation, 2 = Y)")
    fig.update_yaxes(title_text=f"mean term on the {'CLS' if encoder == 'vision' else 'EOT'} row", col=1)
    return _finish(fig, f"Horizontal gradient of the terms along the {'CLS' if encoder == 'vision' else 'EOT'} row"
                        " (Fig. 5b, 14, 15b)", 450)

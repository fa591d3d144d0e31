"""Figures of the mechanism analyses (Fig. 6a, 7, 11, 18, 19), from their results.

=========================  ===================================================
`alignment_heatmaps`       held-out cosine matrices, raw and rotated (Fig. 7a, b)
`phases_figure`            accuracies and per-step loss, phases shaded (Fig. 11)
`caption_pair_figure`      [EOT] attention of a caption and its swap, per head (Fig. 6a)
`rope_accuracy_figure`     a rotary model's accuracies and argmax L/R per head (Fig. 18a, c)
`consistency_bars`         Eq. 23 satisfaction per head, full / b_K = 0 / PC1 (Fig. 19a)
`rope_mechanisms_figure`   g_ij by distance, key PCA, r_eff of W_K, PC1 alignment, a_m (Fig. 19b-e)
=========================  ===================================================

Same conventions as `circuits.viz`: heads ``H0..``, diverging colour scale centred at 0 for
signed quantities.
"""

from __future__ import annotations

import os
from typing import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from circuits.align import Alignment
from circuits.phases import Phases, loss_curve
from circuits.rope import RopeAnalysis
from circuits.stats import HeadBias
from circuits.text_bias import TextAttentionBias
from circuits.viz import DIVERGING, _color, _finish, _wrap, head_names, read_history

SPLITS = ("single_object", "seen_pair", "unseen_pair")


def alignment_heatmaps(alignment: Alignment) -> go.Figure:
    """``cos(A_a, B_b)`` and ``cos(A_a R, B_b)`` on the held-out labels (rows vision, columns text)."""
    labels = [str(k) for k in alignment.eval_labels]
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        f"raw (diagonal {alignment.raw.get('diagonal', float('nan')):.2f})",
        f"rotated (diagonal {alignment.rotated['diagonal']:.2f}, p = {alignment.permutation.get('p', float('nan')):.3f})"))
    for col, matrix in ((1, alignment.raw_matrix), (2, alignment.rotated_matrix)):
        fig.add_trace(go.Heatmap(z=matrix, x=labels, y=labels, colorscale=DIVERGING, zmid=0, zmin=-1, zmax=1,
                                 showscale=col == 2, hovertemplate="vision %{y}<br>text %{x}<br>cosine %{z:.3f}<extra></extra>"),
                      row=1, col=col)
        fig.update_xaxes(title_text="text label", row=1, col=col)
        fig.update_yaxes(title_text="vision label", autorange="reversed", row=1, col=col)
    fit = f"{alignment.fit_labels[0]}..{alignment.fit_labels[-1]}"
    return _finish(fig, f"Token embeddings of held-out labels, R fitted on labels {fit} (Fig. 7)", 420)


def phases_figure(history: list[dict] | str | os.PathLike, phases: Phases) -> go.Figure:
    """Single-object / seen-pair / unseen-pair accuracy and the training loss, the three phases shaded."""
    rows = read_history(history)
    steps = [r["step"] for r in rows]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for i, key in enumerate(("single_object", "seen_pair", "unseen_pair")):
        fig.add_trace(go.Scatter(x=steps, y=[r.get(key) for r in rows], name=key, mode="lines", line=dict(color=_color(i))),
                      secondary_y=False)
    loss_steps, losses, source = loss_curve(rows)
    fig.add_trace(go.Scatter(x=loss_steps.tolist(), y=losses.tolist(), name=f"loss ({source})", mode="lines",
                             line=dict(color="black", width=1)), secondary_y=True)
    for i, (start, end) in enumerate(phases.phases):
        if start is not None and end is not None and end > start:
            fig.add_vrect(x0=start, x1=end, fillcolor=_color(i), opacity=0.08, line_width=0,
                          annotation_text=f"phase {i + 1}", annotation_position="top left")
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], secondary_y=False)
    fig.update_yaxes(title_text="training loss", type="log", secondary_y=True, showgrid=False)
    return _finish(fig, f"Training phases: t1 = {phases.t1}, t2 = {phases.t2}, t3 = {phases.t3} (App. D, Fig. 11)", 450)


def consistency_bars(rope: RopeAnalysis) -> go.Figure:
    """Fraction of (pair, positions) with Δ·Δ' > 0 per head: full logits, b_K = 0, b_K = 0 with
    keys on PC1, beside the argmax |P_left − P_right| (Fig. 19a, Fig. 18c)."""
    heads = head_names(len(rope.consistency))
    series = (("|P_left − P_right| (argmax)", rope.argmax_left_minus_right), ("full", rope.consistency),
              ("b_K = 0", rope.consistency_no_bias), ("b_K = 0, keys on PC1", rope.consistency_pc1))
    fig = go.Figure([go.Bar(x=heads, y=v, name=name, marker_color=_color(i)) for i, (name, v) in enumerate(series)])
    fig.update_layout(barmode="group", xaxis_title="head", yaxis=dict(title="fraction", range=[0, 1]))
    return _finish(fig, "Consistency condition Δ·Δ' > 0 per head (App. J, Fig. 19a)", 420)


def caption_pair_figure(result: TextAttentionBias, words: Sequence[Sequence[str]]) -> go.Figure:
    """[EOT]-row attention over the words of each caption of ``result`` (the paper: "17 is on the
    left of 19" and its swap), one row per caption, one column per head (Fig. 6a). ``words``:
    the words of each caption, in key order."""
    n_captions, n_heads = len(result.per_caption), len(result.bias)
    if len(words) != n_captions:
        raise ValueError(f"{len(words)} word lists for {n_captions} captions")
    titles = [f"{' '.join(words[c][: result.object + 1])}: H{h}" for c in range(n_captions) for h in range(n_heads)]
    fig = make_subplots(rows=n_captions, cols=n_heads, subplot_titles=titles, shared_yaxes=True, vertical_spacing=0.2)
    for c in range(n_captions):
        ticks = [f"{k}: {_wrap(w)}" for k, w in enumerate(words[c])]
        for h in range(n_heads):
            colors = [_color(0) if k == result.subject else _color(1) if k == result.object else "#999999"
                      for k in range(len(ticks))]
            fig.add_trace(go.Bar(x=ticks, y=result.per_caption[c][h], marker_color=colors, name=f"caption {c}, H{h}",
                                 showlegend=False), row=c + 1, col=h + 1)
    fig.update_yaxes(range=[0, 1.05])
    fig.update_yaxes(title_text="EOT attention", col=1)
    return _finish(fig, "[EOT] attention over the words of a caption and of its swap: subject (blue) and object (red)"
                        " (Sec. 6.1, Fig. 6a)", 300 * n_captions + 80)


def rope_accuracy_figure(accuracies: dict[str, float], bias: HeadBias) -> go.Figure:
    """A rotary vision encoder's accuracy on the three splits and where each head's [CLS] maximum
    falls on unseen-pair images, left or right object (Fig. 18a, c)."""
    heads = head_names(len(bias.argmax_first))
    first, second = bias.names
    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy (Fig. 18a)", f"argmax on the {first} / {second} object (Fig. 18c)"))
    splits = [k for k in SPLITS if k in accuracies]
    fig.add_trace(go.Bar(x=splits, y=[accuracies[k] for k in splits], marker_color=_color(2), name="accuracy"), row=1, col=1)
    for i, (values, name) in enumerate(((bias.argmax_first, first), (bias.argmax_second, second))):
        fig.add_trace(go.Bar(x=heads, y=values, name=f"maximum on the {name}", marker_color=_color(i)), row=1, col=2)
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1.02])
    return _finish(fig, "Rotary vision encoder: generalization and left-right bias (App. J.2, Fig. 18)", 420)


def rope_mechanisms_figure(rope: RopeAnalysis) -> go.Figure:
    """The App. J.3 analyses of one rotary model per head (Fig. 19b-e): Mechanism 1's
    ``g_ij = uᵀ(R_i − R_j) b_K`` by distance j − i (mean ± std), the explained-variance ratio of
    the key PCA, the effective rank of W_K at each τ, ``|cos(PC1, top singular vector of W_K)|``
    and Mechanism 2's ``a_m = uᵀ R_m v1`` over key positions m."""
    n = len(rope.consistency)
    names = head_names(n)
    fig = make_subplots(rows=2, cols=3, subplot_titles=(
        "(b) g_ij by distance j − i", "(c) key PCA: explained variance", "(d) effective rank of W_K",
        "(d) |cos(PC1, top singular vector of W_K)|", "(e) a_m = uᵀ R_m v1", ""))
    distances = sorted(rope.bias_gradient, key=int)
    for h in range(n):
        style = dict(line=dict(color=_color(h)), legendgroup=names[h])
        fig.add_trace(go.Scatter(x=[int(d) for d in distances], y=[rope.bias_gradient[d][0][h] for d in distances],
                                 error_y=dict(type="data", array=[rope.bias_gradient[d][1][h] for d in distances]),
                                 name=names[h], mode="lines+markers", **style), row=1, col=1)
        ratio = rope.explained_variance[h]
        fig.add_trace(go.Scatter(x=list(range(1, len(ratio) + 1)), y=ratio, name=names[h], mode="lines+markers",
                                 showlegend=False, **style), row=1, col=2)
        fig.add_trace(go.Scatter(x=rope.positions, y=rope.a_profile[h], name=names[h], mode="lines+markers",
                                 showlegend=False, **style), row=2, col=2)
    for i, tau in enumerate(rope.effective_rank):
        fig.add_trace(go.Bar(x=names, y=rope.effective_rank[tau], name=f"τ = {tau}", marker_color=_color(n + i)), row=1, col=3)
    fig.add_trace(go.Bar(x=names, y=rope.pc1_alignment, name="|cos(PC1, W_K)|", marker_color="#7f7f7f"), row=2, col=1)
    fig.update_xaxes(title_text="j − i", row=1, col=1)
    fig.update_xaxes(title_text="principal component", row=1, col=2)
    fig.update_xaxes(title_text="key position m", row=2, col=2)
    fig.update_yaxes(range=[0, 1.02], row=2, col=1)
    fig.update_layout(barmode="group")
    return _finish(fig, "How the rotary model breaks the symmetry: Mechanism 1 (bias gradient) and 2 (key subspace)"
                        " (App. J.3, Fig. 19b-e)", 720)
